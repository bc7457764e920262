// Engine folders: what `omnirt build` writes from a checkpoint folder, and the validated loading
// of their manifest. See docs/engine_format.md for the folder layout and every manifest field.
//
// An engine folder holds config.json, llm.safetensors (the LLM weights already in the target
// precision: fp32/fp16/bf16 tensors, INT4 `<module>.qweight` + `<module>.scales` pairs, see
// quant/int4.h, or NVFP4 `<module>.qweight` + `.scales` + `.global_scale`, see quant/nvfp4.h), vision.safetensors and tokenizer.model copied from the checkpoint, and
// manifest.json recording how it was built. Loading validates the manifest against the files
// and the machine before any weight is read, so a stale or foreign engine fails with a message
// saying what to rebuild instead of a crash or wrong output.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "core/device.h"

namespace omnirt::quant {

inline constexpr int kEngineFormatVersion = 1;

// What the machine that loads an engine can run.
struct RuntimeCaps {
  Device device = Device::CPU;
  int compute_capability = 0;  // 90 for sm_90; 0 without a GPU
  // CUDA when a GPU is usable (its compute capability), CPU otherwise.
  static RuntimeCaps detect();
};

struct EngineManifest {
  int format_version = 0;
  std::string omnirt_version, omnirt_commit, built_at;  // built_at: ISO 8601 UTC
  std::string source_path;                              // checkpoint folder it was built from
  std::string source_config_hash;  // FNV-1a 64 of its config.json bytes, 16 hex digits
  std::map<std::string, uint64_t> source_files;  // checkpoint file -> size in bytes
  std::string vision_precision;  // fp32 | fp16 | bf16 (vision weights are copied as they are)
  std::string llm_precision;  // fp32 | fp16 | bf16 | nvfp4 | int4 | int4-g<G> | int4[-g<G>]-awq
  int64_t group_size = 0;        // G for int4-g<G>[-awq]; 0 for per channel and float precisions
  // dtype of the LLM tensors that are not quantised (F16 for int4; nvfp4: the checkpoint's,
  // copied unconverted)
  std::string llm_other_dtype;
  std::string gpu_arch;          // "sm_90"
  // The manifest's "calibration" as compact JSON text (an object for AWQ engines: method,
  // source, prompts, tokens, alpha_grid, ...); empty = none (manifest: null).
  std::string calibration;
  std::map<std::string, uint64_t> files;  // engine file -> size in bytes
};

struct BuildOptions {
  std::string model_dir;  // checkpoint folder (config.json, llm.safetensors, ...)
  std::string out_dir;    // engine folder; created; existing engine files are replaced
  std::string llm_precision = "fp16";
  std::string gpu_arch;  // empty: this machine's GPU, else sm_90
  int awq_grid = 20;     // AWQ precisions: alpha = i / awq_grid, i = 0..awq_grid (quant/awq.h)
};

// Parses a precision name: fp32 | fp16 | bf16 | nvfp4 | int4 (per channel) | int4-g<G> (G even),
// optionally followed by "-awq" for INT4 (int4-awq, int4-g128-awq: activation-aware scaling,
// calibrated at build time, quant/awq.h). Returns the group size via `group_size` (0 unless
// int4-g<G>) and whether it is AWQ via `awq`. Throws naming the value.
void parse_llm_precision(const std::string& name, int64_t* group_size = nullptr,
                         bool* awq = nullptr);
// "sm_90" -> 90; throws on anything else.
int parse_gpu_arch(const std::string& arch);

// Builds the engine folder and returns the manifest it wrote (manifest.json is written last).
EngineManifest build_engine(const BuildOptions& opt);

// Reads and validates ENGINE_DIR/manifest.json: it parses, format_version is supported, every
// listed file is present with the recorded size, the precisions are known, and the engine's GPU
// architecture is the one in `caps` (CUDA only). Each failure throws omnirt::Error saying what to
// fix. (LlmEngine::from_folder calls it for engine folders; INT4 and NVFP4 run on the CPU and on
// CUDA.)
EngineManifest load_engine_manifest(const std::string& dir, const RuntimeCaps& caps);

}  // namespace omnirt::quant
