// Reference norms: one row at a time, sums accumulated in double.
#include "ops/cpu/norm.h"

#include <cmath>

#include "ops/check.h"

namespace omnirt::ops::cpu {

void layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out) {
  const int64_t features = x.dim(-1);
  const int64_t rows = detail::rows_of(x);
  const float* w = weight.defined() ? weight.data<float>() : nullptr;
  const float* b = bias.defined() ? bias.data<float>() : nullptr;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data<float>() + r * features;
    float* yr = out.data<float>() + r * features;
    double sum = 0.0;
    for (int64_t i = 0; i < features; ++i) sum += xr[i];
    const float mean = static_cast<float>(sum / features);
    double sq = 0.0;  // variance around the mean (two passes: no cancellation)
    for (int64_t i = 0; i < features; ++i) sq += (double(xr[i]) - mean) * (double(xr[i]) - mean);
    const float rstd = static_cast<float>(1.0 / std::sqrt(sq / features + eps));
    for (int64_t i = 0; i < features; ++i) {
      float y = (xr[i] - mean) * rstd;
      if (w) y *= w[i];
      if (b) y += b[i];
      yr[i] = y;
    }
  }
}

void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  const int64_t features = x.dim(-1);
  const int64_t rows = detail::rows_of(x);
  const float* w = weight.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data<float>() + r * features;
    float* yr = out.data<float>() + r * features;
    double sq = 0.0;
    for (int64_t i = 0; i < features; ++i) sq += double(xr[i]) * xr[i];
    const float rstd = static_cast<float>(1.0 / std::sqrt(sq / features + eps));
    // float32 throughout, so HF's "round to the input dtype" between the two products is a no-op.
    for (int64_t i = 0; i < features; ++i) yr[i] = w[i] * (xr[i] * rstd);
  }
}

void add_rmsnorm(const Tensor& x, const Tensor& residual, const Tensor& weight, float eps,
                 Tensor& out, Tensor& residual_out) {
  const int64_t n = x.numel();
  const float* a = x.data<float>();
  const float* b = residual.data<float>();
  float* s = residual_out.data<float>();
  for (int64_t i = 0; i < n; ++i) s[i] = a[i] + b[i];
  rmsnorm(residual_out, weight, eps, out);
}

}  // namespace omnirt::ops::cpu
