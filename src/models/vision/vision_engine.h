// The vision engine: EVA ViT backbone + 3-D position embedding + box and lane heads, with the
// temporal memory carried between frames. One frame in (6 normalised images + geometry), the
// 513 vision tokens, boxes, lanes and the new memory out.
#pragma once

#include <memory>
#include <string>

#include "models/vision/eva_vit.h"
#include "models/vision/petr_heads.h"
#include "models/vision/vision_config.h"

namespace omnirt::vision {

struct VisionEngineOptions {
  Device device = Device::CPU;
  DType backbone_dtype = DType::F32;  // F32 (CPU/CUDA), F16 or BF16 (CUDA)
  bool tf32 = false;                  // let fp32 GEMMs use TF32 (CUDA)
  // The heads' weights and activations: F32 (the reference deployment's "mixed" mode keeps
  // them so under a half backbone), or F16/BF16 on CUDA ("full half").
  DType heads_dtype = DType::F32;
  // CUDA: replay the heads' device work from CUDA graphs from the second frame on (see
  // PetrHeads::set_cuda_graphs; docs/vision_engine.md "CUDA graphs").
  bool heads_cuda_graphs = true;
};

struct VisionFrameResult {
  Tensor backbone;  // [N, gh, gw, C] on the device, backbone dtype
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
