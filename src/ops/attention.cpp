// ops::attention: argument validation and CPU/CUDA dispatch.
#include "ops/attention.h"

#include <cmath>

#include "core/error.h"
#include "ops/cpu/attention.h"
#ifdef OMNIRT_WITH_CUDA
#include "ops/cuda/attention.h"
#endif

namespace omnirt::ops {

namespace {

void check_4d(const char* name, const Tensor& t, DType dtype, Device device) {
  OMNIRT_CHECK(t.defined(), "attention: ", name, " is missing");
  OMNIRT_CHECK(t.ndim() == 4, "attention: ", name, " must be 4-D [B, H, S, D], got ",
               shape_str(t.shape()));
  OMNIRT_CHECK(t.dtype() == dtype, "attention: ", name, " has dtype ", dtype_name(t.dtype()),
               ", expected ", dtype_name(dtype), " (q, k, v and out share one dtype)");
  OMNIRT_CHECK(t.device() == device, "attention: ", name, " is on ", device_name(t.device()),
               ", expected ", device_name(device), " (all tensors on one device)");
  OMNIRT_CHECK(t.strides()[3] == 1 || t.dim(3) == 1, "attention: ", name,
               " must be contiguous in its last (head_dim) dimension, got strides ",
               shape_str(t.strides()));
}

bool overlaps(const Tensor& a, const Tensor& b) {
  // Conservative: compares the address ranges the two views can touch.
  auto range = [](const Tensor& t) {
    const int64_t es = dtype_bits(t.dtype()) / 8;
    int64_t extent = 1;
    for (int i = 0; i < t.ndim(); ++i) extent += (t.dim(i) - 1) * t.strides()[i];
    const char* p = static_cast<const char*>(t.raw());
    return std::make_pair(p, p + extent * es);
  };
  auto [a0, a1] = range(a);
  auto [b0, b1] = range(b);
  return a0 < b1 && b0 < a1;
}

}  // namespace

void attention(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& out,
               const AttentionOptions& options) {
  OMNIRT_CHECK(q.defined(), "attention: q is missing");
  const DType dtype = q.dtype();
  const Device device = q.device();
  check_4d("q", q, dtype, device);
  check_4d("k", k, dtype, device);
  check_4d("v", v, dtype, device);
  check_4d("out", out, dtype, device);

  AttentionDims dims;
  dims.batch = q.dim(0);
  dims.heads_q = q.dim(1);
  dims.seq_q = q.dim(2);
  dims.head_dim = q.dim(3);
  dims.heads_kv = k.dim(1);
  dims.seq_k = k.dim(2);
  OMNIRT_CHECK(k.dim(0) == dims.batch && k.dim(3) == dims.head_dim, "attention: k ",
               shape_str(k.shape()), " does not match q ", shape_str(q.shape()),
               " in batch or head_dim");
  OMNIRT_CHECK(v.shape() == k.shape(), "attention: v must have k's shape ", shape_str(k.shape()),
               ", got ", shape_str(v.shape()));
  OMNIRT_CHECK(out.shape() == q.shape(), "attention: out must have q's shape ",
               shape_str(q.shape()), ", got ", shape_str(out.shape()));
  OMNIRT_CHECK(dims.heads_kv >= 1 && dims.heads_q % dims.heads_kv == 0, "attention: query heads (",
               dims.heads_q, ") must be a multiple of kv heads (", dims.heads_kv, ")");
  OMNIRT_CHECK(dims.seq_k >= 1, "attention: no keys (Sk = 0)");
  OMNIRT_CHECK(dims.head_dim >= 1, "attention: head_dim is 0");
  OMNIRT_CHECK(!options.causal || dims.seq_q <= dims.seq_k, "attention: causal with Sq (",
               dims.seq_q, ") > Sk (", dims.seq_k,
               ") would leave the first query rows without any visible key");
  dims.causal = options.causal;
  OMNIRT_CHECK(options.cuda_kv_splits >= 0, "attention: cuda_kv_splits must be >= 0, got ",
               options.cuda_kv_splits);
  dims.kv_splits = options.cuda_kv_splits;
  dims.kernel = options.cuda_kernel;
  dims.allow_tf32 = options.allow_tf32;
  OMNIRT_CHECK(device == Device::CPU || options.cuda_kernel != AttentionKernel::TensorCore ||
                   dtype != DType::F32 || options.allow_tf32,
               "attention: the tensor-core kernel needs F16 or BF16 inputs, or F32 with "
               "allow_tf32");
  dims.scale = options.scale ? *options.scale : 1.f / std::sqrt(static_cast<float>(dims.head_dim));
  OMNIRT_CHECK(std::isfinite(dims.scale), "attention: scale must be finite, got ", dims.scale);

  const Tensor& mask = options.mask;
  if (mask.defined()) {
    OMNIRT_CHECK(mask.dtype() == DType::U8 || mask.dtype() == DType::Bool,
                 "attention: mask must be U8 or Bool (nonzero = blocked), got ",
                 dtype_name(mask.dtype()));
    OMNIRT_CHECK(mask.shape() == (Shape{dims.seq_q, dims.seq_k}),
                 "attention: mask must be [Sq, Sk] = ", shape_str({dims.seq_q, dims.seq_k}),
                 ", got ", shape_str(mask.shape()));
    OMNIRT_CHECK(mask.device() == device, "attention: mask is on ", device_name(mask.device()),
                 ", expected ", device_name(device));
    OMNIRT_CHECK(mask.is_contiguous(), "attention: mask must be contiguous");
  }
  if (q.numel() == 0) return;  // B, Hq or Sq is 0: nothing to write
  for (const Tensor* in : {&q, &k, &v}) {
    OMNIRT_CHECK(!overlaps(out, *in), "attention: out overlaps an input (", out.describe(), ")");
  }

  if (device == Device::CPU) {
    OMNIRT_CHECK(dtype == DType::F32, "attention: the CPU backend supports F32 only, got ",
                 dtype_name(dtype));
    cpu::attention(dims, q, k, v, out, mask);
    return;
  }
  OMNIRT_CHECK(dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16,
               "attention: the CUDA backend supports F32, F16 and BF16, got ", dtype_name(dtype));
  OMNIRT_CHECK(dims.head_dim == 32 || dims.head_dim == 64 || dims.head_dim == 128,
               "attention: the CUDA backend supports head_dim 32, 64 and 128, got ", dims.head_dim);
#ifdef OMNIRT_WITH_CUDA
  cuda::attention(dims, q, k, v, out, mask);
#else
  OMNIRT_FAIL("attention: CUDA tensors given but omnirt was built without CUDA");
#endif
}

}  // namespace omnirt::ops
