#include "models/llm/prompt.h"

#include "core/error.h"

namespace omnirt::llm {

std::string prompt_location(std::string_view nuscenes_location) {
  OMNIRT_CHECK(!nuscenes_location.empty(), "prompt: empty location name");
  return std::string(nuscenes_location.substr(0, nuscenes_location.find('-')));
}

std::string planning_question(std::string_view location) {
  std::string q(kImageTag);
  q += "\nYou are driving in ";
  q += location;
  q += ". ";
  q += kPlanningQuestion;
  return q;
}

std::string vicuna_v1_prompt(std::string_view user_message) {
  // Separator style TWO: system + sep(" ") + "USER: " + message + sep(" ") + "ASSISTANT:"; an empty
  // assistant message is rendered as the bare role with its colon.
  std::string p(kVicunaSystem);
  p += " USER: ";
  p += user_message;
  p += " ASSISTANT:";
  return p;
}

std::string planning_prompt(std::string_view location) {
  return vicuna_v1_prompt(planning_question(location));
}

PromptIds tokenizer_image_token(const Tokenizer& tokenizer, std::string_view prompt) {
  std::vector<std::string_view> chunks;
  size_t start = 0;
  while (true) {
    size_t pos = prompt.find(kImageTag, start);
    if (pos == std::string_view::npos) {
      chunks.push_back(prompt.substr(start));
      break;
    }
    chunks.push_back(prompt.substr(start, pos - start));
    start = pos + kImageTag.size();
  }
  OMNIRT_CHECK(chunks.size() <= 2, "prompt contains ", chunks.size() - 1,
               " \"<image>\" placeholders; the runtime supports exactly one image per prompt");

  PromptIds out;
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (i > 0) {
      out.image_position = static_cast<int>(out.ids.size());
      out.ids.push_back(kImageTokenIndex);
    }
    // Every chunk is tokenised as HF does (with BOS); LLaVA then drops the BOS of every chunk but
    // the first. Encoding without BOS is the same thing.
    std::vector<int32_t> chunk_ids = tokenizer.encode(chunks[i], /*add_bos=*/i == 0);
    out.ids.insert(out.ids.end(), chunk_ids.begin(), chunk_ids.end());
  }
  return out;
}

PromptIds build_planning_prompt(const Tokenizer& tokenizer, std::string_view location) {
  return tokenizer_image_token(tokenizer, planning_prompt(location));
}

PromptIds build_text_prompt(const Tokenizer& tokenizer, std::string_view text) {
  PromptIds out;
  out.ids = tokenizer.encode(text, /*add_bos=*/true);
  return out;
}

}  // namespace omnirt::llm
