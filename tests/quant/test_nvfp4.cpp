// NVFP4: E2M1 / E4M3 conversions against values computed by hand from the OCP Microscaling spec
// (E2M1: bias 1, magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6; E4M3: bias 7, subnormals m/8 * 2^-6, max
// 448, S.1111.111 = NaN), a hand-quantised block pair, the round-trip error bound on random data,
// the CPU linear reference against a float64 loop, and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "common/test_util.h"
#include "core/error.h"
#include "quant/nvfp4.h"

namespace omnirt {
namespace {

using namespace quant;

TEST(Nvfp4, E2m1DecodeMatchesSpecTable) {
  const float expect[16] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f,
                            -0.f, -0.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};
  for (int c = 0; c < 16; ++c) EXPECT_EQ(e2m1_to_float(static_cast<uint8_t>(c)), expect[c]) << c;
  EXPECT_TRUE(std::signbit(e2m1_to_float(8)));
}

TEST(Nvfp4, E2m1EncodeRoundsToNearestEvenAndSaturates) {
  struct Case { float x; uint8_t code; };
  const Case cases[] = {
      {0.f, 0},    {0.5f, 1},   {6.f, 7},    {-3.f, 0xD},  // exact values
      {0.25f, 0},  // tie 0 / 0.5 -> 0 (even mantissa)
      {0.26f, 1},  {0.75f, 2},  // tie 0.5 / 1 -> 1
      {1.25f, 2},  // tie 1 / 1.5 -> 1
      {1.75f, 4},  // tie 1.5 / 2 -> 2
      {2.5f, 4},   // tie 2 / 3 -> 2
      {3.5f, 6},   // tie 3 / 4 -> 4
      {5.f, 6},    // tie 4 / 6 -> 4
      {5.01f, 7},  {100.f, 7},  // saturates at 6
      {-0.8f, 0xA}, {-1000.f, 0xF}, {-0.1f, 0}};  // -0.1 -> +0 code (no negative zero code)
  for (const Case& c : cases) EXPECT_EQ(float_to_e2m1(c.x), c.code) << c.x;
  EXPECT_THROW(float_to_e2m1(NAN), Error);
}

TEST(Nvfp4, E4m3DecodeMatchesSpecValues) {
  EXPECT_EQ(e4m3_to_float(0x00), 0.f);
  EXPECT_EQ(e4m3_to_float(0x01), 0.001953125f);    // 2^-9, smallest subnormal
  EXPECT_EQ(e4m3_to_float(0x07), 0.013671875f);    // 7/8 * 2^-6, largest subnormal
  EXPECT_EQ(e4m3_to_float(0x08), 0.015625f);       // 2^-6, smallest normal
  EXPECT_EQ(e4m3_to_float(0x30), 0.5f);
  EXPECT_EQ(e4m3_to_float(0x38), 1.f);
  EXPECT_EQ(e4m3_to_float(0x3C), 1.5f);
  EXPECT_EQ(e4m3_to_float(0x1D), 0.1015625f);      // 2^-4 * 1.625
  EXPECT_EQ(e4m3_to_float(0x7E), 448.f);           // max finite
  EXPECT_EQ(e4m3_to_float(0xC0), -2.f);
  EXPECT_TRUE(std::isnan(e4m3_to_float(0x7F)));
  EXPECT_TRUE(std::isnan(e4m3_to_float(0xFF)));
}

TEST(Nvfp4, E4m3EncodeRoundsToNearestEvenAndSaturates) {
  struct Case { float x; uint8_t bits; };
  const Case cases[] = {
      {1.f, 0x38},       {0.1f, 0x1D},     {-1.5f, 0xBC},  {448.f, 0x7E},
      {500.f, 0x7E},     {1e9f, 0x7E},     // saturates (never NaN)
      {0.003f, 0x02},    // 1.536 * 2^-9 -> 2 * 2^-9
      {0.0009765625f, 0x00},   // 2^-10: tie 0 / 2^-9 -> 0
      {0.0029296875f, 0x02},   // 3 * 2^-10: tie 2^-9 / 2 * 2^-9 -> even
      {1.0625f, 0x38},   // tie 1 / 1.125 -> 1
      {1.1875f, 0x3A},   // tie 1.125 / 1.25 -> 1.25
      {240.f, 0x77},     // 2^7 * 1.875
      {0.f, 0x00}};
  for (const Case& c : cases) EXPECT_EQ(float_to_e4m3(c.x), c.bits) << c.x;
  EXPECT_THROW(float_to_e4m3(NAN), Error);
}

// Two blocks quantised by hand. Row max 2688 = 6 * 448 -> global scale 1.
TEST(Nvfp4, HandQuantisedBlocks) {
  std::vector<float> w(32, 0.f);
  // Block 0: max 2688 -> block scale 2688 / 6 = 448 (0x7E); values / 448.
  const float b0[16] = {2688, -2688, 1344, 224, 336, 112, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  // / 448:             6      -6     3    0.5  0.75  0.25
  // codes:             7      0xF    5    1    2     0
  // Block 1: max 6 -> scale 1 (0x38); values unchanged.
  const float b1[16] = {6, 1.5f, -2, 2.5f, 0.3f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, -0.75f};
  // codes:             7  3     0xC  4    1    ...                               0xA
  for (int i = 0; i < 16; ++i) {
    w[i] = b0[i];
    w[16 + i] = b1[i];
  }
  const Nvfp4Weight q = quantize_nvfp4(Tensor::from_vector(w, {1, 32}), "w");
  EXPECT_EQ(q.global_scale, 1.f);
  ASSERT_EQ(q.scales.shape(), (Shape{1, 2}));
  EXPECT_EQ(q.scales.data<uint8_t>()[0], 0x7E);
  EXPECT_EQ(q.scales.data<uint8_t>()[1], 0x38);
  const uint8_t* c = q.codes.data<uint8_t>();
  EXPECT_EQ(c[0], 0xF7);  // element 0 low nibble, element 1 high nibble
  EXPECT_EQ(c[1], 0x15);
  EXPECT_EQ(c[2], 0x02);
  EXPECT_EQ(c[8], 0x37);
  EXPECT_EQ(c[9], 0x4C);
  EXPECT_EQ(c[10], 0x01);
  EXPECT_EQ(c[15], 0xA0);
  const Tensor d = dequantize_nvfp4(q.codes, q.scales, q.global_scale, "w");
  const float expect_d[6] = {2688, -2688, 1344, 224, 448, 0};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(d.data<float>()[i], expect_d[i]) << i;
  EXPECT_EQ(d.data<float>()[19], 2.f);
  EXPECT_EQ(d.data<float>()[31], -1.f);
}

// |dequant - w| <= the block's effective scale (half the widest E2M1 step, 4 -> 6, plus the
// saturation after rounding the block scale to E4M3, at most 6 * 2^-4).
TEST(Nvfp4, RoundTripErrorBound) {
  std::mt19937_64 rng(testing::test_seed());
  for (auto [n, k] : {std::pair<int64_t, int64_t>{7, 48}, {33, 160}}) {
    Tensor w = testing::random_tensor({n, k}, rng, -0.3f, 0.3f);
    w.data<float>()[5] = 2.f;  // an outlier: most blocks use small E4M3 scales
    const Nvfp4Weight q = quantize_nvfp4(w, "w");
    EXPECT_FLOAT_EQ(q.global_scale, 2.f / (6 * 448));
    const Tensor d = dequantize_nvfp4(q.codes, q.scales, q.global_scale, "w");
    double num = 0, den = 0;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t col = 0; col < k; ++col) {
        const double eff =
            e4m3_to_float(q.scales.data<uint8_t>()[r * (k / 16) + col / 16]) * q.global_scale;
        const double e = std::fabs(d.data<float>()[r * k + col] - w.data<float>()[r * k + col]);
        ASSERT_LE(e, eff * (1 + 1e-6)) << r << ", " << col;
        num += e * e;
        den += static_cast<double>(w.data<float>()[r * k + col]) * w.data<float>()[r * k + col];
      }
    EXPECT_LT(std::sqrt(num / den), 0.12);  // ~4-bit float: typically 0.08-0.1
  }
}

TEST(Nvfp4, LinearMatchesFloat64) {
  std::mt19937_64 rng(testing::test_seed());
  const int64_t m = 3, n = 19, k = 80;
  const Nvfp4Weight q = quantize_nvfp4(testing::random_tensor({n, k}, rng), "w");
  const Tensor x = testing::random_tensor({m, k}, rng);
  Tensor out = Tensor::empty({m, n}, DType::F32);
  nvfp4_linear(x, q.codes, q.scales, q.global_scale, out);
  // Reference decodes the nibbles itself from the packed bytes.
  for (int64_t i = 0; i < m; ++i)
    for (int64_t r = 0; r < n; ++r) {
      double ref = 0;
      for (int64_t c = 0; c < k; ++c) {
        const uint8_t byte = q.codes.data<uint8_t>()[r * k / 2 + c / 2];
        const int code = c % 2 ? byte >> 4 : byte & 15;
        const double mags[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
        const double v = (code & 8 ? -1 : 1) * mags[code & 7] *
                         e4m3_to_float(q.scales.data<uint8_t>()[r * k / 16 + c / 16]) *
                         static_cast<double>(q.global_scale);
        ref += v * x.data<float>()[i * k + c];
      }
      EXPECT_NEAR(out.data<float>()[i * n + r], ref, 1e-5 * (1 + std::fabs(ref)));
    }
}

TEST(Nvfp4, BadInput) {
  std::mt19937_64 rng(1);
  EXPECT_THROW(quantize_nvfp4(testing::random_tensor({4, 24}, rng), "w"), Error);  // K % 16
  EXPECT_THROW(quantize_nvfp4(testing::random_tensor({4}, rng), "w"), Error);
  Tensor w = testing::random_tensor({2, 16}, rng);
  w.data<float>()[3] = NAN;
  EXPECT_THROW(quantize_nvfp4(w, "w"), Error);
  const Nvfp4Weight q = quantize_nvfp4(testing::random_tensor({4, 32}, rng), "w");
  EXPECT_THROW(dequantize_nvfp4(q.codes, Tensor::zeros({4, 3}, DType::U8), 1.f, "w"), Error);
  EXPECT_THROW(dequantize_nvfp4(q.codes, Tensor::zeros({4, 2}, DType::F32), 1.f, "w"), Error);
  try {
    dequantize_nvfp4(q.codes, Tensor::zeros({4, 3}, DType::U8), 1.f, "layer7.w");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer7.w.scales"), std::string::npos) << e.what();
  }
  const Nvfp4Weight z = quantize_nvfp4(Tensor::zeros({2, 16}, DType::F32), "zeros");
  const Tensor d = dequantize_nvfp4(z.codes, z.scales, z.global_scale, "zeros");
  for (float v : d.to_float_vector()) EXPECT_EQ(v, 0.f);
}

}  // namespace
}  // namespace omnirt
