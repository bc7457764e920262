#include "ops/cpu/permute.h"

#include <cstring>

namespace omnirt::ops::cpu {

// Walks the output in order, keeping the multi-index and the matching input offset.
void permute(const Tensor& x, const std::vector<int>& dims, Tensor& out) {
  const int nd = x.ndim();
  const size_t elem = dtype_nbytes(x.dtype(), 1);
  const Shape in_strides = contiguous_strides(x.shape());
  std::vector<int64_t> index(nd, 0);
  const char* src = static_cast<const char*>(x.raw());
  char* dst = static_cast<char*>(out.raw());
  for (int64_t o = 0; o < out.numel(); ++o) {
    int64_t offset = 0;
    for (int i = 0; i < nd; ++i) offset += index[i] * in_strides[dims[i]];
    std::memcpy(dst + o * elem, src + offset * elem, elem);
    for (int i = nd - 1; i >= 0; --i) {  // next output index, last dim fastest
      if (++index[i] < out.shape()[i]) break;
      index[i] = 0;
    }
  }
}

}  // namespace omnirt::ops::cpu
