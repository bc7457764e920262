#include "ops/norm.h"

#include <cmath>

#include "core/error.h"
#include "ops/check.h"
#include "ops/cpu/norm.h"
#ifdef OMNIRT_WITH_CUDA
#include "ops/cuda/norm.h"
#endif

namespace omnirt::ops {

namespace {
// x: a contiguous [..., F] float tensor with F >= 1; returns F.
int64_t check_rows_input(const Tensor& x, std::string_view op) {
  detail::check_contiguous(x, op, "x");
  detail::check_compute_dtype(x, op, "x");
  OMNIRT_CHECK(x.ndim() >= 1 && x.dim(-1) >= 1, op,
               ": x: expected a [..., features] tensor with features >= 1, got shape ",
               shape_str(x.shape()));
  return x.dim(-1);
}

// An optional per-feature parameter ([F], same dtype/device as x), or Tensor().
void check_param(const Tensor& p, const Tensor& x, int64_t features, std::string_view op,
                 std::string_view arg, bool optional) {
  if (optional && !p.defined()) return;
  detail::check_like(p, x, op, arg, "x");
  detail::check_shape(p, {features}, op, arg);
}

void check_eps(float eps, std::string_view op) {
  OMNIRT_CHECK(std::isfinite(eps) && eps >= 0.0f, op, ": eps: expected a finite value >= 0, got ",
               eps);
}

void check_output(const Tensor& out, const Tensor& x, std::string_view op, std::string_view arg) {
  detail::check_like(out, x, op, arg, "x");
  detail::check_shape(out, x.shape(), op, arg);
}
}  // namespace

void layernorm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, Tensor& out) {
  constexpr std::string_view kOp = "ops::layernorm";
  const int64_t features = check_rows_input(x, kOp);
  check_param(weight, x, features, kOp, "weight", /*optional=*/true);
  check_param(bias, x, features, kOp, "bias", /*optional=*/true);
  check_eps(eps, kOp);
  check_output(out, x, kOp, "out");
  if (x.numel() == 0) return;
  if (x.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::layernorm(x, weight, bias, eps, out);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    cpu::layernorm(x, weight, bias, eps, out);
  }
}

void rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor& out) {
  constexpr std::string_view kOp = "ops::rmsnorm";
  const int64_t features = check_rows_input(x, kOp);
  check_param(weight, x, features, kOp, "weight", /*optional=*/false);
  check_eps(eps, kOp);
  check_output(out, x, kOp, "out");
  if (x.numel() == 0) return;
  if (x.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::rmsnorm(x, weight, eps, out);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    cpu::rmsnorm(x, weight, eps, out);
  }
}

void add_rmsnorm(const Tensor& x, const Tensor& residual, const Tensor& weight, float eps,
                 Tensor& out, Tensor& residual_out) {
  constexpr std::string_view kOp = "ops::add_rmsnorm";
  const int64_t features = check_rows_input(x, kOp);
  detail::check_like(residual, x, kOp, "residual", "x");
  detail::check_shape(residual, x.shape(), kOp, "residual");
  check_param(weight, x, features, kOp, "weight", /*optional=*/false);
  check_eps(eps, kOp);
  check_output(out, x, kOp, "out");
  check_output(residual_out, x, kOp, "residual_out");
  OMNIRT_CHECK(x.numel() == 0 || out.raw() != residual_out.raw(), kOp,
               ": out and residual_out must be different buffers (both are written)");
  if (x.numel() == 0) return;
  if (x.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::add_rmsnorm(x, residual, weight, eps, out, residual_out);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    cpu::add_rmsnorm(x, residual, weight, eps, out, residual_out);
  }
}

}  // namespace omnirt::ops
