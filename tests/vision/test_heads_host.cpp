// Host functions of the PETR heads' per-frame post-processing against obviously-right versions:
// the regression -> ego transform against a float64 loop, the top-k against a full stable sort.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "common/test_util.h"
#include "models/vision/host_math.h"

namespace omnirt {
namespace {

using testing::test_seed;

TEST(HeadsHost, RegressionToEgoMatchesFloat64Loop) {
  std::mt19937_64 rng(test_seed());
  std::uniform_real_distribution<float> logit(-6.f, 6.f), unit(0.02f, 0.98f);
  const std::array<float, 6> pc{-51.2f, -40.f, -5.f, 51.2f, 60.f, 3.f};
  // Box-like (10 columns, the first 3 transformed) and lane-like (all 33 transformed), with an
  // odd number of queries and layers.
  for (const auto [cols, ref_cols] : {std::pair{10, 3}, std::pair{33, 33}}) {
    const int64_t queries = 37, layers = 3, rows = layers * queries;
    std::vector<float> reg(rows * cols), ref(queries * ref_cols), out(rows * cols, NAN);
    for (float& v : reg) v = logit(rng);
    for (float& v : ref) v = vision::host::inverse_sigmoid(unit(rng));
    vision::host::regression_to_ego(reg.data(), rows, cols, ref.data(), queries, ref_cols, pc,
                                    out.data());
    double max_err = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int k = 0; k < cols; ++k) {
        double want = reg[r * cols + k];
        if (k < ref_cols) {
          const double x = want + double(ref[(r % queries) * ref_cols + k]);
          want = 1.0 / (1.0 + std::exp(-x)) * (double(pc[k % 3 + 3]) - pc[k % 3]) + pc[k % 3];
        }
        max_err = std::max(max_err, std::fabs(out[r * cols + k] - want));
        if (k >= ref_cols) EXPECT_EQ(out[r * cols + k], reg[r * cols + k]);
      }
    EXPECT_LT(max_err, 1e-4) << cols << " columns";  // float32 on values up to ~60
  }
}

// The memory alignment's relative pose and points (ego_pose_inv of this frame @ the global pose /
// point of a memory entry) in a global frame ~1e3 m from the origin, against a float64 loop: the
// accurate versions round once (<= 1 ulp of the result), where float32 accumulation loses far more
// (the frame >= 1 precision loss of issue #5).
TEST(HeadsHost, AccurateAlignmentMatchesFloat64Loop) {
  std::mt19937_64 rng(test_seed());
  std::uniform_real_distribution<double> yaw_d(-3.1, 3.1), off(-3.0, 3.0), big(500.0, 2000.0);
  double worst_accurate = 0, worst_f32 = 0;
  for (int trial = 0; trial < 50; ++trial) {
    // A rigid pose far from the origin and its inverse (float64, then rounded like the inputs).
    const double yaw = yaw_d(rng), c = std::cos(yaw), s = std::sin(yaw);
    const double tx = big(rng), ty = big(rng), tz = off(rng);
    vision::host::Mat4 inv{}, pose{};
    const double r[9] = {c, -s, 0, s, c, 0, 0, 0, 1};
    const double t[3] = {tx, ty, tz};
    for (int i = 0; i < 3; ++i) {
      double ti = 0;
      for (int k = 0; k < 3; ++k) {
        inv[i * 4 + k] = float(r[k * 3 + i]);  // R^T
        ti -= r[k * 3 + i] * t[k];
      }
      inv[i * 4 + 3] = float(ti);
    }
    inv[15] = 1.f;
    // A memory pose a few metres away, a slightly different yaw.
    const double yaw2 = yaw + 0.1 * off(rng), c2 = std::cos(yaw2), s2 = std::sin(yaw2);
    const double r2[9] = {c2, -s2, 0, s2, c2, 0, 0, 0, 1};
    for (int i = 0; i < 3; ++i) {
      for (int k = 0; k < 3; ++k) pose[i * 4 + k] = float(r2[i * 3 + k]);
      pose[i * 4 + 3] = float(t[i] + off(rng));
    }
    pose[15] = 1.f;
    const vision::host::Mat4 acc = vision::host::matmul4_accurate(inv, pose);
    const vision::host::Mat4 f32 = vision::host::matmul4(inv, pose);
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) {
        double want = 0;
        for (int k = 0; k < 4; ++k) want += double(inv[i * 4 + k]) * double(pose[k * 4 + j]);
        const double ulp = std::max(std::fabs(want), 1e-3) * 1.2e-7;  // ~1 float32 ulp
        worst_accurate = std::max(worst_accurate, std::fabs(acc[i * 4 + j] - want) / ulp);
        worst_f32 = std::max(worst_f32, std::fabs(f32[i * 4 + j] - want) / ulp);
      }
    const float p[3] = {pose[3], pose[7], pose[11]};  // the memory entry's global position
    float q[3];
    vision::host::transform_point_accurate(inv, p, q);
    for (int i = 0; i < 3; ++i) {
      const double want = double(inv[i * 4]) * p[0] + double(inv[i * 4 + 1]) * p[1] +
                          double(inv[i * 4 + 2]) * p[2] + double(inv[i * 4 + 3]);
      const double ulp = std::max(std::fabs(want), 1e-3) * 1.2e-7;
      worst_accurate = std::max(worst_accurate, std::fabs(q[i] - want) / ulp);
    }
  }
  std::printf("  alignment error in float32 ulps of the result: accurate %.2g, float32 %.3g\n",
              worst_accurate, worst_f32);
  EXPECT_LE(worst_accurate, 1.0);
  EXPECT_GT(worst_f32, 10.0);  // the case is one where float32 accumulation does lose precision
}

TEST(HeadsHost, TopkIsAStableDescendingSortPrefix) {
  std::mt19937_64 rng(test_seed());
  // Few distinct values, so that most scores tie: ties must come out in increasing index order.
  std::uniform_int_distribution<int> level(0, 40);
  for (int n : {1, 7, 900, 9001}) {
    std::vector<float> score(n);
    for (float& v : score) v = 1.f / (1.f + std::exp(-0.3f * (level(rng) - 20)));
    std::vector<int> want(n);
    std::iota(want.begin(), want.end(), 0);
    std::stable_sort(want.begin(), want.end(), [&](int a, int b) { return score[a] > score[b]; });
    for (int k : {0, 1, std::min(n, 5), n / 3, n}) {
      const std::vector<int> got = vision::host::topk_indices(score, k);
      ASSERT_EQ(got.size(), size_t(k));
      EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin())) << "n " << n << " k " << k;
    }
    EXPECT_EQ(vision::host::topk_indices(score, n + 5).size(), size_t(n));  // k clamped
  }
}

}  // namespace
}  // namespace omnirt
