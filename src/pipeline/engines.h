// The model behind `omnirt run`: vision engine (boxes, lanes, 513 vision tokens, temporal
// memory) + LLM planner (prompt with the vision tokens spliced in, generation, trajectory
// parsing), behind one small interface so the pipeline does not depend on engine internals.
// engines.cpp (and vision_outputs.cpp, shared with omnirt parity) include the engines' headers.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "pipeline/frame.h"

namespace omnirt::pipeline {

// Detection class names in label order (spec §1.4).
const std::vector<std::string>& detection_class_names();

struct Box3D {
  // nuScenes conventions in the ego frame: centre (geometric), size (w, l, h), yaw about z
  // (0 = facing ego +x), velocity (vx, vy) m/s.
  std::array<float, 3> center{};
  std::array<float, 3> size_wlh{};
  float yaw = 0;
  std::array<float, 2> velocity{};
  float score = 0;
  int label = 0;
  int query = -1;  // the decoder query that produced it (omnirt parity matches boxes by it)
};

struct Lane {
  std::vector<std::array<float, 3>> points;  // ordered polyline, ego metres
  float score = 0;
};

struct EngineOptions {
  Device device = Device::CPU;
  DType vision_dtype = DType::F32;
  // The vision heads: F32 (the reference deployment's "mixed" engine under a half backbone) or
  // F16/BF16 on CUDA (full half precision, ~3x faster heads; see docs/vision_engine.md).
  DType vision_heads_dtype = DType::F32;
  bool vision_tf32 = false;  // the vision engine's fp32 GEMMs and attention may use TF32 (CUDA)
  DType llm_dtype = DType::F16;  // the LLM on CUDA: F16, BF16 or F32 (the CPU runs F32)
  bool greedy = false;       // argmax decoding (numerical comparison); else OmniDrive sampling
  int max_new_tokens = 320;
  uint64_t seed = 0;
};

struct FrameOutput {
  std::vector<Box3D> boxes;  // sorted by score
  std::vector<Lane> lanes;
  bool memory_reset = false;
  std::string answer;                                  // planner text, special tokens stripped
  std::vector<std::array<double, 2>> trajectory;       // 6 waypoints (x fwd, y left), or empty
  std::string trajectory_error;                        // why parsing failed
  int prompt_tokens = 0, new_tokens = 0;
  std::string stop_reason;
  // vision_ms: the vision engine; prefill_ms: prompt + prefill + the first token (the LLM's TTFT);
  // decode_ms: the tokens after the first (TPOT = decode_ms / (new_tokens - 1)).
  // Frame in -> first token = vision_ms + prefill_ms.
  double vision_ms = 0, prefill_ms = 0, decode_ms = 0;
};

class ModelEngines {
 public:
  virtual ~ModelEngines() = default;
  // Loads config.json, vision.safetensors, llm.safetensors, tokenizer.model from `dir`.
  static std::unique_ptr<ModelEngines> load(const std::string& dir, const EngineOptions& opt);

  virtual std::vector<std::string> camera_names() const = 0;  // model order
  virtual int input_h() const = 0;
  virtual int input_w() const = 0;
  virtual std::string description() const = 0;  // sizes, dtype, device
  virtual Device device() const = 0;
  virtual DType vision_dtype() const = 0;  // the backbone's
  // Runs one frame: vision (memory carried; `first_frame` resets it), then the planner.
  virtual FrameOutput run(const PreparedFrame& frame, bool first_frame) = 0;
  // The planner half of run() on given vision tokens (F32 [R, hidden], host): prompt for
  // `location` with the tokens spliced in, generation (sampling stream of `frame_index`),
  // trajectory parsing. Fills the planner fields and prefill/decode timings of FrameOutput.
  virtual FrameOutput plan(const Tensor& vision_tokens, const std::string& location,
                           int frame_index) = 0;
};

// The pre-processing for `engines`: the network's input size; on a CUDA device the chain runs on
// the GPU and writes the backbone's dtype (OMNIRT_CPU_PREPROCESS=1 keeps it on the CPU).
PreprocessConfig preprocess_config_for(const ModelEngines& engines);

}  // namespace omnirt::pipeline
