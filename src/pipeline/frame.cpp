#include "pipeline/frame.h"

#include <chrono>
#include <sstream>

#include "core/error.h"

namespace omnirt::pipeline {

PreparedFrame prepare_frame(const io::Scene& scene, const io::SceneFrame& frame,
                            const PreprocessConfig& cfg, bool keep_source_images) {
  const auto t0 = std::chrono::steady_clock::now();
  PreparedFrame out;
  out.index = frame.index;
  out.token = frame.token;
  out.timestamp = frame.timestamp;
  out.command = float(frame.command);
  out.can_bus = frame.can_bus;
  out.location = frame.location;
  if (!frame.ok()) {
    out.error = frame.error;
    return out;
  }
  const int n = int(scene.cameras.size());
  std::string current_file;
  try {
    out.img = Tensor::empty({n, 3, cfg.out_h, cfg.out_w}, DType::F32);
    float* dst = out.img.data<float>();
    const size_t per_cam = size_t(3) * cfg.out_h * cfg.out_w;
    for (int c = 0; c < n; ++c) {
      current_file = frame.image_paths[c];
      io::Image img = io::load_image_rgb(current_file);
      preprocess_image(cfg, img, dst + c * per_cam);
      const auto& cal = frame.calibration[c];
      const Mat4d s2e = rigid_from_quaternion(cal.sensor2ego_rotation, cal.sensor2ego_translation);
      const Mat3d K = adjust_intrinsics(cfg, cal.intrinsics, img.width, img.height);
      out.lidar2img.push_back(to_float(ego_to_image(K, s2e)));
      if (keep_source_images) {
        out.ego_to_source_image.push_back(ego_to_image(cal.intrinsics, s2e));
        out.source_images.push_back(std::move(img));
      }
    }
    current_file.clear();
    const Mat4d pose = rigid_from_quaternion(frame.ego2global_rotation, frame.ego2global_translation);
    out.ego_pose = to_float(pose);
    out.ego_pose_inv = to_float(rigid_inverse(pose));
  } catch (const std::exception& e) {
    std::ostringstream os;
    os << "frame " << frame.index << " (" << frame.token << ")";
    if (!current_file.empty()) os << ", file " << current_file;
    os << ": " << e.what();
    out.error = os.str();
    out.img = Tensor();
  }
  out.prepare_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace omnirt::pipeline
