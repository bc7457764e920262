#include "quant/int4.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "ops/gemm.h"
#include "quant/tensor_f32.h"

namespace omnirt::quant {

using detail::as_f32_cpu;

namespace {

uint8_t encode_nibble(int q) { return static_cast<uint8_t>(q) & 0x0F; }

}  // namespace

Int4Weight quantize_int4(const Tensor& w_in, int64_t group_size, const std::string& what) {
  OMNIRT_CHECK(w_in.defined() && w_in.ndim() == 2, what,
               ": INT4 quantisation needs a 2-D [N, K] weight, got shape ",
               w_in.defined() ? shape_str(w_in.shape()) : std::string("(undefined)"));
  const Tensor w = as_f32_cpu(w_in, what);
  const int64_t n = w.dim(0), k = w.dim(1);
  OMNIRT_CHECK(n > 0 && k > 0, what, ": empty weight ", shape_str(w.shape()));
  OMNIRT_CHECK(group_size >= 0, what, ": group size must be > 0 (or 0 for per channel), got ",
               group_size);
  const int64_t g = group_size == 0 ? k : group_size;
  OMNIRT_CHECK(k % 2 == 0, what, ": INT4 packing needs an even K (columns), got shape ",
               shape_str(w.shape()));
  OMNIRT_CHECK(g % 2 == 0, what, ": INT4 group size must be even (two values per byte), got ", g);
  OMNIRT_CHECK(k % g == 0, what, ": K = ", k, " (shape ", shape_str(w.shape()),
               ") is not a multiple of the INT4 group size ", g,
               "; use a group size dividing K or per-channel quantisation");
  const int64_t groups = k / g;

  Int4Weight out;
  out.rows = n;
  out.cols = k;
  out.group_size = g;
  out.qweight = Tensor::zeros({n, k / 2}, DType::U8);
  out.scales = Tensor::empty({n, groups}, DType::F32);
  const float* src = w.data<float>();
  uint8_t* dst = out.qweight.data<uint8_t>();
  float* sc = out.scales.data<float>();
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t gi = 0; gi < groups; ++gi) {
      const float* grp = src + r * k + gi * g;
      float amax = 0.f;
      for (int64_t i = 0; i < g; ++i) {
        OMNIRT_CHECK(std::isfinite(grp[i]), what, ": non-finite value at [", r, ", ", gi * g + i,
                     "]");
        amax = std::max(amax, std::fabs(grp[i]));
      }
      const float scale = amax / 7.f;
      sc[r * groups + gi] = scale;
      for (int64_t i = 0; i < g; ++i) {
        int q = 0;
        if (scale > 0.f) {
          q = static_cast<int>(std::nearbyint(grp[i] / scale));
          q = std::clamp(q, -7, 7);
        }
        const int64_t col = gi * g + i;
        uint8_t& byte = dst[r * (k / 2) + col / 2];
        byte |= (col % 2 == 0) ? encode_nibble(q) : static_cast<uint8_t>(encode_nibble(q) << 4);
      }
    }
  }
  return out;
}

int64_t int4_group_size(const Tensor& qweight, const Tensor& scales, const std::string& what) {
  OMNIRT_CHECK(qweight.defined() && qweight.dtype() == DType::U8 && qweight.ndim() == 2, what,
               ".qweight: expected a U8 [N, K/2] tensor, got ",
               qweight.defined()
                   ? std::string(dtype_name(qweight.dtype())) + " " + shape_str(qweight.shape())
                   : std::string("(undefined)"));
  OMNIRT_CHECK(scales.defined() && scales.ndim() == 2 &&
                   (scales.dtype() == DType::F32 || scales.dtype() == DType::F16),
               what, ".scales: expected an F32 or F16 [N, groups] tensor, got ",
               scales.defined()
                   ? std::string(dtype_name(scales.dtype())) + " " + shape_str(scales.shape())
                   : std::string("(undefined)"));
  const int64_t n = qweight.dim(0), k = qweight.dim(1) * 2;
  OMNIRT_CHECK(scales.dim(0) == n && scales.dim(1) > 0 && k % scales.dim(1) == 0 &&
                   (k / scales.dim(1)) % 2 == 0,
               what, ": scales shape ", shape_str(scales.shape()), " does not fit qweight shape ",
               shape_str(qweight.shape()), " (K = ", k, "): expected [", n,
               ", K / group_size] with an even group size");
  return k / scales.dim(1);
}

Tensor dequantize_int4(const Tensor& qweight_in, const Tensor& scales_in, const std::string& what) {
  const int64_t g = int4_group_size(qweight_in, scales_in, what);
  const Tensor qweight = qweight_in.is_cuda() ? qweight_in.to(Device::CPU) : qweight_in;
  const Tensor scales = as_f32_cpu(scales_in, what + ".scales");
  OMNIRT_CHECK(qweight.is_contiguous(), what, ".qweight must be contiguous");
  const int64_t n = qweight.dim(0), k = qweight.dim(1) * 2, groups = k / g;
  Tensor w = Tensor::empty({n, k}, DType::F32);
  float* dst = w.data<float>();
  const uint8_t* q = qweight.data<uint8_t>();
  const float* sc = scales.data<float>();
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c)
      dst[r * k + c] = static_cast<float>(int4_code(q + r * (k / 2), c)) * sc[r * groups + c / g];
  return w;
}

void int4_linear(const Tensor& x_in, const Tensor& qweight, const Tensor& scales,
                 const Tensor& bias_in, Tensor& out) {
  const int64_t g = int4_group_size(qweight, scales, "int4_linear weight");
  const int64_t n = qweight.dim(0), k = qweight.dim(1) * 2, groups = k / g;
  OMNIRT_CHECK(x_in.defined() && x_in.ndim() >= 1 && x_in.dim(-1) == k,
               "int4_linear: x must end in K = ", k, ", got shape ",
               x_in.defined() ? shape_str(x_in.shape()) : std::string("(undefined)"));
  const Tensor x = as_f32_cpu(x_in, "int4_linear x");
  const int64_t m = x.numel() / k;
  Shape out_shape = x.shape();
  out_shape.back() = n;
  OMNIRT_CHECK(out.defined() && out.dtype() == DType::F32 && !out.is_cuda() &&
                   out.is_contiguous() && out.shape() == out_shape,
               "int4_linear: out must be a contiguous CPU F32 tensor of shape ",
               shape_str(out_shape), ", got ",
               out.defined() ? std::string(dtype_name(out.dtype())) + " " + shape_str(out.shape())
                             : std::string("(undefined)"));
  Tensor bias;
  if (bias_in.defined()) {
    bias = as_f32_cpu(bias_in, "int4_linear bias");
    OMNIRT_CHECK(bias.numel() == n, "int4_linear: bias must have N = ", n, " values, got shape ",
                 shape_str(bias.shape()));
  }
  const Tensor sc_t = as_f32_cpu(scales, "int4_linear scales");
  const uint8_t* q = qweight.data<uint8_t>();
  const float* sc = sc_t.data<float>();
  const float* xp = x.data<float>();
  float* op = out.data<float>();
  // Per (row, group): accumulate x . codes in float, then multiply by the group's scale once.
  for (int64_t i = 0; i < m; ++i) {
    const float* xr = xp + i * k;
    for (int64_t r = 0; r < n; ++r) {
      const uint8_t* qr = q + r * (k / 2);
      float acc = 0.f;
      for (int64_t gi = 0; gi < groups; ++gi) {
        float part = 0.f;
        for (int64_t c = gi * g; c < (gi + 1) * g; ++c)
          part += xr[c] * static_cast<float>(int4_code(qr, c));
        acc += part * sc[r * groups + gi];
      }
      op[i * n + r] = acc + (bias.defined() ? bias.data<float>()[r] : 0.f);
    }
  }
}

namespace {
// sum over the batch of (x W^T - (x * in_scale) Wq^T)^2 = sum of (x D^T)^2 with
// D = W - Wq diag(in_scale): D is formed in double and rounded to float once (relative error
// 6e-8 of the difference itself, so no cancellation), then one BLAS GEMM [m, k] x [k, n]. At
// TinyLlama size (n * k ~ 44 M weights per layer, ~260 calibration rows, 21 alphas) the naive
// double loop took hours; the GEMM takes minutes.
double output_sq_error(const Tensor& x, const float* w, const float* wq,
                       const std::vector<float>& in_scale, int64_t n, Tensor& diff, Tensor& prod) {
  const int64_t m = x.dim(0), k = x.dim(1);
  float* d = diff.data<float>();
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c)
      d[r * k + c] = static_cast<float>(static_cast<double>(w[r * k + c]) -
                                        static_cast<double>(wq[r * k + c]) * in_scale[c]);
  ops::gemm(x, diff, prod, /*trans_a=*/false, /*trans_b=*/true);
  double total = 0;
  const float* p = prod.data<float>();
  for (int64_t i = 0; i < m * n; ++i) total += static_cast<double>(p[i]) * p[i];
  return total;
}
}  // namespace

AwqInt4Weight quantize_int4_awq(const Tensor& w_in, const Tensor& x_in, int64_t group_size,
                                int grid, const std::string& what) {
  OMNIRT_CHECK(w_in.defined() && w_in.ndim() == 2, what,
               ": AWQ needs a 2-D [N, K] weight, got shape ",
               w_in.defined() ? shape_str(w_in.shape()) : std::string("(undefined)"));
  const Tensor w = as_f32_cpu(w_in, what);
  const int64_t n = w.dim(0), k = w.dim(1);
  OMNIRT_CHECK(x_in.defined() && x_in.ndim() == 2 && x_in.dim(1) == k && x_in.dim(0) > 0, what,
               ": AWQ calibration activations must be [M, K = ", k, "] with M > 0, got ",
               x_in.defined() ? shape_str(x_in.shape()) : std::string("(undefined)"));
  OMNIRT_CHECK(grid >= 1, what, ": AWQ alpha grid must have >= 1 step, got ", grid);
  const Tensor x = as_f32_cpu(x_in, what + " calibration activations");
  const int64_t m = x.dim(0);
  const float* xp = x.data<float>();
  const float* wp = w.data<float>();

  // Mean |x| per input channel; channels that never fire get a floor so 1/s stays finite.
  std::vector<double> act(k, 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t c = 0; c < k; ++c) {
      OMNIRT_CHECK(std::isfinite(xp[i * k + c]), what, ": non-finite calibration activation at [",
                   i, ", ", c, "]");
      act[c] += std::fabs(xp[i * k + c]) / static_cast<double>(m);
    }
  const double act_max = *std::max_element(act.begin(), act.end());
  const double floor = act_max > 0 ? act_max * 1e-4 : 1.0;

  AwqInt4Weight best;
  bool have_best = false;
  Tensor scaled = Tensor::empty({n, k}, DType::F32);
  Tensor diff = Tensor::empty({n, k}, DType::F32), prod = Tensor::empty({m, n}, DType::F32);
  for (int step = 0; step <= grid; ++step) {
    const float alpha = static_cast<float>(step) / static_cast<float>(grid);
    std::vector<float> s(k), inv(k);
    for (int64_t c = 0; c < k; ++c) {
      s[c] = static_cast<float>(std::pow(std::max(act[c], floor), static_cast<double>(alpha)));
      inv[c] = 1.f / s[c];
    }
    float* sp = scaled.data<float>();
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < k; ++c) sp[r * k + c] = wp[r * k + c] * s[c];
    Int4Weight q = quantize_int4(scaled, group_size, what);
    const Tensor d = dequantize_int4(q.qweight, q.scales, what);
    const double err = output_sq_error(x, wp, d.data<float>(), inv, n, diff, prod);
    if (step == 0) best.plain_error = err;
    if (!have_best || err < best.calib_error) {
      have_best = true;
      best.weight = std::move(q);
      best.input_scale = Tensor::from_vector(inv, {k});
      best.alpha = alpha;
      best.calib_error = err;
    }
  }
  return best;
}

}  // namespace omnirt::quant
