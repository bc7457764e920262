// INT4 weight-only quantisation: error bound, packed layout, CPU linear reference, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "common/test_util.h"
#include "core/error.h"
#include "quant/int4.h"

namespace omnirt {
namespace {

using quant::dequantize_int4;
using quant::int4_linear;
using quant::quantize_int4;

// Every element of dequant(quant(W)) is within scale/2 of W (plus float rounding of q * s).
void expect_round_trip_bound(const Tensor& w, int64_t group_size) {
  const auto qw = quantize_int4(w, group_size, "w");
  const int64_t n = w.dim(0), k = w.dim(1), g = group_size == 0 ? k : group_size;
  ASSERT_EQ(qw.qweight.shape(), (Shape{n, k / 2}));
  ASSERT_EQ(qw.scales.shape(), (Shape{n, k / g}));
  const Tensor d = dequantize_int4(qw.qweight, qw.scales, "w");
  const float* wp = w.data<float>();
  const float* dp = d.data<float>();
  const float* sp = qw.scales.data<float>();
  int64_t exact_nonzero = 0;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      const double s = sp[r * (k / g) + c / g];
      // The scale is the group's max|w| / 7 (computed independently here).
      double amax = 0;
      for (int64_t i = (c / g) * g; i < (c / g + 1) * g; ++i)
        amax = std::max(amax, std::fabs(static_cast<double>(wp[r * k + i])));
      ASSERT_NEAR(s, amax / 7.0, 1e-6 * amax) << "scale of row " << r << " group " << c / g;
      const double err = std::fabs(static_cast<double>(dp[r * k + c]) - wp[r * k + c]);
      ASSERT_LE(err, s / 2 * (1 + 1e-5) + 1e-12) << "element [" << r << ", " << c << "]";
      if (err < 1e-12 && wp[r * k + c] != 0.f) ++exact_nonzero;
    }
  }
  // The random data is not already on the grid: most elements carry some error.
  if (n * k >= 16) EXPECT_LT(exact_nonzero, n * k / 2);
}

TEST(Int4, RoundTripWithinHalfScalePerChannelAwkwardShapes) {
  std::mt19937_64 rng(testing::test_seed());
  for (auto [n, k] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 2}, {7, 38}, {33, 130}, {5, 258}}) {
    SCOPED_TRACE(::testing::Message() << "N=" << n << " K=" << k);
    expect_round_trip_bound(testing::random_tensor({n, k}, rng, -2.f, 3.f), 0);
  }
}

TEST(Int4, RoundTripWithinHalfScaleGroupwise) {
  std::mt19937_64 rng(testing::test_seed());
  expect_round_trip_bound(testing::random_tensor({13, 384}, rng, -1.f, 1.f), 128);
  expect_round_trip_bound(testing::random_tensor({3, 96}, rng, -5.f, 0.5f), 32);
}

TEST(Int4, PackedLayoutMatchesHandComputedExample) {
  // One row, K = 4, per channel: max|w| = 1.4 -> scale 0.2.
  // codes: 0.2/0.2 = 1, -1.4/0.2 = -7, 0.61/0.2 = 3.05 -> 3, -0.3/0.2 = -1.5 -> -2 (half to even)
  // bytes: low nibble = column 0, high nibble = column 1:
  //   byte 0 = (-7 & 0xF) << 4 | 1 = 0x9 << 4 | 0x1 = 0x91
  //   byte 1 = (-2 & 0xF) << 4 | 3 = 0xE << 4 | 0x3 = 0xE3
  Tensor w = Tensor::from_vector({0.2f, -1.4f, 0.61f, -0.3f}, {1, 4});
  const auto qw = quantize_int4(w, 0, "w");
  ASSERT_EQ(qw.qweight.shape(), (Shape{1, 2}));
  EXPECT_EQ(qw.qweight.data<uint8_t>()[0], 0x91);
  EXPECT_EQ(qw.qweight.data<uint8_t>()[1], 0xE3);
  EXPECT_NEAR(qw.scales.data<float>()[0], 0.2f, 1e-7);
  const Tensor d = dequantize_int4(qw.qweight, qw.scales, "w");
  const std::vector<float> expect = {0.2f, -1.4f, 0.6f, -0.4f};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(d.data<float>()[i], expect[i], 1e-6) << i;
}

TEST(Int4, ZeroGroupGetsZeroScaleAndExactZeros) {
  std::mt19937_64 rng(testing::test_seed());
  Tensor w = testing::random_tensor({2, 64}, rng);
  for (int c = 0; c < 32; ++c) w.data<float>()[64 + c] = 0.f;  // row 1, group 0
  const auto qw = quantize_int4(w, 32, "w");
  EXPECT_EQ(qw.scales.data<float>()[2], 0.f);
  const Tensor d = dequantize_int4(qw.qweight, qw.scales, "w");
  for (int c = 0; c < 32; ++c) EXPECT_EQ(d.data<float>()[64 + c], 0.f);
}

TEST(Int4, LinearMatchesFloat64OnDequantisedWeights) {
  std::mt19937_64 rng(testing::test_seed());
  for (int64_t g : {int64_t{0}, int64_t{32}}) {
    const int64_t m = 5, n = 19, k = 96;
    Tensor w = testing::random_tensor({n, k}, rng);
    Tensor x = testing::random_tensor({m, k}, rng, -2.f, 2.f);
    Tensor bias = testing::random_tensor({n}, rng);
    const auto qw = quantize_int4(w, g, "w");
    const Tensor d = dequantize_int4(qw.qweight, qw.scales, "w");
    Tensor out = Tensor::empty({m, n}, DType::F32);
    int4_linear(x, qw.qweight, qw.scales, bias, out);
    Tensor out_nobias = Tensor::empty({m, n}, DType::F32);
    int4_linear(x, qw.qweight, qw.scales, Tensor(), out_nobias);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t r = 0; r < n; ++r) {
        double ref = 0;
        for (int64_t c = 0; c < k; ++c)
          ref += static_cast<double>(x.data<float>()[i * k + c]) * d.data<float>()[r * k + c];
        EXPECT_NEAR(out_nobias.data<float>()[i * n + r], ref, 1e-4 * (1 + std::fabs(ref)));
        EXPECT_NEAR(out.data<float>()[i * n + r], ref + bias.data<float>()[r],
                    1e-4 * (1 + std::fabs(ref)));
      }
  }
}

TEST(Int4, GroupwiseBeatsPerChannelWithOutliers) {
  std::mt19937_64 rng(testing::test_seed());
  const int64_t n = 16, k = 512;
  Tensor w = testing::random_tensor({n, k}, rng, -0.1f, 0.1f);
  // One large outlier per row, in a random column: it sets the per-channel scale of the row.
  std::uniform_int_distribution<int64_t> col(0, k - 1);
  for (int64_t r = 0; r < n; ++r) w.data<float>()[r * k + col(rng)] = 8.f;
  auto mse = [&](int64_t g) {
    const auto qw = quantize_int4(w, g, "w");
    const Tensor d = dequantize_int4(qw.qweight, qw.scales, "w");
    double s = 0;
    for (int64_t i = 0; i < n * k; ++i) {
      const double e = d.data<float>()[i] - w.data<float>()[i];
      s += e * e;
    }
    return s / (n * k);
  };
  const double per_channel = mse(0), group = mse(128);
  EXPECT_GT(per_channel, 0.0);
  EXPECT_LT(group, per_channel * 0.5) << "group " << group << " per-channel " << per_channel;
}

void expect_error_containing(const std::function<void()>& f, const std::string& text) {
  try {
    f();
    ADD_FAILURE() << "expected omnirt::Error containing '" << text << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
  }
}

TEST(Int4, BadShapesAndGroupSizesGiveClearErrors) {
  std::mt19937_64 rng(testing::test_seed());
  expect_error_containing(
      [&] {
        quantize_int4(testing::random_tensor({4, 7}, rng), 0, "odd");
      },
      "odd: INT4 packing needs an even K");
  expect_error_containing(
      [&] {
        quantize_int4(testing::random_tensor({4, 192}, rng), 128, "layer.w");
      },
      "layer.w: K = 192");
  expect_error_containing(
      [&] {
        quantize_int4(testing::random_tensor({4, 64}, rng), 5, "w");
      },
      "group size must be even");
  expect_error_containing(
      [&] {
        quantize_int4(testing::random_tensor({4, 64}, rng), -1, "w");
      },
      "group size must be > 0");
  expect_error_containing([&] { quantize_int4(testing::random_tensor({64}, rng), 0, "vec"); },
                          "vec: INT4 quantisation needs a 2-D");
  Tensor nan_w = testing::random_tensor({2, 8}, rng);
  nan_w.data<float>()[3] = NAN;
  expect_error_containing([&] { quantize_int4(nan_w, 0, "w"); }, "non-finite value at [0, 3]");
  const auto qw = quantize_int4(testing::random_tensor({4, 64}, rng), 32, "w");
  expect_error_containing(
      [&] {
        dequantize_int4(qw.qweight, Tensor::zeros({4, 3}, DType::F32), "w");
      },
      "w: scales shape [4, 3] does not fit qweight shape [4, 32]");
  expect_error_containing([&] { dequantize_int4(qw.scales, qw.scales, "w"); },
                          "w.qweight: expected a U8");
  Tensor out = Tensor::empty({2, 4}, DType::F32);
  expect_error_containing(
      [&] {
        int4_linear(testing::random_tensor({2, 63}, rng), qw.qweight, qw.scales, Tensor(), out);
      },
      "x must end in K = 64");
  Tensor bad_out = Tensor::empty({2, 5}, DType::F32);
  expect_error_containing(
      [&] {
        int4_linear(testing::random_tensor({2, 64}, rng), qw.qweight, qw.scales, Tensor(), bad_out);
      },
      "out must be a contiguous CPU F32 tensor of shape [2, 4]");
}

// Activations with a few salient input channels (20x larger), as AWQ assumes.
Tensor salient_activations(int64_t m, int64_t k, std::mt19937_64& rng) {
  Tensor x = testing::random_tensor({m, k}, rng, -1.f, 1.f);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t c = 3; c < k; c += 17) x.data<float>()[i * k + c] *= 20.f;
  return x;
}

// sum over rows of (x W^T - int4_linear(x * input_scale))^2, float64 reference for x W^T.
double awq_output_error(const Tensor& x, const Tensor& w, const quant::AwqInt4Weight& a) {
  const int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0);
  Tensor xs = Tensor::empty({m, k}, DType::F32);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t c = 0; c < k; ++c)
      xs.data<float>()[i * k + c] = x.data<float>()[i * k + c] * a.input_scale.data<float>()[c];
  Tensor out = Tensor::empty({m, n}, DType::F32);
  int4_linear(xs, a.weight.qweight, a.weight.scales, Tensor(), out);
  double total = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t r = 0; r < n; ++r) {
      double ref = 0;
      for (int64_t c = 0; c < k; ++c)
        ref += static_cast<double>(x.data<float>()[i * k + c]) * w.data<float>()[r * k + c];
      const double d = ref - out.data<float>()[i * n + r];
      total += d * d;
    }
  return total;
}

TEST(Int4Awq, ScalingLowersOutputErrorOnCalibrationAndHeldOutData) {
  std::mt19937_64 rng(testing::test_seed());
  const int64_t n = 24, k = 256;
  const Tensor w = testing::random_tensor({n, k}, rng);
  const Tensor calib = salient_activations(64, k, rng), held_out = salient_activations(64, k, rng);
  for (int64_t g : {int64_t{0}, int64_t{128}}) {
    SCOPED_TRACE(::testing::Message() << "group " << g);
    const auto awq = quant::quantize_int4_awq(w, calib, g, 10, "w");
    ASSERT_EQ(awq.input_scale.shape(), (Shape{k}));
    EXPECT_GT(awq.alpha, 0.f);
    EXPECT_LE(awq.alpha, 1.f);
    // Per channel, scaling up salient columns also raises the row's scale for every other
    // column, so the gain is small; group-wise it only touches the salient columns' groups.
    EXPECT_LT(awq.calib_error, (g == 0 ? 0.95 : 0.8) * awq.plain_error)
        << "alpha " << awq.alpha << " plain " << awq.plain_error;
    // The reported error is the error of the stored weight applied through int4_linear.
    const double calib_err = awq_output_error(calib, w, awq);
    EXPECT_NEAR(calib_err, awq.calib_error, 1e-3 * awq.calib_error);
    // Plain quantisation, measured the same way (input_scale = 1).
    quant::AwqInt4Weight plain;
    plain.weight = quantize_int4(w, g, "w");
    plain.input_scale = Tensor::from_vector(std::vector<float>(k, 1.f), {k});
    EXPECT_NEAR(awq_output_error(calib, w, plain), awq.plain_error, 1e-3 * awq.plain_error);
    EXPECT_LT(awq_output_error(held_out, w, awq), awq_output_error(held_out, w, plain));
  }
}

TEST(Int4Awq, UniformActivationsNeverDoWorseThanPlain) {
  std::mt19937_64 rng(testing::test_seed());
  const Tensor w = testing::random_tensor({9, 64}, rng);
  const Tensor x = testing::random_tensor({16, 64}, rng);
  const auto awq = quant::quantize_int4_awq(w, x, 32, 8, "w");
  EXPECT_LE(awq.calib_error, awq.plain_error);
  EXPECT_GT(awq.plain_error, 0.0);
}

TEST(Int4Awq, BadCalibrationGivesClearErrors) {
  std::mt19937_64 rng(testing::test_seed());
  const Tensor w = testing::random_tensor({4, 64}, rng);
  expect_error_containing(
      [&] {
        quant::quantize_int4_awq(w, testing::random_tensor({8, 32}, rng), 0, 10, "lay.w");
      },
      "lay.w: AWQ calibration activations must be [M, K = 64]");
  Tensor x = testing::random_tensor({8, 64}, rng);
  x.data<float>()[64 + 5] = INFINITY;
  expect_error_containing([&] { quant::quantize_int4_awq(w, x, 0, 10, "w"); },
                          "non-finite calibration activation at [1, 5]");
  expect_error_containing(
      [&] {
        quant::quantize_int4_awq(w, testing::random_tensor({8, 64}, rng), 0, 0, "w");
      },
      "alpha grid");
}

}  // namespace
}  // namespace omnirt
