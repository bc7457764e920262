// LlmEngine::from_folder: a checkpoint folder's config.json + safetensors -> engine. Kept apart
// from llm_engine.cpp so the engine itself does not depend on the file format.
#include <filesystem>

#include "core/device.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "models/llm/llm_engine.h"
#include "quant/engine.h"
#include "quant/llm_quant.h"
#include "quant/nvfp4_engine.h"

namespace omnirt::llm {

std::unique_ptr<LlmEngine> LlmEngine::from_folder(const std::string& dir,
                                                  const LlmEngineOptions& options) {
  const LlamaConfig cfg = LlamaConfig::from_folder(dir);
  // An `omnirt build` engine folder (manifest.json): validated first; INT4
  // and NVFP4 engines load their quantised linears as they are (quant/llm_quant.h,
  // quant/nvfp4_engine.h).
  if (std::filesystem::exists(std::filesystem::path(dir) / "manifest.json")) {
    quant::RuntimeCaps caps;
    caps.device = options.device;
    if (options.device == Device::CUDA) caps.compute_capability = cuda_compute_capability();
    const quant::EngineManifest m = quant::load_engine_manifest(dir, caps);
    const bool nvfp4 = m.llm_precision == "nvfp4";
    if (m.llm_precision.rfind("int4", 0) == 0 || nvfp4) {
      OMNIRT_CHECK(options.weight_format.empty() || options.weight_format == "fp" ||
                       options.weight_format == m.llm_precision,
                   "engine ", dir, " holds ", m.llm_precision,
                   " LLM weights; it cannot be re-quantised to ", options.weight_format);
      const WeightStore store =
          WeightStore::open((std::filesystem::path(dir) / "llm.safetensors").string());
      const TensorLookup lookup = [&store](const std::string& name) {
        return store.contains(name) ? store.get(name) : Tensor();
      };
      LlamaWeights w =
          nvfp4 ? quant::load_nvfp4_engine_weights(cfg, lookup, options.device, options.dtype, dir)
                : quant::load_int4_engine_weights(cfg, lookup, options.device, options.dtype,
                                                  m.llm_precision, dir);
      LlmEngineOptions o = options;
      o.weight_format.clear();
      return std::make_unique<LlmEngine>(cfg, std::move(w), o);
    }
  }
  // An omnirt checkpoint keeps the LLM in llm.safetensors beside vision.safetensors; a HF folder
  // has model.safetensors or shards with an index.
  const std::filesystem::path llm_file = std::filesystem::path(dir) / "llm.safetensors";
  const WeightStore store =
      WeightStore::open(std::filesystem::exists(llm_file) ? llm_file.string() : dir);
  const TensorLookup lookup = [&store](const std::string& name) {
    return store.contains(name) ? store.get(name) : Tensor();
  };
  if (options.weight_format.empty() || options.weight_format == "fp")
    return std::make_unique<LlmEngine>(
        cfg, load_llama_weights(cfg, lookup, options.device, options.dtype, dir), options);
  // Quantised from the checkpoint's float32 values whatever the engine dtype (issue #8: an F16
  // engine quantising its F16 copy got different INT4 codes than its F32 CPU reference).
  LlamaWeights w =
      quant::load_quantised_llama_weights(cfg, lookup, options.device, options.dtype,
                                          options.weight_format, options.quantize_lm_head, dir);
  LlmEngineOptions o = options;
  o.weight_format.clear();
  return std::make_unique<LlmEngine>(cfg, std::move(w), o);
}

}  // namespace omnirt::llm
