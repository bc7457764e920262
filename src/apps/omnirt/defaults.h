// Defaults shared by `omnirt run` and `omnirt bench e2e`: the default random checkpoint and the
// bundled sample scene, both found relative to the omnirt executable.
#pragma once

#include <string>

#include "pipeline/engines.h"

namespace omnirt::cli {

// python/omnidrive_export.py next to this build (or $OMNIRT_PYTHON_DIR), "" when not found.
std::string find_exporter();
// examples/sample_scene next to this build (walking up from the executable), "" when not found.
std::string find_sample_scene();
// The default model: random full-size on a GPU, random tiny on the CPU (the full model takes
// minutes per frame there), under ~/.cache/omnirt/models; created on first use with the Python
// exporter. `note` says which one was chosen, for the console and the outputs.
std::string default_model(bool cuda, std::string& note);

// The vision precision options of `run` and `bench e2e`:
//   --vision-dtype  auto | fp32 | fp16 | bf16       (auto: fp16 on CUDA, fp32 on the CPU)
//   --vision-heads  auto | fp32 | tf32 | fp16 | bf16
// auto heads: tf32 on CUDA under a half backbone (the reference deployment's "mixed" engine:
// TensorRT runs its FP32 layers with TF32 unless told not to), fp32 (exact) otherwise. tf32 is
// fp32 heads whose GEMMs and attention may use TF32 (with an fp32 backbone, the backbone too).
// Fills eo's vision fields; a half mode on the CPU is an error naming the option.
extern const char* const kVisionDtypeHelp;
extern const char* const kVisionHeadsHelp;
void set_vision_precision(bool cuda, const std::string& backbone, const std::string& heads,
                          pipeline::EngineOptions& eo);

}  // namespace omnirt::cli
