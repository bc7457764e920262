#include "models/vision/vision_engine.h"

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/stage_timer.h"
#include "io/safetensors.h"

namespace omnirt::vision {

VisionEngine::VisionEngine(const VisionConfig& cfg, const WeightGetter& get,
                           const VisionEngineOptions& opt)
    : cfg_(cfg),
      opt_(opt),
      vit_(cfg, get, opt.device, opt.backbone_dtype, opt.tf32,
           opt.fp8_calibration ? &*opt.fp8_calibration : nullptr),
      heads_(cfg, get, opt.device, opt.tf32, opt.heads_dtype) {
  heads_.set_cuda_graphs(opt.heads_cuda_graphs);
  heads_.set_concurrent_decoders(opt.heads_concurrent_decoders);
}

namespace {

struct OpenedCheckpoint {
  VisionConfig cfg;
  WeightGetter get;
};

OpenedCheckpoint open_checkpoint(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path config = fs::path(dir) / "config.json";
  const fs::path weights = fs::path(dir) / "vision.safetensors";
  OMNIRT_CHECK(fs::exists(config), dir, ": not a checkpoint folder (no config.json)");
  OMNIRT_CHECK(fs::exists(weights), dir, ": no vision.safetensors in the checkpoint folder");
  VisionConfig cfg = VisionConfig::from_file(config.string());
  auto file = std::make_shared<SafetensorsFile>(SafetensorsFile::open(weights.string()));
  WeightGetter get = [file](const std::string& name) { return file->get(name); };
  return {cfg, get};
}

}  // namespace

std::unique_ptr<VisionEngine> VisionEngine::load(const std::string& dir,
                                                 const VisionEngineOptions& opt) {
  OpenedCheckpoint ck = open_checkpoint(dir);
  return std::make_unique<VisionEngine>(ck.cfg, ck.get, opt);
}

Fp8Calibration VisionEngine::calibrate_fp8(const std::string& dir, const std::vector<Tensor>& frames,
                                           Device device, const std::string& source) {
  OpenedCheckpoint ck = open_checkpoint(dir);
  return vision::calibrate_fp8(ck.cfg, ck.get, device, frames, source);
}

void VisionEngine::validate(const Tensor& img, const FrameGeometry& geo) const {
  expect_shape(img, {cfg_.num_cams, 3, cfg_.img_h, cfg_.img_w}, "camera images");
  if (img.device() == Device::CPU) {
    OMNIRT_CHECK(img.dtype() == DType::F32, "camera images: expected F32, got ", img.describe());
    const float* p = img.contiguous().data<float>();
    const int64_t per_cam = img.numel() / cfg_.num_cams;
    for (int64_t i = 0; i < img.numel(); ++i)
      OMNIRT_CHECK(std::isfinite(p[i]), "camera images: non-finite value in camera ", i / per_cam);
  }
  OMNIRT_CHECK(static_cast<int>(geo.lidar2img.size()) == cfg_.num_cams, "calibration: expected ",
               cfg_.num_cams, " lidar2img matrices, got ", geo.lidar2img.size());
  for (int cam = 0; cam < cfg_.num_cams; ++cam)
    for (float v : geo.lidar2img[cam])
      OMNIRT_CHECK(std::isfinite(v), "calibration: lidar2img of camera ", cam, " has a non-finite value");
  for (float v : geo.ego_pose) OMNIRT_CHECK(std::isfinite(v), "ego_pose has a non-finite value");
  for (float v : geo.ego_pose_inv) OMNIRT_CHECK(std::isfinite(v), "ego_pose_inv has a non-finite value");
  for (float v : geo.can_bus) OMNIRT_CHECK(std::isfinite(v), "can_bus has a non-finite value");
  OMNIRT_CHECK(std::isfinite(geo.timestamp), "timestamp is not finite");
  if (have_last_ && !geo.is_first_frame)
    OMNIRT_CHECK(geo.timestamp >= last_timestamp_, "timestamp goes backwards: ", geo.timestamp,
                 " s after ", last_timestamp_, " s (start a new scene with is_first_frame)");
}

VisionFrameResult VisionEngine::run(const Tensor& img, const FrameGeometry& geo) {
  validate(img, geo);
  VisionFrameResult r;
  Tensor x = img;
  const DType in_dtype = vit_.activation_dtype();
  if (x.device() != opt_.device || x.dtype() != in_dtype) {
    Tensor host = x.device() == Device::CPU ? x : x.to(Device::CPU);
    if (host.dtype() != in_dtype) host = host.to_dtype(in_dtype);
    x = opt_.device == Device::CPU ? host : host.to(opt_.device);
  }
  StageTimer::mark("validate + image upload");
  r.backbone = vit_.forward(x);
  r.heads = heads_.forward(r.backbone, geo, state_);
  last_timestamp_ = geo.timestamp;
  have_last_ = true;
  return r;
}

}  // namespace omnirt::vision
