// CUDA backends of ops::quantize_fp8 and ops::amax (ops/fp8.h); arguments validated by the
// dispatcher. The FP8 GEMM is in cuda/gemm.h (it shares the cuBLASLt plan cache).
#pragma once

#include "ops/fp8.h"

namespace omnirt::ops::cuda {

void quantize_fp8(const Tensor& x, const Tensor& scale, Tensor& out);
void amax(const Tensor& x, Tensor& out, bool accumulate);

}  // namespace omnirt::ops::cuda
