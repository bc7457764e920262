// NVFP4 weight-only quantisation (CPU reference; the CUDA GEMV is models/llm/quant_gemv.h).
//
// NVFP4 (NVIDIA's 4-bit float format, built from OCP Microscaling element types): each value is
// an E2M1 float (1 sign, 2 exponent, 1 mantissa bit, exponent bias 1, no inf/NaN), every block of
// 16 consecutive values along K shares one E4M3 scale (1 sign, 4 exponent, 3 mantissa bits,
// bias 7, max 448, 0x7F/0xFF = NaN), and the whole tensor has one fp32 global scale:
//   w[n, k] ~= e2m1(code[n, k]) * e4m3(scale[n, k / 16]) * global_scale.
// E2M1 magnitudes by code & 7: 0, 0.5, 1, 1.5, 2, 3, 4, 6; bit 3 is the sign.
//
// Quantisation (the usual NVFP4 recipe): global_scale = max|W| / (6 * 448), so every block's
// scale max|block| / (6 * global_scale) fits E4M3; that scale is rounded to E4M3 (nearest, ties to
// even) and the values are rounded to the nearest E2M1 (ties to even, saturating at +-6) after
// dividing by the decoded block scale times global_scale.
//
// Packed layout (the same nibble order as INT4, quant/int4.h): `codes` U8 [N, K / 2], byte (n, j)
// holds element 2j in its low nibble and 2j + 1 in its high nibble; `scales` U8 [N, K / 16]
// (E4M3 bit patterns), row-major. K must be a multiple of 16.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace omnirt::quant {

inline constexpr int64_t kNvfp4Block = 16;

// Conversions (round to nearest, ties to even; saturating: |x| above the largest finite value
// becomes that value, as NVFP4 quantisers do). NaN input throws.
uint8_t float_to_e2m1(float x);  // 4-bit code in the low nibble
float e2m1_to_float(uint8_t code);  // uses the low nibble
uint8_t float_to_e4m3(float x);
float e4m3_to_float(uint8_t bits);  // NaN for 0x7F / 0xFF

struct Nvfp4Weight {
  Tensor codes;   // U8 [N, K / 2]
  Tensor scales;  // U8 [N, K / 16], E4M3
  float global_scale = 0.f;
  int64_t rows = 0, cols = 0;
};

// `w`: CPU or CUDA float 2-D [N, K] (converted to F32 on the CPU). `what` names it in errors.
Nvfp4Weight quantize_nvfp4(const Tensor& w, const std::string& what = "weight");
// Checks codes/scales against each other (dtype U8, [N, K/2] and [N, K/16]); throws naming `what`.
void check_nvfp4(const Tensor& codes, const Tensor& scales, const std::string& what = "weight");
// Float32 [N, K] weight.
Tensor dequantize_nvfp4(const Tensor& codes, const Tensor& scales, float global_scale,
                        const std::string& what = "weight");
// CPU reference: out[M, N] = x[M, K] . dequant(W)^T (x, out F32 CPU contiguous).
void nvfp4_linear(const Tensor& x, const Tensor& codes, const Tensor& scales, float global_scale,
                  Tensor& out);

}  // namespace omnirt::quant
