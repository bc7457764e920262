#include "ops/cpu/elementwise.h"

namespace omnirt::ops::cpu {

// b repeats every b.numel() elements of a (b's shape is a suffix of a's).
void add_scaled(const Tensor& a, const Tensor& b, float scale, Tensor& out) {
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
  const int64_t nb = b.numel();
  for (int64_t i = 0; i < a.numel(); ++i) po[i] = pa[i] + scale * pb[i % nb];
}

void mul(const Tensor& a, const Tensor& b, Tensor& out) {
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* po = out.data<float>();
  const int64_t nb = b.numel();
  for (int64_t i = 0; i < a.numel(); ++i) po[i] = pa[i] * pb[i % nb];
}

}  // namespace omnirt::ops::cpu
