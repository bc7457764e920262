// Symmetric INT4 weight-only quantisation of linear weights (CPU reference; no CUDA kernels yet).
//
// A weight W of shape [N, K] (N output channels, K input channels, the layout of y = x W^T) is
// split along K into groups of `group_size` consecutive columns. Each (row, group) gets one fp32
// scale s = max|w| / 7 over the group, and each value is stored as q = clamp(round(w / s), -7, 7),
// so dequant(q) = q * s differs from w by at most s / 2. Per output channel quantisation is the
// special case group_size == K (one scale per row); "g128" is group_size == 128.
//
// Packed layout (`qweight`, dtype U8, shape [N, K / 2], row-major, no padding):
//   byte (n, j) holds column 2j in its LOW nibble and column 2j + 1 in its HIGH nibble;
//   each nibble is a signed 4-bit two's complement integer (0x0..0x7 = 0..7, 0x9..0xF = -7..-1;
//   0x8 = -8 is never produced but is decoded as -8).
// This matches DType::I4 (low nibble first). K must be even and a multiple of group_size: there
// is no padding, a shape that does not fit is rejected with omnirt::Error.
// `scales`: dtype F32 (F16 is also accepted when reading), shape [N, K / group_size], row-major.
// A group that is all zeros gets scale 0 and codes 0 (dequantises to exact zeros).
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace omnirt::quant {

struct Int4Weight {
  Tensor qweight;          // U8 [N, K / 2], layout above
  Tensor scales;           // F32 [N, K / group_size]
  int64_t rows = 0;        // N
  int64_t cols = 0;        // K
  int64_t group_size = 0;  // K for per-channel
};

// group_size 0 means per output channel (group_size = K). `what` names the tensor in errors.
// `w` must be a CPU F32 (or F16/BF16, converted) contiguous 2-D tensor.
Int4Weight quantize_int4(const Tensor& w, int64_t group_size, const std::string& what = "weight");

// Checks qweight/scales shapes and dtypes against each other and returns the group size
// (K / scales.shape[1]); throws naming `what` when they do not fit.
int64_t int4_group_size(const Tensor& qweight, const Tensor& scales,
                        const std::string& what = "weight");

// Float32 [N, K] weight from packed codes and scales.
Tensor dequantize_int4(const Tensor& qweight, const Tensor& scales,
                       const std::string& what = "weight");

// One signed code in [-8, 7] of row n, column k of a packed [N, K/2] U8 buffer.
inline int int4_code(const uint8_t* packed_row, int64_t k) {
  const uint8_t byte = packed_row[k / 2];
  const int nibble = (k % 2 == 0) ? (byte & 0x0F) : (byte >> 4);
  return nibble >= 8 ? nibble - 16 : nibble;
}

// CPU reference: out[M, N] = x[M, K] . dequant(W)^T + bias[N]. x, out F32 CPU contiguous
// (x may have any leading dims, flattened to M); bias is optional (an undefined Tensor).
void int4_linear(const Tensor& x, const Tensor& qweight, const Tensor& scales, const Tensor& bias,
                 Tensor& out);

// AWQ-style activation-aware scaling (CPU, per weight; the model-level calibration that feeds it
// the linears' real inputs is quant/awq.h).
// Input channels that carry large activations matter most, so before quantising, column k of W
// is multiplied by s_k = (mean over the calibration batch of |x_k|)^alpha, and x is multiplied by
// input_scale_k = 1 / s_k at run time: (x * input_scale) . dequant(Q(W * s))^T ~ x . W^T.
// alpha is searched on a grid over [0, 1] (alpha = 0 is plain quantisation) minimising the output
// error sum((x W^T - x_hat W_hat^T)^2) on the calibration batch, so the chosen scaling is never
// worse than plain quantisation on that batch.
struct AwqInt4Weight {
  Int4Weight weight;   // quantised W * s
  Tensor input_scale;  // F32 [K]: multiply x by it before int4_linear
  float alpha = 0.f;
  double calib_error = 0;  // output squared error on the calibration batch with the chosen alpha
  double plain_error = 0;  // the same for alpha = 0 (plain quantisation)
};
// `calib_x`: F32 [M, K] calibration activations (the inputs this linear layer sees).
// `grid`: number of alpha steps (alpha = i / grid, i = 0..grid), >= 1.
AwqInt4Weight quantize_int4_awq(const Tensor& w, const Tensor& calib_x, int64_t group_size,
                                int grid = 20, const std::string& what = "weight");

}  // namespace omnirt::quant
