#include "pipeline/frame.h"

#include <chrono>
#include <future>
#include <sstream>

#include "core/error.h"
#ifdef OMNIRT_WITH_CUDA
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#include "pipeline/preprocess_cuda.h"
#endif

namespace omnirt::pipeline {

namespace {

// Shared by both entry points: `decoded` null = decode frame.image_paths, else use its images.
PreparedFrame prepare(const io::SceneFrame& frame, int n, const std::vector<io::Image>* decoded,
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
  try {
    OMNIRT_CHECK(int(frame.calibration.size()) == n, "expected calibration for ", n,
                 " cameras, got ", frame.calibration.size());
    OMNIRT_CHECK(decoded ? int(decoded->size()) == n : int(frame.image_paths.size()) == n,
                 "expected ", n, " camera images, got ",
                 decoded ? decoded->size() : frame.image_paths.size());
#ifndef OMNIRT_WITH_CUDA
    OMNIRT_CHECK(!cfg.cuda, "pre-processing on CUDA: this build has no CUDA backend");
#endif
    // On the GPU the workers only decode; the chain runs below, one camera after the other.
    Tensor host_img;
    float* dst = nullptr;
    if (!cfg.cuda) {
      host_img = Tensor::empty({n, 3, cfg.out_h, cfg.out_w}, DType::F32);
      dst = host_img.data<float>();
    }
    const size_t per_cam = size_t(3) * cfg.out_h * cfg.out_w;
    // One task per camera: decoding and resampling a 1600x900 image is ~0.1 s of CPU each.
    struct CamResult {
      io::Image img;
      Mat4f lidar2img{};
      Mat4d ego_to_source{};
      std::string error;
    };
    std::vector<std::future<CamResult>> tasks;
    for (int c = 0; c < n; ++c) {
      tasks.push_back(std::async(std::launch::async, [&, c]() {
        CamResult r;
        const std::string what = c < int(frame.image_paths.size()) && !frame.image_paths[c].empty()
                                     ? "file " + frame.image_paths[c]
                                     : "camera " + std::to_string(c) + " image";
        try {
          // A caller's decoded image is only copied when the pictures need it.
          const io::Image* img = nullptr;
          if (decoded) {
            if (keep_source_images) r.img = (*decoded)[size_t(c)];
            img = keep_source_images ? &r.img : &(*decoded)[size_t(c)];
          } else {
            r.img = io::load_image_rgb(frame.image_paths[c]);
            img = &r.img;
          }
          if (!cfg.cuda) preprocess_image(cfg, *img, dst + c * per_cam);
          const auto& cal = frame.calibration[c];
          const Mat4d s2e = rigid_from_quaternion(cal.sensor2ego_rotation, cal.sensor2ego_translation);
          r.lidar2img = to_float(ego_to_image(adjust_intrinsics(cfg, cal.intrinsics, img->width,
                                                                img->height), s2e));
          r.ego_to_source = ego_to_image(cal.intrinsics, s2e);
        } catch (const std::exception& e) {
          r.error = what + ": " + e.what();
        }
        return r;
      }));
    }
    std::vector<CamResult> results;
    for (auto& t : tasks) results.push_back(t.get());
    for (auto& r : results) OMNIRT_CHECK(r.error.empty(), r.error);
    if (!cfg.cuda) {
      out.img = host_img;
    } else {
#ifdef OMNIRT_WITH_CUDA
      // A stream of its own (non-blocking): this runs on the runner's worker thread while the
      // engines work on the previous frame.
      cudaStream_t stream = nullptr;
      OMNIRT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
      struct StreamOwner {
        cudaStream_t s;
        ~StreamOwner() { cudaStreamDestroy(s); }
      } owner{stream};
      cuda::StreamGuard guard(stream);
      out.img = Tensor::empty({n, 3, cfg.out_h, cfg.out_w}, cfg.cuda_dtype, Device::CUDA);
      const size_t cam_bytes = per_cam * dtype_nbytes(cfg.cuda_dtype, 1);
      for (int c = 0; c < n; ++c) {
        const io::Image& img = decoded ? (*decoded)[size_t(c)] : results[size_t(c)].img;
        try {
          preprocess_image_cuda(cfg, img, static_cast<char*>(out.img.raw()) + c * cam_bytes,
                                cfg.cuda_dtype);
        } catch (const std::exception& e) {
          OMNIRT_FAIL(c < int(frame.image_paths.size()) && !frame.image_paths[c].empty()
                          ? "file " + frame.image_paths[c]
                          : "camera " + std::to_string(c) + " image",
                      ": ", e.what());
        }
      }
#endif
    }
    for (auto& r : results) {
      out.lidar2img.push_back(r.lidar2img);
      if (keep_source_images) {
        out.ego_to_source_image.push_back(r.ego_to_source);
        out.source_images.push_back(std::move(r.img));
      }
    }
    const Mat4d pose = rigid_from_quaternion(frame.ego2global_rotation, frame.ego2global_translation);
    out.ego_pose = to_float(pose);
    out.ego_pose_inv = to_float(rigid_inverse(pose));
  } catch (const std::exception& e) {
    std::ostringstream os;
    os << "frame " << frame.index << " (" << frame.token << "), " << e.what();
    out.error = os.str();
    out.img = Tensor();
  }
  out.prepare_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace

PreparedFrame prepare_frame(const io::Scene& scene, const io::SceneFrame& frame,
                            const PreprocessConfig& cfg, bool keep_source_images) {
  return prepare(frame, int(scene.cameras.size()), nullptr, cfg, keep_source_images);
}

PreparedFrame prepare_frame(const io::SceneFrame& frame, const std::vector<io::Image>& images,
                            const PreprocessConfig& cfg, bool keep_source_images) {
  return prepare(frame, int(images.size()), &images, cfg, keep_source_images);
}

}  // namespace omnirt::pipeline
