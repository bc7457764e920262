#include "quant/tensor_f32.h"

#include "core/error.h"

namespace omnirt::quant::detail {

Tensor as_f32_cpu(const Tensor& t, const std::string& what) {
  OMNIRT_CHECK(t.defined(), what, ": tensor is undefined");
  OMNIRT_CHECK(dtype_is_float(t.dtype()), what, ": expected a float tensor, got dtype ",
               dtype_name(t.dtype()));
  Tensor c = t.is_cuda() ? t.to(Device::CPU) : t;
  if (!c.is_contiguous()) {
    Tensor d = Tensor::empty(c.shape(), c.dtype());
    d.copy_from(c);
    c = d;
  }
  return c.dtype() == DType::F32 ? c : c.to_dtype(DType::F32);
}

}  // namespace omnirt::quant::detail
