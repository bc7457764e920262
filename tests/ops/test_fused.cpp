// swiglu_layernorm / qkv_rope_heads (ops/fused.h): CPU against float64 loops and against the
// unfused ops they replace, CUDA against CPU (and against the unfused CUDA ops).
#include <gtest/gtest.h>

#include <cmath>

#include "ops/activation.h"
#include "ops/fused.h"
#include "ops/norm.h"
#include "ops/permute.h"
#include "ops/rope.h"
#include "ops/window.h"
#include "ops_test_util.h"

using namespace omnirt;
using namespace omnirt::testing;

namespace {

// layernorm(silu(g) * u) per row in float64.
std::vector<float> swiglu_layernorm_f64(const Tensor& gate_up, const Tensor& w, const Tensor& b,
                                        double eps) {
  const int64_t h = gate_up.dim(-1) / 2, rows = gate_up.numel() / (2 * h);
  std::vector<float> out(rows * h);
  std::vector<double> v(h);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = gate_up.data<float>() + r * 2 * h;
    double mean = 0;
    for (int64_t i = 0; i < h; ++i) {
      const double g = row[i];
      v[i] = g / (1.0 + std::exp(-g)) * row[h + i];
      mean += v[i];
    }
    mean /= h;
    double var = 0;
    for (int64_t i = 0; i < h; ++i) var += (v[i] - mean) * (v[i] - mean);
    const double rstd = 1.0 / std::sqrt(var / h + eps);
    for (int64_t i = 0; i < h; ++i) {
      double y = (v[i] - mean) * rstd;
      if (w.defined()) y *= w.data<float>()[i];
      if (b.defined()) y += b.data<float>()[i];
      out[r * h + i] = static_cast<float>(y);
    }
  }
  return out;
}

struct QkvCase {
  int64_t n, gh, gw;
  int window;  // 0 = global
  int64_t heads, d;
};

// Window blocks with and without padding, non-square grids and windows that do not divide them,
// a window larger than the grid, global; D 64 (vector path) and D 6 / 2 (pair path).
const QkvCase kQkvCases[] = {{2, 5, 7, 4, 3, 64}, {1, 3, 3, 2, 2, 6}, {2, 4, 5, 0, 2, 64},
                             {1, 5, 5, 4, 2, 32}, {3, 2, 3, 0, 5, 2}, {1, 3, 2, 8, 1, 8}};

int64_t qkv_batch(const QkvCase& c) {
  if (c.window == 0) return c.n;
  return c.n * ((c.gh + c.window - 1) / c.window) * ((c.gw + c.window - 1) / c.window);
}
int64_t qkv_seq(const QkvCase& c) {
  return c.window == 0 ? c.gh * c.gw : int64_t(c.window) * c.window;
}
Shape qkv_out_shape(const QkvCase& c) { return {3, qkv_batch(c), c.heads, qkv_seq(c), c.d}; }
std::string describe(const QkvCase& c) {
  return "N=" + std::to_string(c.n) + " grid " + std::to_string(c.gh) + "x" + std::to_string(c.gw) +
         " window " + std::to_string(c.window) + " heads " + std::to_string(c.heads) + " D " +
         std::to_string(c.d);
}

// The unfused path on the CPU from existing ops: the full padded projection map (bias where
// padded), window_partition (no padding left to add), [B, S, 3, heads, D] -> [3, B, heads, S, D],
// rope_eva2d on q and k.
Tensor qkv_unfused_cpu(const Tensor& qkv, const Tensor& bias, const Tensor& cos, const Tensor& sin,
                       const QkvCase& c) {
  const int64_t e3 = qkv.dim(3);
  const int64_t wh = c.window ? c.window : c.gh, ww = c.window ? c.window : c.gw;
  const int64_t ph = (c.gh + wh - 1) / wh * wh, pw = (c.gw + ww - 1) / ww * ww;
  Tensor padded = Tensor::empty({c.n, ph, pw, e3}, DType::F32);
  for (int64_t i = 0; i < c.n; ++i)
    for (int64_t y = 0; y < ph; ++y)
      for (int64_t x = 0; x < pw; ++x)
        for (int64_t f = 0; f < e3; ++f)
          padded.data<float>()[((i * ph + y) * pw + x) * e3 + f] =
              (y < c.gh && x < c.gw) ? qkv.data<float>()[((i * c.gh + y) * c.gw + x) * e3 + f]
                                     : bias.data<float>()[f];
  const int64_t B = qkv_batch(c), S = qkv_seq(c);
  Tensor windows = Tensor::empty({B, S, e3}, DType::F32);
  if (c.window) {
    ops::window_partition(padded, c.window, windows);
  } else {
    windows = padded.reshape({B, S, e3});
  }
  Tensor heads = Tensor::empty(qkv_out_shape(c), DType::F32);
  ops::permute(windows.reshape({B, S, 3, c.heads, c.d}), {2, 0, 3, 1, 4}, heads);
  for (int which = 0; which < 2; ++which) {
    Tensor part = heads.select(0, which);
    ops::rope_eva2d(part, cos, sin, part);
  }
  return heads;
}

}  // namespace

// ------------------------------------------------------------------ swiglu_layernorm

TEST(SwigluLayernormCpu, MatchesFloat64) {
  std::mt19937_64 rng(test_seed());
  for (int64_t h : awkward_features()) {
    for (int64_t rows : awkward_rows()) {
      for (bool affine : {true, false}) {
        Tensor gu = random_tensor({rows, 2 * h}, rng, -3.f, 3.f);
        Tensor w = affine ? random_tensor({h}, rng, 0.5f, 1.5f) : Tensor();
        Tensor b = affine ? random_tensor({h}, rng) : Tensor();
        Tensor out = Tensor::empty({rows, h}, DType::F32);
        ops::swiglu_layernorm(gu, w, b, 1e-6f, out);
        // h = 1: the normalised value is exactly 0 (then + bias).
        expect_close(out.to_float_vector(), swiglu_layernorm_f64(gu, w, b, 1e-6), 1e-5,
                     "rows " + std::to_string(rows) + " H " + std::to_string(h));
      }
    }
  }
}

TEST(SwigluLayernormCpu, LeadingDimsAndBadArguments) {
  std::mt19937_64 rng(test_seed());
  Tensor gu = random_tensor({2, 3, 10}, rng);
  Tensor w = random_tensor({5}, rng), b = random_tensor({5}, rng);
  Tensor out = Tensor::empty({2, 3, 5}, DType::F32);
  ops::swiglu_layernorm(gu, w, b, 1e-5f, out);
  expect_close(out.to_float_vector(), swiglu_layernorm_f64(gu, w, b, 1e-5), 1e-5, "[2,3,10]");

  Tensor bad_out = Tensor::empty({2, 3, 6}, DType::F32);
  expect_error([&] { ops::swiglu_layernorm(gu, w, b, 1e-5f, bad_out); },
               {"ops::swiglu_layernorm", "out", "[2, 3, 5]"});
  Tensor bad_w = random_tensor({6}, rng);
  expect_error([&] { ops::swiglu_layernorm(gu, bad_w, b, 1e-5f, out); },
               {"ops::swiglu_layernorm", "weight"});
  Tensor odd = random_tensor({2, 7}, rng);
  Tensor odd_out = Tensor::empty({2, 3}, DType::F32);
  expect_error([&] { ops::swiglu_layernorm(odd, Tensor(), Tensor(), 1e-5f, odd_out); },
               {"ops::swiglu_layernorm", "gate_up", "even"});
  Tensor alias = gu.reshape({12, 5}).slice(0, 0, 6).reshape({2, 3, 5});
  expect_error([&] { ops::swiglu_layernorm(gu, w, b, 1e-5f, alias); },
               {"ops::swiglu_layernorm", "overlap"});
  expect_error([&] { ops::swiglu_layernorm(fake_cuda(gu), w, b, 1e-5f, out); },
               {"ops::swiglu_layernorm"});
}

TEST(SwigluLayernormCuda, MatchesCpuAndUnfused) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (DType dtype : cuda_dtypes()) {
    for (int64_t h : awkward_features()) {
      for (int64_t rows : awkward_rows()) {
        for (bool affine : {true, false}) {
          Tensor gu = rounded_to(random_tensor({rows, 2 * h}, rng, -3.f, 3.f), dtype);
          Tensor w = affine ? rounded_to(random_tensor({h}, rng, 0.5f, 1.5f), dtype) : Tensor();
          Tensor b = affine ? rounded_to(random_tensor({h}, rng), dtype) : Tensor();
          Tensor want = Tensor::empty({rows, h}, DType::F32);
          ops::swiglu_layernorm(gu, w, b, 1e-6f, want);

          Tensor gu_d = to_cuda(gu, dtype);
          Tensor w_d = affine ? to_cuda(w, dtype) : Tensor();
          Tensor b_d = affine ? to_cuda(b, dtype) : Tensor();
          Tensor got = poisoned_cuda({rows, h}, dtype);
          ops::swiglu_layernorm(gu_d, w_d, b_d, 1e-6f, got);
          const std::string what = dtype_case(dtype, {rows, 2 * h}) + (affine ? " affine" : "");
          // 16-bit: the SwiGLU values are rounded to the dtype before the norm (as PyTorch does
          // and the float32 CPU reference does not); bf16's 2^-9 rounding, twice, then scaled by
          // 1/std, needs a little more than the usual 1e-2.
          expect_close(got.to(Device::CPU).to_dtype(DType::F32), want,
                       dtype == DType::BF16 ? 2e-2 : cuda_tolerance(dtype), what);

          // The unfused CUDA ops round at the same points: the results agree to float32
          // reduction-order noise plus at most one ulp of the dtype.
          Tensor hidden = poisoned_cuda({rows, h}, dtype);
          ops::swiglu_concat(gu_d, hidden);
          ops::layernorm(hidden, w_d, b_d, 1e-6f, hidden);
          expect_close(got.to(Device::CPU).to_dtype(DType::F32),
                       hidden.to(Device::CPU).to_dtype(DType::F32),
                       dtype == DType::F32 ? 1e-6 : (dtype == DType::F16 ? 1e-3 : 8e-3),
                       what + " vs unfused");
        }
      }
    }
  }
}

// Unaligned rows (an offset view) take the scalar path and must still be right.
TEST(SwigluLayernormCuda, UnalignedView) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (DType dtype : cuda_dtypes()) {
    const int64_t rows = 5, h = 768;
    Tensor big = rounded_to(random_tensor({rows * 2 * h + 1}, rng, -3.f, 3.f), dtype);
    Tensor gu = big.slice(0, 1, rows * 2 * h + 1).reshape({rows, 2 * h});
    Tensor want = Tensor::empty({rows, h}, DType::F32);
    ops::swiglu_layernorm(gu.contiguous(), Tensor(), Tensor(), 1e-5f, want);
    Tensor big_d = to_cuda(big, dtype);
    Tensor gu_d = big_d.slice(0, 1, rows * 2 * h + 1).reshape({rows, 2 * h});
    Tensor got = poisoned_cuda({rows, h}, dtype);
    ops::swiglu_layernorm(gu_d, Tensor(), Tensor(), 1e-5f, got);
    expect_close(got.to(Device::CPU).to_dtype(DType::F32), want,
                 dtype == DType::BF16 ? 2e-2 : cuda_tolerance(dtype),
                 std::string(dtype_name(dtype)));
  }
}

// ------------------------------------------------------------------ qkv_rope_heads

TEST(QkvRopeHeadsCpu, MatchesUnfusedOps) {
  std::mt19937_64 rng(test_seed());
  for (const QkvCase& c : kQkvCases) {
    const int64_t e3 = 3 * c.heads * c.d, S = qkv_seq(c);
    Tensor qkv = random_tensor({c.n, c.gh, c.gw, e3}, rng);
    Tensor bias = random_tensor({e3}, rng);
    Tensor cos = random_tensor({S, c.d}, rng), sin = random_tensor({S, c.d}, rng);
    Tensor out = Tensor::empty(qkv_out_shape(c), DType::F32);
    ops::qkv_rope_heads(qkv, bias, cos, sin, c.window, out);
    expect_close(out.to_float_vector(), qkv_unfused_cpu(qkv, bias, cos, sin, c).to_float_vector(),
                 1e-6, describe(c));
  }
}

// A hand-checked element of each kind: a real token's rotated q, a padded token's k (the bias
// rotated: zero for EVA's k, but any bias must be used) and a padded token's v (the bias).
TEST(QkvRopeHeadsCpu, PaddedTokensAreTheBias) {
  const QkvCase c{1, 3, 3, 2, 1, 2};  // 4 windows of 2x2; window 3 holds only token (2, 2)
  std::mt19937_64 rng(test_seed());
  Tensor qkv = random_tensor({1, 3, 3, 6}, rng);
  Tensor bias = random_tensor({6}, rng);
  Tensor cos = random_tensor({4, 2}, rng), sin = random_tensor({4, 2}, rng);
  Tensor out = Tensor::empty(qkv_out_shape(c), DType::F32);
  ops::qkv_rope_heads(qkv, bias, cos, sin, 2, out);
  auto at = [&](int which, int b, int t, int j) {
    return out.data<float>()[((which * 4 + b) * 1 + 0) * 4 * 2 + t * 2 + j];
  };
  const float* q22 = qkv.data<float>() + (2 * 3 + 2) * 6;  // token (2, 2) = window 3, slot 0
  EXPECT_FLOAT_EQ(at(0, 3, 0, 0), q22[0] * cos.data<float>()[0] - q22[1] * sin.data<float>()[0]);
  EXPECT_FLOAT_EQ(at(0, 3, 0, 1), q22[1] * cos.data<float>()[1] + q22[0] * sin.data<float>()[1]);
  // Window 3 slot 1 = position (2, 3): padding. k = rope(k bias, row 1 of the tables).
  EXPECT_FLOAT_EQ(at(1, 3, 1, 0), bias.data<float>()[2] * cos.data<float>()[2] -
                                      bias.data<float>()[3] * sin.data<float>()[2]);
  EXPECT_FLOAT_EQ(at(2, 3, 3, 0), bias.data<float>()[4]);
  EXPECT_FLOAT_EQ(at(2, 3, 3, 1), bias.data<float>()[5]);
  // Window 1 slot 0 = token (0, 2): real v.
  EXPECT_FLOAT_EQ(at(2, 1, 0, 1), qkv.data<float>()[(0 * 3 + 2) * 6 + 5]);
}

TEST(QkvRopeHeadsCpu, BadArguments) {
  std::mt19937_64 rng(test_seed());
  Tensor qkv = random_tensor({1, 3, 3, 12}, rng);
  Tensor bias = random_tensor({12}, rng);
  Tensor cos = random_tensor({4, 2}, rng), sin = random_tensor({4, 2}, rng);
  Tensor out = Tensor::empty({3, 4, 2, 4, 2}, DType::F32);
  ops::qkv_rope_heads(qkv, bias, cos, sin, 2, out);  // valid
  Tensor wrong_b = Tensor::empty({3, 3, 2, 4, 2}, DType::F32);
  expect_error([&] { ops::qkv_rope_heads(qkv, bias, cos, sin, 2, wrong_b); },
               {"ops::qkv_rope_heads", "out", "[3, 4, 2, 4, 2]"});
  Tensor wrong_heads = Tensor::empty({3, 4, 3, 4, 2}, DType::F32);
  expect_error([&] { ops::qkv_rope_heads(qkv, bias, cos, sin, 2, wrong_heads); },
               {"ops::qkv_rope_heads", "out", "heads * D"});
  Tensor short_bias = random_tensor({11}, rng);
  expect_error([&] { ops::qkv_rope_heads(qkv, short_bias, cos, sin, 2, out); },
               {"ops::qkv_rope_heads", "qkv_bias"});
  Tensor big_cos = random_tensor({9, 2}, rng);
  expect_error([&] { ops::qkv_rope_heads(qkv, bias, big_cos, sin, 2, out); },
               {"ops::qkv_rope_heads", "cos", "[4, 2]"});
  expect_error([&] { ops::qkv_rope_heads(qkv, bias, cos, sin, -1, out); },
               {"ops::qkv_rope_heads", "window"});
  Tensor not_3 = random_tensor({1, 3, 3, 10}, rng);
  expect_error([&] { ops::qkv_rope_heads(not_3, bias, cos, sin, 2, out); },
               {"ops::qkv_rope_heads", "qkv"});
  expect_error([&] { ops::qkv_rope_heads(fake_cuda(qkv), bias, cos, sin, 2, out); },
               {"ops::qkv_rope_heads"});
}

TEST(QkvRopeHeadsCuda, MatchesCpu) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (DType dtype : cuda_dtypes()) {
    for (const QkvCase& c : kQkvCases) {
      const int64_t e3 = 3 * c.heads * c.d, S = qkv_seq(c);
      Tensor qkv = rounded_to(random_tensor({c.n, c.gh, c.gw, e3}, rng), dtype);
      Tensor bias = rounded_to(random_tensor({e3}, rng), dtype);
      Tensor cos = random_tensor({S, c.d}, rng), sin = random_tensor({S, c.d}, rng);
      Tensor want = Tensor::empty(qkv_out_shape(c), DType::F32);
      ops::qkv_rope_heads(qkv, bias, cos, sin, c.window, want);
      Tensor got = poisoned_cuda(qkv_out_shape(c), dtype);
      ops::qkv_rope_heads(to_cuda(qkv, dtype), to_cuda(bias, dtype), cos.to(Device::CUDA),
                          sin.to(Device::CUDA), c.window, got);
      expect_close(got.to(Device::CPU).to_dtype(DType::F32), want, cuda_tolerance(dtype),
                   std::string(dtype_name(dtype)) + " " + describe(c));
      // v is a pure copy: exact.
      Tensor v_got = got.select(0, 2).contiguous().to(Device::CPU).to_dtype(DType::F32);
      EXPECT_EQ(v_got.to_float_vector(), want.select(0, 2).contiguous().to_float_vector())
          << dtype_name(dtype) << " " << describe(c);
    }
  }
}

// The real EVA-02-B geometry (one camera): 40x40 grid, window 16 (padded to 48x48), 12 heads of
// 64, with the real RoPE tables, window and global.
TEST(QkvRopeHeadsCuda, EvaGeometry) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (int window : {16, 0}) {
    const QkvCase c{1, 40, 40, window, 12, 64};
    ops::RopeTables t = ops::eva_rope_tables(window ? 16 : 40, 16, 32);
    Tensor qkv = rounded_to(random_tensor({1, 40, 40, 3 * 768}, rng), DType::F16);
    Tensor bias = rounded_to(random_tensor({3 * 768}, rng), DType::F16);
    Tensor want = Tensor::empty(qkv_out_shape(c), DType::F32);
    ops::qkv_rope_heads(qkv, bias, t.cos, t.sin, window, want);
    Tensor got = poisoned_cuda(qkv_out_shape(c), DType::F16);
    ops::qkv_rope_heads(to_cuda(qkv, DType::F16), to_cuda(bias, DType::F16), t.cos.to(Device::CUDA),
                        t.sin.to(Device::CUDA), window, got);
    expect_close(got.to(Device::CPU).to_dtype(DType::F32), want, 1e-2, describe(c));
  }
}
