// The dequantising decode GEMVs (models/llm/quant_gemv.h) against the CPU references of the
// quantised formats (quant::dequantize_int4 / dequantize_nvfp4, then a float64 dot product) on
// fresh random data: INT4 per channel, INT4 g128, INT4 with a group size that is not a multiple
// of 32 (scalar path), NVFP4, FP8 E4M3 with row scales (quant::dequantize_fp8_rows); every input/output mode in F16 and BF16; shapes with N odd, N not a
// multiple of the 16 rows per block, K past two 128-chunk batches, K not a multiple of 32 (scalar
// path), misaligned codes (scalar path), misaligned input (scalar staging); the AWQ input scale;
// the RoPE + KV-cache epilogue; with and without PDL.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "core/error.h"
#include "models/llm/quant_gemv.h"
#include "quant/fp8_weight.h"
#include "quant/int4.h"
#include "quant/nvfp4.h"

#if defined(OMNIRT_WITH_CUDA)
#include <cuda_runtime.h>

#include "core/cuda_check.h"

namespace omnirt::llm::decode {
namespace {

using omnirt::testing::rel_error;

std::vector<float> uniform(size_t n, std::mt19937_64& rng, float lo = -1.f, float hi = 1.f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

Tensor upload(const std::vector<float>& values, DType dtype, std::vector<float>* seen = nullptr) {
  Tensor host = Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
  if (dtype != DType::F32) host = host.to_dtype(dtype);
  if (seen) *seen = host.to_float_vector();
  return host.to(Device::CUDA);
}

// Bytes on the device starting `offset` bytes into a fresh allocation (offset != 0 misaligns).
Tensor upload_bytes(const Tensor& host_u8, int64_t offset) {
  Tensor h = Tensor::zeros({host_u8.numel() + offset}, DType::U8);
  std::memcpy(h.data<uint8_t>() + offset, host_u8.raw(), host_u8.nbytes());
  return h.to(Device::CUDA);
}

std::vector<float> download(const Tensor& t) {
  OMNIRT_CUDA_CHECK(cudaDeviceSynchronize());
  return t.to(Device::CPU).to_float_vector();
}

double out_tol(DType out) { return out == DType::F32 ? 2e-5 : out == DType::F16 ? 2e-3 : 1.5e-2; }
double silu(double g) { return g / (1.0 + std::exp(-g)); }

// A quantised weight on the device plus its dequantised float copy (the CPU reference's).
struct QW {
  WeightFormat fmt;
  int64_t group = 0;  // INT4 G
  float global = 1.f;
  Tensor codes_buf, scales;  // device; codes start `offset` bytes into codes_buf
  int64_t offset = 0;
  std::vector<float> deq;  // [N, K]
  const uint8_t* codes() const { return codes_buf.data<uint8_t>() + offset; }
};

constexpr int64_t kNvfp4Case = -1, kFp8Case = -2;  // Case::group values

// group: INT4 group size (0 = per channel); kNvfp4Case; kFp8Case.
QW make_weight(int64_t n, int64_t k, int64_t group, std::mt19937_64& rng, bool misalign = false) {
  const float a = std::sqrt(3.0f / static_cast<float>(k));
  Tensor w = Tensor::from_vector(uniform(n * k, rng, -a, a), {n, k});
  // A few outlier weights so that scales differ a lot between groups / blocks.
  for (int i = 0; i < 5; ++i) w.data<float>()[(rng() % (n * k))] = 6 * a;
  // FP8: rows of very different magnitude (row scales from 2^-6 to 2^5 times the base), so that
  // a wrong or swapped row scale shows, and small weights land on E4M3 subnormals.
  if (group == kFp8Case)
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < k; ++i) w.data<float>()[r * k + i] *= std::exp2(float(r % 12) - 6.f);
  QW q;
  q.offset = misalign ? 1 : 0;
  if (group == kFp8Case) {
    q.fmt = WeightFormat::kFp8;
    const quant::Fp8Weight fq = quant::quantize_fp8_rows(w, "w");
    q.codes_buf = upload_bytes(fq.codes, q.offset);
    q.scales = fq.scales.to(Device::CUDA);
    q.deq = quant::dequantize_fp8_rows(fq.codes, fq.scales, "w").to_float_vector();
  } else if (group < 0) {
    q.fmt = WeightFormat::kNvfp4;
    const quant::Nvfp4Weight nq = quant::quantize_nvfp4(w, "w");
    q.global = nq.global_scale;
    q.codes_buf = upload_bytes(nq.codes, q.offset);
    q.scales = nq.scales.to(Device::CUDA);
    q.deq = quant::dequantize_nvfp4(nq.codes, nq.scales, nq.global_scale, "w").to_float_vector();
  } else {
    q.fmt = WeightFormat::kInt4;
    const quant::Int4Weight iq = quant::quantize_int4(w, group, "w");
    q.group = iq.group_size;
    q.codes_buf = upload_bytes(iq.qweight, q.offset);
    q.scales = iq.scales.to(Device::CUDA);
    q.deq = quant::dequantize_int4(iq.qweight, iq.scales, "w").to_float_vector();
  }
  return q;
}

QuantGemvArgs base_args(const QW& q, DType dt, int64_t n, int64_t k) {
  QuantGemvArgs g;
  g.format = q.fmt;
  g.dtype = dt;
  g.codes = q.codes();
  g.scales = q.scales.raw();
  g.group_size = q.group;
  g.global_scale = q.global;
  g.n = n;
  g.k = k;
  g.eps = 1e-5f;
  return g;
}

struct Case {
  int64_t n, k, group;  // group: INT4 G (0 = per channel), -1 = NVFP4, -2 = FP8
};

std::string case_name(const Case& s) {
  return "N=" + std::to_string(s.n) + " K=" + std::to_string(s.k) +
         (s.group == kFp8Case    ? std::string(" fp8")
          : s.group == kNvfp4Case ? std::string(" nvfp4")
                                  : " int4 G=" + std::to_string(s.group));
}

void check(DType dt, GemvIn in_mode, GemvOut out_mode, Case s, bool pdl, std::mt19937_64& rng,
           bool misalign = false, bool misalign_in = false, bool awq = false, int max_blocks = 0) {
  SCOPED_TRACE(std::string(dtype_name(dt)) + " " + case_name(s) +
               " in=" + std::to_string(static_cast<int>(in_mode)) +
               " out=" + std::to_string(static_cast<int>(out_mode)) + (pdl ? " pdl" : "") +
               (misalign ? " misaligned codes" : "") + (misalign_in ? " misaligned input" : "") +
               (awq ? " awq" : "") + " max_blocks=" + std::to_string(max_blocks));
  const int64_t N = s.n, K = s.k;
  const QW q = make_weight(N, K, s.group, rng, misalign);
  const int64_t lead = misalign_in ? 1 : 0;
  std::vector<double> x(static_cast<size_t>(K));
  Tensor in, norm, in_scale;
  std::vector<float> in_seen, norm_seen, sc_seen;
  if (in_mode == GemvIn::kRmsNorm) {
    in = upload(uniform(K + lead, rng, -3.f, 3.f), DType::F32, &in_seen);
    norm = upload(uniform(K, rng, 0.7f, 1.3f), DType::F32, &norm_seen);
    in_seen.erase(in_seen.begin(), in_seen.begin() + lead);
    double ss = 0;
    for (int64_t i = 0; i < K; ++i) ss += static_cast<double>(in_seen[i]) * in_seen[i];
    const double inv = 1.0 / std::sqrt(ss / K + 1e-5);
    for (int64_t i = 0; i < K; ++i) x[i] = norm_seen[i] * (in_seen[i] * inv);
  } else if (in_mode == GemvIn::kSwiglu) {
    in = upload(uniform(2 * K + lead, rng, -4.f, 4.f), dt, &in_seen);
    in_seen.erase(in_seen.begin(), in_seen.begin() + lead);
    for (int64_t i = 0; i < K; ++i) x[i] = silu(in_seen[i]) * in_seen[K + i];
  } else {
    in = upload(uniform(K + lead, rng), dt, &in_seen);
    in_seen.erase(in_seen.begin(), in_seen.begin() + lead);
    for (int64_t i = 0; i < K; ++i) x[i] = in_seen[i];
  }
  if (awq) {
    in_scale = upload(uniform(K, rng, 0.2f, 5.f), DType::F32, &sc_seen);
    for (int64_t i = 0; i < K; ++i) x[i] *= sc_seen[i];
  }
  std::vector<double> ref(static_cast<size_t>(N));
  for (int64_t r = 0; r < N; ++r) {
    double acc = 0;
    for (int64_t i = 0; i < K; ++i) acc += static_cast<double>(q.deq[r * K + i]) * x[i];
    ref[r] = acc;
  }
  const DType ydt = out_mode == GemvOut::kStore ? dt : DType::F32;
  std::vector<float> y0_seen;
  Tensor y = upload(uniform(N, rng, -2.f, 2.f), ydt, &y0_seen);
  if (out_mode == GemvOut::kAddF32)
    for (int64_t r = 0; r < N; ++r) ref[r] += y0_seen[r];

  QuantGemvArgs g = base_args(q, dt, N, K);
  g.in_mode = in_mode;
  g.in = static_cast<const char*>(in.raw()) + lead * dtype_nbytes(in.dtype(), 1);
  g.norm_w = norm.defined() ? norm.data<float>() : nullptr;
  g.in_scale = awq ? in_scale.data<float>() : nullptr;
  g.out_mode = out_mode;
  g.y = y.raw();
  g.max_blocks = max_blocks;
  const int64_t eff_group = s.group < 0 ? 16 : (s.group == 0 ? K : s.group);
  const bool expect_vec = s.group == kFp8Case
                              ? !misalign && K % 16 == 0
                              : !misalign && K % 32 == 0 && (s.group < 0 || eff_group % 32 == 0);
  EXPECT_EQ(quant_gemv_vectorized(g), expect_vec);
  quant_gemv(g, cuda::current_stream(), pdl);
  const std::vector<float> got = download(y);
  std::vector<float> ref_f(ref.begin(), ref.end());
  EXPECT_LE(rel_error(got, ref_f), out_tol(ydt));
  int bad = 0;  // every row, not just the norm: a skipped last row (N odd) must show
  for (int64_t r = 0; r < N; ++r) {
    const double err = std::abs(got[r] - ref[r]);
    if (!(err <= 20 * out_tol(ydt) * (1.0 + std::abs(ref[r]))) && ++bad <= 3)
      ADD_FAILURE() << "row " << r << ": got " << got[r] << ", want " << ref[r];
  }
}

const Case kCases[] = {
    {37, 96, 0},        // N odd, < one block, 3 chunks; per channel
    {37, 96, 32},       // g32
    {130, 2048, 128},   // g128, N not a multiple of 16 rows per block
    {2051, 2048, 0},    // N odd, TinyLlama K
    {19, 8320, 128},    // K = 260 chunks: two full 4 x 32-chunk batches + 4 (and > 32 KB smem)
    {70, 5632, 128},    // the down projection's K
    {21, 160, 80},      // G % 32 != 0: scalar path
    {9, 100, 0},        // K % 32 != 0: scalar path
    {37, 96, -1},       // NVFP4
    {130, 2048, -1},
    {19, 8224, -1},
    {70, 5632, -1},
    {11, 80, -1},       // NVFP4, K % 32 != 0: scalar path
    {37, 96, -2},       // FP8: 6 chunks of 16
    {130, 2048, -2},    // FP8, one 4 x 32-chunk batch per row
    {2051, 2048, -2},   // N odd, TinyLlama K
    {19, 8336, -2},     // K = 521 chunks: four full batches + 9 (and > 32 KB smem)
    {70, 5632, -2},     // the down projection's K
    {21, 80, -2},       // K % 32 != 0 but % 16 == 0: still the 16-byte path
    {9, 100, -2},       // K % 16 != 0: scalar path
    {5, 33, -2},        // K odd (FP8 allows it): scalar path
};

TEST(QuantGemvCuda, EveryModeFormatAndDtypeMatchesCpuReference) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  const std::pair<GemvIn, GemvOut> modes[] = {
      {GemvIn::kPlain, GemvOut::kStore},      {GemvIn::kPlain, GemvOut::kStoreF32},
      {GemvIn::kPlain, GemvOut::kAddF32},
      {GemvIn::kRmsNorm, GemvOut::kStore},    {GemvIn::kRmsNorm, GemvOut::kStoreF32},
      {GemvIn::kSwiglu, GemvOut::kAddF32}};
  for (DType dt : {DType::F16, DType::BF16})
    for (const auto& m : modes)
      for (const Case& s : kCases) check(dt, m.first, m.second, s, /*pdl=*/true, rng);
}

TEST(QuantGemvCuda, WithoutPdlMisalignedAndAwq) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  for (const Case& s :
       {Case{130, 2048, 128}, Case{37, 96, -1}, Case{2051, 2048, 0}, Case{130, 2048, -2}}) {
    check(DType::F16, GemvIn::kRmsNorm, GemvOut::kStore, s, /*pdl=*/false, rng);
    check(DType::F16, GemvIn::kPlain, GemvOut::kStore, s, true, rng, /*misalign=*/true);
    check(DType::F16, GemvIn::kSwiglu, GemvOut::kAddF32, s, true, rng, false, /*misalign_in=*/true);
    check(DType::F16, GemvIn::kRmsNorm, GemvOut::kStoreF32, s, true, rng, false, true);
    check(DType::F16, GemvIn::kPlain, GemvOut::kAddF32, s, true, rng, false, false, /*awq=*/true);
    check(DType::BF16, GemvIn::kSwiglu, GemvOut::kAddF32, s, true, rng, false, false, true);
  }
}

// A grid smaller than the row pairs: every warp loops over several pairs (the path the big
// matrices take once the grid is capped at the resident blocks, 2 per SM).
TEST(QuantGemvCuda, CappedGridWarpsLoopOverRowPairs) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  for (int cap : {1, 3}) {
    check(DType::F16, GemvIn::kRmsNorm, GemvOut::kStore, {2051, 2048, 128}, true, rng, false,
          false, false, cap);
    check(DType::F16, GemvIn::kSwiglu, GemvOut::kAddF32, {259, 5632, -1}, true, rng, false, false,
          false, cap);
    check(DType::BF16, GemvIn::kPlain, GemvOut::kStoreF32, {133, 96, 0}, false, rng, false, false,
          false, cap);
    check(DType::F16, GemvIn::kPlain, GemvOut::kAddF32, {77, 100, 0}, true, rng, false, false,
          false, cap);  // scalar path
    check(DType::BF16, GemvIn::kRmsNorm, GemvOut::kStore, {2051, 2048, -2}, true, rng, false,
          false, false, cap);
    check(DType::F16, GemvIn::kSwiglu, GemvOut::kAddF32, {259, 5632, -2}, true, rng, false, false,
          false, cap);
    check(DType::F16, GemvIn::kPlain, GemvOut::kStoreF32, {77, 100, -2}, true, rng, false, false,
          false, cap);  // scalar path
  }
}

// RMSNorm -> QKV -> RoPE on q and k -> k, v into the caches at *pos; q rotated into y.
void check_rope(DType dt, int hq, int hkv, int D, int64_t K, int64_t group, int pos,
                std::mt19937_64& rng, int max_blocks = 0) {
  SCOPED_TRACE(std::string(dtype_name(dt)) + " hq=" + std::to_string(hq) + " hkv=" +
               std::to_string(hkv) + " D=" + std::to_string(D) + " K=" + std::to_string(K) +
               " group=" + std::to_string(group) + " pos=" + std::to_string(pos));
  const int64_t N = static_cast<int64_t>(hq + 2 * hkv) * D, max_ctx = 50, half = D / 2;
  const QW q = make_weight(N, K, group, rng);
  std::vector<float> in_seen, norm_seen, kc_seen, vc_seen;
  Tensor in = upload(uniform(K, rng, -3.f, 3.f), DType::F32, &in_seen);
  Tensor norm = upload(uniform(K, rng, 0.7f, 1.3f), DType::F32, &norm_seen);
  Tensor kc = upload(uniform(hkv * max_ctx * D, rng), dt, &kc_seen);
  Tensor vc = upload(uniform(hkv * max_ctx * D, rng), dt, &vc_seen);
  std::vector<float> cs(max_ctx * half), sn(max_ctx * half);
  for (int64_t p = 0; p < max_ctx; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const double ang = p * std::pow(10000.0, -2.0 * i / D);
      cs[p * half + i] = static_cast<float>(std::cos(ang));
      sn[p * half + i] = static_cast<float>(std::sin(ang));
    }
  Tensor cos_t = upload(cs, DType::F32), sin_t = upload(sn, DType::F32);
  Tensor pos_t = Tensor::empty({1}, DType::I32, Device::CUDA);
  OMNIRT_CUDA_CHECK(cudaMemcpy(pos_t.raw(), &pos, 4, cudaMemcpyHostToDevice));
  Tensor y = upload(uniform(N, rng), dt);

  double ss = 0;
  for (int64_t i = 0; i < K; ++i) ss += static_cast<double>(in_seen[i]) * in_seen[i];
  const double inv = 1.0 / std::sqrt(ss / K + 1e-5);
  std::vector<double> r(static_cast<size_t>(N));
  for (int64_t row = 0; row < N; ++row) {
    double acc = 0;
    for (int64_t i = 0; i < K; ++i)
      acc += static_cast<double>(q.deq[row * K + i]) * (norm_seen[i] * (in_seen[i] * inv));
    r[row] = acc;
  }
  // Expected q (rotated), and the cache rows at pos; everything else in the caches unchanged.
  std::vector<float> want_q(static_cast<size_t>(hq * D)), want_k = kc_seen, want_v = vc_seen;
  for (int h = 0; h < hq + hkv; ++h)
    for (int64_t i = 0; i < half; ++i) {
      const double a = r[h * D + i], b = r[h * D + i + half];
      const double c = cs[pos * half + i], s = sn[pos * half + i];
      const float ra = static_cast<float>(a * c - b * s), rb = static_cast<float>(b * c + a * s);
      if (h < hq) {
        want_q[h * D + i] = ra;
        want_q[h * D + i + half] = rb;
      } else {
        want_k[((h - hq) * max_ctx + pos) * D + i] = ra;
        want_k[((h - hq) * max_ctx + pos) * D + i + half] = rb;
      }
    }
  for (int h = 0; h < hkv; ++h)
    for (int64_t i = 0; i < D; ++i)
      want_v[(h * max_ctx + pos) * D + i] = static_cast<float>(r[(hq + hkv + h) * D + i]);

  QuantGemvArgs g = base_args(q, dt, N, K);
  g.in_mode = GemvIn::kRmsNorm;
  g.in = in.raw();
  g.norm_w = norm.data<float>();
  g.out_mode = GemvOut::kRopeQkv;
  g.y = y.raw();
  g.rope.cos = cos_t.data<float>();
  g.rope.sin = sin_t.data<float>();
  g.rope.pos = pos_t.data<int32_t>();
  g.rope.k_cache = kc.raw();
  g.rope.v_cache = vc.raw();
  g.rope.hq = hq;
  g.rope.hkv = hkv;
  g.rope.head_dim = D;
  g.rope.max_ctx = max_ctx;
  g.max_blocks = max_blocks;
  quant_gemv(g, cuda::current_stream(), /*pdl=*/true);
  std::vector<float> got_q = download(y);
  got_q.resize(static_cast<size_t>(hq * D));
  EXPECT_LE(rel_error(got_q, want_q), out_tol(dt));
  EXPECT_LE(rel_error(download(kc), want_k), out_tol(dt));
  EXPECT_LE(rel_error(download(vc), want_v), out_tol(dt));
  // Rows of the caches other than pos are bit-identical.
  const std::vector<float> got_k = download(kc);
  for (int h = 0; h < hkv; ++h)
    for (int64_t p = 0; p < max_ctx; ++p)
      if (p != pos)
        for (int64_t i = 0; i < D; ++i)
          ASSERT_EQ(got_k[(h * max_ctx + p) * D + i], kc_seen[(h * max_ctx + p) * D + i]);
}

TEST(QuantGemvCuda, RopeQkvEpilogue) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  for (DType dt : {DType::F16, DType::BF16}) {
    check_rope(dt, 4, 2, 32, 96, 0, 7, rng);
    check_rope(dt, 4, 2, 32, 96, 32, 0, rng);
    check_rope(dt, 8, 1, 64, 2048, 128, 49, rng);
    check_rope(dt, 8, 1, 64, 2048, -1, 13, rng);
    check_rope(dt, 2, 1, 128, 160, 80, 3, rng);  // scalar path
    check_rope(dt, 8, 1, 64, 2048, 128, 21, rng, /*max_blocks=*/1);  // warps loop over pairs
    check_rope(dt, 8, 2, 32, 96, -1, 5, rng, /*max_blocks=*/2);
    check_rope(dt, 8, 1, 64, 2048, -2, 17, rng);  // FP8
    check_rope(dt, 4, 2, 32, 96, -2, 0, rng, /*max_blocks=*/2);
    check_rope(dt, 2, 1, 128, 100, -2, 9, rng);  // FP8 scalar path
  }
}

TEST(QuantGemvCuda, BadArguments) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(1);
  const QW q = make_weight(8, 64, 32, rng);
  Tensor in = upload(uniform(64, rng), DType::F16);
  Tensor y = Tensor::zeros({8}, DType::F16, Device::CUDA);
  QuantGemvArgs g = base_args(q, DType::F16, 8, 64);
  g.in = in.raw();
  g.y = y.raw();
  QuantGemvArgs bad = g;
  bad.dtype = DType::F32;
  EXPECT_THROW(quant_gemv(bad, cuda::current_stream(), false), Error);
  bad = g;
  bad.group_size = 24;  // does not divide K
  EXPECT_THROW(quant_gemv(bad, cuda::current_stream(), false), Error);
  bad = g;
  bad.in_mode = GemvIn::kRmsNorm;  // no norm weights
  EXPECT_THROW(quant_gemv(bad, cuda::current_stream(), false), Error);
  bad = g;
  bad.format = WeightFormat::kNvfp4;
  bad.k = 56;  // not a multiple of 16
  EXPECT_THROW(quant_gemv(bad, cuda::current_stream(), false), Error);
  bad = g;
  bad.format = WeightFormat::kFp8;
  bad.scales = static_cast<const char*>(g.scales) + 2;  // F32 row scales must be 4-byte aligned
  EXPECT_THROW(quant_gemv(bad, cuda::current_stream(), false), Error);
  bad = g;
  bad.codes = nullptr;
  EXPECT_THROW(quant_gemv(bad, cuda::current_stream(), false), Error);
  bad = g;
  bad.max_blocks = -1;
  EXPECT_THROW(quant_gemv(bad, cuda::current_stream(), false), Error);
  bad = g;
  bad.out_mode = GemvOut::kRopeQkv;  // no RoPE tables
  EXPECT_THROW(quant_gemv(bad, cuda::current_stream(), false), Error);
}

}  // namespace
}  // namespace omnirt::llm::decode
#endif
