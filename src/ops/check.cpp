#include "ops/check.h"

#include "core/error.h"

namespace omnirt::ops::detail {

void check_defined(const Tensor& t, std::string_view op, std::string_view arg) {
  OMNIRT_CHECK(t.defined(), op, ": ", arg, ": expected a tensor, got an undefined Tensor()");
}

void check_contiguous(const Tensor& t, std::string_view op, std::string_view arg) {
  check_defined(t, op, arg);
  OMNIRT_CHECK(t.is_contiguous(), op, ": ", arg,
               ": expected a contiguous tensor, got a strided view ", t.describe(),
               " with strides ", shape_str(t.strides()));
}

void check_shape(const Tensor& t, const Shape& expected, std::string_view op,
                 std::string_view arg) {
  check_defined(t, op, arg);
  OMNIRT_CHECK(t.shape() == expected, op, ": ", arg, ": expected shape ", shape_str(expected),
               ", got ", shape_str(t.shape()));
}

void check_ndim(const Tensor& t, int expected, std::string_view op, std::string_view arg) {
  check_defined(t, op, arg);
  OMNIRT_CHECK(t.ndim() == expected, op, ": ", arg, ": expected a ", expected,
               "-D tensor, got shape ", shape_str(t.shape()));
}

void check_dtype(const Tensor& t, DType expected, std::string_view op, std::string_view arg) {
  check_defined(t, op, arg);
  OMNIRT_CHECK(t.dtype() == expected, op, ": ", arg, ": expected dtype ", dtype_name(expected),
               ", got ", dtype_name(t.dtype()));
}

void check_device(const Tensor& t, Device expected, std::string_view op, std::string_view arg) {
  check_defined(t, op, arg);
  OMNIRT_CHECK(t.device() == expected, op, ": ", arg, ": expected device ", device_name(expected),
               ", got ", device_name(t.device()));
}

void check_compute_dtype(const Tensor& t, std::string_view op, std::string_view arg) {
  check_defined(t, op, arg);
  const DType d = t.dtype();
  if (t.is_cuda()) {
    OMNIRT_CHECK(d == DType::F32 || d == DType::F16 || d == DType::BF16, op, ": ", arg,
                 ": expected dtype F32, F16 or BF16 on cuda, got ", dtype_name(d));
  } else {
    OMNIRT_CHECK(d == DType::F32, op, ": ", arg,
                 ": expected dtype F32 on cpu (the CPU ops are the float32 reference), got ",
                 dtype_name(d));
  }
}

void check_like(const Tensor& t, const Tensor& ref, std::string_view op, std::string_view arg,
                std::string_view ref_arg) {
  check_contiguous(t, op, arg);
  OMNIRT_CHECK(t.device() == ref.device(), op, ": ", arg, ": expected device ",
               device_name(ref.device()), " (same as ", ref_arg, "), got ",
               device_name(t.device()));
  OMNIRT_CHECK(t.dtype() == ref.dtype(), op, ": ", arg, ": expected dtype ",
               dtype_name(ref.dtype()), " (same as ", ref_arg, "), got ", dtype_name(t.dtype()));
}

void fail_no_cuda(std::string_view op) {
  OMNIRT_FAIL(op, ": got CUDA tensors, but omnirt was built without CUDA");
}

}  // namespace omnirt::ops::detail
