#include "ops/elementwise.h"

#include <cmath>

#include "core/error.h"
#include "ops/check.h"
#include "ops/cpu/elementwise.h"
#ifdef OMNIRT_WITH_CUDA
#include "ops/cuda/elementwise.h"
#endif

namespace omnirt::ops {

namespace {
void check_binary(const Tensor& a, const Tensor& b, const Tensor& out, std::string_view op) {
  detail::check_contiguous(a, op, "a");
  detail::check_compute_dtype(a, op, "a");
  detail::check_like(b, a, op, "b", "a");
  // b's shape, leading 1s aside, must be a suffix of a's: b broadcasts over a's leading dims.
  int b_ndim = b.ndim();
  for (int i = 0; i < b.ndim() - 1 && b.dim(i) == 1; ++i) --b_ndim;
  bool suffix = b_ndim <= a.ndim();
  for (int i = 1; suffix && i <= b_ndim; ++i) suffix = b.dim(-i) == a.dim(-i);
  OMNIRT_CHECK(suffix, op, ": b: expected a shape that is a suffix of a's shape ",
               shape_str(a.shape()), " (b broadcasts over a's leading dims), got ",
               shape_str(b.shape()));
  detail::check_like(out, a, op, "out", "a");
  detail::check_shape(out, a.shape(), op, "out");
  // A broadcast b must not be overwritten while other elements still read it.
  OMNIRT_CHECK(a.numel() == 0 || b.numel() == a.numel() || out.raw() != b.raw(), op,
               ": out must not alias a broadcast b");
}
}  // namespace

void add(const Tensor& a, const Tensor& b, Tensor& out) {
  add_scaled(a, b, 1.0f, out);  // a + 1*b == a + b exactly in float32
}

void add_scaled(const Tensor& a, const Tensor& b, float scale, Tensor& out) {
  constexpr std::string_view kOp = "ops::add";
  check_binary(a, b, out, kOp);
  OMNIRT_CHECK(std::isfinite(scale), kOp, ": scale: expected a finite value, got ", scale);
  if (a.numel() == 0) return;
  if (a.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::add_scaled(a, b, scale, out);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    cpu::add_scaled(a, b, scale, out);
  }
}

void mul(const Tensor& a, const Tensor& b, Tensor& out) {
  constexpr std::string_view kOp = "ops::mul";
  check_binary(a, b, out, kOp);
  if (a.numel() == 0) return;
  if (a.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::mul(a, b, out);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    cpu::mul(a, b, out);
  }
}

}  // namespace omnirt::ops
