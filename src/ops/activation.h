// Elementwise activations and the gated SwiGLU unit.
// CPU: float32. CUDA: float32, float16, bfloat16 (math in float32). `out` may alias an input.
#pragma once

#include <string_view>

#include "core/tensor.h"

namespace omnirt::ops {

enum class Act {
  Gelu,     // exact: 0.5 x (1 + erf(x / sqrt(2)))  (nn.GELU(), not the tanh approximation)
  Silu,     // x * sigmoid(x)
  Relu,     // max(x, 0)
  Sigmoid,  // 1 / (1 + exp(-x))
};
std::string_view act_name(Act act);

// out = act(x), any shape.
void activation(const Tensor& x, Act act, Tensor& out);
inline void gelu(const Tensor& x, Tensor& out) { activation(x, Act::Gelu, out); }
inline void silu(const Tensor& x, Tensor& out) { activation(x, Act::Silu, out); }
inline void relu(const Tensor& x, Tensor& out) { activation(x, Act::Relu, out); }
inline void sigmoid(const Tensor& x, Tensor& out) { activation(x, Act::Sigmoid, out); }

// out = silu(gate) * up; gate, up, out all [..., H]. As in PyTorch's fp16 evaluation
// (act_fn(gate) * up), silu(gate) is rounded to the dtype before the product.
void swiglu(const Tensor& gate, const Tensor& up, Tensor& out);

// The same with gate and up packed in one tensor: gate_up [..., 2H] holds gate in [..., :H] and
// up in [..., H:] (one GEMM with the two weight matrices stacked); out [..., H] must not overlap
// gate_up.
void swiglu_concat(const Tensor& gate_up, Tensor& out);

}  // namespace omnirt::ops
