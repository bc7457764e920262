// CPU (float32 reference) implementations of ops/activation.h; arguments validated by the
// dispatcher.
#pragma once

#include "core/tensor.h"
#include "ops/activation.h"

namespace omnirt::ops::cpu {

// The scalar definitions, shared with the CPU ops of other families.
float apply_act(Act act, float x);

void activation(const Tensor& x, Act act, Tensor& out);
void swiglu(const Tensor& gate, const Tensor& up, Tensor& out);
void swiglu_concat(const Tensor& gate_up, Tensor& out);

}  // namespace omnirt::ops::cpu
