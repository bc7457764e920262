#include "ops/window.h"

#include "core/error.h"

namespace omnirt::ops {

namespace {
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_common(const Tensor& a, const Tensor& b, const char* op) {
  OMNIRT_CHECK(a.defined() && b.defined(), op, ": undefined tensor");
  OMNIRT_CHECK(a.is_contiguous() && b.is_contiguous(), op, ": tensors must be contiguous (got ",
               a.describe(), ", ", b.describe(), ")");
  OMNIRT_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch ", a.describe(), " vs ", b.describe());
  OMNIRT_CHECK(a.device() == b.device(), op, ": device mismatch ", a.describe(), " vs ",
               b.describe());
  if (a.device() == Device::CPU)
    OMNIRT_CHECK(a.dtype() == DType::F32, op, ": the CPU backend is float32 only, got ",
                 a.describe());
}
}  // namespace

void window_partition(const Tensor& x, int window, Tensor& out) {
  OMNIRT_CHECK(x.ndim() == 4, "window_partition: x must be [N, H, W, C], got ", x.describe());
  OMNIRT_CHECK(window > 0, "window_partition: window must be positive, got ", window);
  const int64_t n = x.dim(0), h = x.dim(1), w = x.dim(2), c = x.dim(3);
  const Shape expected{n * ceil_div(h, window) * ceil_div(w, window), int64_t(window) * window, c};
  OMNIRT_CHECK(out.defined() && out.shape() == expected, "window_partition: out must be ",
               shape_str(expected), ", got ", out.defined() ? out.describe() : "undefined");
  check_common(x, out, "window_partition");
  if (x.device() == Device::CPU) return cpu::window_partition(x, window, out);
#ifdef OMNIRT_WITH_CUDA
  return cuda::window_partition(x, window, out);
#else
  OMNIRT_FAIL("window_partition: omnirt was built without CUDA");
#endif
}

void window_unpartition(const Tensor& windows, int window, Tensor& out) {
  OMNIRT_CHECK(out.ndim() == 4, "window_unpartition: out must be [N, H, W, C], got ",
               out.describe());
  OMNIRT_CHECK(window > 0, "window_unpartition: window must be positive, got ", window);
  const int64_t n = out.dim(0), h = out.dim(1), w = out.dim(2), c = out.dim(3);
  const Shape expected{n * ceil_div(h, window) * ceil_div(w, window), int64_t(window) * window, c};
  OMNIRT_CHECK(windows.defined() && windows.shape() == expected, "window_unpartition: windows must be ",
               shape_str(expected), ", got ", windows.defined() ? windows.describe() : "undefined");
  check_common(windows, out, "window_unpartition");
  if (out.device() == Device::CPU) return cpu::window_unpartition(windows, window, out);
#ifdef OMNIRT_WITH_CUDA
  return cuda::window_unpartition(windows, window, out);
#else
  OMNIRT_FAIL("window_unpartition: omnirt was built without CUDA");
#endif
}

}  // namespace omnirt::ops
