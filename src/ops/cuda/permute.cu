// Permute kernel: one thread per output unit, gathering from the input.
//
// The host first simplifies the problem so the kernel does little index arithmetic:
//  1. size-1 dimensions are dropped, and consecutive output dimensions that are also consecutive
//     (in the same order) in the input are merged, e.g. [B, N, 3, H, D] -> [3, B, H, N, D] becomes
//     a 4-D problem whose innermost dimension is D;
//  2. when the innermost output dimension is also innermost in the input (stride 1), elements
//     are moved in "units" of up to 16 bytes (several elements at once), which makes both the
//     reads and the writes of a run coalesced and wide.
#include "ops/cuda/permute.h"

#include "ops/cuda/common.cuh"
#include "ops/permute.h"

namespace omnirt::ops::cuda {

namespace {

constexpr int kThreads = 256;

struct PermuteGeometry {
  int ndim = 0;
  int64_t out_shape[kMaxPermuteDims] = {};  // output dims (in units)
  int64_t in_stride[kMaxPermuteDims] = {};  // input stride (in units) of each output dim
};

// Unit = an unsigned type of the chosen width (1, 2, 4, 8 or 16 bytes): the kernel only moves
// bytes.
template <typename Unit>
__global__ void permute_kernel(const Unit* in, Unit* out, int64_t num_units, PermuteGeometry g) {
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < num_units;
       o += int64_t(gridDim.x) * blockDim.x) {
    int64_t rest = o, offset = 0;
    for (int d = g.ndim - 1; d >= 0; --d) {
      offset += (rest % g.out_shape[d]) * g.in_stride[d];
      rest /= g.out_shape[d];
    }
    out[o] = in[offset];
  }
}

template <typename Unit>
void launch(const void* in, void* out, int64_t num_units, const PermuteGeometry& g) {
  permute_kernel<Unit><<<grid_for(num_units, kThreads), kThreads, 0, current_stream()>>>(
      static_cast<const Unit*>(in), static_cast<Unit*>(out), num_units, g);
  OMNIRT_CUDA_CHECK_LAUNCH("permute_kernel");
}

}  // namespace

void permute(const Tensor& x, const std::vector<int>& dims, Tensor& out) {
  const Shape in_strides = contiguous_strides(x.shape());
  // 1. Output dims with their input strides; drop size-1 dims, merge mergeable neighbours.
  PermuteGeometry g;
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t size = x.shape()[dims[i]], stride = in_strides[dims[i]];
    if (size == 1) continue;
    if (g.ndim > 0 && g.in_stride[g.ndim - 1] == stride * size) {
      g.out_shape[g.ndim - 1] *= size;  // previous dim is just outside this one in the input
      g.in_stride[g.ndim - 1] = stride;
    } else {
      g.out_shape[g.ndim] = size;
      g.in_stride[g.ndim] = stride;
      ++g.ndim;
    }
  }

  // 2. Widest unit that divides the contiguous innermost run and suits both pointers.
  const int64_t elem = static_cast<int64_t>(dtype_nbytes(x.dtype(), 1));
  int64_t unit = elem;
  if (g.ndim > 0 && g.in_stride[g.ndim - 1] == 1) {
    const int64_t run_bytes = g.out_shape[g.ndim - 1] * elem;
    for (int64_t u : {16, 8, 4, 2}) {
      if (u > elem && run_bytes % u == 0 && is_aligned(x.raw(), u) && is_aligned(out.raw(), u)) {
        unit = u;
        break;
      }
    }
  }
  const int64_t per_unit = unit / elem;  // elements per unit
  if (per_unit > 1) {
    // Every other input stride is a multiple of the innermost run, hence of per_unit.
    g.out_shape[g.ndim - 1] /= per_unit;
    for (int d = 0; d < g.ndim - 1; ++d) g.in_stride[d] /= per_unit;
  }
  const int64_t num_units = x.numel() / per_unit;

  switch (unit) {
    case 1:
      launch<uint8_t>(x.raw(), out.raw(), num_units, g);
      break;
    case 2:
      launch<uint16_t>(x.raw(), out.raw(), num_units, g);
      break;
    case 4:
      launch<uint32_t>(x.raw(), out.raw(), num_units, g);
      break;
    case 8:
      launch<uint2>(x.raw(), out.raw(), num_units, g);
      break;
    default:
      launch<uint4>(x.raw(), out.raw(), num_units, g);
      break;
  }
}

}  // namespace omnirt::ops::cuda
