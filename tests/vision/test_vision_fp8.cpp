// The FP8 backbone (issue #8) on the tiny checkpoint: calibration (what it records, save/load,
// clear errors), the CPU reference of the FP8 math against the float32 reference outputs, and the
// CUDA FP8 backbone against both.
#include <gtest/gtest.h>

#include <unistd.h>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "models/vision/vision_engine.h"

using namespace omnirt;
using namespace omnirt::vision;

namespace {

const std::string kData = OMNIRT_TEST_DATA_DIR;
const std::string kCkpt = kData + "/tiny_ckpt";

std::string fixture(int frame) {
  return kData + "/fixtures/frame" + std::to_string(frame) + ".safetensors";
}

host::Mat4 mat(const Tensor& t, int64_t index) {
  host::Mat4 m;
  std::vector<float> v = t.to_float_vector();
  std::copy(v.begin() + index * 16, v.begin() + index * 16 + 16, m.begin());
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

const VisionConfig& tiny_config() {
  static const VisionConfig c = VisionConfig::from_file(kCkpt + "/config.json");
  return c;
}

Tensor fixture_image(int frame) {
  const VisionConfig& c = tiny_config();
  auto f = SafetensorsFile::open(fixture(frame));
  return f.get("inputs.img").reshape({c.num_cams, 3, c.img_h, c.img_w}).contiguous().clone();
}

// The calibration frames: the two fixture frames (the bundled tiny scene's, pre-processed).
std::vector<Tensor> calibration_frames() { return {fixture_image(0), fixture_image(1)}; }

template <typename Fn>
void expect_error_with(Fn&& fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected omnirt::Error, nothing was thrown";
  } catch (const omnirt::Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos)
          << "message \"" << msg << "\" lacks \"" << p << "\"";
  }
}

TEST(VisionFp8, MissingCalibrationIsAClearError) {
  VisionEngineOptions opt;
  opt.device = Device::CPU;
  opt.backbone_dtype = DType::F8E4M3;
  expect_error_with([&] { VisionEngine::load(kCkpt, opt); },
                    {"FP8 backbone needs activation scales", "fp8_calibration", "calibrate_fp8",
                     "Fp8Calibration::load"});
}

TEST(VisionFp8, CalibrationRecordsEveryGemmInput) {
  const VisionConfig& c = tiny_config();
  const std::vector<Tensor> frames = calibration_frames();
  const Fp8Calibration cal = VisionEngine::calibrate_fp8(kCkpt, frames, Device::CPU, "fixtures");
  EXPECT_EQ(cal.frames, 2);
  EXPECT_EQ(cal.embed_dim, c.embed_dim);
  EXPECT_EQ(cal.depth, c.depth);
  const std::vector<std::string> names = Fp8Calibration::gemm_inputs(c);
  EXPECT_EQ(names.size(), size_t(1 + 4 * c.depth));
  EXPECT_EQ(cal.input_amax.size(), names.size());
  for (const std::string& n : names) {
    const float a = cal.amax(n);
    EXPECT_TRUE(std::isfinite(a) && a > 0.f) << n << " amax " << a;
  }
  // The patch-embedding GEMM's input is a rearrangement of the image pixels: its amax is the
  // images' max |pixel| over both frames, exactly.
  float want = 0;
  for (const Tensor& f : frames)
    for (float v : f.to_float_vector()) want = std::max(want, std::fabs(v));
  EXPECT_EQ(cal.amax("patch_embed"), want);
  // Layer-norm outputs are O(1) (the weights' scale); they are not the image's range.
  EXPECT_NE(cal.amax("blocks.0.qkv"), want);
}

TEST(VisionFp8, CalibrationSavesLoadsAndIsChecked) {
  const VisionConfig& c = tiny_config();
  const Fp8Calibration cal =
      VisionEngine::calibrate_fp8(kCkpt, {fixture_image(0)}, Device::CPU, "fixture frame 0");
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("omnirt_fp8_cal_" + std::to_string(::getpid()) + ".json"))
                               .string();
  cal.save(path);
  const Fp8Calibration back = Fp8Calibration::load(path);
  EXPECT_EQ(back.input_amax, cal.input_amax);  // floats survive the JSON round trip
  EXPECT_EQ(back.frames, 1);
  EXPECT_EQ(back.source, "fixture frame 0");
  back.check_matches(c, "test");

  Fp8Calibration missing = cal;
  missing.input_amax.erase("blocks.2.w3");
  expect_error_with([&] { missing.check_matches(c, "test"); }, {"no amax", "blocks.2.w3"});
  VisionEngineOptions opt;
  opt.backbone_dtype = DType::F8E4M3;
  opt.fp8_calibration = missing;
  expect_error_with([&] { VisionEngine::load(kCkpt, opt); }, {"blocks.2.w3", "fixture frame 0"});

  Fp8Calibration other = cal;
  other.embed_dim = 768;
  expect_error_with([&] { other.check_matches(c, "test"); }, {"embed_dim 768", "64"});
  Fp8Calibration nan = cal;
  nan.input_amax["blocks.1.proj"] = std::nanf("");
  expect_error_with([&] { nan.check_matches(c, "test"); }, {"blocks.1.proj", "finite"});

  { std::ofstream(path) << "{\"format\": \"something-else\"}"; }
  expect_error_with([&] { Fp8Calibration::load(path); }, {path, "not an FP8 calibration file"});
  { std::ofstream(path) << "{not json"; }
  expect_error_with([&] { Fp8Calibration::load(path); }, {path, "not valid JSON"});
  std::filesystem::remove(path);
  expect_error_with([&] { Fp8Calibration::load(path); }, {"cannot open", path});
}

struct Fp8Run {
  Tensor backbone;  // host F32
  Tensor tokens;    // host F32
};

Fp8Run run_frame0(Device device, DType backbone, const Fp8Calibration* cal,
                  int* fp8_layers = nullptr) {
  VisionEngineOptions opt;
  opt.device = device;
  opt.backbone_dtype = backbone;
  if (cal) opt.fp8_calibration = *cal;
  auto engine = VisionEngine::load(kCkpt, opt);
  if (fp8_layers) *fp8_layers = engine->backbone().fp8_layers();
  auto f = SafetensorsFile::open(fixture(0));
  VisionFrameResult r = engine->run(fixture_image(0), geometry(f, tiny_config().num_cams));
  Tensor b = r.backbone.device() == Device::CPU ? r.backbone : r.backbone.to(Device::CPU);
  return {b.dtype() == DType::F32 ? b.clone() : b.to_dtype(DType::F32),
          r.heads.vision_tokens.device() == Device::CPU ? r.heads.vision_tokens
                                                        : r.heads.vision_tokens.to(Device::CPU)};
}

// Backbone taps of the EVA ViT run as `dtype` on `device` (FP8 with `cal`), as host F32.
std::map<std::string, Tensor> backbone_taps(Device device, DType dtype, const Fp8Calibration* cal) {
  const VisionConfig& c = tiny_config();
  auto file =
      std::make_shared<SafetensorsFile>(SafetensorsFile::open(kCkpt + "/vision.safetensors"));
  WeightGetter get = [file](const std::string& name) { return file->get(name); };
  EvaVit vit(c, get, device, dtype, false, cal);
  Tensor img = fixture_image(0);
  if (vit.activation_dtype() != DType::F32) img = img.to_dtype(vit.activation_dtype());
  std::map<std::string, Tensor> taps;
  vit.forward(device == Device::CPU ? img : img.to(device), &taps);
  for (auto& [name, t] : taps) {
    Tensor h = t.device() == Device::CPU ? t : t.to(Device::CPU);
    t = h.dtype() == DType::F32 ? h : h.to_dtype(DType::F32);
  }
  return taps;
}

// The FP8 math on the CPU (ops::linear_fp8's reference, float32 elsewhere), frame 0, against the
// float32 backbone and the PyTorch float32 reference tokens. 13 of the tiny backbone's 17 linear
// layers run in FP8 (w12 has N = 340, not a multiple of 16, and stays float32).
// Measured on the build machine (CPU): patch embedding (one FP8 GEMM) 3.6e-2 — what E4M3's 3
// mantissa bits give (up to 1/16 per rounding of both operands) —, then the error compounds
// through the blocks of this deliberately sharp random model (bf16's 8-bit mantissa already
// gives 7.2e-2 on the tokens, docs/vision_engine.md): block 0 8.8e-2, block 3 (the output)
// 0.257; vision tokens 0.121. The bounds (~1.6x) catch a wrong scale, a bad K padding or a
// mis-wired layer (errors of order 1), not small precision changes; the op tests do that.
constexpr double kPatchTol = 0.06, kBlock0Tol = 0.15, kBackboneTol = 0.4, kTokensTol = 0.2;

TEST(VisionFp8, CpuReferenceWithinTolerance) {
  const int depth = tiny_config().depth;
  const Fp8Calibration cal =
      VisionEngine::calibrate_fp8(kCkpt, calibration_frames(), Device::CPU, "fixtures");
  auto fp8 = backbone_taps(Device::CPU, DType::F8E4M3, &cal);
  auto f32 = backbone_taps(Device::CPU, DType::F32, nullptr);
  const std::string last = "block" + std::to_string(depth - 1);
  const double patch = omnirt::testing::rel_error(fp8["patch_embed"], f32["patch_embed"]);
  const double block0 = omnirt::testing::rel_error(fp8["block0"], f32["block0"]);
  const double out = omnirt::testing::rel_error(fp8[last], f32[last]);
  int layers = 0;
  const Fp8Run run = run_frame0(Device::CPU, DType::F8E4M3, &cal, &layers);
  EXPECT_EQ(layers, 1 + 3 * depth);  // all but the w12 GEMMs
  auto f = SafetensorsFile::open(fixture(0));
  const double tokens = omnirt::testing::rel_error(run.tokens, f.get("out.vision_tokens"));
  std::printf(
      "FP8 backbone (CPU reference) vs float32, frame 0: patch_embed %.3g, block0 %.3g, "
      "%s %.3g; vision tokens %.3g\n",
      patch, block0, last.c_str(), out, tokens);
  EXPECT_LE(patch, kPatchTol);
  EXPECT_GT(patch, 1e-3);  // it really ran in FP8
  EXPECT_LE(block0, kBlock0Tol);
  EXPECT_LE(out, kBackboneTol);
  EXPECT_LE(tokens, kTokensTol);
  // The engine's backbone output is the backbone's last tap.
  EXPECT_EQ(omnirt::testing::rel_error(run.backbone, fp8[last]), 0.0);
}

// The GPU FP8 backbone (F16 activations, calibration on the GPU in F16), frame 0.
// - Patch embedding (one FP8 GEMM) against the CPU FP8 reference with the same calibration: only
//   F16 rounding of the image/output and the rare E4M3 code that rounding flips differ. H200
//   (05:50 run): 3.9e-3; bound 1e-2.
// - Backbone output: the GPU and CPU FP8 runs are not compared with each other. Every F16-vs-F32
//   difference that moves a value across an E4M3 rounding boundary changes it by a whole E4M3 step
//   (6-12%), and this sharp random model amplifies such changes block after block: the two runs
//   end 0.135 apart (H200), about half of FP8's own error, so a direct bound says nothing about
//   bugs. Instead the GPU's error against float32 must be as small as the FP8 math's own (the CPU
//   reference against float32, 0.257): two independent errors of 0.257 and 0.135 add to ~0.29
//   (1.13x); bound 1.5x, which a GPU-side bug (wrong scale, layout, padding: errors of order 1)
//   exceeds.
// - Tokens against the float32 reference: the CPU reference's bound (H200: 0.125; CPU 0.121).
TEST(VisionFp8, CudaMatchesCpuReferenceAndTokensWithinTolerance) {
  OMNIRT_REQUIRE_CUDA();
  const int depth = tiny_config().depth;
  const Fp8Calibration cal =
      VisionEngine::calibrate_fp8(kCkpt, calibration_frames(), Device::CUDA, "fixtures");
  const Fp8Calibration cpu_cal =
      VisionEngine::calibrate_fp8(kCkpt, calibration_frames(), Device::CPU, "fixtures");
  for (const auto& [name, a] : cpu_cal.input_amax)  // F16 vs F32 activations: ~1e-3 apart
    EXPECT_NEAR(cal.amax(name), a, 1e-2 * a) << name << " (GPU F16 vs CPU F32 calibration)";
  auto gpu = backbone_taps(Device::CUDA, DType::F8E4M3, &cal);
  auto cpu = backbone_taps(Device::CPU, DType::F8E4M3, &cal);
  auto f32 = backbone_taps(Device::CPU, DType::F32, nullptr);
  const std::string last = "block" + std::to_string(depth - 1);
  const double patch = omnirt::testing::rel_error(gpu["patch_embed"], cpu["patch_embed"]);
  const double gpu_vs_cpu = omnirt::testing::rel_error(gpu[last], cpu[last]);
  const double gpu_err = omnirt::testing::rel_error(gpu[last], f32[last]);
  const double cpu_err = omnirt::testing::rel_error(cpu[last], f32[last]);
  int layers = 0;
  const Fp8Run run = run_frame0(Device::CUDA, DType::F8E4M3, &cal, &layers);
  EXPECT_EQ(layers, 1 + 3 * depth);
  auto f = SafetensorsFile::open(fixture(0));
  const double tokens = omnirt::testing::rel_error(run.tokens, f.get("out.vision_tokens"));
  std::printf(
      "FP8 backbone (CUDA), frame 0: patch_embed vs CPU FP8 reference %.3g; %s vs float32: GPU "
      "%.3g, CPU FP8 reference %.3g (GPU vs CPU %.3g); vision tokens vs float32 reference %.3g\n",
      patch, last.c_str(), gpu_err, cpu_err, gpu_vs_cpu, tokens);
  EXPECT_LE(patch, 1e-2);
  EXPECT_LE(gpu_err, 1.5 * cpu_err);
  EXPECT_LE(gpu_err, kBackboneTol);
  EXPECT_LE(tokens, kTokensTol);
}

}  // namespace
