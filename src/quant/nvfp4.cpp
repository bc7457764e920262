#include "quant/nvfp4.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "quant/tensor_f32.h"

namespace omnirt::quant {

using detail::as_f32_cpu;

namespace {

// E2M1 magnitudes by code & 7.
constexpr float kE2m1[8] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f};

// Index of the nearest value in an ascending grid of representable magnitudes `grid[0..n)`
// (ties to the even mantissa, i.e. to the even index: both formats' grids alternate mantissa
// 0/1 along the index within each binade and across the subnormal/normal boundary). Values past
// the end saturate to the last entry.
int nearest_even_index(const float* grid, int n, float mag) {
  if (mag >= grid[n - 1]) return n - 1;
  int i = static_cast<int>(std::upper_bound(grid, grid + n, mag) - grid) - 1;  // grid[i] <= mag
  const float lo = grid[i], hi = grid[i + 1];
  const float dl = mag - lo, dh = hi - mag;  // exact: neighbouring grid points, same binade-ish
  if (dl < dh) return i;
  if (dh < dl) return i + 1;
  return (i % 2 == 0) ? i : i + 1;
}

// Every non-negative finite E4M3 value in code order 0x00..0x7E (ascending).
const std::vector<float>& e4m3_grid() {
  static const std::vector<float> g = [] {
    std::vector<float> v;
    for (int b = 0; b <= 0x7E; ++b) v.push_back(e4m3_to_float(static_cast<uint8_t>(b)));
    return v;
  }();
  return g;
}

}  // namespace

float e2m1_to_float(uint8_t code) {
  const float m = kE2m1[code & 7];
  return (code & 8) ? -m : m;
}

uint8_t float_to_e2m1(float x) {
  OMNIRT_CHECK(!std::isnan(x), "float_to_e2m1: NaN cannot be represented");
  const int i = nearest_even_index(kE2m1, 8, std::fabs(x));
  return static_cast<uint8_t>(i | (std::signbit(x) && i != 0 ? 8 : 0));
}

float e4m3_to_float(uint8_t bits) {
  const int sign = bits >> 7, e = (bits >> 3) & 0xF, m = bits & 7;
  if (e == 15 && m == 7) return NAN;
  const float mag = e == 0 ? std::ldexp(static_cast<float>(m) / 8.f, -6)
                           : std::ldexp(1.f + static_cast<float>(m) / 8.f, e - 7);
  return sign ? -mag : mag;
}

uint8_t float_to_e4m3(float x) {
  OMNIRT_CHECK(!std::isnan(x), "float_to_e4m3: NaN cannot be represented");
  const std::vector<float>& g = e4m3_grid();
  const int i = nearest_even_index(g.data(), static_cast<int>(g.size()), std::fabs(x));
  return static_cast<uint8_t>(i | (std::signbit(x) && i != 0 ? 0x80 : 0));
}

Nvfp4Weight quantize_nvfp4(const Tensor& w_in, const std::string& what) {
  OMNIRT_CHECK(w_in.defined() && w_in.ndim() == 2, what,
               ": NVFP4 quantisation needs a 2-D [N, K] weight, got shape ",
               w_in.defined() ? shape_str(w_in.shape()) : std::string("(undefined)"));
  const Tensor w = as_f32_cpu(w_in, what);
  const int64_t n = w.dim(0), k = w.dim(1);
  OMNIRT_CHECK(n > 0 && k > 0 && k % kNvfp4Block == 0, what, ": NVFP4 needs K (columns) a ",
               "multiple of ", kNvfp4Block, ", got shape ", shape_str(w.shape()));
  const float* src = w.data<float>();
  float amax = 0.f;
  for (int64_t i = 0; i < n * k; ++i) {
    OMNIRT_CHECK(std::isfinite(src[i]), what, ": non-finite value at [", i / k, ", ", i % k, "]");
    amax = std::max(amax, std::fabs(src[i]));
  }
  Nvfp4Weight out;
  out.rows = n;
  out.cols = k;
  out.global_scale = amax / (6.f * 448.f);
  out.codes = Tensor::zeros({n, k / 2}, DType::U8);
  out.scales = Tensor::zeros({n, k / kNvfp4Block}, DType::U8);
  if (amax == 0.f) return out;  // all codes and scales 0: dequantises to exact zeros
  uint8_t* codes = out.codes.data<uint8_t>();
  uint8_t* scales = out.scales.data<uint8_t>();
  const int64_t blocks = k / kNvfp4Block;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t b = 0; b < blocks; ++b) {
      const float* blk = src + r * k + b * kNvfp4Block;
      float bmax = 0.f;
      for (int64_t i = 0; i < kNvfp4Block; ++i) bmax = std::max(bmax, std::fabs(blk[i]));
      const uint8_t sb = float_to_e4m3(bmax / (6.f * out.global_scale));
      scales[r * blocks + b] = sb;
      const float eff = e4m3_to_float(sb) * out.global_scale;
      if (eff == 0.f) continue;  // codes stay 0
      for (int64_t i = 0; i < kNvfp4Block; ++i) {
        const uint8_t c = float_to_e2m1(blk[i] / eff);
        const int64_t col = b * kNvfp4Block + i;
        codes[r * (k / 2) + col / 2] |= static_cast<uint8_t>((col % 2 == 0) ? c : (c << 4));
      }
    }
  }
  return out;
}

void check_nvfp4(const Tensor& codes, const Tensor& scales, const std::string& what) {
  OMNIRT_CHECK(codes.defined() && codes.dtype() == DType::U8 && codes.ndim() == 2, what,
               ".codes: expected a U8 [N, K/2] tensor, got ",
               codes.defined()
                   ? std::string(dtype_name(codes.dtype())) + " " + shape_str(codes.shape())
                   : std::string("(undefined)"));
  const int64_t n = codes.dim(0), k = codes.dim(1) * 2;
  OMNIRT_CHECK(k % kNvfp4Block == 0, what, ".codes: K = ", k, " is not a multiple of ",
               kNvfp4Block);
  OMNIRT_CHECK(scales.defined() && scales.dtype() == DType::U8 &&
                   scales.shape() == (Shape{n, k / kNvfp4Block}),
               what, ".scales: expected U8 [", n, ", ", k / kNvfp4Block, "] (E4M3), got ",
               scales.defined()
                   ? std::string(dtype_name(scales.dtype())) + " " + shape_str(scales.shape())
                   : std::string("(undefined)"));
}

Tensor dequantize_nvfp4(const Tensor& codes_in, const Tensor& scales_in, float global_scale,
                        const std::string& what) {
  check_nvfp4(codes_in, scales_in, what);
  const Tensor codes = codes_in.is_cuda() ? codes_in.to(Device::CPU) : codes_in.contiguous();
  const Tensor scales = scales_in.is_cuda() ? scales_in.to(Device::CPU) : scales_in.contiguous();
  const int64_t n = codes.dim(0), k = codes.dim(1) * 2, blocks = k / kNvfp4Block;
  Tensor w = Tensor::empty({n, k}, DType::F32);
  float* dst = w.data<float>();
  const uint8_t* c = codes.data<uint8_t>();
  const uint8_t* s = scales.data<uint8_t>();
  for (int64_t r = 0; r < n; ++r)
    for (int64_t col = 0; col < k; ++col) {
      const uint8_t byte = c[r * (k / 2) + col / 2];
      const uint8_t code = (col % 2 == 0) ? (byte & 0x0F) : (byte >> 4);
      dst[r * k + col] = e2m1_to_float(code) *
                         (e4m3_to_float(s[r * blocks + col / kNvfp4Block]) * global_scale);
    }
  return w;
}

void nvfp4_linear(const Tensor& x_in, const Tensor& codes, const Tensor& scales,
                  float global_scale, Tensor& out) {
  const Tensor w = dequantize_nvfp4(codes, scales, global_scale, "nvfp4_linear weight");
  const int64_t n = w.dim(0), k = w.dim(1);
  OMNIRT_CHECK(x_in.defined() && x_in.ndim() >= 1 && x_in.dim(-1) == k,
               "nvfp4_linear: x must end in K = ", k, ", got shape ",
               x_in.defined() ? shape_str(x_in.shape()) : std::string("(undefined)"));
  const Tensor x = as_f32_cpu(x_in, "nvfp4_linear x");
  const int64_t m = x.numel() / k;
  Shape out_shape = x.shape();
  out_shape.back() = n;
  OMNIRT_CHECK(out.defined() && out.dtype() == DType::F32 && !out.is_cuda() &&
                   out.is_contiguous() && out.shape() == out_shape,
               "nvfp4_linear: out must be a contiguous CPU F32 tensor of shape ",
               shape_str(out_shape));
  const float* xp = x.data<float>();
  const float* wp = w.data<float>();
  float* op = out.data<float>();
  for (int64_t i = 0; i < m; ++i)
    for (int64_t r = 0; r < n; ++r) {
      float acc = 0.f;
      for (int64_t c = 0; c < k; ++c) acc += xp[i * k + c] * wp[r * k + c];
      op[i * n + r] = acc;
    }
}

}  // namespace omnirt::quant
