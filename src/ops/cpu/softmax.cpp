#include "ops/cpu/softmax.h"

#include <algorithm>
#include <cmath>

#include "ops/check.h"

namespace omnirt::ops::cpu {

void softmax(const Tensor& x, Tensor& out) {
  const int64_t features = x.dim(-1);
  const int64_t rows = detail::rows_of(x);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data<float>() + r * features;
    float* yr = out.data<float>() + r * features;
    float max = xr[0];
    for (int64_t i = 1; i < features; ++i) max = std::max(max, xr[i]);
    double sum = 0.0;
    for (int64_t i = 0; i < features; ++i) sum += std::exp(xr[i] - max);
    const float inv_sum = static_cast<float>(1.0 / sum);
    for (int64_t i = 0; i < features; ++i) yr[i] = std::exp(xr[i] - max) * inv_sum;
  }
}

}  // namespace omnirt::ops::cpu
