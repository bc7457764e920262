// `omnirt build MODEL_DIR --out ENGINE_DIR --llm int4|int4-g128|fp16|bf16|fp32 [--arch sm_90]`:
// a checkpoint folder -> an engine folder (quant/engine.h, docs/engine_format.md).
#include <cstdio>
#include <string>

#include "apps/omnirt/command.h"
#include "quant/engine.h"

namespace {
omnirt::cli::Command build_cmd(
    "build",
    "Build an engine folder (weights in the target precision + manifest) from a checkpoint",
    [](CLI::App& sub) {
      auto opt = std::make_shared<omnirt::quant::BuildOptions>();
      sub.add_option("model_dir", opt->model_dir, "Checkpoint folder")->required();
      sub.add_option("--out", opt->out_dir, "Engine folder to write")->required();
      sub.add_option("--llm", opt->llm_precision,
                     "LLM weight precision: fp32, fp16, bf16, int4 (per channel), int4-g128 "
                     "(group-wise; int4-g<G> for another even group size)")
          ->capture_default_str();
      sub.add_option("--arch", opt->gpu_arch,
                     "GPU architecture the engine is for, e.g. sm_90 (default: this GPU, or "
                     "sm_90 without one)");
      return [opt]() {
        const auto m = omnirt::quant::build_engine(*opt);
        std::printf("engine %s: llm %s, vision %s, %s, omnirt %s (%s)\n", opt->out_dir.c_str(),
                    m.llm_precision.c_str(), m.vision_precision.c_str(), m.gpu_arch.c_str(),
                    m.omnirt_version.c_str(), m.omnirt_commit.c_str());
        for (const auto& [name, size] : m.files)
          std::printf("  %-20s %llu bytes\n", name.c_str(), static_cast<unsigned long long>(size));
        return 0;
      };
    });
}  // namespace
