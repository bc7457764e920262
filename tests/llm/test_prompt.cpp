#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "llm/llm_test_util.h"
#include "models/llm/prompt.h"

namespace omnirt::llm {
namespace {

using omnirt::testing::llm_test_tokenizer;

// The exact string from spec §4.1 (typed here, not produced by the code under test).
const char* kBostonPrompt =
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions. USER: <image>\nYou are driving "
    "in boston. Please provide the planning trajectory for the ego car without reasons. ASSISTANT:";

TEST(Prompt, PlanningStringMatchesSpec) {
  EXPECT_EQ(planning_prompt("boston"), kBostonPrompt);
  EXPECT_EQ(prompt_location("boston-seaport"), "boston");
  EXPECT_EQ(prompt_location("singapore-onenorth"), "singapore");
  EXPECT_EQ(prompt_location("singapore"), "singapore");
  EXPECT_EQ(planning_question("singapore"),
            "<image>\nYou are driving in singapore. Please provide the planning trajectory for the "
            "ego car without reasons.");
}

TEST(Prompt, ImageTokenStructure) {
  const Tokenizer& tok = llm_test_tokenizer();
  for (const char* location : {"boston", "singapore"}) {
    PromptIds p = build_planning_prompt(tok, location);
    ASSERT_GE(p.image_position, 1);
    EXPECT_EQ(p.ids[0], tok.bos_id());
    EXPECT_EQ(std::count(p.ids.begin(), p.ids.end(), tok.bos_id()), 1);
    EXPECT_EQ(std::count(p.ids.begin(), p.ids.end(), kImageTokenIndex), 1);
    EXPECT_EQ(p.ids[p.image_position], kImageTokenIndex);
    EXPECT_EQ(p.num_text_tokens(), static_cast<int>(p.ids.size()) - 1);
    EXPECT_EQ(p.sequence_length(513), static_cast<int>(p.ids.size()) - 1 + 513);

    // Text on each side of the placeholder, tokenised independently.
    std::vector<int32_t> before(p.ids.begin() + 1, p.ids.begin() + p.image_position);
    std::vector<int32_t> after(p.ids.begin() + p.image_position + 1, p.ids.end());
    const std::string head =
        "A chat between a curious user and an artificial intelligence assistant. The assistant "
        "gives helpful, detailed, and polite answers to the user's questions. USER: ";
    const std::string tail = std::string("\nYou are driving in ") + location +
                             ". Please provide the planning trajectory for the ego car without "
                             "reasons. ASSISTANT:";
    EXPECT_EQ(before, tok.encode(head, false));
    EXPECT_EQ(after, tok.encode(tail, false));
    EXPECT_EQ(tok.decode(before), head);
    EXPECT_EQ(tok.decode(after), tail);
    // Like LLaMA: the trailing space before <image> is a lone '▁' piece and the chunk after it
    // starts with the dummy-prefix '▁' followed by the newline byte.
    EXPECT_EQ(tok.id_to_piece(before.back()), "\xE2\x96\x81");
    EXPECT_EQ(tok.id_to_piece(after[0]), "\xE2\x96\x81");
    EXPECT_EQ(tok.id_to_piece(after[1]), "<0x0A>");
  }
}

TEST(Prompt, ImageAtStartAndNoImage) {
  const Tokenizer& tok = llm_test_tokenizer();
  PromptIds p = tokenizer_image_token(tok, "<image>\nthe road");
  ASSERT_EQ(p.image_position, 1);
  EXPECT_EQ(p.ids[0], tok.bos_id());
  EXPECT_EQ(p.ids[1], kImageTokenIndex);
  PromptIds q = tokenizer_image_token(tok, "the road");
  EXPECT_EQ(q.image_position, -1);
  EXPECT_EQ(q.ids, tok.encode("the road", true));
  EXPECT_THROW(tokenizer_image_token(tok, "<image> a <image> b"), Error);
}

TEST(Prompt, TextPromptHasBos) {
  const Tokenizer& tok = llm_test_tokenizer();
  PromptIds p = build_text_prompt(tok, "Hello road");
  EXPECT_EQ(p.image_position, -1);
  ASSERT_GE(p.ids.size(), 2u);
  EXPECT_EQ(p.ids[0], tok.bos_id());
  EXPECT_EQ(tok.decode(p.ids), "Hello road");
  EXPECT_EQ(p.sequence_length(513), static_cast<int>(p.ids.size()));
}

}  // namespace
}  // namespace omnirt::llm

// ---- cross-check with the Python reference's golden fixtures (tests/data/fixtures) -----------
// The fixtures were made by python/make_fixtures.py with the committed test tokenizer; reading
// their int64 tensors needs only the safetensors header (8-byte length + JSON), done here so the
// test does not depend on the io layer.
namespace omnirt::llm {
namespace {

std::vector<int64_t> read_i64(const std::string& file, const std::string& name) {
  std::ifstream f(file, std::ios::binary);
  EXPECT_TRUE(f.good()) << file;
  uint64_t header_len = 0;
  f.read(reinterpret_cast<char*>(&header_len), 8);
  std::string header(header_len, '\0');
  f.read(header.data(), static_cast<std::streamsize>(header_len));
  const auto j = nlohmann::json::parse(header);
  const auto& t = j.at(name);
  EXPECT_EQ(t.at("dtype"), "I64");
  const size_t begin = t.at("data_offsets")[0], end = t.at("data_offsets")[1];
  std::vector<int64_t> v((end - begin) / 8);
  f.seekg(static_cast<std::streamoff>(8 + header_len + begin));
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(end - begin));
  return v;
}

std::string metadata(const std::string& file, const std::string& key) {
  std::ifstream f(file, std::ios::binary);
  uint64_t header_len = 0;
  f.read(reinterpret_cast<char*>(&header_len), 8);
  std::string header(header_len, '\0');
  f.read(header.data(), static_cast<std::streamsize>(header_len));
  return nlohmann::json::parse(header).at("__metadata__").at(key).get<std::string>();
}

TEST(PythonFixtures, PromptIdsAnswerIdsAndGreedyTextMatch) {
  const std::string dir = std::string(OMNIRT_TEST_DATA_DIR) + "/fixtures";
  const std::string model = std::string(OMNIRT_TEST_DATA_DIR) + "/tiny_ckpt/tokenizer.model";
  if (!std::filesystem::exists(dir + "/frame0.safetensors") || !std::filesystem::exists(model)) {
    GTEST_SKIP() << "skipped: no Python fixtures in " << dir;
  }
  const Tokenizer tok = Tokenizer::load(model);
  for (const char* frame : {"frame0.safetensors", "frame1.safetensors"}) {
    const std::string file = dir + "/" + frame;
    const std::string location = metadata(file, "location");
    PromptIds p = build_planning_prompt(tok, location);
    EXPECT_EQ(planning_prompt(location), metadata(file, "prompt"));
    const std::vector<int64_t> want = read_i64(file, "llm.prompt_ids");
    EXPECT_EQ(std::vector<int64_t>(p.ids.begin(), p.ids.end()), want) << frame;
    EXPECT_EQ(p.image_position, read_i64(file, "llm.image_token_pos").at(0)) << frame;

    std::vector<int32_t> answer = tok.encode(metadata(file, "answer"), false);
    answer.push_back(tok.eos_id());
    const std::vector<int64_t> want_answer = read_i64(file, "llm.answer_ids");
    EXPECT_EQ(std::vector<int64_t>(answer.begin(), answer.end()), want_answer) << frame;

    // Random-weight greedy output: byte pieces, U+FFFD and all. decode and the streaming
    // detokenizer must both give Python's text.
    const std::vector<int64_t> g64 = read_i64(file, "llm.greedy_ids");
    const std::vector<int32_t> greedy(g64.begin(), g64.end());
    const std::string text = metadata(file, "greedy_text");
    EXPECT_EQ(tok.decode(greedy), text) << frame;
    StreamingDetokenizer detok(tok);
    std::string streamed;
    for (int32_t id : greedy) streamed += detok.push(id);
    streamed += detok.finish();
    EXPECT_EQ(streamed, text) << frame;
  }
}

}  // namespace
}  // namespace omnirt::llm
