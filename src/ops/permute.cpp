#include "ops/permute.h"

#include "core/error.h"
#include "ops/check.h"
#include "ops/cpu/permute.h"
#ifdef OMNIRT_WITH_CUDA
#include "ops/cuda/permute.h"
#endif

namespace omnirt::ops {

void permute(const Tensor& x, const std::vector<int>& dims, Tensor& out) {
  constexpr std::string_view kOp = "ops::permute";
  detail::check_contiguous(x, kOp, "x");
  OMNIRT_CHECK(!dtype_is_packed(x.dtype()), kOp, ": x: packed dtype ", dtype_name(x.dtype()),
               " cannot be permuted element-wise");
  const int nd = x.ndim();
  OMNIRT_CHECK(nd <= kMaxPermuteDims, kOp, ": x: expected at most ", kMaxPermuteDims,
               " dimensions, got shape ", shape_str(x.shape()));
  OMNIRT_CHECK(static_cast<int>(dims.size()) == nd, kOp, ": dims: expected ", nd,
               " entries (one per dimension of x ", shape_str(x.shape()), "), got ", dims.size());
  std::vector<int> norm(nd);
  std::vector<bool> seen(nd, false);
  Shape out_shape(nd);
  for (int i = 0; i < nd; ++i) {
    const int d = dims[i] < 0 ? dims[i] + nd : dims[i];
    OMNIRT_CHECK(d >= 0 && d < nd && !seen[d], kOp, ": dims: expected a permutation of 0..", nd - 1,
                 ", got entry ", dims[i], " at position ", i);
    seen[d] = true;
    norm[i] = d;
    out_shape[i] = x.shape()[d];
  }
  detail::check_like(out, x, kOp, "out", "x");
  detail::check_shape(out, out_shape, kOp, "out");
  if (x.numel() == 0) return;
  OMNIRT_CHECK(out.raw() != x.raw(), kOp, ": out must not overlap x");
  if (x.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::permute(x, norm, out);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    cpu::permute(x, norm, out);
  }
}

}  // namespace omnirt::ops
