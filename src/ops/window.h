// Window partitioning for windowed attention (EVA's window blocks).
//
// window_partition: x [N, H, W, C] -> out [N * nh * nw, ws * ws, C], where the map is zero-padded
//   at the bottom/right to (nh*ws, nw*ws) and windows are taken row-major (window index
//   n*nh*nw + wy*nw + wx, token index ty*ws + tx). Padded tokens are zeros, as in EVA (they are
//   not masked in attention; the model relies on that).
// window_unpartition: the inverse, cropping the padding: win [N*nh*nw, ws*ws, C] -> out [N, H, W, C].
// CPU: float32. CUDA: any 2- or 4-byte float dtype (pure data movement). All contiguous.
#pragma once

#include "core/tensor.h"

namespace omnirt::ops {

void window_partition(const Tensor& x, int window, Tensor& out);
void window_unpartition(const Tensor& windows, int window, Tensor& out);

namespace cpu {
void window_partition(const Tensor& x, int window, Tensor& out);
void window_unpartition(const Tensor& windows, int window, Tensor& out);
}  // namespace cpu
namespace cuda {
void window_partition(const Tensor& x, int window, Tensor& out);
void window_unpartition(const Tensor& windows, int window, Tensor& out);
}  // namespace cuda

}  // namespace omnirt::ops
