// CUDA implementation of ops/embedding.h; arguments (including every id) validated by the
// dispatcher.
#pragma once

#include "core/tensor.h"

namespace omnirt::ops::cuda {
void embedding(const Tensor& table, const Tensor& ids, Tensor& out);
}
