// ops::linear / ops::gemm: CPU against an independent float64 loop, CUDA against the CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "common/test_util.h"
#include "core/error.h"
#include "ops/gemm.h"

namespace omnirt {
namespace {

using testing::random_tensor;
using testing::rel_error;
using testing::test_seed;

double ref_activation(double x, ops::GemmActivation act) {
  switch (act) {
    case ops::GemmActivation::None:
      return x;
    case ops::GemmActivation::Relu:
      return x > 0 ? x : 0;
    case ops::GemmActivation::GeluTanh:
      return 0.5 * x * (1 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
  }
  return x;
}

// Naive float64 c = act(alpha op(a) op(b) + beta c + bias), one batch of row-major data.
std::vector<double> ref_gemm(const std::vector<float>& a, const std::vector<float>& b,
                             const std::vector<float>& c, const std::vector<float>& bias, int64_t m,
                             int64_t n, int64_t k, bool ta, bool tb, double alpha, double beta,
                             ops::GemmActivation act) {
  std::vector<double> out(m * n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p) {
        const double av = ta ? a[p * m + i] : a[i * k + p];
        const double bv = tb ? b[j * k + p] : b[p * n + j];
        s += av * bv;
      }
      double v = alpha * s + (beta != 0 ? beta * c[i * n + j] : 0.0);
      if (!bias.empty()) v += bias[j];
      out[i * n + j] = ref_activation(v, act);
    }
  }
  return out;
}

double rel_error64(const std::vector<float>& got, const std::vector<double>& want) {
  EXPECT_EQ(got.size(), want.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

Tensor nan_tensor(const Shape& shape, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  device_memset(device, t.raw(), 0xFF, t.nbytes());  // all-ones bits: NaN in f32/f16/bf16
  return t;
}

// ---------------------------------------------------------------- CPU vs float64

TEST(GemmCpu, LinearMatchesFloat64) {
  std::mt19937_64 rng(test_seed());
  const std::vector<std::tuple<int64_t, int64_t, int64_t>> shapes = {
      {1, 1, 1}, {7, 33, 257}, {33, 7, 1000}, {257, 1000, 33}, {1, 257, 7}};
  for (auto [m, n, k] : shapes) {
    for (bool with_bias : {false, true}) {
      for (auto act :
           {ops::GemmActivation::None, ops::GemmActivation::Relu, ops::GemmActivation::GeluTanh}) {
        Tensor x = random_tensor({m, k}, rng);
        Tensor w = random_tensor({n, k}, rng);
        Tensor bias = with_bias ? random_tensor({n}, rng) : Tensor();
        Tensor y = nan_tensor({m, n}, DType::F32, Device::CPU);
        ops::linear(x, w, bias, y, {.activation = act});
        auto want = ref_gemm(x.to_float_vector(), w.to_float_vector(), {},
                             with_bias ? bias.to_float_vector() : std::vector<float>{}, m, n, k,
                             false, true, 1.0, 0.0, act);
        EXPECT_LT(rel_error64(y.to_float_vector(), want), 1e-5)
            << "M=" << m << " N=" << n << " K=" << k << " bias=" << with_bias
            << " act=" << ops::gemm_activation_name(act);
      }
    }
  }
}

TEST(GemmCpu, LinearFlattensLeadingDims) {
  std::mt19937_64 rng(test_seed());
  Tensor x = random_tensor({2, 3, 5, 33}, rng);
  Tensor w = random_tensor({17, 33}, rng);
  Tensor bias = random_tensor({17}, rng);
  Tensor y = nan_tensor({2, 3, 5, 17}, DType::F32, Device::CPU);
  ops::linear(x, w, bias, y);
  auto want = ref_gemm(x.to_float_vector(), w.to_float_vector(), {}, bias.to_float_vector(), 30, 17,
                       33, false, true, 1.0, 0.0, ops::GemmActivation::None);
  EXPECT_LT(rel_error64(y.to_float_vector(), want), 1e-5);
}

TEST(GemmCpu, BatchedAllTransposesWithAlphaBeta) {
  std::mt19937_64 rng(test_seed());
  const int64_t batch = 3, m = 7, n = 33, k = 65;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      Tensor a = random_tensor(ta ? Shape{batch, k, m} : Shape{batch, m, k}, rng);
      Tensor b = random_tensor(tb ? Shape{batch, n, k} : Shape{batch, k, n}, rng);
      Tensor c = random_tensor({batch, m, n}, rng);
      Tensor bias = random_tensor({n}, rng);
      const std::vector<float> c0 = c.to_float_vector();
      ops::gemm(a, b, c, ta, tb, 0.75f, -0.5f, bias);
      const auto av = a.to_float_vector(), bv = b.to_float_vector(), cv = c.to_float_vector();
      for (int64_t i = 0; i < batch; ++i) {
        auto slice = [](const std::vector<float>& v, int64_t start, int64_t len) {
          return std::vector<float>(v.begin() + start, v.begin() + start + len);
        };
        auto want = ref_gemm(slice(av, i * m * k, m * k), slice(bv, i * k * n, k * n),
                             slice(c0, i * m * n, m * n), bias.to_float_vector(), m, n, k, ta, tb,
                             0.75, -0.5, ops::GemmActivation::None);
        EXPECT_LT(rel_error64(slice(cv, i * m * n, m * n), want), 1e-5)
            << "batch " << i << " trans_a=" << ta << " trans_b=" << tb;
      }
    }
  }
}

// ---------------------------------------------------------------- bad arguments

TEST(GemmErrors, BadArgumentsThrow) {
  std::mt19937_64 rng(test_seed());
  Tensor x = random_tensor({4, 8}, rng);
  Tensor w = random_tensor({6, 8}, rng);
  Tensor y = Tensor::empty({4, 6}, DType::F32);
  // K mismatch.
  Tensor w_bad = random_tensor({6, 9}, rng);
  EXPECT_THROW(ops::linear(x, w_bad, Tensor(), y), Error);
  try {
    ops::linear(x, w_bad, Tensor(), y);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("K mismatch"), std::string::npos) << e.what();
  }
  // Wrong output shape, wrong bias shape.
  Tensor y_bad = Tensor::empty({4, 7}, DType::F32);
  EXPECT_THROW(ops::linear(x, w, Tensor(), y_bad), Error);
  EXPECT_THROW(ops::linear(x, w, random_tensor({5}, rng), y), Error);
  // dtype mismatch, and F16 on the CPU.
  EXPECT_THROW(ops::linear(x, w.to_dtype(DType::F16), Tensor(), y), Error);
  Tensor y16 = Tensor::empty({4, 6}, DType::F16);
  EXPECT_THROW(ops::linear(x.to_dtype(DType::F16), w.to_dtype(DType::F16), Tensor(), y16), Error);
  // Non-contiguous input.
  Tensor xt = random_tensor({8, 4}, rng).permute({1, 0});
  EXPECT_THROW(ops::linear(xt, w, Tensor(), y), Error);
  // Device mismatch (a CUDA-tagged view; validation fails before any byte is touched).
  float dummy[48];
  Tensor w_cuda = Tensor::from_blob(dummy, {6, 8}, DType::F32, Device::CUDA);
  EXPECT_THROW(ops::linear(x, w_cuda, Tensor(), y), Error);
  // Output aliasing an input.
  Tensor sq = random_tensor({4, 4}, rng);
  Tensor wsq = random_tensor({4, 4}, rng);
  EXPECT_THROW(ops::linear(sq, wsq, Tensor(), sq), Error);
  // gemm: rank mismatch, batch mismatch, K mismatch, missing output.
  Tensor c = Tensor::empty({4, 6}, DType::F32);
  Tensor b = random_tensor({8, 6}, rng);
  EXPECT_THROW(ops::gemm(random_tensor({2, 4, 8}, rng), b, c, false, false), Error);
  Tensor c3 = Tensor::empty({2, 4, 6}, DType::F32);
  EXPECT_THROW(
      ops::gemm(random_tensor({2, 4, 8}, rng), random_tensor({3, 8, 6}, rng), c3, false, false),
      Error);
  EXPECT_THROW(ops::gemm(x, b, c, false, true), Error);  // op(b) is 6x8: K 8 vs 6
  Tensor none;
  EXPECT_THROW(ops::gemm(x, b, none, false, false), Error);
  EXPECT_NO_THROW(ops::gemm(x, b, c, false, false));
}

// ---------------------------------------------------------------- CUDA vs CPU

struct GpuCase {
  DType dtype;
  ops::Fp32Compute compute;
  double tol;
  const char* name;
};

const GpuCase kGpuCases[] = {{DType::F32, ops::Fp32Compute::Exact, 1e-5, "fp32"},
                             {DType::F32, ops::Fp32Compute::TF32, 2e-3, "tf32"},
                             {DType::F16, ops::Fp32Compute::Exact, 1e-2, "fp16"},
                             {DType::BF16, ops::Fp32Compute::Exact, 1.5e-2, "bf16"}};

// Rounds a host float32 tensor to `dtype` and back, so CPU and GPU see identical inputs.
Tensor rounded(const Tensor& t, DType dtype) {
  return dtype == DType::F32 ? t
                             : Tensor::from_vector(t.to_dtype(dtype).to_float_vector(), t.shape());
}
Tensor on_gpu(const Tensor& host_f32, DType dtype) {
  return host_f32.to_dtype(dtype).to(Device::CUDA);
}

TEST(GemmCuda, LinearMatchesCpuAllDtypes) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  const std::vector<std::tuple<int64_t, int64_t, int64_t>> shapes = {
      {1, 1, 1}, {7, 33, 257}, {33, 7, 1000}, {257, 1000, 33}, {1000, 257, 7}, {1, 2048, 64}};
  for (const GpuCase& gc : kGpuCases) {
    for (auto [m, n, k] : shapes) {
      for (int variant = 0; variant < 4; ++variant) {
        const bool with_bias = variant != 0;
        const auto act = variant == 2   ? ops::GemmActivation::Relu
                         : variant == 3 ? ops::GemmActivation::GeluTanh
                                        : ops::GemmActivation::None;
        Tensor x = rounded(random_tensor({m, k}, rng), gc.dtype);
        Tensor w = rounded(random_tensor({n, k}, rng), gc.dtype);
        Tensor bias = with_bias ? rounded(random_tensor({n}, rng), gc.dtype) : Tensor();
        const ops::GemmOptions opts{.fp32_compute = gc.compute, .activation = act};
        Tensor want = Tensor::empty({m, n}, DType::F32);
        ops::linear(x, w, bias, want, opts);
        Tensor y = nan_tensor({m, n}, gc.dtype, Device::CUDA);
        ops::linear(on_gpu(x, gc.dtype), on_gpu(w, gc.dtype),
                    with_bias ? on_gpu(bias, gc.dtype) : Tensor(), y, opts);
        EXPECT_LT(rel_error(y, want), gc.tol)
            << gc.name << " M=" << m << " N=" << n << " K=" << k << " bias=" << with_bias
            << " act=" << ops::gemm_activation_name(act);
      }
    }
  }
}

TEST(GemmCuda, BatchedAllTransposesAlphaBeta) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  const int64_t batch = 5, m = 33, n = 7, k = 257;
  for (const GpuCase& gc : kGpuCases) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        Tensor a =
            rounded(random_tensor(ta ? Shape{batch, k, m} : Shape{batch, m, k}, rng), gc.dtype);
        Tensor b =
            rounded(random_tensor(tb ? Shape{batch, n, k} : Shape{batch, k, n}, rng), gc.dtype);
        Tensor c = rounded(random_tensor({batch, m, n}, rng), gc.dtype);
        Tensor bias = rounded(random_tensor({n}, rng), gc.dtype);
        const ops::GemmOptions opts{.fp32_compute = gc.compute};
        Tensor want = c.clone();
        ops::gemm(a, b, want, ta, tb, 0.75f, -0.5f, bias, opts);
        Tensor got = on_gpu(c, gc.dtype);
        ops::gemm(on_gpu(a, gc.dtype), on_gpu(b, gc.dtype), got, ta, tb, 0.75f, -0.5f,
                  on_gpu(bias, gc.dtype), opts);
        EXPECT_LT(rel_error(got, want), gc.tol)
            << gc.name << " trans_a=" << ta << " trans_b=" << tb;
      }
    }
  }
}

// The EVA backbone's residual update: x += y W^T + b as one 2-D GEMM with beta = 1, C = x, in
// place (the cuBLASLt epilogue reads the residual), at an awkward token count. The residual is
// large next to the product so a dropped C term cannot pass.
TEST(GemmCuda, ResidualUpdateInPlace) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (const GpuCase& gc : kGpuCases) {
    for (auto [m, n, k] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {1001, 96, 170}, {37, 768, 2048}, {1, 5, 3}}) {
      Tensor y = rounded(random_tensor({m, k}, rng), gc.dtype);
      Tensor w = rounded(random_tensor({n, k}, rng, -0.05f, 0.05f), gc.dtype);
      Tensor bias = rounded(random_tensor({n}, rng), gc.dtype);
      Tensor x = rounded(random_tensor({m, n}, rng, -4.f, 4.f), gc.dtype);
      const ops::GemmOptions opts{.fp32_compute = gc.compute};
      Tensor want = x.clone();
      ops::gemm(y, w, want, false, true, 1.0f, 1.0f, bias, opts);
      Tensor got = on_gpu(x, gc.dtype);
      ops::gemm(on_gpu(y, gc.dtype), on_gpu(w, gc.dtype), got, false, true, 1.0f, 1.0f,
                on_gpu(bias, gc.dtype), opts);
      // The update alone (want - x) must be right too, not only the dominant residual.
      Tensor got_f32 = got.to(Device::CPU).to_dtype(DType::F32);
      std::vector<float> du, dw;
      for (int64_t i = 0; i < x.numel(); ++i) {
        du.push_back(got_f32.data<float>()[i] - x.data<float>()[i]);
        dw.push_back(want.data<float>()[i] - x.data<float>()[i]);
      }
      EXPECT_LT(rel_error(got, want), gc.tol) << gc.name << " M=" << m << " N=" << n;
      // 16-bit: the sum is rounded at |x| ~ 4, so the recovered update carries ~4 * 2^-9 error.
      EXPECT_LT(rel_error(du, dw), gc.dtype == DType::F32 ? 10 * gc.tol : 0.1)
          << gc.name << " update, M=" << m << " N=" << n;
    }
  }
}

// GemmOptions::autotune: the first call times several algorithms (writing to scratch memory),
// later calls reuse the winner. Both calls must give the CPU's result, also for the in-place
// residual update (beta = 1) whose c the trials must not touch, and an awkward shape.
TEST(GemmCuda, AutotunedMatchesCpuAndLeavesCAlone) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (const GpuCase& gc : kGpuCases) {
    for (auto [m, n, k] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {1531, 768, 768}, {37, 129, 2049}}) {
      const ops::GemmOptions opts{.fp32_compute = gc.compute, .autotune = true};
      Tensor y = rounded(random_tensor({m, k}, rng), gc.dtype);
      Tensor w = rounded(random_tensor({n, k}, rng, -0.05f, 0.05f), gc.dtype);
      Tensor bias = rounded(random_tensor({n}, rng), gc.dtype);
      Tensor x = rounded(random_tensor({m, n}, rng), gc.dtype);
      Tensor want = x.clone();
      ops::gemm(y, w, want, false, true, 1.0f, 1.0f, bias, opts);
      for (int call = 0; call < 2; ++call) {  // tuning call, then the cached plan
        Tensor got = on_gpu(x, gc.dtype);
        ops::gemm(on_gpu(y, gc.dtype), on_gpu(w, gc.dtype), got, false, true, 1.0f, 1.0f,
                  on_gpu(bias, gc.dtype), opts);
        EXPECT_LT(rel_error(got, want), gc.tol)
            << gc.name << " residual M=" << m << " N=" << n << " call " << call;
      }
      Tensor lin_want = Tensor::empty({m, n}, DType::F32);
      ops::linear(y, w, bias, lin_want, opts);
      for (int call = 0; call < 2; ++call) {
        Tensor got = nan_tensor({m, n}, gc.dtype, Device::CUDA);
        ops::linear(on_gpu(y, gc.dtype), on_gpu(w, gc.dtype), on_gpu(bias, gc.dtype), got, opts);
        EXPECT_LT(rel_error(got, lin_want), gc.tol)
            << gc.name << " linear M=" << m << " N=" << n << " call " << call;
      }
    }
  }
}

// The descriptor/algorithm cache must not hold on to the first call's bias or data.
TEST(GemmCuda, CachedPlanUsesCurrentPointers) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  const int64_t m = 7, n = 33, k = 65;
  Tensor w = random_tensor({n, k}, rng);
  Tensor w_gpu = w.to(Device::CUDA);
  for (int call = 0; call < 3; ++call) {
    Tensor x = random_tensor({m, k}, rng);
    Tensor bias = random_tensor({n}, rng);
    Tensor want = Tensor::empty({m, n}, DType::F32);
    ops::linear(x, w, bias, want);
    Tensor y = nan_tensor({m, n}, DType::F32, Device::CUDA);
    ops::linear(x.to(Device::CUDA), w_gpu, bias.to(Device::CUDA), y);
    EXPECT_LT(rel_error(y, want), 1e-5) << "call " << call;
  }
}

// Row offsets into a bigger buffer give pointers that are not 16-byte aligned.
TEST(GemmCuda, UnalignedOperands) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  const int64_t m = 9, n = 17, k = 33;
  for (const GpuCase& gc : kGpuCases) {
    Tensor big_x = rounded(random_tensor({m + 1, k}, rng), gc.dtype);
    Tensor big_w = rounded(random_tensor({n + 1, k}, rng), gc.dtype);
    Tensor x = big_x.slice(0, 1, m + 1).contiguous();
    Tensor w = big_w.slice(0, 1, n + 1).contiguous();
    Tensor want = Tensor::empty({m, n}, DType::F32);
    ops::linear(x, w, Tensor(), want, {.fp32_compute = gc.compute});
    Tensor gx = on_gpu(big_x, gc.dtype).slice(0, 1, m + 1);
    Tensor gw = on_gpu(big_w, gc.dtype).slice(0, 1, n + 1);
    Tensor big_y = nan_tensor({m * n + 1}, gc.dtype, Device::CUDA);
    Tensor y = big_y.slice(0, 1, m * n + 1).reshape({m, n});
    ops::linear(gx, gw, Tensor(), y, {.fp32_compute = gc.compute});
    EXPECT_LT(rel_error(y, want), gc.tol) << gc.name;
  }
}

TEST(GemmCuda, BadArgumentsThrow) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  Tensor x = random_tensor({4, 8}, rng).to(Device::CUDA);
  Tensor w = random_tensor({6, 8}, rng).to(Device::CUDA);
  Tensor y = Tensor::empty({4, 6}, DType::F32, Device::CUDA);
  EXPECT_THROW(ops::linear(x, random_tensor({6, 8}, rng), Tensor(), y), Error);  // w on CPU
  EXPECT_THROW(ops::linear(x, random_tensor({6, 9}, rng).to(Device::CUDA), Tensor(), y), Error);
  Tensor x64 = Tensor::zeros({4, 8}, DType::F64, Device::CUDA);
  Tensor w64 = Tensor::zeros({6, 8}, DType::F64, Device::CUDA);
  Tensor y64 = Tensor::empty({4, 6}, DType::F64, Device::CUDA);
  EXPECT_THROW(ops::linear(x64, w64, Tensor(), y64), Error);  // F64 unsupported
  Tensor y16 = Tensor::empty({4, 6}, DType::F16, Device::CUDA);
  EXPECT_THROW(ops::linear(x, w, Tensor(), y16), Error);  // mixed dtypes
}

}  // namespace
}  // namespace omnirt
