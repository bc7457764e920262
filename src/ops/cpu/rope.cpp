#include "ops/cpu/rope.h"

#include <cmath>

namespace omnirt::ops::cpu {

std::vector<float> rope_inv_freq(int64_t dim, float theta) {
  std::vector<float> inv_freq(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    inv_freq[i] = 1.0f / std::pow(theta, exponent);
  }
  return inv_freq;
}

void rope_llama(const Tensor& x, const Tensor& positions, float theta, Tensor& out) {
  const int64_t tokens = x.dim(0), heads = x.dim(1), head_dim = x.dim(2), half = head_dim / 2;
  const std::vector<float> inv_freq = rope_inv_freq(head_dim, theta);
  const int32_t* pos = positions.data<int32_t>();
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      const float* xr = x.data<float>() + (t * heads + h) * head_dim;
      float* yr = out.data<float>() + (t * heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float angle = static_cast<float>(pos[t]) * inv_freq[i];
        const float c = std::cos(angle), s = std::sin(angle);
        const float x1 = xr[i], x2 = xr[i + half];  // read both before writing (in place)
        yr[i] = x1 * c - x2 * s;
        yr[i + half] = x2 * c + x1 * s;
      }
    }
  }
}

void rope_eva2d(const Tensor& x, const Tensor& cos, const Tensor& sin, Tensor& out) {
  const int64_t tokens = x.dim(2), dim = x.dim(3);
  const int64_t rows = x.numel() / dim;  // batch * heads * tokens
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = r % tokens;
    const float* xr = x.data<float>() + r * dim;
    float* yr = out.data<float>() + r * dim;
    const float* c = cos.data<float>() + t * dim;
    const float* s = sin.data<float>() + t * dim;
    for (int64_t j = 0; j < dim; j += 2) {
      const float x0 = xr[j], x1 = xr[j + 1];
      yr[j] = x0 * c[j] - x1 * s[j];
      yr[j + 1] = x1 * c[j + 1] + x0 * s[j + 1];
    }
  }
}

}  // namespace omnirt::ops::cpu
