// Parity of the C++ vision engine with the PyTorch reference (python/omnidrive_ref) on the tiny
// checkpoint's golden fixtures: two consecutive frames, so the temporal memory path is exercised.
// The reference computes all 1800 lanes (one2one + one2many); the engine only the 300 one2one:
// matching the reference here is the numerical evidence that dropping one2many changes nothing.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <set>

#include "common/test_util.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "models/vision/vision_engine.h"

using namespace omnirt;
using namespace omnirt::vision;

namespace {

const std::string kData = OMNIRT_TEST_DATA_DIR;

// The tiny checkpoint and fixtures by default; OMNIRT_PARITY_CKPT / OMNIRT_PARITY_FIXTURES point
// the same tests at full-size ones (made on a GPU machine by python/make_fixtures.py).
std::string ckpt_dir() {
  const char* e = std::getenv("OMNIRT_PARITY_CKPT");
  return e ? e : kData + "/tiny_ckpt";
}
std::string fixture(int frame) {
  const char* e = std::getenv("OMNIRT_PARITY_FIXTURES");
  return std::string(e ? e : kData + "/fixtures") + "/frame" + std::to_string(frame) + ".safetensors";
}

host::Mat4 mat(const Tensor& t, int64_t index) {
  host::Mat4 m;
  std::vector<float> v = t.to_float_vector();
  std::memcpy(m.data(), v.data() + index * 16, 64);
  return m;
}

FrameGeometry geometry(const SafetensorsFile& f, int cams) {
  FrameGeometry g;
  Tensor l2i = f.get("inputs.lidar2img"), i2l = f.get("inputs.img2lidars");
  for (int c = 0; c < cams; ++c) {
    g.lidar2img.push_back(mat(l2i, c));
    g.img2lidars.push_back(mat(i2l, c));
  }
  g.ego_pose = mat(f.get("inputs.ego_pose"), 0);
  g.ego_pose_inv = mat(f.get("inputs.ego_pose_inv"), 0);
  g.timestamp = f.get("inputs.timestamp").data<double>()[0];
  g.command = f.get("inputs.command").to_float_vector()[0];
  std::vector<float> cb = f.get("inputs.can_bus").to_float_vector();
  std::copy(cb.begin(), cb.end(), g.can_bus.begin());
  g.is_first_frame = f.get("inputs.is_first_frame").to_float_vector()[0] != 0.f;
  return g;
}

// Relative error, printed so that parity runs show the figures, not just pass/fail.
double rel(const Tensor& ours, const Tensor& ref, const char* what = nullptr) {
  const double e = omnirt::testing::rel_error(ours, ref);
  if (what) std::printf("  %-28s rel. error %.3g\n", what, e);
  return e;
}

void check_frames(Device device, double tol) {
  auto engine = VisionEngine::load(ckpt_dir(), {device, DType::F32, false});
  const VisionConfig& c = engine->config();
  for (int frame = 0; frame < 2; ++frame) {
    SCOPED_TRACE("frame " + std::to_string(frame));
    std::printf("%s frame %d:\n", device_name(device).c_str(), frame);
    auto f = SafetensorsFile::open(fixture(frame));
    Tensor img = f.get("inputs.img").reshape({c.num_cams, 3, c.img_h, c.img_w});
    VisionFrameResult r = engine->run(img, geometry(f, c.num_cams));
    // backbone: reference [1, N, C, h, w], ours [N, h, w, C]
    Tensor ours_bb = r.backbone.to(Device::CPU).permute({0, 3, 1, 2}).contiguous();
    EXPECT_LE(rel(ours_bb, f.get("out.backbone_feats"), "backbone_feats"), tol) << "backbone";
    EXPECT_LE(rel(r.heads.pos_embed, f.get("out.pos_embed"), "pos_embed"), std::max(tol, 1e-4)) << "pos_embed";
    EXPECT_LE(rel(r.heads.all_cls_scores, f.get("out.all_cls_scores"), "all_cls_scores"), tol) << "all_cls_scores";
    EXPECT_LE(rel(r.heads.all_bbox_preds, f.get("out.all_bbox_preds"), "all_bbox_preds"), tol) << "all_bbox_preds";
    EXPECT_LE(rel(r.heads.all_lane_cls_one2one, f.get("out.all_lane_cls_one2one"), "all_lane_cls_one2one"), tol);
    EXPECT_LE(rel(r.heads.all_lane_preds_one2one, f.get("out.all_lane_preds_one2one"), "all_lane_preds_one2one"), tol);
    EXPECT_LE(rel(r.heads.vision_tokens, f.get("out.vision_tokens"), "vision_tokens"), tol) << "vision_tokens";
    // Same top-k boxes (compared as (query, label) sets; ties may reorder).
    std::vector<float> q_ref = f.get("out.boxes.query").to_float_vector();
    std::vector<float> l_ref = f.get("out.boxes.labels").to_float_vector();
    std::set<std::pair<int, int>> ref_set, our_set;
    for (size_t i = 0; i < q_ref.size(); ++i) ref_set.insert({int(q_ref[i]), int(l_ref[i])});
    for (size_t i = 0; i < r.heads.boxes.query.size(); ++i)
      our_set.insert({r.heads.boxes.query[i], r.heads.boxes.labels[i]});
    EXPECT_EQ(our_set, ref_set);
    EXPECT_LE(rel(r.heads.lanes.points, f.get("out.lanes.points"), "lanes.points"), tol) << "lane points";
    // The memory after the frame.
    auto state = engine->state().as_map();
    for (const auto& [name, t] : state)
      EXPECT_LE(rel(t, f.get("state_out." + name), name.c_str()), std::max(tol, 1e-5)) << name;
  }
}

}  // namespace

TEST(VisionParity, CpuMatchesReferenceTwoFrames) { check_frames(Device::CPU, 1e-4); }

TEST(VisionParity, CudaFp32MatchesReferenceTwoFrames) {
  OMNIRT_REQUIRE_CUDA();
  check_frames(Device::CUDA, 1e-4);
}

TEST(VisionEngine, BadInputsAreClearErrors) {
  auto engine = VisionEngine::load(kData + "/tiny_ckpt", {Device::CPU, DType::F32, false});
  const VisionConfig& c = engine->config();
  auto f = SafetensorsFile::open(kData + "/fixtures/frame0.safetensors");
  Tensor img = f.get("inputs.img").reshape({c.num_cams, 3, c.img_h, c.img_w}).clone();
  FrameGeometry g = geometry(f, c.num_cams);
  auto expect_error = [&](const Tensor& im, const FrameGeometry& geo, const std::string& needle) {
    try {
      engine->run(im, geo);
      ADD_FAILURE() << "expected an error mentioning '" << needle << "'";
    } catch (const omnirt::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  // wrong number of cameras
  expect_error(img.slice(0, 0, c.num_cams - 1).contiguous(), g, "camera images");
  // NaN pixel
  Tensor bad = img.clone();
  bad.data<float>()[bad.numel() - 5] = NAN;
  expect_error(bad, g, "non-finite");
  // a missing camera matrix
  FrameGeometry g2 = g;
  g2.lidar2img.pop_back();
  expect_error(img, g2, "lidar2img");
  // a non-invertible camera matrix
  FrameGeometry g3 = g;
  g3.img2lidars.clear();
  g3.lidar2img[1] = host::Mat4{};
  expect_error(img, g3, "camera 1");
  // time going backwards
  engine->run(img, g);
  FrameGeometry g4 = g;
  g4.is_first_frame = false;
  g4.timestamp = g.timestamp - 0.5;
  expect_error(img, g4, "backwards");
}

TEST(VisionEngine, MemoryResetsAfterTwoSecondGap) {
  auto engine = VisionEngine::load(kData + "/tiny_ckpt", {Device::CPU, DType::F32, false});
  const VisionConfig& c = engine->config();
  auto f0 = SafetensorsFile::open(kData + "/fixtures/frame0.safetensors");
  auto f1 = SafetensorsFile::open(kData + "/fixtures/frame1.safetensors");
  Tensor img0 = f0.get("inputs.img").reshape({c.num_cams, 3, c.img_h, c.img_w});
  Tensor img1 = f1.get("inputs.img").reshape({c.num_cams, 3, c.img_h, c.img_w});
  FrameGeometry g0 = geometry(f0, c.num_cams), g1 = geometry(f1, c.num_cams);
  EXPECT_TRUE(engine->run(img0, g0).heads.memory_reset);  // first frame
  EXPECT_FALSE(engine->run(img1, g1).heads.memory_reset);  // 0.5 s later: kept
  FrameGeometry late = g1;
  late.timestamp = g1.timestamp + 2.0;  // exactly 2 s: |dt| < 2 fails -> reset
  EXPECT_TRUE(engine->run(img1, late).heads.memory_reset);
  FrameGeometry soon = late;
  soon.timestamp = late.timestamp + 1.99;
  EXPECT_FALSE(engine->run(img1, soon).heads.memory_reset);
}

// fp16 / bf16 backbone (heads in float32, the reference deployment's "mixed" engine), first
// frame: the 513 vision tokens against the float32 reference. Measured on the H200 with the tiny
// checkpoint: fp16 7.8e-3, bf16 7.2e-2 (bf16's 8-bit mantissa on a deliberately sharp random
// model). Later frames are not compared here: the memory's top-k selection turns small drifts
// into different selected entries, which is a discrete effect, not an error of the engine.
TEST(VisionParity, CudaHalfBackboneTokensWithinTolerance) {
  OMNIRT_REQUIRE_CUDA();
  for (DType dt : {DType::F16, DType::BF16}) {
    auto engine = VisionEngine::load(ckpt_dir(), {Device::CUDA, dt, false});
    const VisionConfig& c = engine->config();
    auto f = SafetensorsFile::open(fixture(0));
    Tensor img = f.get("inputs.img").reshape({c.num_cams, 3, c.img_h, c.img_w});
    VisionFrameResult r = engine->run(img, geometry(f, c.num_cams));
    const double e = rel(r.heads.vision_tokens, f.get("out.vision_tokens"));
    std::printf("%s backbone, frame 0: vision tokens rel. error %.3g\n",
                std::string(dtype_name(dt)).c_str(), e);
    EXPECT_LE(e, dt == DType::F16 ? 1e-2 : 1e-1) << dtype_name(dt);
  }
}

// Full half precision (backbone and heads in fp16/bf16), first frame, against the float32
// reference: the 513 tokens, the final-layer class scores and the position embedding.
TEST(VisionParity, CudaFullHalfTokensWithinTolerance) {
  OMNIRT_REQUIRE_CUDA();
  for (DType dt : {DType::F16, DType::BF16}) {
    VisionEngineOptions opt{Device::CUDA, dt, false};
    opt.heads_dtype = dt;
    auto engine = VisionEngine::load(ckpt_dir(), opt);
    const VisionConfig& c = engine->config();
    auto f = SafetensorsFile::open(fixture(0));
    Tensor img = f.get("inputs.img").reshape({c.num_cams, 3, c.img_h, c.img_w});
    VisionFrameResult r = engine->run(img, geometry(f, c.num_cams));
    EXPECT_EQ(r.heads.vision_tokens.dtype(), DType::F32);
    const std::string name(dtype_name(dt));
    std::printf("full %s, frame 0:\n", name.c_str());
    const double tokens = rel(r.heads.vision_tokens, f.get("out.vision_tokens"), "vision_tokens");
    const double pos = rel(r.heads.pos_embed, f.get("out.pos_embed"), "pos_embed");
    const double cls = rel(r.heads.all_cls_scores, f.get("out.all_cls_scores"), "all_cls_scores");
    const double half_tol = dt == DType::F16 ? 2e-2 : 1.5e-1;
    EXPECT_LE(tokens, half_tol) << name;
    EXPECT_LE(pos, half_tol) << name;
    EXPECT_LE(cls, half_tol) << name;
  }
}
