// LlmEngine::from_folder: a checkpoint folder's config.json + safetensors -> engine. Kept apart
// from llm_engine.cpp so the engine itself does not depend on the file format.
#include <filesystem>

#include "core/error.h"
#include "io/safetensors.h"
#include "models/llm/llm_engine.h"

namespace omnirt::llm {

std::unique_ptr<LlmEngine> LlmEngine::from_folder(const std::string& dir,
                                                  const LlmEngineOptions& options) {
  const LlamaConfig cfg = LlamaConfig::from_folder(dir);
  // An omnirt checkpoint keeps the LLM in llm.safetensors beside vision.safetensors; a HF folder
  // has model.safetensors or shards with an index.
  const std::filesystem::path llm_file = std::filesystem::path(dir) / "llm.safetensors";
  const WeightStore store =
      WeightStore::open(std::filesystem::exists(llm_file) ? llm_file.string() : dir);
  LlamaWeights w = load_llama_weights(
      cfg,
      [&store](const std::string& name) { return store.contains(name) ? store.get(name) : Tensor(); },
      options.device, options.dtype, dir);
  return std::make_unique<LlmEngine>(cfg, std::move(w), options);
}

}  // namespace omnirt::llm
