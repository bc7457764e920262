// CPU GEMM: OpenBLAS does the multiply, a plain loop adds the bias and applies the activation.
#include "ops/cpu/gemm.h"

#include <cblas.h>

#include <cmath>

namespace omnirt::ops::cpu {

static float apply_activation(float x, GemmActivation act) {
  switch (act) {
    case GemmActivation::None:
      return x;
    case GemmActivation::Relu:
      return x > 0.f ? x : 0.f;
    case GemmActivation::GeluTanh: {
      constexpr float kSqrt2OverPi = 0.7978845608028654f;
      return 0.5f * x * (1.f + std::tanh(kSqrt2OverPi * (x + 0.044715f * x * x * x)));
    }
  }
  return x;
}

void gemm(const GemmDims& dims, const Tensor& a, const Tensor& b, Tensor& c, bool trans_a,
          bool trans_b, float alpha, float beta, const Tensor& bias, const GemmOptions& options) {
  const int64_t m = dims.m, n = dims.n, k = dims.k;
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* pc = c.data<float>();
  // Row-major leading dimensions: the row length of each operand as stored.
  const int64_t lda = trans_a ? m : k;
  const int64_t ldb = trans_b ? k : n;
  for (int64_t i = 0; i < dims.batch; ++i) {
    float* ci = pc + i * m * n;
    // With beta == 0 BLAS does not read C, so a NaN-poisoned output is fine.
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
                static_cast<blasint>(n), static_cast<blasint>(k), alpha, pa + i * m * k,
                static_cast<blasint>(lda), pb + i * k * n, static_cast<blasint>(ldb), beta, ci,
                static_cast<blasint>(n));
    if (!bias.defined() && options.activation == GemmActivation::None) continue;
    const float* pbias = bias.defined() ? bias.data<float>() : nullptr;
    for (int64_t r = 0; r < m; ++r) {
      float* row = ci + r * n;
      for (int64_t j = 0; j < n; ++j) {
        const float v = pbias ? row[j] + pbias[j] : row[j];
        row[j] = apply_activation(v, options.activation);
      }
    }
  }
}

}  // namespace omnirt::ops::cpu
