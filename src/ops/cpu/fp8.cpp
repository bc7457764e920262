// CPU reference of the FP8 ops: a bit-level E4M3 codec, quantisation, amax, and the FP8 GEMM as
// "decode both operands exactly to float32, then the float32 GEMM".
#include "ops/cpu/fp8.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/cpu/gemm.h"

namespace omnirt::ops {

// Normal E4M3 codes keep the top 3 of float32's 23 mantissa bits; the rounding happens on the
// float32 bit pattern (exponent and mantissa together), so a mantissa overflow carries into the
// exponent as it should. Values below 2^-6 (E4M3's smallest normal) are multiples of 2^-9 in
// E4M3 (subnormals): round |x| * 2^9 (exact, a power-of-two scaling) to an integer 0..8; 8 is the
// code of 2^-6, the smallest normal, which is where rounding up from the largest subnormal lands.
uint8_t fp8_e4m3_encode(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80);
  const uint32_t mag_bits = bits & 0x7FFFFFFFu;
  if (mag_bits > 0x7F800000u) return 0x7F;  // NaN
  const float mag = std::bit_cast<float>(mag_bits);
  // 448 = 1.75 * 2^8 is the largest code; everything from 448 up (448..464 would round to 448
  // anyway, beyond that there is no code: e4m3fn has no infinity) saturates.
  if (mag >= kFp8E4M3Max) return sign | 0x7E;
  constexpr float kMinNormal = 0.015625f;  // 2^-6
  if (mag >= kMinNormal) {
    // Round to nearest even at bit 20: add 0x7FFFF plus the lowest kept bit, then truncate.
    const uint32_t rounded = (mag_bits + 0x7FFFFu + ((mag_bits >> 20) & 1u)) >> 20;
    // rounded = float32 exponent (biased 127) << 3 | 3 mantissa bits; rebias to 7.
    return sign | static_cast<uint8_t>(rounded - ((127u - 7u) << 3));
  }
  const float units = mag * 512.f;  // exact; in [0, 8)
  float whole = std::floor(units);
  const float frac = units - whole;  // exact
  if (frac > 0.5f || (frac == 0.5f && std::fmod(whole, 2.f) != 0.f)) whole += 1.f;
  return sign | static_cast<uint8_t>(whole);
}

float fp8_e4m3_decode(uint8_t code) {
  const int exponent = (code >> 3) & 0xF, mantissa = code & 0x7;
  if (exponent == 0xF && mantissa == 0x7) return std::nanf("");
  // Subnormal: mantissa * 2^-9; normal: (8 + mantissa) * 2^(exponent - 10). Both exact in float.
  const float mag = exponent == 0 ? std::ldexp(static_cast<float>(mantissa), -9)
                                  : std::ldexp(static_cast<float>(8 + mantissa), exponent - 10);
  return (code & 0x80) ? -mag : mag;
}

namespace cpu {

void quantize_fp8(const Tensor& x, float scale, Tensor& out) {
  const int64_t k = x.dim(-1), k_out = out.dim(-1);
  const int64_t rows = k == 0 ? 0 : x.numel() / k;
  const float* src = x.data<float>();
  uint8_t* dst = out.data<uint8_t>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < k; ++c) dst[r * k_out + c] = fp8_e4m3_encode(src[r * k + c] / scale);
    for (int64_t c = k; c < k_out; ++c) dst[r * k_out + c] = 0;
  }
}

float amax(const Tensor& x) {
  const float* p = x.data<float>();
  float m = 0.f;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float a = std::fabs(p[i]);
    if (std::isnan(a)) return a;
    if (a > m) m = a;
  }
  return m;
}

void linear_fp8(const GemmDims& dims, const Tensor& x_q, const Tensor& w_q, float alpha,
                const Tensor& bias, Tensor& out, float beta, const Fp8GemmOptions& options) {
  auto decode = [](const Tensor& q, const Shape& shape) {
    Tensor f = Tensor::empty(shape, DType::F32);
    const uint8_t* src = q.data<uint8_t>();
    float* dst = f.data<float>();
    for (int64_t i = 0; i < q.numel(); ++i) dst[i] = fp8_e4m3_decode(src[i]);
    return f;
  };
  const Tensor x = decode(x_q, {dims.m, dims.k});
  const Tensor w = decode(w_q, {dims.n, dims.k});
  Tensor c = out.reshape({dims.m, dims.n});
  GemmOptions gemm_options;
  gemm_options.activation = options.activation;
  gemm(dims, x, w, c, /*trans_a=*/false, /*trans_b=*/true, alpha, beta, bias, gemm_options);
}

}  // namespace cpu
}  // namespace omnirt::ops
