// Matrix multiplication: the Linear layer and a general (optionally batched) GEMM.
//
// All matrices are row-major, as PyTorch stores them. Supported dtypes:
//   CPU : float32 only (OpenBLAS cblas_sgemm, then bias/activation in a plain loop).
//   CUDA: float32 (exact fp32, or TF32 when GemmOptions::fp32_compute == Fp32Compute::TF32),
//         float16 and bfloat16 (fp32 accumulation, output in the input dtype), via cuBLASLt with
//         the bias/activation fused into its epilogue.
// All tensors of one call share dtype and device. The output is written, never allocated.
#pragma once

#include "core/tensor.h"

namespace omnirt::ops {

// How float32 inputs are multiplied on the GPU. TF32 (10-bit mantissa products, fp32
// accumulation, ~1e-3 relative error) is used only when asked for. Ignored for fp16/bf16 and
// on the CPU (always exact fp32 there).
enum class Fp32Compute { Exact, TF32 };

// Pointwise activation applied after the bias (fused into the cuBLASLt epilogue on the GPU).
//   GeluTanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the tanh approximation that
//   cuBLASLt's GELU epilogue implements. It is NOT the exact erf GELU of nn.GELU(); models
//   that need the erf form run ops::gelu separately.
enum class GemmActivation { None, Relu, GeluTanh };

struct GemmOptions {
  Fp32Compute fp32_compute = Fp32Compute::Exact;
  GemmActivation activation = GemmActivation::None;
  // CUDA: on the first call of a shape, time cuBLASLt's top 8 heuristic candidates on the
  // actual operands (output to scratch memory; c is not modified by the trials) and keep the
  // fastest for later calls. Costs a few ms and a host sync once per shape; meant for large
  // GEMMs run every frame (the ViT backbone). Not done during stream capture (first choice kept).
  // Different algorithms may round differently (e.g. split-K). Ignored on the CPU.
  bool autotune = false;
};

const char* gemm_activation_name(GemmActivation a);

// Problem sizes as the dispatcher resolved them (passed to the CPU/CUDA backends).
struct GemmDims {
  int64_t batch = 1;  // 1 for 2-D operands
  int64_t m = 0, n = 0, k = 0;
};

// y = act(x W^T + b), the nn.Linear layout.
//   x      [..., K]  (any number of leading dims, flattened to M rows; must be contiguous)
//   weight [N, K]    (contiguous)
//   bias   [N] or an undefined Tensor (no bias)
//   out    [..., N]  (same leading dims as x; contiguous; must not alias x/weight)
void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out,
            const GemmOptions& options = {});

// c = act(alpha * op(a) op(b) + beta * c + bias), op(t) = t^T when trans_* is set.
//   a: [M, K] ([K, M] when trans_a), b: [K, N] ([N, K] when trans_b), c: [M, N].
//   Batched (strided batch): a, b and c all 3-D with the same leading batch size,
//   e.g. a [batch, M, K]. 2-D and 3-D operands are not mixed.
//   bias: [N] or undefined; added to every row after alpha/beta scaling.
//   With beta == 0, c is not read (it may hold garbage or NaN).
//   All operands contiguous.
void gemm(const Tensor& a, const Tensor& b, Tensor& c, bool trans_a, bool trans_b,
          float alpha = 1.f, float beta = 0.f, const Tensor& bias = Tensor(),
          const GemmOptions& options = {});

}  // namespace omnirt::ops
