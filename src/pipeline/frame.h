// One scene frame made ready for the engines: images decoded and pre-processed into the
// network's [N, 3, H, W] input, geometry (ego->image per camera, ego pose) in float32.
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/image.h"
#include "io/scene.h"
#include "pipeline/preprocess.h"

namespace omnirt::pipeline {

struct PreparedFrame {
  int index = 0;
  std::string token;
  double timestamp = 0;
  Tensor img;                       // host F32 [N, 3, out_h, out_w], normalised
  std::vector<Mat4f> lidar2img;     // per camera: ego -> pre-processed image
  Mat4f ego_pose{};                 // ego -> global
  Mat4f ego_pose_inv{};             // global -> ego (closed-form rigid inverse)
  float command = 2;
  std::array<float, 13> can_bus{};
  std::string location;
  // For the pictures: the decoded source images and ego -> source-image projections.
  std::vector<io::Image> source_images;
  std::vector<Mat4d> ego_to_source_image;
  double prepare_ms = 0;            // decode + pre-processing time
  std::string error;                // non-empty: this frame failed (names frame and file)
  bool ok() const { return error.empty(); }
};

// Decodes and pre-processes one frame. Never throws for a bad frame: a frame the reader marked
// bad, an unreadable image or an image of an unexpected size give PreparedFrame::error.
PreparedFrame prepare_frame(const io::Scene& scene, const io::SceneFrame& frame,
                            const PreprocessConfig& cfg, bool keep_source_images);

// The same for camera images the caller has already decoded (the library API): images[c] is
// camera c's RGB image; frame.image_paths is not read (where set, it names the camera in errors).
PreparedFrame prepare_frame(const io::SceneFrame& frame, const std::vector<io::Image>& images,
                            const PreprocessConfig& cfg, bool keep_source_images);

}  // namespace omnirt::pipeline
