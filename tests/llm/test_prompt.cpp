#include <gtest/gtest.h>

#include <algorithm>

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
