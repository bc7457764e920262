// The CUDA pre-processing (preprocess_cuda.h) against the CPU chain (preprocess.h, itself checked
// against PIL/cv2 fixtures in test_preprocess.cpp) on fresh random images of awkward sizes:
// the uint8 bicubic resample must be bit-exact; the normalised float output equal up to float
// rounding (the kernel does the CPU's operations in its order, so in practice exact); F16/BF16
// outputs are the F32 result rounded. prepare_frame on CUDA gives the CPU's tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/test_util.h"
#include "io/scene.h"
#include "pipeline/frame.h"
#include "pipeline/preprocess.h"
#ifdef OMNIRT_WITH_CUDA
#include "pipeline/preprocess_cuda.h"
#endif

using namespace omnirt;
using namespace omnirt::pipeline;

#ifdef OMNIRT_WITH_CUDA

namespace {

// Smooth gradients plus noise, so resampling is neither trivial nor pure noise.
io::Image random_image(int w, int h, std::mt19937_64& rng) {
  io::Image img(w, h, 3);
  std::uniform_int_distribution<int> noise(-40, 40);
  const int phase = int(rng() % 97);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) {
        const int base = (x * 255 / std::max(1, w - 1) + y * 131 / std::max(1, h - 1) + c * 50 + phase) % 256;
        img.at(x, y, c) = uint8_t(std::clamp(base + noise(rng), 0, 255));
      }
  return img;
}

}  // namespace


TEST(PreprocessCuda, BicubicResizeBitExact) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  // Downscale (antialiased, wide support), upscale, one axis unchanged, odd sizes.
  const int cases[][4] = {{1600, 900, 704, 396}, {333, 177, 97, 61}, {50, 37, 131, 89},
                          {211, 95, 211, 40},    {64, 129, 17, 129}, {1, 7, 5, 3}};
  for (const auto& c : cases) {
    const io::Image src = random_image(c[0], c[1], rng);
    const io::Image want = pil_resize_bicubic(src, c[2], c[3]);
    const io::Image got = pil_resize_bicubic_cuda(src, c[2], c[3]);
    ASSERT_EQ(got.width, want.width);
    ASSERT_EQ(got.height, want.height);
    size_t bad = 0;
    for (size_t i = 0; i < want.pixels.size(); ++i) bad += got.pixels[i] != want.pixels[i];
    EXPECT_EQ(bad, 0u) << c[0] << "x" << c[1] << " -> " << c[2] << "x" << c[3] << ": " << bad
                       << " of " << want.pixels.size() << " bytes differ";
  }
}

TEST(PreprocessCuda, WholeChainMatchesCpu) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  // The OmniDrive network (640x640 from 1600x900), the tiny model (80x80), odd sizes (int()
  // rounding of the resized width can leave the crop a zero-filled column) and an upscale.
  const int cases[][4] = {{1600, 900, 640, 640}, {1600, 900, 80, 80}, {203, 301, 46, 98},
                          {120, 70, 160, 330}};
  for (const auto& c : cases) {
    const PreprocessConfig cfg = PreprocessConfig::for_network(c[3], c[2]);
    const io::Image src = random_image(c[0], c[1], rng);
    const size_t n = size_t(3) * cfg.out_h * cfg.out_w;
    std::vector<float> want(n);
    preprocess_image(cfg, src, want.data());
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
      Tensor dev = Tensor::empty({3, cfg.out_h, cfg.out_w}, dt, Device::CUDA);
      preprocess_image_cuda(cfg, src, dev.raw(), dt);
      const std::vector<float> got = dev.to(Device::CPU).to_float_vector();
      // F32: float rounding only. F16 / BF16: the F32 value rounded once (relative 2^-11 / 2^-8).
      const double rel = dt == DType::F32 ? 1e-6 : dt == DType::F16 ? 1.0 / 2048 : 1.0 / 256;
      double worst = 0;
      for (size_t i = 0; i < n; ++i) {
        ASSERT_TRUE(std::isfinite(got[i]));
        worst = std::max(worst, std::abs(double(got[i]) - want[i]) / (std::abs(want[i]) + 1e-3));
      }
      EXPECT_LE(worst, rel) << c[0] << "x" << c[1] << " -> " << c[2] << "x" << c[3] << " "
                            << dtype_name(dt);
    }
  }
}

TEST(PreprocessCuda, PrepareFrameOnCudaEqualsCpu) {
  OMNIRT_REQUIRE_CUDA();
  const std::vector<std::string> cams = {"CAM_FRONT", "CAM_FRONT_RIGHT"};
  const io::Scene scene = io::read_scene(std::string(OMNIRT_TEST_DATA_DIR) + "/tiny_scene", cams);
  PreprocessConfig cfg = PreprocessConfig::for_network(80, 80);
  const PreparedFrame cpu = prepare_frame(scene, scene.frames[1], cfg, false);
  cfg.cuda = true;
  cfg.cuda_dtype = DType::F32;
  const PreparedFrame gpu = prepare_frame(scene, scene.frames[1], cfg, false);
  ASSERT_TRUE(cpu.ok()) << cpu.error;
  ASSERT_TRUE(gpu.ok()) << gpu.error;
  ASSERT_TRUE(gpu.img.is_cuda());
  EXPECT_EQ(gpu.img.shape(), cpu.img.shape());
  EXPECT_LE(omnirt::testing::rel_error(gpu.img.to(Device::CPU), cpu.img), 1e-6);
  EXPECT_EQ(gpu.lidar2img, cpu.lidar2img);
}

#endif  // OMNIRT_WITH_CUDA

TEST(PreprocessCuda, CpuBuildRefusesCudaPreprocessing) {
#ifdef OMNIRT_WITH_CUDA
  GTEST_SKIP() << "skipped: this build has the CUDA backend";
#else
  const std::vector<std::string> cams = {"CAM_FRONT", "CAM_FRONT_RIGHT"};
  const io::Scene scene = io::read_scene(std::string(OMNIRT_TEST_DATA_DIR) + "/tiny_scene", cams);
  PreprocessConfig cfg = PreprocessConfig::for_network(80, 80);
  cfg.cuda = true;
  const PreparedFrame f = prepare_frame(scene, scene.frames[0], cfg, false);
  EXPECT_NE(f.error.find("no CUDA backend"), std::string::npos) << f.error;
#endif
}
