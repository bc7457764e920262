// CUDA kernels of the PETR heads against their host versions.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/test_util.h"
#include "models/vision/host_math.h"
#ifdef OMNIRT_WITH_CUDA
#include "models/vision/heads_cuda.h"
#endif

namespace omnirt {
namespace {

using vision::host::Mat4;
using testing::test_seed;

// Plausible cameras (a ring looking outwards, random focal lengths and small rotations), so
// that the frustum points cover the inside, the edges and the outside of the position range.
std::vector<Mat4> random_img2lidars(const vision::VisionConfig& c, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> f(300.f, 900.f), jitter(-0.1f, 0.1f);
  std::vector<Mat4> out;
  for (int cam = 0; cam < c.num_cams; ++cam) {
    const float yaw = 2.f * 3.14159265f * cam / c.num_cams + jitter(rng);
    const float cz = std::cos(yaw), sz = std::sin(yaw);
    Mat4 ego2cam{sz, -cz, jitter(rng), 0.3f * jitter(rng), jitter(rng), jitter(rng), -1, 1.5f,
                 cz, sz, jitter(rng), 0.5f * jitter(rng), 0, 0, 0, 1};
    Mat4 k{f(rng), 0, c.img_w / 2.f, 0, 0, f(rng), c.img_h / 2.f, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    out.push_back(vision::host::inverse4(vision::host::matmul4(k, ego2cam), "test camera"));
  }
  return out;
}

TEST(HeadsCuda, PositionEmbeddingInputMatchesHost) {
  OMNIRT_REQUIRE_CUDA();
#ifdef OMNIRT_WITH_CUDA
  std::mt19937_64 rng(test_seed());
  vision::VisionConfig c;  // full-size defaults: 6 cameras, 40x40 patches, 64 depth bins
  std::vector<float> coords_d(c.depth_num);
  for (int k = 0; k < c.depth_num; ++k) coords_d[k] = 1.f + 60.f * k / c.depth_num + 0.01f * k;
  const auto cams = random_img2lidars(c, rng);
  Tensor want = vision::host::position_embedding_input(c, coords_d, cams);
  Tensor got = Tensor::empty(want.shape(), DType::F32, Device::CUDA);
  vision::cuda::position_embedding_input(c, coords_d, cams, got);
  const auto g = got.to_float_vector(), w = want.to_float_vector();
  // Some values must be clamped (outside the range) and some inside, or the test is weak.
  int clamped = 0, inside = 0;
  double max_abs = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    ASSERT_TRUE(std::isfinite(g[i])) << i;
    max_abs = std::max(max_abs, std::fabs(double(g[i]) - w[i]));
    (std::fabs(w[i]) > 11.5f ? clamped : inside)++;
  }
  EXPECT_GT(clamped, 0);
  EXPECT_GT(inside, int(w.size() / 4));
  EXPECT_LT(max_abs, 1e-5);  // same operation order; only logf's last bit may differ
  EXPECT_LT(testing::rel_error(got, want), 1e-6);
#endif
}

}  // namespace
}  // namespace omnirt
