// CPU implementation of ops/cast.h; arguments validated by the dispatcher.
#pragma once

#include "core/tensor.h"

namespace omnirt::ops::cpu {
void cast(const Tensor& x, Tensor& out);
}
