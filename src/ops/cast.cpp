#include "ops/cast.h"

#include "core/error.h"
#include "ops/check.h"
#include "ops/cpu/cast.h"
#ifdef OMNIRT_WITH_CUDA
#include "ops/cuda/cast.h"
#endif

namespace omnirt::ops {

namespace {
void check_cast_dtype(const Tensor& t, std::string_view op, std::string_view arg) {
  const DType d = t.dtype();
  OMNIRT_CHECK(d == DType::F32 || d == DType::F16 || d == DType::BF16, op, ": ", arg,
               ": expected dtype F32, F16 or BF16, got ", dtype_name(d));
}
}  // namespace

void cast(const Tensor& x, Tensor& out) {
  constexpr std::string_view kOp = "ops::cast";
  detail::check_contiguous(x, kOp, "x");
  check_cast_dtype(x, kOp, "x");
  detail::check_contiguous(out, kOp, "out");
  check_cast_dtype(out, kOp, "out");
  detail::check_device(out, x.device(), kOp, "out");
  detail::check_shape(out, x.shape(), kOp, "out");
  OMNIRT_CHECK(x.numel() == 0 || x.raw() != out.raw() || x.dtype() == out.dtype(), kOp,
               ": out must not alias x when the dtypes differ");
  if (x.numel() == 0) return;
  if (x.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::cast(x, out);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    cpu::cast(x, out);
  }
}

}  // namespace omnirt::ops
