#include "ops/softmax.h"

#include "core/error.h"
#include "ops/check.h"
#include "ops/cpu/softmax.h"
#ifdef OMNIRT_WITH_CUDA
#include "ops/cuda/softmax.h"
#endif

namespace omnirt::ops {

void softmax(const Tensor& x, Tensor& out) {
  constexpr std::string_view kOp = "ops::softmax";
  detail::check_contiguous(x, kOp, "x");
  detail::check_compute_dtype(x, kOp, "x");
  OMNIRT_CHECK(x.ndim() >= 1 && x.dim(-1) >= 1, kOp,
               ": x: expected a [..., features] tensor with features >= 1, got shape ",
               shape_str(x.shape()));
  detail::check_like(out, x, kOp, "out", "x");
  detail::check_shape(out, x.shape(), kOp, "out");
  if (x.numel() == 0) return;
  if (x.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::softmax(x, out);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    cpu::softmax(x, out);
  }
}

}  // namespace omnirt::ops
