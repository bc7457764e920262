#include "ops/fused.h"

#include "core/error.h"
#include "ops/check.h"
#include "ops/cpu/fused.h"
#ifdef OMNIRT_WITH_CUDA
#include "ops/cuda/fused.h"
#endif

namespace omnirt::ops {

namespace {
// [begin, end) byte ranges of two contiguous tensors intersect.
bool overlap(const Tensor& a, const Tensor& b) {
  const char* a0 = static_cast<const char*>(a.raw());
  const char* b0 = static_cast<const char*>(b.raw());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}
}  // namespace

void swiglu_layernorm(const Tensor& gate_up, const Tensor& weight, const Tensor& bias, float eps,
                      Tensor& out) {
  constexpr std::string_view kOp = "ops::swiglu_layernorm";
  detail::check_contiguous(gate_up, kOp, "gate_up");
  detail::check_compute_dtype(gate_up, kOp, "gate_up");
  OMNIRT_CHECK(gate_up.ndim() >= 1 && gate_up.dim(-1) % 2 == 0, kOp,
               ": gate_up: expected a [..., 2*H] tensor with an even last dimension, got shape ",
               shape_str(gate_up.shape()));
  Shape out_shape = gate_up.shape();
  out_shape.back() /= 2;
  const int64_t hidden = out_shape.back();
  if (weight.defined()) {
    detail::check_like(weight, gate_up, kOp, "weight", "gate_up");
    detail::check_shape(weight, {hidden}, kOp, "weight");
  }
  if (bias.defined()) {
    detail::check_like(bias, gate_up, kOp, "bias", "gate_up");
    detail::check_shape(bias, {hidden}, kOp, "bias");
  }
  OMNIRT_CHECK(eps >= 0.0f, kOp, ": eps: expected >= 0, got ", eps);
  detail::check_like(out, gate_up, kOp, "out", "gate_up");
  detail::check_shape(out, out_shape, kOp, "out");
  if (out.numel() == 0) return;
  OMNIRT_CHECK(!overlap(out, gate_up), kOp, ": out must not overlap gate_up");
  if (gate_up.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::swiglu_layernorm(gate_up, weight, bias, eps, out);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    cpu::swiglu_layernorm(gate_up, weight, bias, eps, out);
  }
}

void qkv_rope_heads(const Tensor& qkv, const Tensor& qkv_bias, const Tensor& cos, const Tensor& sin,
                    int window, Tensor& out) {
  constexpr std::string_view kOp = "ops::qkv_rope_heads";
  detail::check_contiguous(qkv, kOp, "qkv");
  detail::check_compute_dtype(qkv, kOp, "qkv");
  detail::check_ndim(qkv, 4, kOp, "qkv");
  OMNIRT_CHECK(qkv.dim(3) % 3 == 0, kOp, ": qkv: expected [N, gh, gw, 3E], got shape ",
               shape_str(qkv.shape()));
  OMNIRT_CHECK(window >= 0, kOp, ": window: expected >= 0 (0 = global), got ", window);
  detail::check_like(qkv_bias, qkv, kOp, "qkv_bias", "qkv");
  detail::check_shape(qkv_bias, {qkv.dim(3)}, kOp, "qkv_bias");
  detail::check_like(out, qkv, kOp, "out", "qkv");
  detail::check_ndim(out, 5, kOp, "out");
  const int64_t n = qkv.dim(0), gh = qkv.dim(1), gw = qkv.dim(2), e = qkv.dim(3) / 3;
  const int64_t heads = out.dim(2), d = out.dim(4);
  OMNIRT_CHECK(heads >= 1 && d >= 2 && d % 2 == 0 && heads * d == e, kOp,
               ": out: expected [3, B, heads, S, D] with an even D and heads * D = ", e,
               " (qkv's E), got shape ", shape_str(out.shape()));
  const int64_t wh = window > 0 ? window : gh, ww = window > 0 ? window : gw;
  const int64_t batch = window > 0 ? n * ((gh + wh - 1) / wh) * ((gw + ww - 1) / ww) : n;
  const int64_t seq = wh * ww;
  detail::check_shape(out, {3, batch, heads, seq, d}, kOp, "out");
  for (const auto& [table, name] : {std::pair{&cos, "cos"}, std::pair{&sin, "sin"}}) {
    detail::check_contiguous(*table, kOp, name);
    detail::check_dtype(*table, DType::F32, kOp, name);
    detail::check_device(*table, qkv.device(), kOp, name);
    detail::check_shape(*table, {seq, d}, kOp, name);
  }
  if (out.numel() == 0) return;
  OMNIRT_CHECK(!overlap(out, qkv) && !overlap(out, qkv_bias), kOp,
               ": out must not overlap qkv or qkv_bias");
  if (qkv.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::qkv_rope_heads(qkv, qkv_bias, cos, sin, window, out);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    cpu::qkv_rope_heads(qkv, qkv_bias, cos, sin, window, out);
  }
}

}  // namespace omnirt::ops
