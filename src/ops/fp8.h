// FP8 (E4M3) GEMM with per-tensor scales, and the ops around it: quantisation to E4M3 and the
// amax reduction used to calibrate scales.
//
// E4M3 ("e4m3fn", what Hopper's tensor cores and cuBLASLt use): 1 sign, 4 exponent (bias 7),
// 3 mantissa bits; no infinities; 0x7F / 0xFF are NaN; largest finite 448 (0x7E); smallest
// normal 2^-6, subnormals m/8 * 2^-6 down to 2^-9.
//
// Scales follow cuBLASLt: a quantised tensor q with scale s stands for the real tensor s * q, so
//   quantise:    q = e4m3(x / s)   (round to nearest even, saturating to +-448; NaN stays NaN)
//   linear_fp8:  out = (s_x * s_w) * (q_x q_w^T) + bias + beta * out
// A per-tensor scale for a tensor with largest magnitude `amax` is fp8_scale_for_amax(amax) =
// amax / 448 (the largest value then lands on 448 exactly).
//
// Scales are F32 tensors of one element on the operands' device (cuBLASLt reads them from device
// memory, so a scale can also be produced on the GPU, e.g. by ops::amax, without a host sync).
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "ops/gemm.h"

namespace omnirt::ops {

constexpr float kFp8E4M3Max = 448.f;

// Bit-exact host E4M3 codec (the CPU reference; the CUDA quantiser is tested against it).
//   fp8_e4m3_encode: round to nearest, ties to even; |x| beyond 448 (and +-inf) saturates to
//   +-448; NaN -> 0x7F; the sign is kept (-0.0 and negatives that round to zero give 0x80).
uint8_t fp8_e4m3_encode(float x);
float fp8_e4m3_decode(uint8_t code);  // exact; NaN for 0x7F / 0xFF

// amax / 448: the per-tensor scale that maps the largest magnitude onto E4M3's largest value.
// amax must be finite and >= 0 (error otherwise); amax == 0 (an all-zero tensor) gives 1.
float fp8_scale_for_amax(float amax);

// out = e4m3(x / scale[0]), elementwise.
//   x     [..., K]  F32 (CPU); F32, F16 or BF16 (CUDA); contiguous
//   scale [1]       F32, same device; must be > 0 and finite (the CPU backend checks it; on CUDA
//                   it is read on the device, unchecked, so that no host sync is needed)
//   out   [..., Kout] F8E4M3, same leading dims, Kout >= K: columns K..Kout-1 are written as
//         zeros (lets a caller pad K up to the multiple of 16 that linear_fp8 needs).
// The division is IEEE float32 (correctly rounded) on both backends, so they agree bit for bit.
void quantize_fp8(const Tensor& x, const Tensor& scale, Tensor& out);

// out[0] = max |x| over all elements (F32 [1], same device as x). With `accumulate`,
// out[0] = max(out[0], max |x|) (running calibration over many tensors/frames, no host sync).
// NaN anywhere gives NaN. x: F32 (CPU); F32, F16 or BF16 (CUDA); contiguous.
void amax(const Tensor& x, Tensor& out, bool accumulate = false);

struct Fp8GemmOptions {
  GemmActivation activation = GemmActivation::None;  // fused epilogue, as in ops::linear
  // CUDA: time cuBLASLt's top candidates on the first call of a shape (see GemmOptions).
  bool autotune = false;
  // CUDA: CUBLASLT_MATMUL_DESC_FAST_ACCUM. Hopper's FP8 MMA accumulates in reduced precision;
  // off (the default), cuBLASLt promotes partial sums to full fp32 periodically. On: faster,
  // less accurate (large K). Ignored on the CPU.
  bool fast_accum = false;
};

// out = act(s_x * s_w * (x_q w_q^T) + bias + beta * out), the nn.Linear layout in FP8.
//   x_q     [..., K] F8E4M3 (rows flattened to M), contiguous
//   x_scale [1] F32;  w_q [N, K] F8E4M3, contiguous;  w_scale [1] F32
//   bias    [N] in out's dtype, or undefined
//   out     [..., N]: F16 or BF16 on CUDA (fp32 accumulation, one rounding at the end);
//           F32 on the CPU (the reference: E4M3 values decoded exactly, float GEMM).
//           beta == 0: out is not read; beta != 0: out is the residual, updated in place.
//   K and N must be multiples of 16 (cuBLASLt's FP8 kernels, "TN" layout on Hopper; M is free);
//   on CUDA every operand must start on a 16-byte boundary. Checked on both devices (K, N) so
//   that a model that works on the CPU reference also runs on the GPU.
void linear_fp8(const Tensor& x_q, const Tensor& x_scale, const Tensor& w_q, const Tensor& w_scale,
                const Tensor& bias, Tensor& out, float beta = 0.f,
                const Fp8GemmOptions& options = {});

}  // namespace omnirt::ops
