// layernorm / rmsnorm / add_rmsnorm: CPU against float64 loops written here, CUDA against CPU.
#include <gtest/gtest.h>

#include <cmath>

#include "ops/norm.h"
#include "ops_test_util.h"

using namespace omnirt;
using namespace omnirt::testing;

namespace {

// ---- float64 references (independent of the code under test) ----

std::vector<float> layernorm_f64(const Tensor& x, const Tensor* w, const Tensor* b, double eps) {
  const int64_t f = x.dim(-1), rows = x.numel() / f;
  const float* px = x.data<float>();
  std::vector<float> y(x.numel());
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < f; ++i) mean += px[r * f + i];
    mean /= f;
    for (int64_t i = 0; i < f; ++i) var += (px[r * f + i] - mean) * (px[r * f + i] - mean);
    var /= f;
    for (int64_t i = 0; i < f; ++i) {
      double v = (px[r * f + i] - mean) / std::sqrt(var + eps);
      if (w) v *= w->data<float>()[i];
      if (b) v += b->data<float>()[i];
      y[r * f + i] = static_cast<float>(v);
    }
  }
  return y;
}

std::vector<float> rmsnorm_f64(const std::vector<float>& x, int64_t f, const Tensor& w,
                               double eps) {
  std::vector<float> y(x.size());
  for (size_t r = 0; r < x.size() / f; ++r) {
    double ms = 0;
    for (int64_t i = 0; i < f; ++i) ms += double(x[r * f + i]) * x[r * f + i];
    ms /= f;
    for (int64_t i = 0; i < f; ++i)
      y[r * f + i] = static_cast<float>(w.data<float>()[i] * (x[r * f + i] / std::sqrt(ms + eps)));
  }
  return y;
}

constexpr double kCpuTol = 1e-5;

}  // namespace

TEST(LayerNormCpu, MatchesFloat64WithAndWithoutAffine) {
  std::mt19937_64 rng(test_seed());
  for (int64_t rows : awkward_rows()) {
    for (int64_t f : awkward_features()) {
      // Offset inputs: a large mean makes a one-pass variance formula visibly wrong.
      Tensor x = random_tensor({rows, f}, rng, 2.0f, 4.0f);
      Tensor w = random_tensor({f}, rng, 0.5f, 1.5f);
      Tensor b = random_tensor({f}, rng);
      Tensor out = Tensor::empty(x.shape(), DType::F32);
      const std::string c = shape_str(x.shape());
      ops::layernorm(x, w, b, 1e-6f, out);
      expect_close(out.to_float_vector(), layernorm_f64(x, &w, &b, 1e-6), kCpuTol, "affine " + c);
      ops::layernorm(x, Tensor(), Tensor(), 1e-5f, out);
      expect_close(out.to_float_vector(), layernorm_f64(x, nullptr, nullptr, 1e-5), kCpuTol,
                   "no affine " + c);
      ops::layernorm(x, w, Tensor(), 1e-5f, out);
      expect_close(out.to_float_vector(), layernorm_f64(x, &w, nullptr, 1e-5), kCpuTol,
                   "weight only " + c);
    }
  }
}

TEST(LayerNormCpu, InPlaceAndLeadingDims) {
  std::mt19937_64 rng(test_seed());
  Tensor x = random_tensor({2, 3, 5, 37}, rng);
  Tensor w = random_tensor({37}, rng);
  Tensor b = random_tensor({37}, rng);
  const std::vector<float> expected = layernorm_f64(x, &w, &b, 1e-5);
  ops::layernorm(x, w, b, 1e-5f, x);
  expect_close(x.to_float_vector(), expected, kCpuTol, "in place");
}

TEST(RmsNormCpu, MatchesFloat64) {
  std::mt19937_64 rng(test_seed());
  for (int64_t rows : awkward_rows()) {
    for (int64_t f : awkward_features()) {
      Tensor x = random_tensor({rows, f}, rng, -3.0f, 3.0f);
      Tensor w = random_tensor({f}, rng, 0.5f, 1.5f);
      Tensor out = Tensor::empty(x.shape(), DType::F32);
      ops::rmsnorm(x, w, 1e-5f, out);
      expect_close(out.to_float_vector(), rmsnorm_f64(x.to_float_vector(), f, w, 1e-5), kCpuTol,
                   shape_str(x.shape()));
    }
  }
}

TEST(AddRmsNormCpu, MatchesFloat64IncludingAliasedOutputs) {
  std::mt19937_64 rng(test_seed());
  for (int64_t f : {1, 5, 64, 2048, 2051}) {
    Tensor x = random_tensor({7, f}, rng);
    Tensor res = random_tensor({7, f}, rng, -2.0f, 2.0f);
    Tensor w = random_tensor({f}, rng, 0.5f, 1.5f);
    std::vector<float> sum(x.numel());
    for (int64_t i = 0; i < x.numel(); ++i)
      sum[i] = static_cast<float>(double(x.data<float>()[i]) + res.data<float>()[i]);
    const std::vector<float> expected = rmsnorm_f64(sum, f, w, 1e-5);

    Tensor out = Tensor::empty(x.shape(), DType::F32);
    Tensor res_out = Tensor::empty(x.shape(), DType::F32);
    ops::add_rmsnorm(x, res, w, 1e-5f, out, res_out);
    expect_close(out.to_float_vector(), expected, kCpuTol, "separate buffers");
    expect_close(res_out.to_float_vector(), sum, kCpuTol, "residual_out");

    // The decoder layer's usage: the residual stream is updated in place, out overwrites x.
    Tensor x2 = x.clone(), res2 = res.clone();
    ops::add_rmsnorm(x2, res2, w, 1e-5f, x2, res2);
    expect_close(x2.to_float_vector(), expected, kCpuTol, "aliased out");
    expect_close(res2.to_float_vector(), sum, kCpuTol, "aliased residual_out");
  }
}

TEST(NormArgs, BadArgumentsAreClearErrors) {
  std::mt19937_64 rng(test_seed());
  Tensor x = random_tensor({4, 8}, rng);
  Tensor w = random_tensor({8}, rng);
  Tensor out = Tensor::empty({4, 8}, DType::F32);
  Tensor w7 = random_tensor({7}, rng);
  expect_error([&] { ops::layernorm(x, w7, Tensor(), 1e-5f, out); },
               {"ops::layernorm", "weight", "[8]", "[7]"});
  expect_error([&] { ops::layernorm(x, w, w7, 1e-5f, out); }, {"ops::layernorm", "bias", "[7]"});
  Tensor out_bad = Tensor::empty({4, 9}, DType::F32);
  expect_error([&] { ops::rmsnorm(x, w, 1e-5f, out_bad); }, {"ops::rmsnorm", "out", "[4, 9]"});
  expect_error([&] { ops::rmsnorm(x, Tensor(), 1e-5f, out); }, {"ops::rmsnorm", "weight"});
  Tensor x16 = x.to_dtype(DType::F16);
  Tensor out16 = Tensor::empty({4, 8}, DType::F16);
  expect_error([&] { ops::rmsnorm(x16, w, 1e-5f, out16); }, {"ops::rmsnorm", "x", "F32", "F16"});
  Tensor w16 = w.to_dtype(DType::F16);
  expect_error([&] { ops::layernorm(x, w16, Tensor(), 1e-5f, out); },
               {"ops::layernorm", "weight", "dtype", "F16"});
  Tensor w_gpu = fake_cuda(w);
  expect_error([&] { ops::rmsnorm(x, w_gpu, 1e-5f, out); },
               {"ops::rmsnorm", "weight", "device", "cuda"});
  Tensor strided = random_tensor({8, 4}, rng).permute({1, 0});
  expect_error([&] { ops::layernorm(strided, w, Tensor(), 1e-5f, out); },
               {"ops::layernorm", "x", "contiguous"});
  expect_error([&] { ops::layernorm(x, w, Tensor(), -1.0f, out); }, {"ops::layernorm", "eps"});
  Tensor res = random_tensor({4, 8}, rng);
  expect_error([&] { ops::add_rmsnorm(x, res, w, 1e-5f, out, out); },
               {"ops::add_rmsnorm", "residual_out"});
  Tensor res_bad = random_tensor({4, 7}, rng);
  expect_error([&] { ops::add_rmsnorm(x, res_bad, w, 1e-5f, out, res); },
               {"ops::add_rmsnorm", "residual", "[4, 7]"});
}

// ---- CUDA against the CPU reference ----

TEST(LayerNormCuda, MatchesCpuAllDtypes) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (DType dt : cuda_dtypes()) {
    for (int64_t rows : awkward_rows()) {
      for (int64_t f : awkward_features()) {
        Tensor x = rounded_to(random_tensor({rows, f}, rng, 1.0f, 3.0f), dt);
        Tensor w = rounded_to(random_tensor({f}, rng, 0.5f, 1.5f), dt);
        Tensor b = rounded_to(random_tensor({f}, rng), dt);
        const std::string c = dtype_case(dt, x.shape());
        for (int affine = 0; affine < 2; ++affine) {
          Tensor wa = affine ? w : Tensor(), ba = affine ? b : Tensor();
          Tensor expected = Tensor::empty(x.shape(), DType::F32);
          ops::layernorm(x, wa, ba, 1e-6f, expected);
          Tensor out = poisoned_cuda(x.shape(), dt);
          ops::layernorm(to_cuda(x, dt), affine ? to_cuda(w, dt) : Tensor(),
                         affine ? to_cuda(b, dt) : Tensor(), 1e-6f, out);
          expect_close(out, expected, cuda_tolerance(dt), c + (affine ? " affine" : " plain"));
        }
      }
    }
  }
}

TEST(LayerNormCuda, InPlace) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  Tensor x = random_tensor({5, 3, 770}, rng);
  Tensor w = random_tensor({770}, rng), b = random_tensor({770}, rng);
  Tensor expected = Tensor::empty(x.shape(), DType::F32);
  ops::layernorm(x, w, b, 1e-5f, expected);
  Tensor xg = to_cuda(x, DType::F32);
  ops::layernorm(xg, to_cuda(w, DType::F32), to_cuda(b, DType::F32), 1e-5f, xg);
  expect_close(xg, expected, 1e-5, "in place");
}

TEST(RmsNormCuda, MatchesCpuAllDtypes) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (DType dt : cuda_dtypes()) {
    for (int64_t rows : awkward_rows()) {
      for (int64_t f : awkward_features()) {
        Tensor x = rounded_to(random_tensor({rows, f}, rng, -3.0f, 3.0f), dt);
        Tensor w = rounded_to(random_tensor({f}, rng, 0.5f, 1.5f), dt);
        Tensor expected = Tensor::empty(x.shape(), DType::F32);
        ops::rmsnorm(x, w, 1e-5f, expected);
        Tensor out = poisoned_cuda(x.shape(), dt);
        ops::rmsnorm(to_cuda(x, dt), to_cuda(w, dt), 1e-5f, out);
        expect_close(out, expected, cuda_tolerance(dt), dtype_case(dt, x.shape()));
      }
    }
  }
}

TEST(AddRmsNormCuda, MatchesCpuAllDtypesAndAliasing) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (DType dt : cuda_dtypes()) {
    for (int64_t rows : awkward_rows()) {
      for (int64_t f : awkward_features()) {
        Tensor x = rounded_to(random_tensor({rows, f}, rng), dt);
        Tensor res = rounded_to(random_tensor({rows, f}, rng, -2.0f, 2.0f), dt);
        Tensor w = rounded_to(random_tensor({f}, rng, 0.5f, 1.5f), dt);
        Tensor expected = Tensor::empty(x.shape(), DType::F32);
        Tensor expected_res = Tensor::empty(x.shape(), DType::F32);
        ops::add_rmsnorm(x, res, w, 1e-5f, expected, expected_res);
        const std::string c = dtype_case(dt, x.shape());

        Tensor out = poisoned_cuda(x.shape(), dt), res_out = poisoned_cuda(x.shape(), dt);
        Tensor wg = to_cuda(w, dt);
        ops::add_rmsnorm(to_cuda(x, dt), to_cuda(res, dt), wg, 1e-5f, out, res_out);
        expect_close(out, expected, cuda_tolerance(dt), c + " out");
        expect_close(res_out, expected_res, cuda_tolerance(dt), c + " residual_out");

        Tensor xg = to_cuda(x, dt), rg = to_cuda(res, dt);
        ops::add_rmsnorm(xg, rg, wg, 1e-5f, xg, rg);
        expect_close(xg, expected, cuda_tolerance(dt), c + " aliased out");
        expect_close(rg, expected_res, cuda_tolerance(dt), c + " aliased residual_out");
      }
    }
  }
}

TEST(NormCuda, DeviceMismatchIsAnError) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  Tensor x = to_cuda(random_tensor({3, 16}, rng), DType::F16);
  Tensor w_host = random_tensor({16}, rng).to_dtype(DType::F16);
  Tensor out = poisoned_cuda({3, 16}, DType::F16);
  expect_error([&] { ops::rmsnorm(x, w_host, 1e-5f, out); }, {"ops::rmsnorm", "weight", "device"});
  Tensor w_bf16 = to_cuda(random_tensor({16}, rng), DType::BF16);
  expect_error([&] { ops::layernorm(x, w_bf16, Tensor(), 1e-5f, out); },
               {"ops::layernorm", "weight", "BF16"});
}
