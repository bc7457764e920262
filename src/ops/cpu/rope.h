// CPU (float32 reference) implementations of ops/rope.h; arguments validated by the dispatcher.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace omnirt::ops::cpu {

// inv_freq[i] = 1 / theta^(2i / dim) for i < dim / 2, in float32 as HF and EVA compute it
// (exponent divided in float32, powf). Used by both backends so they rotate by identical angles.
std::vector<float> rope_inv_freq(int64_t dim, float theta);

void rope_llama(const Tensor& x, const Tensor& positions, float theta, Tensor& out);
void rope_eva2d(const Tensor& x, const Tensor& cos, const Tensor& sin, Tensor& out);

}  // namespace omnirt::ops::cpu
