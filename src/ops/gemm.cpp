// ops::linear / ops::gemm: argument validation and CPU/CUDA dispatch.
#include "ops/gemm.h"

#include <limits>

#include "core/error.h"
#include "ops/cpu/gemm.h"
#ifdef OMNIRT_WITH_CUDA
#include "ops/cuda/gemm.h"
#endif

namespace omnirt::ops {

const char* gemm_activation_name(GemmActivation a) {
  switch (a) {
    case GemmActivation::None:
      return "none";
    case GemmActivation::Relu:
      return "relu";
    case GemmActivation::GeluTanh:
      return "gelu_tanh";
  }
  return "?";
}

namespace {

void check_operand(const char* op, const char* name, const Tensor& t, DType dtype, Device device) {
  OMNIRT_CHECK(t.defined(), op, ": ", name, " is missing");
  OMNIRT_CHECK(t.dtype() == dtype, op, ": ", name, " has dtype ", dtype_name(t.dtype()),
               ", expected ", dtype_name(dtype), " (all operands share one dtype)");
  OMNIRT_CHECK(t.device() == device, op, ": ", name, " is on ", device_name(t.device()),
               ", expected ", device_name(device), " (all operands on one device)");
  OMNIRT_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous, got strides ",
               shape_str(t.strides()), " for ", t.describe());
}

bool shares_storage(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.numel() == 0 || b.numel() == 0) return false;
  const char* a0 = static_cast<const char*>(a.raw());
  const char* b0 = static_cast<const char*>(b.raw());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

// Validates the common parts and runs the backend for the resolved problem.
void run(const char* op, const GemmDims& dims, const Tensor& a, const Tensor& b, Tensor& c,
         bool trans_a, bool trans_b, float alpha, float beta, const Tensor& bias,
         const GemmOptions& options, const char* a_name, const char* b_name, const char* c_name) {
  const DType dtype = a.dtype();
  const Device device = a.device();
  check_operand(op, b_name, b, dtype, device);
  check_operand(op, c_name, c, dtype, device);
  if (bias.defined()) {
    check_operand(op, "bias", bias, dtype, device);
    OMNIRT_CHECK(bias.ndim() == 1 && bias.dim(0) == dims.n, op, ": bias must have shape [", dims.n,
                 "], got ", shape_str(bias.shape()));
  }
  OMNIRT_CHECK(dims.k >= 1, op, ": the reduction dimension K is 0 (", a.describe(), ")");
  constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();
  OMNIRT_CHECK(dims.m <= kMaxDim && dims.n <= kMaxDim && dims.k <= kMaxDim && dims.batch <= kMaxDim,
               op, ": dimensions M=", dims.m, " N=", dims.n, " K=", dims.k, " batch=", dims.batch,
               " exceed the 32-bit limit of the BLAS backends");
  OMNIRT_CHECK(!shares_storage(c, a) && !shares_storage(c, b), op, ": output ", c_name,
               " overlaps an input");
  if (dims.m == 0 || dims.n == 0 || dims.batch == 0) return;  // nothing to write

  if (device == Device::CPU) {
    OMNIRT_CHECK(dtype == DType::F32, op, ": the CPU backend supports F32 only, got ",
                 dtype_name(dtype));
    cpu::gemm(dims, a, b, c, trans_a, trans_b, alpha, beta, bias, options);
    return;
  }
  OMNIRT_CHECK(dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16, op,
               ": the CUDA backend supports F32, F16 and BF16, got ", dtype_name(dtype));
#ifdef OMNIRT_WITH_CUDA
  cuda::gemm(dims, a, b, c, trans_a, trans_b, alpha, beta, bias, options);
#else
  OMNIRT_FAIL(op, ": CUDA tensors given but omnirt was built without CUDA");
#endif
}

}  // namespace

void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& out,
            const GemmOptions& options) {
  constexpr const char* op = "linear";
  OMNIRT_CHECK(x.defined(), op, ": input x is missing");
  OMNIRT_CHECK(weight.defined(), op, ": weight is missing");
  OMNIRT_CHECK(out.defined(), op, ": output is missing");
  check_operand(op, "input x", x, x.dtype(), x.device());
  OMNIRT_CHECK(x.ndim() >= 1, op, ": input x must have at least 1 dimension");
  OMNIRT_CHECK(weight.ndim() == 2, op, ": weight must be 2-D [N, K], got ",
               shape_str(weight.shape()));
  const int64_t k = x.dim(-1);
  OMNIRT_CHECK(weight.dim(1) == k, op, ": K mismatch: x ", shape_str(x.shape()), " has K=", k,
               " but weight ", shape_str(weight.shape()), " has K=", weight.dim(1));
  Shape out_shape = x.shape();
  out_shape.back() = weight.dim(0);
  OMNIRT_CHECK(out.shape() == out_shape, op, ": output must have shape ", shape_str(out_shape),
               ", got ", shape_str(out.shape()));
  GemmDims dims;
  dims.m = x.numel() / std::max<int64_t>(k, 1);
  dims.n = weight.dim(0);
  dims.k = k;
  // y = x W^T: a = x [M, K], b = W [N, K] transposed.
  run(op, dims, x, weight, out, /*trans_a=*/false, /*trans_b=*/true, 1.f, 0.f, bias, options,
      "input x", "weight", "output");
}

void gemm(const Tensor& a, const Tensor& b, Tensor& c, bool trans_a, bool trans_b, float alpha,
          float beta, const Tensor& bias, const GemmOptions& options) {
  constexpr const char* op = "gemm";
  OMNIRT_CHECK(a.defined() && b.defined() && c.defined(), op, ": a, b and c must all be given");
  check_operand(op, "a", a, a.dtype(), a.device());
  OMNIRT_CHECK(a.ndim() == 2 || a.ndim() == 3, op, ": a must be 2-D or 3-D (batched), got ",
               shape_str(a.shape()));
  OMNIRT_CHECK(b.ndim() == a.ndim() && c.ndim() == a.ndim(), op,
               ": a, b and c must have the same rank, got a ", shape_str(a.shape()), ", b ",
               shape_str(b.shape()), ", c ", shape_str(c.shape()));
  const bool batched = a.ndim() == 3;
  GemmDims dims;
  dims.batch = batched ? a.dim(0) : 1;
  if (batched) {
    OMNIRT_CHECK(b.dim(0) == dims.batch && c.dim(0) == dims.batch, op, ": batch sizes differ: a ",
                 shape_str(a.shape()), ", b ", shape_str(b.shape()), ", c ", shape_str(c.shape()));
  }
  dims.m = trans_a ? a.dim(-1) : a.dim(-2);
  dims.k = trans_a ? a.dim(-2) : a.dim(-1);
  const int64_t kb = trans_b ? b.dim(-1) : b.dim(-2);
  dims.n = trans_b ? b.dim(-2) : b.dim(-1);
  OMNIRT_CHECK(kb == dims.k, op, ": K mismatch: op(a) is ", dims.m, "x", dims.k, " (a ",
               shape_str(a.shape()), trans_a ? " transposed" : "", ") but op(b) is ", kb, "x",
               dims.n, " (b ", shape_str(b.shape()), trans_b ? " transposed" : "", ")");
  OMNIRT_CHECK(c.dim(-2) == dims.m && c.dim(-1) == dims.n, op, ": c must be ", dims.m, "x", dims.n,
               " in its last two dims, got ", shape_str(c.shape()));
  run(op, dims, a, b, c, trans_a, trans_b, alpha, beta, bias, options, "a", "b", "c");
}

}  // namespace omnirt::ops
