#include "ops/cpu/cast.h"

#include <cstring>

#include "core/dtype.h"

namespace omnirt::ops::cpu {

namespace {
float load(const void* p, DType d, int64_t i) {
  switch (d) {
    case DType::F16:
      return half_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::BF16:
      return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    default:
      return static_cast<const float*>(p)[i];
  }
}
void store(void* p, DType d, int64_t i, float v) {
  switch (d) {
    case DType::F16:
      static_cast<uint16_t*>(p)[i] = float_to_half(v);
      break;
    case DType::BF16:
      static_cast<uint16_t*>(p)[i] = float_to_bf16(v);
      break;
    default:
      static_cast<float*>(p)[i] = v;
  }
}
}  // namespace

// Every conversion goes through float32, which holds f16 and bf16 values exactly.
void cast(const Tensor& x, Tensor& out) {
  if (x.dtype() == out.dtype()) {
    if (x.raw() != out.raw()) std::memcpy(out.raw(), x.raw(), x.nbytes());
    return;
  }
  for (int64_t i = 0; i < x.numel(); ++i)
    store(out.raw(), out.dtype(), i, load(x.raw(), x.dtype(), i));
}

}  // namespace omnirt::ops::cpu
