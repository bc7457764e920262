// ops/fp8.h: argument validation and CPU/CUDA dispatch.
#include "ops/fp8.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "ops/check.h"
#include "ops/cpu/fp8.h"
#ifdef OMNIRT_WITH_CUDA
#include "ops/cuda/fp8.h"
#include "ops/cuda/gemm.h"
#endif

namespace omnirt::ops {

float fp8_scale_for_amax(float amax) {
  OMNIRT_CHECK(std::isfinite(amax) && amax >= 0.f, "fp8_scale_for_amax: amax must be finite and ",
               ">= 0, got ", amax);
  return amax == 0.f ? 1.f : amax / kFp8E4M3Max;
}

namespace {

// A float tensor the backend of its device reads: CPU F32, CUDA F32/F16/BF16.
void check_float_input(const Tensor& x, std::string_view op, std::string_view arg) {
  detail::check_contiguous(x, op, arg);
  detail::check_compute_dtype(x, op, arg);
}

// A per-tensor scale: F32 with one element, on `device`.
void check_scale(const Tensor& s, Device device, std::string_view op, std::string_view arg) {
  detail::check_contiguous(s, op, arg);
  detail::check_dtype(s, DType::F32, op, arg);
  detail::check_device(s, device, op, arg);
  OMNIRT_CHECK(s.numel() == 1, op, ": ", arg,
               ": expected a per-tensor scale (1 element), got shape ", shape_str(s.shape()));
}

// The CPU reference reads the scale and rejects values the math cannot use.
float host_scale(const Tensor& s, std::string_view op, std::string_view arg) {
  const float v = s.data<float>()[0];
  OMNIRT_CHECK(std::isfinite(v) && v > 0.f, op, ": ", arg, ": a scale must be finite and > 0, got ",
               v);
  return v;
}

bool overlaps(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.numel() == 0 || b.numel() == 0) return false;
  const char* a0 = static_cast<const char*>(a.raw());
  const char* b0 = static_cast<const char*>(b.raw());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

}  // namespace

void quantize_fp8(const Tensor& x, const Tensor& scale, Tensor& out) {
  constexpr std::string_view kOp = "ops::quantize_fp8";
  check_float_input(x, kOp, "x");
  OMNIRT_CHECK(x.ndim() >= 1, kOp, ": x: expected at least 1 dimension, got a scalar");
  check_scale(scale, x.device(), kOp, "scale");
  detail::check_contiguous(out, kOp, "out");
  detail::check_dtype(out, DType::F8E4M3, kOp, "out");
  detail::check_device(out, x.device(), kOp, "out");
  Shape expected = x.shape();
  expected.back() = out.ndim() >= 1 ? out.dim(-1) : 0;
  OMNIRT_CHECK(out.shape() == expected && out.dim(-1) >= x.dim(-1), kOp, ": out: expected shape ",
               shape_str(x.shape()), " (the last dim may be padded up), got ",
               shape_str(out.shape()));
  if (out.numel() == 0) return;
  if (x.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::quantize_fp8(x, scale, out);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    cpu::quantize_fp8(x, host_scale(scale, kOp, "scale"), out);
  }
}

void amax(const Tensor& x, Tensor& out, bool accumulate) {
  constexpr std::string_view kOp = "ops::amax";
  check_float_input(x, kOp, "x");
  check_scale(out, x.device(), kOp, "out");
  if (x.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::amax(x, out, accumulate);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    const float m = cpu::amax(x);
    float& o = out.data<float>()[0];
    if (!accumulate || std::isnan(m) || m > o) o = m;
  }
}

void linear_fp8(const Tensor& x_q, const Tensor& x_scale, const Tensor& w_q, const Tensor& w_scale,
                const Tensor& bias, Tensor& out, float beta, const Fp8GemmOptions& options) {
  constexpr std::string_view kOp = "ops::linear_fp8";
  detail::check_contiguous(x_q, kOp, "x_q");
  detail::check_dtype(x_q, DType::F8E4M3, kOp, "x_q");
  OMNIRT_CHECK(x_q.ndim() >= 1, kOp, ": x_q: expected at least 1 dimension, got a scalar");
  const Device device = x_q.device();
  detail::check_contiguous(w_q, kOp, "w_q");
  detail::check_dtype(w_q, DType::F8E4M3, kOp, "w_q");
  detail::check_device(w_q, device, kOp, "w_q");
  detail::check_ndim(w_q, 2, kOp, "w_q");
  check_scale(x_scale, device, kOp, "x_scale");
  check_scale(w_scale, device, kOp, "w_scale");
  detail::check_contiguous(out, kOp, "out");
  detail::check_device(out, device, kOp, "out");
  const int64_t k = x_q.dim(-1), n = w_q.dim(0);
  OMNIRT_CHECK(w_q.dim(1) == k, kOp, ": K mismatch: x_q ", shape_str(x_q.shape()), " has K=", k,
               " but w_q ", shape_str(w_q.shape()), " has K=", w_q.dim(1));
  Shape out_shape = x_q.shape();
  out_shape.back() = n;
  detail::check_shape(out, out_shape, kOp, "out");
  if (device == Device::CPU) {
    OMNIRT_CHECK(out.dtype() == DType::F32, kOp, ": out: the CPU reference writes F32, got ",
                 dtype_name(out.dtype()));
  } else {
    OMNIRT_CHECK(out.dtype() == DType::F16 || out.dtype() == DType::BF16, kOp,
                 ": out: the CUDA FP8 GEMM writes F16 or BF16, got ", dtype_name(out.dtype()));
  }
  if (bias.defined()) {
    detail::check_like(bias, out, kOp, "bias", "out");
    detail::check_shape(bias, {n}, kOp, "bias");
  }
  // cuBLASLt's FP8 kernels (Hopper) need the "TN" form, which the nn.Linear layout is (see
  // cuda/gemm.cpp), and every dimension that is a leading dimension or the reduction to be a
  // multiple of 16: K (rows of x_q and w_q) and N (rows of out). M is free.
  OMNIRT_CHECK(k % 16 == 0 && k > 0, kOp, ": K = ", k, " (x_q ", shape_str(x_q.shape()),
               ") must be a positive multiple of 16 for FP8 GEMMs (pad K with zero columns: ",
               "quantize_fp8 can write a padded x_q)");
  OMNIRT_CHECK(n % 16 == 0, kOp, ": N = ", n, " (w_q ", shape_str(w_q.shape()),
               ") must be a multiple of 16 for FP8 GEMMs");
  OMNIRT_CHECK(!overlaps(out, x_q) && !overlaps(out, w_q), kOp, ": out overlaps an input");
  constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();
  GemmDims dims;
  dims.m = x_q.numel() / k;
  dims.n = n;
  dims.k = k;
  OMNIRT_CHECK(dims.m <= kMaxDim && n <= kMaxDim && k <= kMaxDim, kOp, ": M=", dims.m, " N=", n,
               " K=", k, " exceed the 32-bit limit of cuBLASLt");
  if (dims.m == 0 || n == 0) return;
  if (device == Device::CUDA) {
    // cuBLASLt's FP8 kernels assume 16-byte aligned matrices (they do not fall back).
    auto check_aligned = [&](const Tensor& t, std::string_view arg) {
      OMNIRT_CHECK(reinterpret_cast<uintptr_t>(t.raw()) % 16 == 0, kOp, ": ", arg,
                   ": FP8 GEMM operands must start on a 16-byte boundary, got address ", t.raw(),
                   " (", t.describe(), ")");
    };
    check_aligned(x_q, "x_q");
    check_aligned(w_q, "w_q");
    check_aligned(out, "out");
    if (bias.defined()) check_aligned(bias, "bias");
#ifdef OMNIRT_WITH_CUDA
    cuda::linear_fp8(dims, x_q, x_scale, w_q, w_scale, bias, out, beta, options);
#else
    detail::fail_no_cuda(kOp);
#endif
    return;
  }
  const float alpha = host_scale(x_scale, kOp, "x_scale") * host_scale(w_scale, kOp, "w_scale");
  cpu::linear_fp8(dims, x_q, w_q, alpha, bias, out, beta, options);
}

}  // namespace omnirt::ops
