#include "quant/fp8_weight.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "ops/fp8.h"
#include "quant/tensor_f32.h"

namespace omnirt::quant {

Fp8Weight quantize_fp8_rows(const Tensor& w_in, const std::string& what) {
  OMNIRT_CHECK(w_in.defined() && w_in.ndim() == 2, what,
               ": FP8 quantisation needs a 2-D [N, K] weight, got shape ",
               w_in.defined() ? shape_str(w_in.shape()) : std::string("(undefined)"));
  const Tensor w = detail::as_f32_cpu(w_in, what);
  const int64_t n = w.dim(0), k = w.dim(1);
  OMNIRT_CHECK(n > 0 && k > 0, what, ": FP8 quantisation needs a non-empty weight, got shape ",
               shape_str(w.shape()));
  const float* src = w.data<float>();
  Fp8Weight out;
  out.codes = Tensor::empty({n, k}, DType::U8);
  out.scales = Tensor::empty({n}, DType::F32);
  uint8_t* codes = out.codes.data<uint8_t>();
  float* scales = out.scales.data<float>();
  for (int64_t r = 0; r < n; ++r) {
    const float* row = src + r * k;
    float amax = 0.f;
    for (int64_t i = 0; i < k; ++i) {
      OMNIRT_CHECK(std::isfinite(row[i]), what, ": non-finite value at [", r, ", ", i, "]");
      amax = std::max(amax, std::fabs(row[i]));
    }
    const float s = ops::fp8_scale_for_amax(amax);
    scales[r] = s;
    for (int64_t i = 0; i < k; ++i) codes[r * k + i] = ops::fp8_e4m3_encode(row[i] / s);
  }
  return out;
}

void check_fp8_rows(const Tensor& codes, const Tensor& scales, const std::string& what) {
  OMNIRT_CHECK(codes.defined() && codes.dtype() == DType::U8 && codes.ndim() == 2, what,
               ".codes: expected a U8 [N, K] tensor (E4M3), got ",
               codes.defined() ? codes.describe() : std::string("(undefined)"));
  OMNIRT_CHECK(
      scales.defined() && scales.dtype() == DType::F32 && scales.shape() == (Shape{codes.dim(0)}),
      what, ".scales: expected F32 [", codes.dim(0), "] (one scale per row), got ",
      scales.defined() ? scales.describe() : std::string("(undefined)"));
}

Tensor dequantize_fp8_rows(const Tensor& codes_in, const Tensor& scales_in,
                           const std::string& what) {
  check_fp8_rows(codes_in, scales_in, what);
  const Tensor codes = codes_in.is_cuda() ? codes_in.to(Device::CPU) : codes_in.contiguous();
  const Tensor scales = scales_in.is_cuda() ? scales_in.to(Device::CPU) : scales_in.contiguous();
  const int64_t n = codes.dim(0), k = codes.dim(1);
  Tensor w = Tensor::empty({n, k}, DType::F32);
  float* dst = w.data<float>();
  const uint8_t* c = codes.data<uint8_t>();
  const float* s = scales.data<float>();
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < k; ++i) dst[r * k + i] = ops::fp8_e4m3_decode(c[r * k + i]) * s[r];
  return w;
}

}  // namespace omnirt::quant
