#include <gtest/gtest.h>

#include "core/error.h"
#include "llm/llm_test_util.h"
#include "models/llm/generation_control.h"

namespace omnirt::llm {
namespace {

TEST(GenerationControl, StopsAtEosWithoutText) {
  GenerationControl g({.eos_id = 2, .stop_strings = {}, .max_new_tokens = 10});
  EXPECT_EQ(g.on_token(5, "Here"), StopReason::kNone);
  EXPECT_EQ(g.on_token(6, " is"), StopReason::kNone);
  EXPECT_EQ(g.on_token(2, ""), StopReason::kEos);
  EXPECT_EQ(g.num_generated(), 3);
  EXPECT_EQ(g.text(), "Here is");
  EXPECT_EQ(g.answer(), "Here is");
  EXPECT_THROW(g.on_token(7, "x"), Error);
}

TEST(GenerationControl, MaxNewTokensCountsEveryToken) {
  GenerationControl g({.eos_id = 2, .stop_strings = {}, .max_new_tokens = 3});
  EXPECT_EQ(g.on_token(5, "a"), StopReason::kNone);
  EXPECT_EQ(g.on_token(6, ""), StopReason::kNone);  // a held-back byte piece still counts
  EXPECT_EQ(g.on_token(7, "b"), StopReason::kMaxNewTokens);
  EXPECT_EQ(g.num_generated(), 3);
  // EOS on the last allowed step is reported as EOS.
  GenerationControl h({.eos_id = 2, .stop_strings = {}, .max_new_tokens = 1});
  EXPECT_EQ(h.on_token(2, ""), StopReason::kEos);
}

TEST(GenerationControl, StopStringAcrossTokens) {
  GenerationControl g({.eos_id = 2, .stop_strings = {"].", "USER:"}, .max_new_tokens = 100});
  EXPECT_EQ(g.on_token(10, "[PT, (+1.00, 0.0)"), StopReason::kNone);
  EXPECT_EQ(g.on_token(11, "]"), StopReason::kNone);
  EXPECT_EQ(g.on_token(12, ". More"), StopReason::kStopString);
  EXPECT_EQ(g.text(), "[PT, (+1.00, 0.0)]. More");
  EXPECT_EQ(g.answer(), "[PT, (+1.00, 0.0)");
  // A stop string split over three tokens.
  GenerationControl h({.eos_id = -1, .stop_strings = {"USER:"}, .max_new_tokens = 100});
  EXPECT_EQ(h.on_token(3, "ok US"), StopReason::kNone);
  EXPECT_EQ(h.on_token(4, "ER"), StopReason::kNone);
  EXPECT_EQ(h.on_token(5, ":"), StopReason::kStopString);
  EXPECT_EQ(h.answer(), "ok ");
  // With eos disabled, id 2 is ordinary.
  GenerationControl k({.eos_id = -1, .stop_strings = {}, .max_new_tokens = 5});
  EXPECT_EQ(k.on_token(2, "x"), StopReason::kNone);
  EXPECT_THROW(GenerationControl({.eos_id = 2, .stop_strings = {""}, .max_new_tokens = 5}), Error);
}

TEST(GenerationControl, WithStreamingDetokenizer) {
  const Tokenizer& tok = omnirt::testing::llm_test_tokenizer();
  std::vector<int32_t> ids = tok.encode("Here is the planning trajectory [PT, (+4.35, 0.0)]. ASSISTANT: more", false);
  StreamingDetokenizer detok(tok);
  GenerationControl g({.eos_id = tok.eos_id(), .stop_strings = {"]."}, .max_new_tokens = 320});
  StopReason r = StopReason::kNone;
  for (int32_t id : ids) {
    r = g.on_token(id, detok.push(id));
    if (r != StopReason::kNone) break;
  }
  EXPECT_EQ(r, StopReason::kStopString);
  EXPECT_EQ(g.answer(), "Here is the planning trajectory [PT, (+4.35, 0.0)");
}

TEST(ContextBudget, ErrorsBeforeOverflow) {
  EXPECT_NO_THROW(check_context_budget(63, 513, 320, 2048));
  EXPECT_NO_THROW(check_context_budget(64, 513, 1471, 2048));  // exactly full
  try {
    check_context_budget(64, 513, 1472, 2048);
    FAIL() << "no error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("64 text tokens"), std::string::npos) << m;
    EXPECT_NE(m.find("513 vision tokens"), std::string::npos) << m;
    EXPECT_NE(m.find("max_new_tokens 1472"), std::string::npos) << m;
    EXPECT_NE(m.find("2049"), std::string::npos) << m;
    EXPECT_NE(m.find("context of 2048"), std::string::npos) << m;
  }
  EXPECT_THROW(check_context_budget(-1, 513, 10, 2048), Error);
  EXPECT_THROW(check_context_budget(10, 0, 10, 0), Error);
}

}  // namespace
}  // namespace omnirt::llm
