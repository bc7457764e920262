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
