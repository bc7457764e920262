#include <gtest/gtest.h>
#include <sentencepiece_processor.h>

#include <filesystem>
#include <functional>
#include <fstream>
#include <random>

#include "common/test_util.h"
#include "core/error.h"
#include "llm/llm_test_util.h"
#include "models/llm/tokenizer.h"

namespace omnirt::llm {
namespace {

using omnirt::testing::llm_test_tokenizer;
using omnirt::testing::llm_test_tokenizer_path;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Independent UTF-8 validity check (no overlongs, no surrogates, <= U+10FFFF).
bool is_valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < n; ++k) {
      const unsigned char t = s[i + k];
      if ((t & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (t & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)) return false;
    if ((cp >= 0xD800 && cp < 0xE000) || cp > 0x10FFFF) return false;
    i += n;
  }
  return true;
}

TEST(Tokenizer, SpecialIdsAndVocab) {
  const Tokenizer& tok = llm_test_tokenizer();
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.id_to_piece(1), "<s>");
  EXPECT_EQ(tok.id_to_piece(2), "</s>");
  EXPECT_EQ(tok.id_to_piece(0), "<unk>");
  EXPECT_TRUE(tok.is_special(0) && tok.is_special(1) && tok.is_special(2));
  EXPECT_GT(tok.vocab_size(), 3 + 256);  // specials + all 256 byte pieces + merges
  // Byte-fallback pieces: all 256 present and parsed.
  int bytes = 0;
  for (int id = 0; id < tok.vocab_size(); ++id) {
    int b = tok.byte_value(id);
    if (b >= 0) {
      char expect[8];
      std::snprintf(expect, sizeof(expect), "<0x%02X>", b);
      EXPECT_EQ(tok.id_to_piece(id), expect);
      ++bytes;
    }
  }
  EXPECT_EQ(bytes, 256);
  EXPECT_TRUE(tok.strips_leading_space());
}

TEST(Tokenizer, EncodeDecodeRoundTrip) {
  const Tokenizer& tok = llm_test_tokenizer();
  const std::string texts[] = {
      "You are driving in boston.",
      "Here is the planning trajectory [PT, (+4.35, 0.0), (+8.72, -0.05)].",
      "über 30 °C and 12€ 🚗 ahead",
      "  two leading spaces and\nnew lines\n",
      "digits 1234567890"};
  for (const std::string& t : texts) {
    std::vector<int32_t> ids = tok.encode(t, false);
    ASSERT_FALSE(ids.empty());
    EXPECT_NE(ids[0], tok.bos_id());
    EXPECT_EQ(tok.decode(ids), t) << t;
    std::vector<int32_t> with_bos = tok.encode(t, true);
    ASSERT_EQ(with_bos.size(), ids.size() + 1);
    EXPECT_EQ(with_bos[0], tok.bos_id());
    EXPECT_TRUE(std::equal(ids.begin(), ids.end(), with_bos.begin() + 1));
    EXPECT_EQ(tok.decode(with_bos), t);  // BOS skipped
  }
}

TEST(Tokenizer, SplitDigitsAndByteFallback) {
  const Tokenizer& tok = llm_test_tokenizer();
  // split_digits: every digit is its own piece.
  for (int32_t id : tok.encode("2048", false)) {
    std::string p = tok.id_to_piece(id);
    if (p == "\xE2\x96\x81") continue;  // dummy-prefix piece
    EXPECT_EQ(p.size(), 1u) << p;
  }
  // '°' (C2 B0) is not in the corpus: it must come out as the two byte pieces.
  std::vector<int32_t> ids = tok.encode("°", false);
  std::vector<int> byte_vals;
  for (int32_t id : ids)
    if (tok.byte_value(id) >= 0) byte_vals.push_back(tok.byte_value(id));
  EXPECT_EQ(byte_vals, (std::vector<int>{0xC2, 0xB0}));
}

TEST(Tokenizer, DecodeSkipsSpecialsAndRejectsBadIds) {
  const Tokenizer& tok = llm_test_tokenizer();
  std::vector<int32_t> ids = tok.encode("the road", true);
  ids.push_back(tok.unk_id());
  ids.push_back(tok.eos_id());
  EXPECT_EQ(tok.decode(ids), "the road");
  // Without skipping, <unk> shows as SentencePiece's " \u2047 " (bos/eos are invisible anyway).
  EXPECT_EQ(tok.decode(ids, /*skip_special=*/false), "the road \xE2\x81\x87 ");
  EXPECT_NE(error_of([&] { tok.decode({1, -200, 5}); }).find("-200"), std::string::npos);
  EXPECT_NE(error_of([&] { tok.id_to_piece(tok.vocab_size()); }).find("outside the vocabulary"),
            std::string::npos);
}

TEST(Tokenizer, VocabMismatchError) {
  const Tokenizer& tok = llm_test_tokenizer();
  EXPECT_NO_THROW(tok.expect_vocab(tok.vocab_size()));
  std::string msg = error_of([&] { tok.expect_vocab(32000); });
  EXPECT_NE(msg.find("has " + std::to_string(tok.vocab_size()) +
                     " pieces but the LLM's vocab_size is 32000"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find(llm_test_tokenizer_path()), std::string::npos) << msg;
}

TEST(Tokenizer, MissingAndCorruptFiles) {
  namespace fs = std::filesystem;
  std::string missing = (fs::temp_directory_path() / "omnirt_no_such_dir" / "tokenizer.model").string();
  std::string msg = error_of([&] { Tokenizer::load(missing); });
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
  EXPECT_NE(msg.find("not found"), std::string::npos) << msg;

  fs::path corrupt = fs::temp_directory_path() / ("omnirt_corrupt_" + std::to_string(::getpid()) + ".model");
  std::ofstream(corrupt) << "this is not a protobuf \x01\x02\x03 at all";
  msg = error_of([&] { Tokenizer::load(corrupt.string()); });
  EXPECT_NE(msg.find(corrupt.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("not a valid SentencePiece model"), std::string::npos) << msg;

  std::ofstream(corrupt, std::ios::trunc).flush();
  msg = error_of([&] { Tokenizer::load(corrupt.string()); });
  EXPECT_NE(msg.find("empty"), std::string::npos) << msg;
  fs::remove(corrupt);
}

TEST(StreamingDetokenizer, MultiByteUtf8NeverSplit) {
  const Tokenizer& tok = llm_test_tokenizer();
  const std::string text = "über 30 °C, 12€ and 🚗 ahead";
  std::vector<int32_t> ids = tok.encode(text, true);
  ids.push_back(tok.eos_id());
  StreamingDetokenizer detok(tok);
  std::string streamed;
  int empty_pushes_inside_bytes = 0;
  for (int32_t id : ids) {
    std::string piece = detok.push(id);
    EXPECT_TRUE(is_valid_utf8(piece)) << "half a character emitted after id " << id;
    if (piece.empty() && tok.byte_value(id) >= 0) ++empty_pushes_inside_bytes;
    streamed += piece;
  }
  streamed += detok.finish();
  EXPECT_EQ(streamed, text);
  EXPECT_EQ(detok.text(), text);
  // ü, °, €, 🚗 are byte-fallback runs of 2, 2, 3, 4 bytes: 1 + 1 + 2 + 3 pushes hold text back.
  EXPECT_EQ(empty_pushes_inside_bytes, 7);
}

TEST(StreamingDetokenizer, LeadingSpaceOnlyDroppedAtStart) {
  const Tokenizer& tok = llm_test_tokenizer();
  std::vector<int32_t> ids = tok.encode("road ahead", false);
  StreamingDetokenizer detok(tok);
  std::string first = detok.push(ids[0]);
  EXPECT_FALSE(first.empty());
  EXPECT_NE(first[0], ' ');
  std::string rest;
  for (size_t i = 1; i < ids.size(); ++i) rest += detok.push(ids[i]);
  EXPECT_EQ(first + rest, "road ahead");
  EXPECT_NE(rest.find(' '), std::string::npos);
}

// The streamed text equals SentencePiece's own decode for arbitrary id sequences, including
// invalid and truncated byte sequences (U+FFFD) and specials in any position.
TEST(StreamingDetokenizer, MatchesDecodeOnRandomIds) {
  const Tokenizer& tok = llm_test_tokenizer();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  std::vector<int32_t> byte_ids, specials = {0, 1, 2}, normal;
  for (int id = 0; id < tok.vocab_size(); ++id) {
    if (tok.byte_value(id) >= 0) byte_ids.push_back(id);
    else if (!tok.is_special(id)) normal.push_back(id);
  }
  // Bias towards lead/trail bytes so partial and invalid sequences are frequent.
  auto byte_id = [&](int value) { return byte_ids[value]; };
  for (int trial = 0; trial < 400; ++trial) {
    std::vector<int32_t> ids;
    int len = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < len; ++i) {
      int kind = static_cast<int>(rng() % 10);
      if (kind < 4) ids.push_back(normal[rng() % normal.size()]);
      else if (kind < 5) ids.push_back(specials[rng() % 3]);
      else if (kind < 7) ids.push_back(byte_id(0x80 + static_cast<int>(rng() % 64)));  // trail
      else if (kind < 9) ids.push_back(byte_id(0xC2 + static_cast<int>(rng() % 0x33)));  // lead
      else ids.push_back(byte_ids[rng() % byte_ids.size()]);
    }
    for (bool skip : {true, false}) {
      StreamingDetokenizer detok(tok, skip);
      std::string streamed;
      for (int32_t id : ids) streamed += detok.push(id);
      streamed += detok.finish();
      EXPECT_EQ(streamed, tok.decode(ids, skip)) << "trial " << trial << " skip " << skip;
    }
  }
}

}  // namespace
}  // namespace omnirt::llm
