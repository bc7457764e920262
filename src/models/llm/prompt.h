// Prompts for the LLM: OmniDrive's Vicuna-v1 planning prompt (spec §4.1) and plain text prompts.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "models/llm/tokenizer.h"

namespace omnirt::llm {

// LLaVA's IMAGE_TOKEN_INDEX: the position where the 513 vision embeddings are spliced in.
inline constexpr int32_t kImageTokenIndex = -200;
inline constexpr std::string_view kImageTag = "<image>";

// conv_vicuna_v1's system line.
inline constexpr std::string_view kVicunaSystem =
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions.";
inline constexpr std::string_view kPlanningQuestion =
    "Please provide the planning trajectory for the ego car without reasons.";

// "boston-seaport" -> "boston", "singapore-onenorth" -> "singapore" (nuScenes location names;
// OmniDrive keeps the part before the first '-').
std::string prompt_location(std::string_view nuscenes_location);

// The user turn of the planning question: "<image>\nYou are driving in {location}. Please provide
// the planning trajectory for the ego car without reasons." (location used as given).
std::string planning_question(std::string_view location);

// conv_vicuna_v1 rendering (separator style TWO) of one user turn and an empty assistant turn:
// "{system} USER: {user_message} ASSISTANT:".
std::string vicuna_v1_prompt(std::string_view user_message);

// The full planning prompt string for `location` (e.g. "boston").
std::string planning_prompt(std::string_view location);

// Token ids of a prompt; `image_position` is the index of kImageTokenIndex in `ids`, -1 if none.
struct PromptIds {
  std::vector<int32_t> ids;
  int image_position = -1;
  // Ids that are real tokens (all but the placeholder).
  int num_text_tokens() const {
    return static_cast<int>(ids.size()) - (image_position >= 0 ? 1 : 0);
  }
  // Sequence length the LLM sees once the placeholder is replaced by `num_vision_tokens` rows.
  int sequence_length(int num_vision_tokens) const {
    return num_text_tokens() + (image_position >= 0 ? num_vision_tokens : 0);
  }
};

// LLaVA's tokenizer_image_token: split `prompt` on "<image>", tokenise every chunk separately,
// keep BOS only on the first chunk and put kImageTokenIndex between consecutive chunks. Exactly one
// "<image>" is allowed (the runtime splices one set of vision embeddings); more is an error.
PromptIds tokenizer_image_token(const Tokenizer& tokenizer, std::string_view prompt);

// planning_prompt(location) through tokenizer_image_token.
PromptIds build_planning_prompt(const Tokenizer& tokenizer, std::string_view location);

// A plain text prompt for `omnirt generate`: BOS + tokens of `text`, no template, no image.
PromptIds build_text_prompt(const Tokenizer& tokenizer, std::string_view text);

}  // namespace omnirt::llm
