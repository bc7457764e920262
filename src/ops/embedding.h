// Embedding lookup: out[n, :] = table[ids[n], :].
//   table [V, D] (CPU float32; CUDA float32/float16/bfloat16), ids I32 [N], out [N, D] with the
//   table's dtype; all on one device.
// Every id is checked against [0, V) before anything is read; an out-of-range id is an
// omnirt::Error naming its position and value. On CUDA the ids are copied to the host for this
// check (one small device-to-host copy and a stream synchronisation per call); see docs/ops.md.
#pragma once

#include "core/tensor.h"

namespace omnirt::ops {

void embedding(const Tensor& table, const Tensor& ids, Tensor& out);

}  // namespace omnirt::ops
