// ops::attention: CPU against an independent float64 loop, CUDA against the CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "core/error.h"
#include "ops/attention.h"

namespace omnirt {
namespace {

using testing::random_tensor;
using testing::rel_error;
using testing::test_seed;

struct Case {
  int64_t batch, heads_q, heads_kv, seq_q, seq_k, head_dim;
  bool causal;
  bool with_mask;
  std::string describe() const {
    return "B=" + std::to_string(batch) + " Hq=" + std::to_string(heads_q) +
           " Hkv=" + std::to_string(heads_kv) + " Sq=" + std::to_string(seq_q) +
           " Sk=" + std::to_string(seq_k) + " D=" + std::to_string(head_dim) +
           (causal ? " causal" : "") + (with_mask ? " mask" : "");
  }
};

// Random mask (about 30% blocked) in which every row keeps at least one key that is also
// causally visible, so no row is fully blocked unless a test wants it.
Tensor random_mask(int64_t sq, int64_t sk, bool causal, std::mt19937_64& rng) {
  Tensor m = Tensor::empty({sq, sk}, DType::U8);
  std::bernoulli_distribution blocked(0.3);
  for (int64_t i = 0; i < sq; ++i) {
    const int64_t last_visible = causal ? i + sk - sq : sk - 1;
    for (int64_t j = 0; j < sk; ++j) m.data<uint8_t>()[i * sk + j] = blocked(rng) ? 1 : 0;
    std::uniform_int_distribution<int64_t> pick(0, last_visible);
    m.data<uint8_t>()[i * sk + pick(rng)] = 0;
  }
  return m;
}

// Naive float64 attention on contiguous copies; the full score row in double.
std::vector<double> ref_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const Tensor& mask, double scale, bool causal) {
  const int64_t B = q.dim(0), Hq = q.dim(1), Sq = q.dim(2), D = q.dim(3);
  const int64_t Hkv = k.dim(1), Sk = k.dim(2);
  const auto qv = q.to_float_vector(), kv = k.to_float_vector(), vv = v.to_float_vector();
  const std::vector<float> mv = mask.defined() ? mask.to_float_vector() : std::vector<float>{};
  std::vector<double> out(B * Hq * Sq * D);
  std::vector<double> s(Sk);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t hk = h * Hkv / Hq;  // == h / (Hq / Hkv)
      for (int64_t i = 0; i < Sq; ++i) {
        double mx = -INFINITY;
        for (int64_t j = 0; j < Sk; ++j) {
          const bool hidden = (causal && j - i > Sk - Sq) || (!mv.empty() && mv[i * Sk + j] != 0);
          if (hidden) {
            s[j] = -INFINITY;
            continue;
          }
          double dot = 0;
          for (int64_t e = 0; e < D; ++e) {
            dot += static_cast<double>(qv[((b * Hq + h) * Sq + i) * D + e]) *
                   kv[((b * Hkv + hk) * Sk + j) * D + e];
          }
          s[j] = dot * scale;
          mx = std::max(mx, s[j]);
        }
        double* o = &out[((b * Hq + h) * Sq + i) * D];
        if (mx == -INFINITY) {
          for (int64_t e = 0; e < D; ++e) o[e] = NAN;
          continue;
        }
        double sum = 0;
        for (int64_t j = 0; j < Sk; ++j) sum += s[j] == -INFINITY ? 0 : std::exp(s[j] - mx);
        for (int64_t e = 0; e < D; ++e) o[e] = 0;
        for (int64_t j = 0; j < Sk; ++j) {
          if (s[j] == -INFINITY) continue;
          const double p = std::exp(s[j] - mx) / sum;
          for (int64_t e = 0; e < D; ++e) o[e] += p * vv[((b * Hkv + hk) * Sk + j) * D + e];
        }
      }
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

struct Inputs {
  Tensor q, k, v, mask;
};
Inputs make_inputs(const Case& c, std::mt19937_64& rng) {
  Inputs in;
  // Range +-2 so that the softmax is far from uniform.
  in.q = random_tensor({c.batch, c.heads_q, c.seq_q, c.head_dim}, rng, -2.f, 2.f);
  in.k = random_tensor({c.batch, c.heads_kv, c.seq_k, c.head_dim}, rng, -2.f, 2.f);
  in.v = random_tensor({c.batch, c.heads_kv, c.seq_k, c.head_dim}, rng);
  if (c.with_mask) in.mask = random_mask(c.seq_q, c.seq_k, c.causal, rng);
  return in;
}

// ---------------------------------------------------------------- CPU vs float64

TEST(AttentionCpu, MatchesFloat64) {
  std::mt19937_64 rng(test_seed());
  const std::vector<Case> cases = {
      {2, 4, 4, 7, 33, 32, false, false},   // plain MHA, awkward sizes
      {1, 8, 1, 5, 40, 64, true, false},    // MQA 8/1, causal with Sq < Sk
      {1, 32, 4, 1, 300, 64, true, false},  // decode, GQA 32/4
      {2, 2, 2, 33, 33, 16, true, true},    // causal + random mask
      {1, 3, 3, 17, 50, 64, false, true},   // mask only
      {1, 2, 1, 1, 1, 8, true, false},      // a single key
  };
  for (const Case& c : cases) {
    Inputs in = make_inputs(c, rng);
    Tensor out = nan_tensor(in.q.shape(), DType::F32, Device::CPU);
    ops::attention(in.q, in.k, in.v, out, {.causal = c.causal, .mask = in.mask});
    auto want = ref_attention(in.q, in.k, in.v, in.mask, 1.0 / std::sqrt(c.head_dim), c.causal);
    EXPECT_LT(rel_error64(out.to_float_vector(), want), 1e-5) << c.describe();
  }
}

TEST(AttentionCpu, ExplicitScale) {
  std::mt19937_64 rng(test_seed());
  const Case c{1, 2, 2, 9, 21, 32, false, false};
  Inputs in = make_inputs(c, rng);
  Tensor out = Tensor::empty(in.q.shape(), DType::F32);
  ops::attention(in.q, in.k, in.v, out, {.scale = 0.37f});
  auto want = ref_attention(in.q, in.k, in.v, Tensor(), 0.37f, false);
  EXPECT_LT(rel_error64(out.to_float_vector(), want), 1e-5);
}

// q/k/v/out as [B, S, H, D] buffers viewed as [B, H, S, D] (what a fused projection gives).
TEST(AttentionCpu, StridedViewsMatchContiguous) {
  std::mt19937_64 rng(test_seed());
  const int64_t B = 2, Hq = 4, Hkv = 2, Sq = 11, Sk = 19, D = 32;
  Tensor qb = random_tensor({B, Sq, Hq, D}, rng, -2.f, 2.f);
  Tensor kb = random_tensor({B, Sk, Hkv, D}, rng, -2.f, 2.f);
  Tensor vb = random_tensor({B, Sk, Hkv, D}, rng);
  Tensor ob = nan_tensor({B, Sq, Hq, D}, DType::F32, Device::CPU);
  Tensor q = qb.permute({0, 2, 1, 3}), k = kb.permute({0, 2, 1, 3}), v = vb.permute({0, 2, 1, 3});
  Tensor out = ob.permute({0, 2, 1, 3});
  ASSERT_FALSE(q.is_contiguous());
  ops::attention(q, k, v, out, {.causal = true});
  auto want = ref_attention(q, k, v, Tensor(), 1.0 / std::sqrt(D), true);
  EXPECT_LT(rel_error64(out.to_float_vector(), want), 1e-5);
}

// Rows whose every key is blocked by the mask come out NaN (documented); other rows are exact.
TEST(AttentionCpu, FullyBlockedRowIsNaN) {
  std::mt19937_64 rng(test_seed());
  const Case c{1, 2, 2, 6, 10, 16, false, true};
  Inputs in = make_inputs(c, rng);
  for (int64_t j = 0; j < c.seq_k; ++j) in.mask.data<uint8_t>()[3 * c.seq_k + j] = 1;
  Tensor out = Tensor::empty(in.q.shape(), DType::F32);
  ops::attention(in.q, in.k, in.v, out, {.mask = in.mask});
  const auto got = out.to_float_vector();
  const auto want = ref_attention(in.q, in.k, in.v, in.mask, 1.0 / 4.0, false);
  for (int64_t h = 0; h < c.heads_q; ++h) {
    for (int64_t i = 0; i < c.seq_q; ++i) {
      for (int64_t e = 0; e < c.head_dim; ++e) {
        const size_t idx = (h * c.seq_q + i) * c.head_dim + e;
        if (i == 3) {
          EXPECT_TRUE(std::isnan(got[idx])) << "h=" << h << " e=" << e;
        } else {
          EXPECT_NEAR(got[idx], want[idx], 1e-5) << "h=" << h << " i=" << i << " e=" << e;
        }
      }
    }
  }
}

// ---------------------------------------------------------------- bad arguments

TEST(AttentionErrors, BadArgumentsThrow) {
  std::mt19937_64 rng(test_seed());
  auto expect_error = [](const std::function<void()>& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "expected omnirt::Error containing '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  Tensor q = random_tensor({1, 6, 5, 8}, rng);
  Tensor k = random_tensor({1, 4, 7, 8}, rng);  // 6 % 4 != 0
  Tensor v = random_tensor({1, 4, 7, 8}, rng);
  Tensor out = Tensor::empty({1, 6, 5, 8}, DType::F32);
  expect_error([&] { ops::attention(q, k, v, out); }, "multiple of kv heads");

  Tensor k2 = random_tensor({1, 2, 7, 8}, rng), v2 = random_tensor({1, 2, 7, 8}, rng);
  EXPECT_NO_THROW(ops::attention(q, k2, v2, out));
  expect_error([&] { ops::attention(q, random_tensor({1, 2, 7, 4}, rng), v2, out); }, "head_dim");
  expect_error([&] { ops::attention(q, k2, random_tensor({1, 2, 6, 8}, rng), out); }, "v must");
  Tensor out_bad = Tensor::empty({1, 6, 5, 7}, DType::F32);
  expect_error([&] { ops::attention(q, k2, v2, out_bad); }, "out must");
  expect_error([&] { ops::attention(q.reshape({6, 5, 8}), k2, v2, out); }, "4-D");
  // dtypes
  expect_error([&] { ops::attention(q, k2.to_dtype(DType::F16), v2, out); }, "dtype");
  Tensor out16 = Tensor::empty({1, 6, 5, 8}, DType::F16);
  expect_error(
      [&] {
        ops::attention(q.to_dtype(DType::F16), k2.to_dtype(DType::F16), v2.to_dtype(DType::F16),
                       out16);
      },
      "CPU backend supports F32");
  // mask
  Tensor mask_f = random_tensor({5, 7}, rng);
  expect_error([&] { ops::attention(q, k2, v2, out, {.mask = mask_f}); }, "mask must be U8");
  Tensor mask_shape = Tensor::zeros({5, 6}, DType::U8);
  expect_error([&] { ops::attention(q, k2, v2, out, {.mask = mask_shape}); }, "mask must be [Sq");
  // causal with Sq > Sk
  Tensor k_short = random_tensor({1, 2, 3, 8}, rng), v_short = random_tensor({1, 2, 3, 8}, rng);
  expect_error([&] { ops::attention(q, k_short, v_short, out, {.causal = true}); }, "causal");
  // head_dim not contiguous
  Tensor q_t = random_tensor({1, 6, 8, 5}, rng).permute({0, 1, 3, 2});
  expect_error([&] { ops::attention(q_t, k2, v2, out); }, "last (head_dim)");
  // device mismatch (CUDA-tagged view; validation fails before any byte is touched)
  std::vector<float> host(k2.numel());
  Tensor k_cuda = Tensor::from_blob(host.data(), k2.shape(), DType::F32, Device::CUDA);
  expect_error([&] { ops::attention(q, k_cuda, v2, out); }, "expected cpu");
  // output aliasing an input
  expect_error([&] { ops::attention(q, k2, v2, q); }, "overlaps");
}

// ---------------------------------------------------------------- CUDA vs CPU

struct GpuDtype {
  DType dtype;
  double tol;
  const char* name;
};
const GpuDtype kGpuDtypes[] = {
    {DType::F32, 1e-5, "fp32"}, {DType::F16, 1e-2, "fp16"}, {DType::BF16, 1.5e-2, "bf16"}};

Tensor rounded(const Tensor& t, DType dtype) {
  return dtype == DType::F32 ? t
                             : Tensor::from_vector(t.to_dtype(dtype).to_float_vector(), t.shape());
}

void expect_gpu_matches_cpu(const Case& c, std::mt19937_64& rng) {
  for (const GpuDtype& gd : kGpuDtypes) {
    Inputs in = make_inputs(c, rng);
    in.q = rounded(in.q, gd.dtype);
    in.k = rounded(in.k, gd.dtype);
    in.v = rounded(in.v, gd.dtype);
    Tensor want = Tensor::empty(in.q.shape(), DType::F32);
    ops::attention(in.q, in.k, in.v, want, {.causal = c.causal, .mask = in.mask});
    Tensor q = in.q.to_dtype(gd.dtype).to(Device::CUDA);
    Tensor k = in.k.to_dtype(gd.dtype).to(Device::CUDA);
    Tensor v = in.v.to_dtype(gd.dtype).to(Device::CUDA);
    ops::AttentionOptions opts{.causal = c.causal};
    if (in.mask.defined()) opts.mask = in.mask.to(Device::CUDA);
    // Every kernel (tensor cores for F16/BF16 only) with automatic key splitting, never split,
    // and a forced split into 3 chunks.
    for (auto kernel : {ops::AttentionKernel::Auto, ops::AttentionKernel::Simt,
                        ops::AttentionKernel::TensorCore}) {
      // F32 on tensor cores only as TF32 (looser bound: 10-bit mantissa operands).
      const bool tf32 = kernel == ops::AttentionKernel::TensorCore && gd.dtype == DType::F32;
      for (int splits : {0, 1, 3}) {
        opts.cuda_kv_splits = splits;
        opts.cuda_kernel = kernel;
        opts.allow_tf32 = tf32;
        Tensor out = nan_tensor(in.q.shape(), gd.dtype, Device::CUDA);
        ops::attention(q, k, v, out, opts);
        EXPECT_LT(rel_error(out, want), tf32 ? 5e-3 : gd.tol)
            << gd.name << (tf32 ? " (tf32) " : " ") << c.describe()
            << " kernel=" << static_cast<int>(kernel) << " kv_splits=" << splits;
      }
    }
  }
}

TEST(AttentionCuda, AwkwardShapesMatchCpu) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  const std::vector<Case> cases = {
      {2, 3, 3, 7, 33, 32, false, false},   {1, 4, 4, 1, 1, 64, false, false},
      {3, 2, 2, 17, 17, 64, true, false},   {1, 8, 1, 100, 333, 64, true, false},
      {1, 32, 4, 1, 2048, 64, true, false}, {2, 8, 1, 1, 517, 64, false, false},
      {1, 4, 2, 45, 77, 32, true, true},    {2, 3, 3, 33, 65, 64, false, true},
      {1, 4, 4, 19, 40, 128, true, true},   {1, 32, 4, 3, 130, 64, true, false},
  };
  for (const Case& c : cases) expect_gpu_matches_cpu(c, rng);
}

TEST(AttentionCuda, ModelShapesMatchCpu) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  const std::vector<Case> cases = {
      {2, 12, 12, 256, 256, 64, false, false},  // EVA window attention
      {1, 2, 2, 1600, 1600, 64, false, false},  // EVA global attention (2 of 12 heads)
      {1, 2, 2, 1156, 1456, 32, false, true},   // PETR decoder self-attention with mask
      {1, 1, 1, 1156, 9600, 32, false, false},  // PETR cross-attention (1 head)
      {1, 8, 1, 577, 577, 64, true, false},     // LLM prefill, causal (8 of 32 heads)
  };
  for (const Case& c : cases) expect_gpu_matches_cpu(c, rng);
}

TEST(AttentionCuda, StridedViewsMatchCpu) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  const int64_t B = 2, Hq = 8, Hkv = 2, Sq = 37, Sk = 70, D = 64;
  Tensor qb = random_tensor({B, Sq, Hq, D}, rng, -2.f, 2.f);
  Tensor kb = random_tensor({B, Sk, Hkv, D}, rng, -2.f, 2.f);
  Tensor vb = random_tensor({B, Sk, Hkv, D}, rng);
  auto bhsd = [](const Tensor& t) { return t.permute({0, 2, 1, 3}); };
  Tensor want = Tensor::empty({B, Hq, Sq, D}, DType::F32);
  ops::attention(bhsd(qb), bhsd(kb), bhsd(vb), want, {.causal = true});
  Tensor ob = nan_tensor({B, Sq, Hq, D}, DType::F32, Device::CUDA);
  Tensor out = bhsd(ob);
  ops::attention(bhsd(qb.to(Device::CUDA)), bhsd(kb.to(Device::CUDA)), bhsd(vb.to(Device::CUDA)),
                 out, {.causal = true});
  // Compare in [B, S, H, D] order: ob holds the result contiguously.
  EXPECT_LT(
      rel_error(ob.to_float_vector(), want.permute({0, 2, 1, 3}).contiguous().to_float_vector()),
      1e-5);
}

TEST(AttentionCuda, FullyBlockedRowIsNaN) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  const Case c{1, 4, 2, 40, 700, 64, true, true};
  struct Variant {
    DType dtype;
    ops::AttentionKernel kernel;
    double abs_tol;
  };
  const Variant variants[] = {{DType::F32, ops::AttentionKernel::Simt, 1e-4},
                              {DType::F32, ops::AttentionKernel::TensorCore, 1e-2},  // TF32
                              {DType::F16, ops::AttentionKernel::TensorCore, 2e-2},
                              {DType::BF16, ops::AttentionKernel::TensorCore, 4e-2}};
  for (const Variant& var : variants) {
    Inputs in = make_inputs(c, rng);
    in.q = rounded(in.q, var.dtype);
    in.k = rounded(in.k, var.dtype);
    in.v = rounded(in.v, var.dtype);
    for (int64_t j = 0; j < c.seq_k; ++j) in.mask.data<uint8_t>()[17 * c.seq_k + j] = 1;
    Tensor want = Tensor::empty(in.q.shape(), DType::F32);
    ops::attention(in.q, in.k, in.v, want, {.causal = true, .mask = in.mask});
    const auto ref = want.to_float_vector();
    for (int splits : {1, 4, 0}) {
      SCOPED_TRACE(std::string(dtype_name(var.dtype)) + " kv_splits=" + std::to_string(splits));
      // Zeros, not NaN, beforehand: the NaN row must be written by the kernel.
      Tensor out = Tensor::zeros(in.q.shape(), var.dtype, Device::CUDA);
      ops::attention(in.q.to_dtype(var.dtype).to(Device::CUDA),
                     in.k.to_dtype(var.dtype).to(Device::CUDA),
                     in.v.to_dtype(var.dtype).to(Device::CUDA), out,
                     {.causal = true,
                      .mask = in.mask.to(Device::CUDA),
                      .cuda_kv_splits = splits,
                      .cuda_kernel = var.kernel,
                      .allow_tf32 = var.dtype == DType::F32});
      const auto got = out.to_float_vector();
      for (int64_t h = 0; h < c.heads_q; ++h) {
        for (int64_t i = 0; i < c.seq_q; ++i) {
          for (int64_t e = 0; e < c.head_dim; ++e) {
            const size_t idx = (h * c.seq_q + i) * c.head_dim + e;
            if (i == 17) {
              ASSERT_TRUE(std::isnan(got[idx])) << "h=" << h << " e=" << e;
            } else {
              ASSERT_NEAR(got[idx], ref[idx], var.abs_tol) << "h=" << h << " i=" << i << " e=" << e;
            }
          }
        }
      }
    }
  }
}

TEST(AttentionCuda, BadArgumentsThrow) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  Tensor q = random_tensor({1, 4, 5, 64}, rng).to(Device::CUDA);
  Tensor k = random_tensor({1, 2, 7, 64}, rng).to(Device::CUDA);
  Tensor v = random_tensor({1, 2, 7, 64}, rng).to(Device::CUDA);
  Tensor out = Tensor::empty({1, 4, 5, 64}, DType::F32, Device::CUDA);
  EXPECT_NO_THROW(ops::attention(q, k, v, out));
  EXPECT_THROW(ops::attention(q, random_tensor({1, 2, 7, 64}, rng), v, out), Error);  // k on CPU
  Tensor mask_cpu = Tensor::zeros({5, 7}, DType::U8);
  EXPECT_THROW(ops::attention(q, k, v, out, {.mask = mask_cpu}), Error);  // mask on CPU
  Tensor q48 = Tensor::zeros({1, 4, 5, 48}, DType::F32, Device::CUDA);
  Tensor k48 = Tensor::zeros({1, 2, 7, 48}, DType::F32, Device::CUDA);
  Tensor out48 = Tensor::empty({1, 4, 5, 48}, DType::F32, Device::CUDA);
  EXPECT_THROW(ops::attention(q48, k48, k48, out48), Error);  // head_dim 48 unsupported on GPU
  Tensor out16 = Tensor::empty({1, 4, 5, 64}, DType::F16, Device::CUDA);
  EXPECT_THROW(ops::attention(q, k, v, out16), Error);  // mixed dtypes
  EXPECT_THROW(ops::attention(q, k, v, out, {.cuda_kernel = ops::AttentionKernel::TensorCore}),
               Error);  // tensor cores need F16/BF16, or F32 with allow_tf32
  // Rows not 16-byte aligned (head_dim 32 view starting 2 floats in, rows 34 floats apart): the
  // tensor-core kernel
  // refuses them, Auto falls back to the SIMT kernel and stays correct.
  {
    Tensor base = random_tensor({1, 2, 40, 34}, rng, -2.f, 2.f);
    Tensor view = base.slice(3, 2, 34);  // [1, 2, 40, 32], 8-byte offset, 136-byte rows
    Tensor want = Tensor::empty({1, 2, 40, 32}, DType::F32);
    ops::attention(view, view, view, want);
    Tensor dev = base.to(Device::CUDA);
    Tensor dview = dev.slice(3, 2, 34);
    Tensor got = Tensor::empty({1, 2, 40, 32}, DType::F32, Device::CUDA);
    EXPECT_THROW(ops::attention(dview, dview, dview, got,
                                {.cuda_kernel = ops::AttentionKernel::TensorCore,
                                 .allow_tf32 = true}),
                 Error);
    ops::attention(dview, dview, dview, got, {.allow_tf32 = true});
    EXPECT_LT(rel_error(got, want), 1e-5);  // SIMT: exact fp32 even with allow_tf32
  }
}

}  // namespace
}  // namespace omnirt
