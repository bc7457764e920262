// CPU (float32 reference) implementation of ops/softmax.h; arguments validated by the dispatcher.
#pragma once

#include "core/tensor.h"

namespace omnirt::ops::cpu {
void softmax(const Tensor& x, Tensor& out);
}
