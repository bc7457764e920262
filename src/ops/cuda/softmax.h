// CUDA implementation of ops/softmax.h; arguments validated by the dispatcher.
#pragma once

#include "core/tensor.h"

namespace omnirt::ops::cuda {
void softmax(const Tensor& x, Tensor& out);
}
