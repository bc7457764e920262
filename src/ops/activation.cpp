#include "ops/activation.h"

#include "core/error.h"
#include "ops/check.h"
#include "ops/cpu/activation.h"
#ifdef OMNIRT_WITH_CUDA
#include "ops/cuda/activation.h"
#endif

namespace omnirt::ops {

std::string_view act_name(Act act) {
  switch (act) {
    case Act::Gelu:
      return "gelu";
    case Act::Silu:
      return "silu";
    case Act::Relu:
      return "relu";
    case Act::Sigmoid:
      return "sigmoid";
  }
  OMNIRT_FAIL("unknown activation id ", static_cast<int>(act));
}

void activation(const Tensor& x, Act act, Tensor& out) {
  constexpr std::string_view kOp = "ops::activation";
  act_name(act);  // rejects an out-of-range enum value
  detail::check_contiguous(x, kOp, "x");
  detail::check_compute_dtype(x, kOp, "x");
  detail::check_like(out, x, kOp, "out", "x");
  detail::check_shape(out, x.shape(), kOp, "out");
  if (x.numel() == 0) return;
  if (x.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::activation(x, act, out);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    cpu::activation(x, act, out);
  }
}

void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) {
  constexpr std::string_view kOp = "ops::swiglu";
  detail::check_contiguous(gate, kOp, "gate");
  detail::check_compute_dtype(gate, kOp, "gate");
  detail::check_like(up, gate, kOp, "up", "gate");
  detail::check_shape(up, gate.shape(), kOp, "up");
  detail::check_like(out, gate, kOp, "out", "gate");
  detail::check_shape(out, gate.shape(), kOp, "out");
  if (gate.numel() == 0) return;
  if (gate.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::swiglu(gate, up, out);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    cpu::swiglu(gate, up, out);
  }
}

void swiglu_concat(const Tensor& gate_up, Tensor& out) {
  constexpr std::string_view kOp = "ops::swiglu_concat";
  detail::check_contiguous(gate_up, kOp, "gate_up");
  detail::check_compute_dtype(gate_up, kOp, "gate_up");
  OMNIRT_CHECK(gate_up.ndim() >= 1 && gate_up.dim(-1) % 2 == 0, kOp,
               ": gate_up: expected a [..., 2*H] tensor with an even last dimension, got shape ",
               shape_str(gate_up.shape()));
  Shape out_shape = gate_up.shape();
  out_shape.back() /= 2;
  detail::check_like(out, gate_up, kOp, "out", "gate_up");
  detail::check_shape(out, out_shape, kOp, "out");
  if (out.numel() == 0) return;
  OMNIRT_CHECK(out.raw() != gate_up.raw(), kOp, ": out must not overlap gate_up");
  if (gate_up.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::swiglu_concat(gate_up, out);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    cpu::swiglu_concat(gate_up, out);
  }
}

}  // namespace omnirt::ops
