// Scene folders (docs/scene_format.md): scene.json + camera images. The reader validates every
// frame on its own: a bad frame carries an error naming the frame and the file/field, the other
// frames stay usable.
#pragma once

#include <array>
#include <string>
#include <vector>

namespace omnirt::io {

// The model's camera order (nuScenes names).
const std::vector<std::string>& nuscenes_camera_names();

struct CameraCalibration {
  std::array<double, 9> intrinsics{};        // 3x3 row-major, pixels of the source image
  std::array<double, 4> sensor2ego_rotation{1, 0, 0, 0};  // quaternion w, x, y, z
  std::array<double, 3> sensor2ego_translation{};         // metres
};

struct SceneFrame {
  int index = 0;            // position in scene.json "frames"
  std::string token;        // optional id from the file (else "frame_<index>")
  double timestamp = 0;     // seconds
  std::vector<std::string> image_paths;         // per requested camera, resolved paths
  std::vector<CameraCalibration> calibration;   // per requested camera
  std::array<double, 4> ego2global_rotation{1, 0, 0, 0};  // w, x, y, z
  std::array<double, 3> ego2global_translation{};
  std::array<float, 13> can_bus{};
  int command = 2;          // 0 left, 1 right, 2 forward
  std::string location = "boston";
  std::string error;        // non-empty: the frame cannot be run; names the frame and file/field
  bool ok() const { return error.empty(); }
};

struct Scene {
  std::string dir;   // folder holding scene.json (image paths are relative to it)
  std::string name;
  std::vector<std::string> cameras;  // the requested camera names, model order
  std::vector<SceneFrame> frames;
  int num_valid() const;
};

// Reads SCENE (a folder with scene.json, or the json file itself) for the given cameras (the
// model's, in its order; a prefix of nuscenes_camera_names() for the tiny test model). Throws
// omnirt::Error only when the scene as a whole is unusable (no scene.json, not JSON, no frames);
// per-frame problems (missing image file, calibration of the wrong shape, non-finite values,
// frame out of time order, ...) land in SceneFrame::error.
Scene read_scene(const std::string& path, const std::vector<std::string>& cameras);

}  // namespace omnirt::io
