// When generation stops, and whether it can start at all.
//
// Stop conditions, checked after every sampled token in this order (HF semantics):
//   1. the token is EOS (the EOS id is generated and counted but contributes no text),
//   2. a stop string appears in the detokenised output (searched only in the tail that the new
//      text can have completed, so the check costs O(new text + longest stop string)),
//   3. max_new_tokens tokens have been generated.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace omnirt::llm {

enum class StopReason { kNone, kEos, kStopString, kMaxNewTokens };
const char* stop_reason_name(StopReason r);

struct StopConfig {
  int32_t eos_id = 2;                     // TinyLlama </s>; -1 disables
  std::vector<std::string> stop_strings;  // empty strings are rejected
  int max_new_tokens = 320;               // OmniDrive's max_new_tokens
};

class GenerationControl {
 public:
  explicit GenerationControl(StopConfig config);

  // Records one generated token and the text the streaming detokenizer emitted for it; returns
  // why generation must stop now, or kNone. Calling it again after a stop is an error.
  StopReason on_token(int32_t token_id, std::string_view new_text);

  int num_generated() const { return num_generated_; }
  StopReason reason() const { return reason_; }
  bool stopped() const { return reason_ != StopReason::kNone; }
  // All text generated so far (including a stop string, if one fired).
  const std::string& text() const { return text_; }
  // The answer: text() cut before the stop string that ended generation (HF's decode keeps the
  // stop string; callers that want it use text()).
  std::string answer() const;
  const StopConfig& config() const { return config_; }

 private:
  StopConfig config_;
  size_t longest_stop_ = 0;
  int num_generated_ = 0;
  StopReason reason_ = StopReason::kNone;
  std::string text_;
  size_t stop_pos_ = std::string::npos;  // where the firing stop string starts in text_
};

// Errors before any GPU work when the sequence would not fit the LLM's context:
// prompt text tokens + vision tokens + max_new_tokens must be <= context_length. The message names
// every term, e.g. "prompt (63 text tokens + 513 vision tokens) + max_new_tokens 320 = 896
// positions exceed the LLM's context of 512".
void check_context_budget(int prompt_text_tokens, int vision_tokens, int max_new_tokens,
                          int context_length);

}  // namespace omnirt::llm
