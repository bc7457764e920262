// OmniDrive-RT library API: load a model folder once, then run scene frames through it (six
// camera images + calibration + ego pose + CAN bus + command in; boxes, lanes, the planner's
// answer and trajectory out). This header is the whole public surface: it includes only the
// standard library and omnirt::Error; the engines stay behind a pointer to an implementation.
//
//   omnirt::ModelOptions opt;                 // device auto (CUDA when present), sampling
//   omnirt::Model model("/path/to/checkpoint", opt);
//   omnirt::Scene scene = omnirt::load_scene("examples/sample_scene", model.camera_names());
//   for (const omnirt::Frame& f : scene.frames) {
//     omnirt::FrameResult r = model.run(f);   // temporal memory carried between calls
//     std::printf("%zu boxes, answer: %s\n", r.boxes.size(), r.answer.c_str());
//   }
//
// Frames of one scene go in time order; call reset() before the frames of another scene. A
// Model is not thread-safe (one run() at a time); separate Model objects are independent.
// Every failure throws omnirt::Error (a std::runtime_error) whose message names the field or
// file and says expected vs actual, e.g. "frame 3 (abc): camera CAM_BACK: missing".
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

// omnirt::Error, the runtime's one exception type. Installed next to this header as
// omnirt/core/error.h; in the source tree the quoted include falls back to src/core/error.h.
#include "core/error.h"

namespace omnirt {

const char* version();     // "0.1.0"
const char* git_commit();  // commit of the build, or "unknown"

enum class Backend { kAuto, kCpu, kCuda };          // kAuto: CUDA when a device is usable
enum class Precision { kAuto, kFp32, kFp16, kBf16 };  // kAuto: fp16 on CUDA, fp32 on the CPU

struct ModelOptions {
  Backend device = Backend::kAuto;
  Precision vision_precision = Precision::kAuto;  // the CPU backend runs fp32 only
  bool greedy = false;      // argmax decoding; false: OmniDrive's sampling (T 0.1, top-p 0.75)
  int max_new_tokens = 320; // most tokens per planner answer (1..2048)
  uint64_t seed = 0;        // sampling seed (with Frame::index it fixes every draw)
};

// One camera of a frame. Give either `path` (JPEG or PNG, decoded by the library) or the decoded
// image: `rgb` = height * width * 3 bytes, interleaved RGB, row-major, with width and height.
struct CameraInput {
  std::string name;  // nuScenes camera name, e.g. "CAM_FRONT" (Model::camera_names())
  std::string path;
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
  // Calibration in the source image's pixels: 3x3 row-major intrinsics (9 values), the
  // camera -> ego rotation as a unit quaternion (w, x, y, z) and translation in metres.
  std::vector<double> intrinsics;
  std::vector<double> sensor2ego_rotation;
  std::vector<double> sensor2ego_translation;
};

// One scene frame (the fields of docs/scene_format.md).
struct Frame {
  int index = 0;            // position in its scene; seeds the frame's sampling stream
  std::string token;        // optional id, used in messages
  double timestamp = 0;     // seconds; must increase within a scene
  std::vector<CameraInput> cameras;               // every camera the model needs, any order
  std::vector<double> ego2global_rotation;        // unit quaternion w, x, y, z
  std::vector<double> ego2global_translation;     // metres
  std::vector<double> can_bus;                    // 13 values, or empty for zeros
  int command = 2;                                // 0 turn left, 1 turn right, 2 go straight
  std::string location = "boston";                // map location named in the prompt
};

struct Box {
  std::array<float, 3> center{};    // ego frame metres (x forward, y left, z up), geometric centre
  std::array<float, 3> size_wlh{};  // width, length, height, metres
  float yaw = 0;                    // about z; 0 = facing ego +x
  std::array<float, 2> velocity{};  // vx, vy m/s
  float score = 0;
  int label = 0;           // class id
  std::string label_name;  // "car", "truck", ... (detection_class_names())
};

struct Lane {
  std::vector<std::array<float, 3>> points;  // ordered polyline, ego metres
  float score = 0;
};

struct Timings {
  double prepare_ms = 0;  // image decode + pre-processing
  double vision_ms = 0;   // vision engine (backbone, heads, tokens)
  double prefill_ms = 0;  // planner prompt + prefill + first token (the LLM's TTFT)
  double decode_ms = 0;   // the tokens after the first
  double ttft_ms = 0;     // vision + prefill: frame in -> first answer token
  double tpot_ms = 0;     // decode_ms / (new_tokens - 1), 0 for a one-token answer
  double total_ms = 0;    // vision + prefill + decode
};

struct FrameResult {
  int index = 0;
  std::string token;
  std::vector<Box> boxes;  // by score, best first
  std::vector<Lane> lanes;
  bool memory_reset = false;  // temporal memory started afresh at this frame
  std::string answer;         // planner text
  std::vector<std::array<double, 2>> trajectory;  // 6 waypoints (x forward, y left) m, or empty
  std::string trajectory_error;                   // why the answer did not parse, when empty
  int prompt_tokens = 0, new_tokens = 0;
  std::string stop_reason;  // "eos", "max_new_tokens", ...
  Timings timings;
};

// Decodes camera.path (JPEG/PNG) into camera.rgb, width and height and clears the path.
void decode_image(CameraInput& camera);

// Detection class names by label id.
const std::vector<std::string>& detection_class_names();

class Model {
 public:
  // Loads config.json, vision.safetensors, llm.safetensors and tokenizer.model from `model_dir`
  // (an omnirt checkpoint, python/omnidrive_export.py). Throws omnirt::Error on a missing or bad
  // file, or an option the build cannot honour (kCuda without a device, fp16 on the CPU).
  explicit Model(const std::string& model_dir, const ModelOptions& options = {});
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Runs one frame: pre-processing, vision (temporal memory from the previous frame), planner.
  // Throws omnirt::Error naming the frame and the field/file for bad input; the model's state
  // is unchanged then, so the next good frame can follow.
  FrameResult run(const Frame& frame);
  // Forgets the temporal memory: the next frame starts a new scene.
  void reset();

  std::vector<std::string> camera_names() const;  // what Frame::cameras must hold, model order
  int input_height() const;                       // network input size per camera
  int input_width() const;
  bool on_cuda() const;
  std::string description() const;  // cameras, sizes, dtypes, device
  bool random_weights() const;      // the checkpoint says its weights are random

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A scene folder (scene.json + images, docs/scene_format.md) read for the given cameras.
struct Scene {
  std::string name;
  std::vector<Frame> frames;        // the usable frames, in file order (images as paths)
  std::vector<std::string> errors;  // one message per unusable frame (names frame and field)
};
// Throws omnirt::Error only when the scene as a whole is unusable (no scene.json, not JSON).
Scene load_scene(const std::string& path, const std::vector<std::string>& cameras);

}  // namespace omnirt
