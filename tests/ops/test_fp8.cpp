// FP8 E4M3: the host codec (exhaustive over the 256 codes, rounding rules, against a nearest-code
// search), quantize_fp8 / amax / linear_fp8 on the CPU against float64 loops, and the CUDA
// kernels against the CPU (quantisation bit for bit, the GEMM within the output dtype's rounding).
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "core/dtype.h"
#include "ops/fp8.h"
#include "ops/gemm.h"
#include "ops_test_util.h"

namespace omnirt {
namespace {

using ops::fp8_e4m3_decode;
using ops::fp8_e4m3_encode;
using testing::expect_close;
using testing::expect_error;
using testing::fake_cuda;
using testing::random_tensor;
using testing::rel_error;
using testing::test_seed;

// The E4M3 value of a code from its definition, in double (independent of the code under test).
double e4m3_value(int code) {
  const int sign = code >> 7, e = (code >> 3) & 15, m = code & 7;
  if (e == 15 && m == 7) return std::nan("");
  const double mag = e == 0 ? m * std::pow(2.0, -9) : (1.0 + m / 8.0) * std::pow(2.0, e - 7);
  return sign ? -mag : mag;
}

// Nearest finite code by exhaustive search in double, ties to the even code (= even mantissa),
// beyond the largest code saturated (the nearest finite code is then 448 anyway), NaN -> 0x7F.
uint8_t nearest_code(float x) {
  if (std::isnan(x)) return 0x7F;
  const int sign = std::signbit(x) ? 0x80 : 0;
  const double a = std::fabs(static_cast<double>(x));
  if (std::isinf(x)) return static_cast<uint8_t>(sign | 0x7E);
  int best = 0;
  double best_err = INFINITY;
  for (int c = 0; c <= 0x7E; ++c) {
    const double err = std::fabs(e4m3_value(c) - a);
    if (err < best_err || (err == best_err && (c & 1) == 0)) {
      best_err = err;
      best = c;
    }
  }
  return static_cast<uint8_t>(sign | best);
}

TEST(Fp8Codec, DecodeEveryCode) {
  int nans = 0;
  for (int c = 0; c < 256; ++c) {
    const double want = e4m3_value(c);
    const float got = fp8_e4m3_decode(static_cast<uint8_t>(c));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << "code " << c;
      ++nans;
      continue;
    }
    EXPECT_EQ(static_cast<double>(got), want) << "code " << c;
    EXPECT_EQ(std::signbit(got), (c & 0x80) != 0) << "code " << c;  // 0x80 is -0
    // core/dtype.h has an independent table-free decoder; they must agree.
    EXPECT_EQ(got, fp8e4m3_to_float(static_cast<uint8_t>(c))) << "code " << c;
  }
  EXPECT_EQ(nans, 2);  // 0x7F and 0xFF only (e4m3fn: no infinities)
  EXPECT_EQ(fp8_e4m3_decode(0x7E), 448.f);
  EXPECT_EQ(fp8_e4m3_decode(0x08), 0.015625f);         // smallest normal 2^-6
  EXPECT_EQ(fp8_e4m3_decode(0x01), 0.001953125f);      // smallest subnormal 2^-9
  EXPECT_EQ(fp8_e4m3_decode(0x07), 7 * 0.001953125f);  // largest subnormal
}

TEST(Fp8Codec, EncodeRoundTripsEveryCode) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7F) == 0x7F) continue;
    EXPECT_EQ(fp8_e4m3_encode(fp8_e4m3_decode(static_cast<uint8_t>(c))), c) << "code " << c;
  }
}

// Between every pair of neighbouring codes: the midpoint goes to the even code, one float ulp
// either side of it to the nearer code. Both signs; subnormals, the subnormal/normal boundary and
// every exponent step included.
TEST(Fp8Codec, EncodeRoundsToNearestEvenBetweenEveryPair) {
  for (int c = 0; c < 0x7E; ++c) {
    for (int sign : {0, 0x80}) {
      const float lo = fp8_e4m3_decode(static_cast<uint8_t>(c | sign));
      const float hi = fp8_e4m3_decode(static_cast<uint8_t>((c + 1) | sign));
      const float mid = (lo + hi) / 2;  // exact: both have <= 4 significant bits
      ASSERT_EQ(static_cast<double>(mid), (static_cast<double>(lo) + hi) / 2);
      const int even = (c % 2 == 0) ? c : c + 1;
      EXPECT_EQ(fp8_e4m3_encode(mid), even | sign) << "midpoint of codes " << c << ", " << c + 1;
      const float toward_lo = std::nextafter(mid, lo), toward_hi = std::nextafter(mid, hi);
      EXPECT_EQ(fp8_e4m3_encode(toward_lo), c | sign) << "just inside code " << c;
      EXPECT_EQ(fp8_e4m3_encode(toward_hi), (c + 1) | sign) << "just inside code " << c + 1;
    }
  }
}

TEST(Fp8Codec, EncodeSpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(fp8_e4m3_encode(448.f), 0x7E);
  EXPECT_EQ(fp8_e4m3_encode(std::nextafter(448.f, inf)), 0x7E);  // saturates, no 480
  EXPECT_EQ(fp8_e4m3_encode(464.f), 0x7E);
  EXPECT_EQ(fp8_e4m3_encode(1e30f), 0x7E);
  EXPECT_EQ(fp8_e4m3_encode(-1e30f), 0xFE);
  EXPECT_EQ(fp8_e4m3_encode(inf), 0x7E);
  EXPECT_EQ(fp8_e4m3_encode(-inf), 0xFE);
  EXPECT_EQ(fp8_e4m3_encode(std::nanf("")), 0x7F);
  EXPECT_EQ(fp8_e4m3_encode(-std::nanf("")), 0x7F);
  EXPECT_EQ(fp8_e4m3_encode(0.f), 0x00);
  EXPECT_EQ(fp8_e4m3_encode(-0.f), 0x80);
  EXPECT_EQ(fp8_e4m3_encode(std::numeric_limits<float>::denorm_min()), 0x00);
  EXPECT_EQ(fp8_e4m3_encode(-std::numeric_limits<float>::denorm_min()), 0x80);
  // Half the smallest subnormal (2^-10) ties between 0 and 2^-9: to 0 (even).
  EXPECT_EQ(fp8_e4m3_encode(std::ldexp(1.f, -10)), 0x00);
  EXPECT_EQ(fp8_e4m3_encode(std::nextafter(std::ldexp(1.f, -10), 1.f)), 0x01);
  // Largest subnormal 7 * 2^-9 and 2^-6 tie at 7.5 * 2^-9: to 2^-6 (code 8, even).
  EXPECT_EQ(fp8_e4m3_encode(7.5f * std::ldexp(1.f, -9)), 0x08);
  EXPECT_EQ(fp8_e4m3_encode(0.3f), 0x2A);  // 0.3 -> 0.3125 = 1.25 * 2^-2
}

// All bfloat16 bit patterns (every float exponent, top 7 mantissa bits), all float16 values, and
// a million random float32 bit patterns, against the exhaustive nearest-code search.
TEST(Fp8Codec, EncodeMatchesNearestCodeSearch) {
  std::vector<float> values;
  for (uint32_t h = 0; h < 65536; ++h) {
    values.push_back(std::bit_cast<float>(h << 16));
    values.push_back(half_to_float(static_cast<uint16_t>(h)));
  }
  std::mt19937_64 rng(test_seed());
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 1000000; ++i) values.push_back(std::bit_cast<float>(bits(rng)));
  int64_t mismatches = 0;
  for (float v : values) {
    const uint8_t got = fp8_e4m3_encode(v), want = nearest_code(v);
    if (got != want && ++mismatches <= 5)
      ADD_FAILURE() << "encode(" << v << " = 0x" << std::hex << std::bit_cast<uint32_t>(v)
                    << ") = 0x" << int(got) << ", nearest code 0x" << int(want);
  }
  EXPECT_EQ(mismatches, 0) << "of " << values.size();
}

TEST(Fp8Scale, ForAmax) {
  EXPECT_EQ(ops::fp8_scale_for_amax(448.f), 1.f);
  EXPECT_EQ(ops::fp8_scale_for_amax(0.f), 1.f);
  EXPECT_FLOAT_EQ(ops::fp8_scale_for_amax(3.5f), 3.5f / 448.f);
  expect_error([] { ops::fp8_scale_for_amax(std::nanf("")); }, {"amax must be finite"});
  expect_error([] { ops::fp8_scale_for_amax(-1.f); }, {"amax must be finite"});
}

Tensor scalar(float v, Device device = Device::CPU) {
  Tensor t = Tensor::from_vector({v}, {1});
  return device == Device::CPU ? t : t.to(device);
}

// An E4M3 CUDA tensor whose every byte is 0x5A (a value the kernel under test must overwrite).
Tensor garbage_fp8_cuda(const Shape& shape) {
  Tensor host = Tensor::empty(shape, DType::F8E4M3);
  std::memset(host.raw(), 0x5A, host.nbytes());
  return host.to(Device::CUDA);
}

TEST(Fp8Cpu, QuantizeMatchesCodecAndPads) {
  std::mt19937_64 rng(test_seed());
  for (int64_t k : {1, 7, 48, 170}) {
    const int64_t rows = 5, k_out = (k + 15) / 16 * 16;
    Tensor x = random_tensor({rows, k}, rng, -3.f, 3.f);
    const float s = 0.0137f;
    Tensor q = Tensor::empty({rows, k_out}, DType::F8E4M3);
    std::memset(q.raw(), 0x5A, q.nbytes());  // the padding must be overwritten
    ops::quantize_fp8(x, scalar(s), q);
    const float* px = x.data<float>();
    const uint8_t* pq = q.data<uint8_t>();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < k_out; ++c) {
        const uint8_t want = c < k ? nearest_code(px[r * k + c] / s) : 0;
        ASSERT_EQ(pq[r * k_out + c], want) << "k " << k << " row " << r << " col " << c;
      }
  }
}

TEST(Fp8Cpu, QuantizeBadArguments) {
  Tensor x = Tensor::from_vector({1, 2, 3, 4}, {2, 2});
  Tensor q = Tensor::empty({2, 2}, DType::F8E4M3);
  expect_error([&] { ops::quantize_fp8(x, scalar(0.f), q); }, {"scale", "finite and > 0", "0"});
  expect_error([&] { ops::quantize_fp8(x, scalar(-2.f), q); }, {"scale", "finite and > 0"});
  expect_error(
      [&] {
        ops::quantize_fp8(x, Tensor::from_vector({1, 1}, {2}), q);
      },
      {"ops::quantize_fp8", "scale", "per-tensor", "[2]"});
  Tensor wrong_dtype = Tensor::empty({2, 2}, DType::U8);
  expect_error([&] { ops::quantize_fp8(x, scalar(1.f), wrong_dtype); },
               {"out", "expected dtype F8_E4M3", "U8"});
  Tensor narrow = Tensor::empty({2, 1}, DType::F8E4M3);
  expect_error([&] { ops::quantize_fp8(x, scalar(1.f), narrow); }, {"out", "[2, 2]", "[2, 1]"});
  Tensor rows = Tensor::empty({3, 2}, DType::F8E4M3);
  expect_error([&] { ops::quantize_fp8(x, scalar(1.f), rows); }, {"out", "[3, 2]"});
  expect_error([&] { ops::quantize_fp8(x, fake_cuda(scalar(1.f)), q); },
               {"scale", "expected device cpu"});
}

TEST(Fp8Cpu, AmaxMatchesLoopAndAccumulates) {
  std::mt19937_64 rng(test_seed());
  Tensor x = random_tensor({33, 65}, rng, -5.f, 2.f);
  double want = 0;
  for (float v : x.to_float_vector()) want = std::max(want, std::fabs(double(v)));
  Tensor out = scalar(-1.f);
  ops::amax(x, out);
  EXPECT_EQ(out.data<float>()[0], static_cast<float>(want));
  out.data<float>()[0] = 100.f;
  ops::amax(x, out, /*accumulate=*/true);
  EXPECT_EQ(out.data<float>()[0], 100.f);
  out.data<float>()[0] = 0.5f;
  ops::amax(x, out, /*accumulate=*/true);
  EXPECT_EQ(out.data<float>()[0], static_cast<float>(want));
  x.data<float>()[17] = std::nanf("");
  ops::amax(x, out, /*accumulate=*/true);
  EXPECT_TRUE(std::isnan(out.data<float>()[0]));
}

struct QuantisedLinear {
  Tensor xq, wq, x_scale, w_scale;
};

// Quantises x and w with per-tensor scales from their amax (the calibration recipe).
QuantisedLinear quantise_operands(const Tensor& x, const Tensor& w) {
  QuantisedLinear q;
  Tensor a = scalar(0.f);
  ops::amax(x, a);
  q.x_scale = scalar(ops::fp8_scale_for_amax(a.data<float>()[0]));
  ops::amax(w, a);
  q.w_scale = scalar(ops::fp8_scale_for_amax(a.data<float>()[0]));
  q.xq = Tensor::empty(x.shape(), DType::F8E4M3);
  q.wq = Tensor::empty(w.shape(), DType::F8E4M3);
  ops::quantize_fp8(x, q.x_scale, q.xq);
  ops::quantize_fp8(w, q.w_scale, q.wq);
  return q;
}

// Float64 s_x s_w (x_q w_q^T) + bias + beta * residual, decoding with core's decoder.
std::vector<double> ref_linear_fp8(const QuantisedLinear& q, const std::vector<float>& bias,
                                   const std::vector<float>& residual, double beta, int64_t m,
                                   int64_t n, int64_t k, bool relu = false) {
  const uint8_t* xq = q.xq.data<uint8_t>();
  const uint8_t* wq = q.wq.data<uint8_t>();
  const double alpha = double(q.x_scale.data<float>()[0]) * q.w_scale.data<float>()[0];
  std::vector<double> out(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p)
        s += double(fp8e4m3_to_float(xq[i * k + p])) * fp8e4m3_to_float(wq[j * k + p]);
      double v = alpha * s + (bias.empty() ? 0.0 : bias[j]) +
                 (beta != 0 ? beta * residual[i * n + j] : 0.0);
      out[i * n + j] = relu ? std::max(v, 0.0) : v;
    }
  return out;
}

std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

TEST(Fp8Cpu, LinearMatchesFloat64) {
  std::mt19937_64 rng(test_seed());
  const int64_t m = 37, n = 80, k = 48;
  Tensor x = random_tensor({m, k}, rng, -2.f, 2.f);
  Tensor w = random_tensor({n, k}, rng, -0.3f, 0.3f);
  Tensor bias = random_tensor({n}, rng);
  const QuantisedLinear q = quantise_operands(x, w);
  for (float beta : {0.f, 1.f}) {
    for (bool relu : {false, true}) {
      Tensor residual = random_tensor({m, n}, rng);
      Tensor out = residual.clone();
      ops::Fp8GemmOptions opt;
      opt.activation = relu ? ops::GemmActivation::Relu : ops::GemmActivation::None;
      ops::linear_fp8(q.xq, q.x_scale, q.wq, q.w_scale, bias, out, beta, opt);
      const auto want = ref_linear_fp8(q, bias.to_float_vector(), residual.to_float_vector(), beta,
                                       m, n, k, relu);
      expect_close(out.to_float_vector(), to_float(want), 1e-5,
                   "beta " + std::to_string(beta) + (relu ? " relu" : ""));
    }
  }
}

TEST(Fp8Cpu, LinearFlattensLeadingDims) {
  std::mt19937_64 rng(test_seed());
  Tensor x = random_tensor({2, 3, 32}, rng);
  Tensor w = random_tensor({16, 32}, rng);
  const QuantisedLinear q = quantise_operands(x, w);
  Tensor out = Tensor::empty({2, 3, 16}, DType::F32);
  ops::linear_fp8(q.xq, q.x_scale, q.wq, q.w_scale, Tensor(), out);
  QuantisedLinear flat = q;
  flat.xq = q.xq.reshape({6, 32});
  expect_close(out.to_float_vector(), to_float(ref_linear_fp8(flat, {}, {}, 0, 6, 16, 32)), 1e-5,
               "3-D x");
}

// The whole recipe (amax -> scale -> quantise -> FP8 GEMM) against the unquantised float64
// product: E4M3 keeps 3 mantissa bits (relative rounding error up to 1/16), so expect a few per
// cent, not more. A wrong scale or a transposed operand is off by far more.
TEST(Fp8Cpu, QuantisedLinearCloseToFloat) {
  std::mt19937_64 rng(test_seed());
  const int64_t m = 64, n = 48, k = 256;
  Tensor x = random_tensor({m, k}, rng, -4.f, 4.f);
  Tensor w = random_tensor({n, k}, rng, -0.05f, 0.05f);
  const QuantisedLinear q = quantise_operands(x, w);
  Tensor out = Tensor::empty({m, n}, DType::F32);
  ops::linear_fp8(q.xq, q.x_scale, q.wq, q.w_scale, Tensor(), out);
  const std::vector<float> xv = x.to_float_vector(), wv = w.to_float_vector();
  std::vector<float> want(m * n);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) s += double(xv[i * k + p]) * wv[j * k + p];
      want[i * n + j] = static_cast<float>(s);
    }
  const double err = rel_error(out.to_float_vector(), want);
  EXPECT_LT(err, 0.06);
  EXPECT_GT(err, 1e-4);  // it really was quantised
}

TEST(Fp8Cpu, LinearBadArguments) {
  std::mt19937_64 rng(test_seed());
  Tensor x = random_tensor({4, 32}, rng);
  Tensor w = random_tensor({16, 32}, rng);
  QuantisedLinear q = quantise_operands(x, w);
  Tensor out = Tensor::empty({4, 16}, DType::F32);
  auto run = [&](const Tensor& xq, const Tensor& wq, Tensor& o, const Tensor& bias = Tensor()) {
    ops::linear_fp8(xq, q.x_scale, wq, q.w_scale, bias, o);
  };
  expect_error([&] { run(x, q.wq, out); },
               {"ops::linear_fp8", "x_q", "expected dtype F8_E4M3", "F32"});
  Tensor x_k40 = Tensor::zeros({4, 40}, DType::F8E4M3),
         w_k40 = Tensor::zeros({16, 40}, DType::F8E4M3);
  expect_error([&] { run(x_k40, w_k40, out); }, {"K = 40", "multiple of 16"});
  Tensor w_n20 = Tensor::zeros({20, 32}, DType::F8E4M3);
  Tensor out_n20 = Tensor::empty({4, 20}, DType::F32);
  expect_error([&] { run(q.xq, w_n20, out_n20); }, {"N = 20", "multiple of 16"});
  Tensor w_k48 = Tensor::zeros({16, 48}, DType::F8E4M3);
  expect_error([&] { run(q.xq, w_k48, out); }, {"K mismatch", "[16, 48]"});
  Tensor out_bad = Tensor::empty({4, 17}, DType::F32);
  expect_error([&] { run(q.xq, q.wq, out_bad); }, {"out", "expected shape [4, 16]"});
  Tensor out_f16 = Tensor::empty({4, 16}, DType::F16);
  expect_error([&] { run(q.xq, q.wq, out_f16); }, {"CPU reference writes F32", "F16"});
  Tensor bias_bad = Tensor::zeros({15}, DType::F32);
  expect_error([&] { run(q.xq, q.wq, out, bias_bad); }, {"bias", "[16]", "[15]"});
  expect_error(
      [&] {
        ops::linear_fp8(q.xq, Tensor::zeros({2}, DType::F32), q.wq, q.w_scale, Tensor(), out);
      },
      {"x_scale", "per-tensor"});
  expect_error([&] { ops::linear_fp8(q.xq, scalar(0.f), q.wq, q.w_scale, Tensor(), out); },
               {"x_scale", "finite and > 0"});
  // The GPU's output dtypes and alignment rules, checked before any memory is touched.
  Tensor fx = fake_cuda(q.xq), fw = fake_cuda(q.wq), fxs = fake_cuda(q.x_scale),
         fws = fake_cuda(q.w_scale);
  Tensor fout32 = fake_cuda(out);
  expect_error([&] { ops::linear_fp8(fx, fxs, fw, fws, Tensor(), fout32); },
               {"writes F16 or BF16", "F32"});
  Tensor bytes = Tensor::zeros({4 * 32 + 1}, DType::F8E4M3);
  Tensor shifted = fake_cuda(bytes.slice(0, 1, 4 * 32 + 1).reshape({4, 32}));
  Tensor fout16 = fake_cuda(Tensor::empty({4, 16}, DType::F16));
  expect_error([&] { ops::linear_fp8(shifted, fxs, fw, fws, Tensor(), fout16); },
               {"x_q", "16-byte boundary"});
  expect_error([&] { ops::linear_fp8(fx, q.x_scale, fw, fws, Tensor(), fout16); },
               {"x_scale", "expected device cuda"});
}

// ---- CUDA ------------------------------------------------------------------------------------

// Values that exercise every rounding case after division by `scale`: each code's value, the
// midpoints between neighbours and one float ulp either side, saturation, infinities, float
// subnormals, signed zeros, and log-uniform random magnitudes over 2^-14 .. 2^12.
std::vector<float> quantiser_inputs(float scale, std::mt19937_64& rng) {
  std::vector<float> v;
  for (int c = 0; c < 0x7E; ++c) {
    const float lo = fp8_e4m3_decode(c), hi = fp8_e4m3_decode(c + 1), mid = (lo + hi) / 2;
    for (float y : {lo, mid, std::nextafter(mid, 0.f), std::nextafter(mid, 1e9f)}) {
      v.push_back(y * scale);
      v.push_back(-y * scale);
    }
  }
  const float inf = std::numeric_limits<float>::infinity();
  for (float y : {448.f, 449.f, 464.f, 500.f, 1e20f, inf, -inf, 0.f, -0.f, 1e-40f, -1e-40f})
    v.push_back(y * scale);
  std::uniform_real_distribution<float> log_mag(-14.f, 12.f);
  std::bernoulli_distribution neg(0.5);
  for (int i = 0; i < 20000; ++i) {
    const float mag = std::exp2(log_mag(rng));
    v.push_back(neg(rng) ? -mag : mag);
  }
  return v;
}

TEST(Fp8Cuda, QuantizeBitExactAgainstCpuEncoder) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (float scale : {1.f, 0.37f, 3.1e-3f}) {
    const std::vector<float> base = quantiser_inputs(scale, rng);
    for (DType dtype : testing::cuda_dtypes()) {
      // n % 4 != 0 takes the scalar kernel, n % 4 == 0 the vectorised one.
      for (int64_t n :
           {int64_t(base.size()), int64_t(base.size() / 4 * 4), int64_t(1), int64_t(7)}) {
        std::vector<float> vals(base.begin(), base.begin() + n);
        // Values as the dtype holds them (the CUDA kernel reads the rounded input).
        Tensor host = testing::rounded_to(Tensor::from_vector(vals, {n}), dtype);
        Tensor q = garbage_fp8_cuda({n});
        ops::quantize_fp8(testing::to_cuda(host, dtype), scalar(scale, Device::CUDA), q);
        Tensor got = q.to(Device::CPU);
        const float* px = host.data<float>();
        int64_t bad = 0;
        for (int64_t i = 0; i < n; ++i) {
          const uint8_t want = fp8_e4m3_encode(px[i] / scale), g = got.data<uint8_t>()[i];
          const bool ok = want == 0x7F ? (g & 0x7F) == 0x7F : g == want;
          if (!ok && ++bad <= 5)
            ADD_FAILURE() << dtype_name(dtype) << " scale " << scale << ": x = " << px[i]
                          << " -> 0x" << std::hex << int(g) << ", CPU encoder 0x" << int(want);
        }
        EXPECT_EQ(bad, 0) << dtype_name(dtype) << " n " << n;
      }
    }
  }
}

TEST(Fp8Cuda, QuantizeNanAndPaddedRows) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (DType dtype : testing::cuda_dtypes()) {
    const int64_t rows = 7, k = 170, k_out = 176;
    Tensor host = testing::rounded_to(random_tensor({rows, k}, rng, -9.f, 9.f), dtype);
    host.data<float>()[3] = std::nanf("");
    Tensor q = garbage_fp8_cuda({rows, k_out});
    const float scale = 9.f / 448.f;
    ops::quantize_fp8(testing::to_cuda(host, dtype), scalar(scale, Device::CUDA), q);
    Tensor got = q.to(Device::CPU);
    const uint8_t* pg = got.data<uint8_t>();
    EXPECT_EQ(pg[3] & 0x7F, 0x7F) << "NaN stays NaN";
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < k_out; ++c) {
        if (r == 0 && c == 3) continue;
        const uint8_t want = c < k ? fp8_e4m3_encode(host.data<float>()[r * k + c] / scale) : 0;
        ASSERT_EQ(pg[r * k_out + c], want) << dtype_name(dtype) << " row " << r << " col " << c;
      }
  }
}

TEST(Fp8Cuda, AmaxMatchesCpu) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (DType dtype : testing::cuda_dtypes()) {
    for (int64_t n : {1, 7, 1000, (1 << 20) + 3}) {
      Tensor host = testing::rounded_to(random_tensor({n}, rng, -3.f, 2.f), dtype);
      float want = 0;
      for (float v : host.to_float_vector()) want = std::max(want, std::fabs(v));
      Tensor dev = testing::to_cuda(host, dtype);
      Tensor out = scalar(1e9f, Device::CUDA);  // replaced, not accumulated
      ops::amax(dev, out);
      EXPECT_EQ(out.to(Device::CPU).data<float>()[0], want) << dtype_name(dtype) << " n " << n;
      Tensor big = scalar(50.f, Device::CUDA);
      ops::amax(dev, big, /*accumulate=*/true);
      EXPECT_EQ(big.to(Device::CPU).data<float>()[0], 50.f);
      Tensor small = scalar(want / 2, Device::CUDA);
      ops::amax(dev, small, /*accumulate=*/true);
      EXPECT_EQ(small.to(Device::CPU).data<float>()[0], want);
    }
    Tensor host = random_tensor({4097}, rng);
    host.data<float>()[4000] = std::nanf("");
    Tensor out = scalar(0.f, Device::CUDA);
    ops::amax(testing::to_cuda(host, dtype), out);
    EXPECT_TRUE(std::isnan(out.to(Device::CPU).data<float>()[0])) << dtype_name(dtype);
  }
}

struct Fp8Case {
  int64_t m, n, k;
};

// CUDA FP8 GEMM vs the CPU reference on the same quantised operands: only the accumulation
// order and the final rounding to F16/BF16 differ.
TEST(Fp8Cuda, LinearMatchesCpuReference) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  const Fp8Case cases[] = {{1, 16, 16}, {37, 80, 48}, {129, 336, 784}, {600, 2304, 768}};
  for (const Fp8Case& c : cases) {
    Tensor x = random_tensor({c.m, c.k}, rng, -2.f, 2.f);
    Tensor w = random_tensor({c.n, c.k}, rng, -0.2f, 0.2f);
    const QuantisedLinear q = quantise_operands(x, w);
    const Tensor xq = q.xq.to(Device::CUDA), wq = q.wq.to(Device::CUDA);
    const Tensor xs = q.x_scale.to(Device::CUDA), ws = q.w_scale.to(Device::CUDA);
    for (DType dtype : {DType::F16, DType::BF16}) {
      const double tol = dtype == DType::F16 ? 2e-3 : 1e-2;
      for (bool with_bias : {false, true}) {
        for (float beta : {0.f, 1.f}) {
          for (int variant = 0; variant < 3; ++variant) {  // plain, autotuned, fast accumulation
            ops::Fp8GemmOptions opt;
            opt.autotune = variant == 1;
            opt.fast_accum = variant == 2;
            Tensor bias =
                with_bias ? testing::rounded_to(random_tensor({c.n}, rng), dtype) : Tensor();
            Tensor residual = testing::rounded_to(random_tensor({c.m, c.n}, rng), dtype);
            Tensor out = beta != 0 ? testing::to_cuda(residual, dtype)
                                   : testing::poisoned_cuda({c.m, c.n}, dtype);
            ops::linear_fp8(xq, xs, wq, ws, with_bias ? testing::to_cuda(bias, dtype) : Tensor(),
                            out, beta, opt);
            Tensor want = residual.clone();
            ops::linear_fp8(q.xq, q.x_scale, q.wq, q.w_scale, bias, want, beta);
            const std::string what = std::string(dtype_name(dtype)) + " M" + std::to_string(c.m) +
                                     " N" + std::to_string(c.n) + " K" + std::to_string(c.k) +
                                     (with_bias ? " bias" : "") + " beta " + std::to_string(beta) +
                                     " variant " + std::to_string(variant);
            expect_close(out.to(Device::CPU).to_dtype(DType::F32), want,
                         variant == 2 ? 2 * tol : tol, what);
          }
        }
      }
    }
  }
}

// The relu epilogue, and new pointers/scales on a cached plan (the scale pointers are set per
// call, not baked into the plan).
TEST(Fp8Cuda, ReluAndCachedPlanUsesCurrentScales) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  const int64_t m = 45, n = 64, k = 96;
  Tensor x = random_tensor({m, k}, rng, -1.f, 1.f);
  Tensor w = random_tensor({n, k}, rng, -1.f, 1.f);
  QuantisedLinear q = quantise_operands(x, w);
  Tensor bias = testing::rounded_to(random_tensor({n}, rng), DType::F16);
  ops::Fp8GemmOptions opt;
  opt.activation = ops::GemmActivation::Relu;
  for (float factor : {1.f, 3.f}) {
    q.x_scale.data<float>()[0] *= factor;
    Tensor out = testing::poisoned_cuda({m, n}, DType::F16);
    ops::linear_fp8(q.xq.to(Device::CUDA), q.x_scale.to(Device::CUDA), q.wq.to(Device::CUDA),
                    q.w_scale.to(Device::CUDA), testing::to_cuda(bias, DType::F16), out, 0.f, opt);
    Tensor want = Tensor::empty({m, n}, DType::F32);
    ops::linear_fp8(q.xq, q.x_scale, q.wq, q.w_scale, bias, want, 0.f, opt);
    expect_close(out.to(Device::CPU).to_dtype(DType::F32), want, 2e-3,
                 "x_scale x" + std::to_string(factor));
  }
}

// GPU end to end: amax and quantisation on the device, the GEMM, against the float product.
TEST(Fp8Cuda, QuantisedLinearCloseToFloat) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  const int64_t m = 333, n = 144, k = 512;
  Tensor x = testing::rounded_to(random_tensor({m, k}, rng, -4.f, 4.f), DType::F16);
  Tensor w = testing::rounded_to(random_tensor({n, k}, rng, -0.05f, 0.05f), DType::F16);
  auto device_quantise = [](const Tensor& t, Tensor& scale) {
    Tensor a = scalar(0.f, Device::CUDA);
    ops::amax(t, a);
    scale = scalar(ops::fp8_scale_for_amax(a.to(Device::CPU).data<float>()[0]), Device::CUDA);
    Tensor q = Tensor::empty(t.shape(), DType::F8E4M3, Device::CUDA);
    ops::quantize_fp8(t, scale, q);
    return q;
  };
  Tensor xs, ws;
  Tensor xq = device_quantise(testing::to_cuda(x, DType::F16), xs);
  Tensor wq = device_quantise(testing::to_cuda(w, DType::F16), ws);
  Tensor out = testing::poisoned_cuda({m, n}, DType::F16);
  ops::linear_fp8(xq, xs, wq, ws, Tensor(), out);
  Tensor want = Tensor::empty({m, n}, DType::F32);
  ops::linear(x, w, Tensor(), want);
  const double err = rel_error(out.to(Device::CPU).to_dtype(DType::F32), want);
  EXPECT_LT(err, 0.06);
  EXPECT_GT(err, 1e-4);
}

TEST(Fp8Cuda, MisalignedOperandIsAClearError) {
  OMNIRT_REQUIRE_CUDA();
  Tensor bytes = Tensor::zeros({4 * 32 + 8}, DType::F8E4M3).to(Device::CUDA);
  Tensor x = bytes.slice(0, 8, 4 * 32 + 8).reshape({4, 32});
  Tensor w = Tensor::zeros({16, 32}, DType::F8E4M3).to(Device::CUDA);
  Tensor s = scalar(1.f, Device::CUDA);
  Tensor out = Tensor::empty({4, 16}, DType::F16, Device::CUDA);
  expect_error([&] { ops::linear_fp8(x, s, w, s, Tensor(), out); }, {"x_q", "16-byte boundary"});
}

}  // namespace
}  // namespace omnirt
