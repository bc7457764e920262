// `omnirt build MODEL_DIR --out ENGINE_DIR --llm int4|int4-g128|int4-g128-awq|nvfp4|fp16|bf16|fp32
// [--arch sm_90] [--awq-grid 20]`:
// a checkpoint folder -> an engine folder (quant/engine.h, docs/engine_format.md).
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

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
                     "(group-wise; int4-g<G> for another even group size); INT4 + '-awq' "
                     "(int4-awq, int4-g128-awq) adds activation-aware scaling calibrated on "
                     "planning prompts (float32 CPU engine); nvfp4 (E2M1 codes, E4M3 scales per "
                     "16 weights, one fp32 global scale per matrix)")
          ->capture_default_str();
      sub.add_option("--awq-grid", opt->awq_grid,
                     "AWQ: alpha steps searched over [0, 1] (alpha = i / N, i = 0..N)")
          ->capture_default_str();
      sub.add_option("--arch", opt->gpu_arch,
                     "GPU architecture the engine is for, e.g. sm_90 (default: this GPU, or "
                     "sm_90 without one)");
      return [opt]() {
        const auto m = omnirt::quant::build_engine(*opt);
        std::printf("engine %s: llm %s, vision %s, %s, omnirt %s (%s)\n", opt->out_dir.c_str(),
                    m.llm_precision.c_str(), m.vision_precision.c_str(), m.gpu_arch.c_str(),
                    m.omnirt_version.c_str(), m.omnirt_commit.c_str());
        if (!m.calibration.empty()) {
          const auto c = nlohmann::json::parse(m.calibration);
          std::printf(
              "  calibration: %s on %lld tokens (%s), alpha grid %d steps; output error "
              "%.3f x plain INT4 (sum over linears); %.1f s activations + %.1f s search\n",
              c.value("method", "?").c_str(), static_cast<long long>(c.value("tokens", int64_t{0})),
              c.value("source", "?").c_str(), c["alpha_grid"].value("steps", 0),
              c.value("error_vs_plain_int4_total", 0.0), c["seconds"].value("activations", 0.0),
              c["seconds"].value("scale_search", 0.0));
        }
        for (const auto& [name, size] : m.files)
          std::printf("  %-20s %llu bytes\n", name.c_str(), static_cast<unsigned long long>(size));
        return 0;
      };
    });
}  // namespace
