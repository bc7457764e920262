#include "models/llm/generation_control.h"

#include <algorithm>

#include "core/error.h"

namespace omnirt::llm {

const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::kNone: return "none";
    case StopReason::kEos: return "eos";
    case StopReason::kStopString: return "stop_string";
    case StopReason::kMaxNewTokens: return "max_new_tokens";
  }
  return "?";
}

GenerationControl::GenerationControl(StopConfig config) : config_(std::move(config)) {
  OMNIRT_CHECK(config_.max_new_tokens > 0, "generation: max_new_tokens must be positive, got ",
               config_.max_new_tokens);
  for (const auto& s : config_.stop_strings) {
    OMNIRT_CHECK(!s.empty(), "generation: stop strings must not be empty");
    longest_stop_ = std::max(longest_stop_, s.size());
  }
}

StopReason GenerationControl::on_token(int32_t token_id, std::string_view new_text) {
  OMNIRT_CHECK(!stopped(), "generation: on_token called after generation stopped (",
               stop_reason_name(reason_), ")");
  ++num_generated_;
  if (config_.eos_id >= 0 && token_id == config_.eos_id) {
    return reason_ = StopReason::kEos;
  }
  const size_t old_size = text_.size();
  text_ += new_text;
  if (!new_text.empty() && longest_stop_ > 0) {
    // A stop string completed by this token ends inside the new text, so it starts no earlier than
    // longest_stop - 1 bytes before it.
    const size_t from = old_size >= longest_stop_ - 1 ? old_size - (longest_stop_ - 1) : 0;
    size_t best = std::string::npos;
    for (const auto& s : config_.stop_strings) {
      size_t pos = text_.find(s, from);
      if (pos != std::string::npos) best = std::min(best, pos);
    }
    if (best != std::string::npos) {
      stop_pos_ = best;
      return reason_ = StopReason::kStopString;
    }
  }
  if (num_generated_ >= config_.max_new_tokens) return reason_ = StopReason::kMaxNewTokens;
  return StopReason::kNone;
}

std::string GenerationControl::answer() const {
  if (reason_ == StopReason::kStopString) return text_.substr(0, stop_pos_);
  return text_;
}

void check_context_budget(int prompt_text_tokens, int vision_tokens, int max_new_tokens,
                          int context_length) {
  OMNIRT_CHECK(prompt_text_tokens >= 0 && vision_tokens >= 0 && max_new_tokens >= 0,
               "context budget: negative token count (prompt ", prompt_text_tokens, ", vision ",
               vision_tokens, ", max_new_tokens ", max_new_tokens, ")");
  OMNIRT_CHECK(context_length > 0, "context budget: context length must be positive, got ",
               context_length);
  const long long total =
      static_cast<long long>(prompt_text_tokens) + vision_tokens + max_new_tokens;
  OMNIRT_CHECK(total <= context_length, "prompt (", prompt_text_tokens, " text tokens + ",
               vision_tokens, " vision tokens) + max_new_tokens ", max_new_tokens, " = ", total,
               " positions exceed the LLM's context of ", context_length,
               " (shorten the prompt or lower max_new_tokens)");
}

}  // namespace omnirt::llm
