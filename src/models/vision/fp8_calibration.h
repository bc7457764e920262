// Activation calibration of the FP8 backbone (issue #8).
//
// FP8 GEMMs need a scale for each input: weights get theirs at load (amax of the weight), the
// activations get theirs from a calibration pass: the backbone runs in its half (CUDA) or float32
// (CPU) form over calibration frames and records, for every GEMM, the largest |input| it saw.
// That record is an Fp8Calibration; the FP8 backbone refuses to start without one (see
// VisionEngineOptions::fp8_calibration). Where it comes from is the caller's choice, explicitly:
//   - vision::calibrate_fp8(checkpoint, frames, device): a fresh pass over the caller's frames
//     (e.g. a sample scene's pre-processed frames, or the frames about to be run);
//   - Fp8Calibration::load(path): a file written earlier by save() (engine-folder friendly JSON,
//     conventionally <folder>/fp8_calibration.json).
//
// GEMM input names: "patch_embed" (the image patches), and per block i "blocks.<i>.qkv" (LN1
// output), "blocks.<i>.proj" (attention output), "blocks.<i>.w12" (LN2 output), "blocks.<i>.w3"
// (ffn_ln output).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "models/vision/vision_config.h"

namespace omnirt::vision {

struct Fp8Calibration {
  std::map<std::string, float> input_amax;  // GEMM input name -> max |x| over the frames
  int frames = 0;                           // calibration frames seen
  std::string source;                       // what the frames were (free text, for humans)
  int embed_dim = 0, depth = 0;             // the backbone it was made for (checked at use)

  // The GEMM input names of a backbone of this config, in execution order.
  static std::vector<std::string> gemm_inputs(const VisionConfig& cfg);
  // amax of `name`; throws naming the calibration's source and the missing entry.
  float amax(const std::string& name) const;
  // Throws unless this calibration was made for `cfg`'s backbone and holds a finite amax for
  // every GEMM input. `what` names the caller in the message.
  void check_matches(const VisionConfig& cfg, const std::string& what) const;

  void save(const std::string& path) const;  // JSON, "format": "omnirt-fp8-calibration"
  static Fp8Calibration load(const std::string& path);
};

}  // namespace omnirt::vision
