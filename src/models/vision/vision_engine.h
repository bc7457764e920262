// The vision engine: EVA ViT backbone + 3-D position embedding + box and lane heads, with the
// temporal memory carried between frames. One frame in (6 normalised images + geometry), the
// 513 vision tokens, boxes, lanes and the new memory out.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "models/vision/eva_vit.h"
#include "models/vision/fp8_calibration.h"
#include "models/vision/petr_heads.h"
#include "models/vision/vision_config.h"

namespace omnirt::vision {

struct VisionEngineOptions {
  Device device = Device::CPU;
  // F32 (CPU/CUDA), F16 or BF16 (CUDA), or F8E4M3: the FP8 backbone (its linear layers as E4M3
  // GEMMs, the rest in F16 on CUDA; on the CPU the float32 reference of the same math), which
  // needs fp8_calibration.
  DType backbone_dtype = DType::F32;
  bool tf32 = false;                  // let fp32 GEMMs use TF32 (CUDA)
  // The heads' weights and activations: F32 (the reference deployment's "mixed" mode keeps
  // them so under a half backbone), or F16/BF16 on CUDA ("full half").
  DType heads_dtype = DType::F32;
  // CUDA: replay the heads' device work from CUDA graphs from the second frame on (see
  // PetrHeads::set_cuda_graphs; docs/vision_engine.md "CUDA graphs").
  bool heads_cuda_graphs = true;
  // CUDA, with heads_cuda_graphs (experimental, off by default): replay the box and lane
  // decoders' graphs concurrently on two streams (PetrHeads::set_concurrent_decoders).
  bool heads_concurrent_decoders = false;
  // The FP8 backbone's activation scales, required with backbone_dtype F8E4M3 (an error says so
  // when missing). Made by VisionEngine::calibrate_fp8 / vision::calibrate_fp8 on frames of the
  // caller's choosing, or read with Fp8Calibration::load from a file save() wrote. Not looked up
  // implicitly anywhere.
  std::optional<Fp8Calibration> fp8_calibration;
};

struct VisionFrameResult {
  Tensor backbone;  // [N, gh, gw, C] on the device, in the backbone's activation dtype
  HeadsOutput heads;
};

class VisionEngine {
 public:
  VisionEngine(const VisionConfig& cfg, const WeightGetter& get, const VisionEngineOptions& opt);
  // A checkpoint folder: config.json (with a "vision" section) + vision.safetensors.
  static std::unique_ptr<VisionEngine> load(const std::string& checkpoint_dir,
                                            const VisionEngineOptions& opt);

  // img: [N, 3, H, W] normalised float32 (host or device). Validates the inputs (shapes, finite
  // values, invertible cameras, time order) before any GPU work; updates the memory.
  VisionFrameResult run(const Tensor& img, const FrameGeometry& geo);

  // The FP8 calibration pass over `frames` ([N, 3, H, W] normalised float32 each) with this
  // checkpoint's backbone (F16 on CUDA, F32 on the CPU). `source` describes the frames.
  static Fp8Calibration calibrate_fp8(const std::string& checkpoint_dir,
                                      const std::vector<Tensor>& frames, Device device,
                                      const std::string& source);

  // The dtype images are converted to before the backbone (F16/F32 for the FP8 backbone).
  DType input_dtype() const { return vit_.activation_dtype(); }
  const EvaVit& backbone() const { return vit_; }

  const VisionConfig& config() const { return cfg_; }
  // Frames whose heads were replayed from CUDA graphs, and the graphs' node count (0: none).
  int64_t heads_graph_replays() const { return heads_.graph_replays(); }
  size_t heads_graph_nodes() const { return heads_.graph_nodes(); }
  VisionState& state() { return state_; }
  void reset() { state_ = VisionState(); have_last_ = false; }

 private:
  void validate(const Tensor& img, const FrameGeometry& geo) const;
  VisionConfig cfg_;
  VisionEngineOptions opt_;
  EvaVit vit_;
  PetrHeads heads_;
  VisionState state_;
  double last_timestamp_ = 0;
  bool have_last_ = false;
};

}  // namespace omnirt::vision
