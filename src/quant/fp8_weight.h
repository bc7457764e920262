// FP8 (E4M3) weight-only quantisation with one float32 scale per output row (CPU reference; the
// CUDA decode GEMV is models/llm/quant_gemv.h, WeightFormat::kFp8).
//
//   scale[n] = fp8_scale_for_amax(max_k |W[n, k]|)   (= row amax / 448; 1 for an all-zero row)
//   code[n, k] = e4m3(W[n, k] / scale[n])             (ops::fp8_e4m3_encode: nearest, ties to even)
//   W[n, k] ~= e4m3_decode(code[n, k]) * scale[n]
// The E4M3 codec is the one of ops/fp8.h (the vision FP8 path's), not a second copy.
//
// Layout: `codes` U8 [N, K] (one E4M3 byte per weight, row-major), `scales` F32 [N]. Any K.
#pragma once

#include <string>

#include "core/tensor.h"

namespace omnirt::quant {

struct Fp8Weight {
  Tensor codes;   // U8 [N, K], E4M3 bit patterns
  Tensor scales;  // F32 [N]
};

// `w`: CPU or CUDA float 2-D [N, K]. Throws naming `what` for a bad shape or a non-finite value.
Fp8Weight quantize_fp8_rows(const Tensor& w, const std::string& what = "weight");
// Checks codes/scales against each other (U8 [N, K], F32 [N]); throws naming `what`.
void check_fp8_rows(const Tensor& codes, const Tensor& scales, const std::string& what = "weight");
// Float32 CPU [N, K] weight: decode(code) * scale[row].
Tensor dequantize_fp8_rows(const Tensor& codes, const Tensor& scales,
                           const std::string& what = "weight");

}  // namespace omnirt::quant
