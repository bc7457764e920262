// CUDA implementation of ops/cast.h; arguments validated by the dispatcher.
#pragma once

#include "core/tensor.h"

namespace omnirt::ops::cuda {
void cast(const Tensor& x, Tensor& out);
}
