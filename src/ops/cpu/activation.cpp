#include "ops/cpu/activation.h"

#include <algorithm>
#include <cmath>

#include "ops/check.h"

namespace omnirt::ops::cpu {

float apply_act(Act act, float x) {
  switch (act) {
    case Act::Gelu:
      return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
    case Act::Silu:
      return x / (1.0f + std::exp(-x));
    case Act::Relu:
      return std::max(x, 0.0f);
    case Act::Sigmoid:
      return 1.0f / (1.0f + std::exp(-x));
  }
  return x;  // unreachable: the dispatcher rejects unknown values
}

void activation(const Tensor& x, Act act, Tensor& out) {
  const float* in = x.data<float>();
  float* y = out.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) y[i] = apply_act(act, in[i]);
}

namespace {
// Rows of `hidden` outputs; gate/up rows start every `in_row_stride` elements.
void swiglu_rows(const float* gate, const float* up, int64_t in_row_stride, float* out,
                 int64_t rows, int64_t hidden) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < hidden; ++j)
      out[r * hidden + j] =
          apply_act(Act::Silu, gate[r * in_row_stride + j]) * up[r * in_row_stride + j];
}
}  // namespace

void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) {
  const int64_t hidden = gate.ndim() == 0 ? 1 : gate.dim(-1);
  swiglu_rows(gate.data<float>(), up.data<float>(), hidden, out.data<float>(),
              gate.numel() / hidden, hidden);
}

void swiglu_concat(const Tensor& gate_up, Tensor& out) {
  const int64_t hidden = out.dim(-1);
  const float* gate = gate_up.data<float>();
  swiglu_rows(gate, gate + hidden, 2 * hidden, out.data<float>(), out.numel() / hidden, hidden);
}

}  // namespace omnirt::ops::cpu
