// The decode kernels (models/llm/decode_kernels.h) against float64 CPU references on fresh
// random data: every GEMV input/output mode in every dtype, on shapes that hit the edges (N not a
// multiple of the rows per block, K a multiple of 8 but not of 256, K past one 256-chunk batch,
// K with no 16-byte rows -> scalar path, a misaligned W -> scalar path), the RoPE + KV-cache
// epilogue, and split-K decode attention over GQA groups, head dims, split counts and lengths,
// launched with and without programmatic dependent launch, twice in a row (counter reset), with
// both attention kernels (the cluster kernel the engine uses up to 1024 positions, the split
// kernel beyond).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "core/error.h"
#include "models/llm/decode_kernels.h"

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

// Device copy of `values` in `dtype`; `seen` gets the values as the GPU will read them.
Tensor upload(const std::vector<float>& values, DType dtype, std::vector<float>* seen = nullptr) {
  Tensor host = Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
  if (dtype != DType::F32) host = host.to_dtype(dtype);
  if (seen) *seen = host.to_float_vector();
  return host.to(Device::CUDA);
}

std::vector<float> download(const Tensor& t) {
  OMNIRT_CUDA_CHECK(cudaStreamSynchronize(cuda::current_stream()));
  OMNIRT_CUDA_CHECK(cudaDeviceSynchronize());
  return t.to(Device::CPU).to_float_vector();
}

// Rounding the result to the output type costs ~2^-11 (F16) / 2^-8 (BF16) per element.
double out_tol(DType out) { return out == DType::F32 ? 1e-5 : out == DType::F16 ? 2e-3 : 1.5e-2; }

double silu(double g) { return g / (1.0 + std::exp(-g)); }

struct GemvCase {
  int64_t n, k;
};

// Runs one GEMV mode and checks it against float64.
void check_gemv(DType dt, GemvIn in_mode, GemvOut out_mode, GemvCase s, bool pdl,
                std::mt19937_64& rng, bool misalign = false, bool misalign_in = false,
                GemvShape launch = {0, 0}) {
  SCOPED_TRACE(std::string(dtype_name(dt)) + " N=" + std::to_string(s.n) +
               " K=" + std::to_string(s.k) + " in=" + std::to_string(static_cast<int>(in_mode)) +
               " out=" + std::to_string(static_cast<int>(out_mode)) + (pdl ? " pdl" : "") +
               (misalign ? " misaligned W" : "") + (misalign_in ? " misaligned input" : "") +
               " k_split=" + std::to_string(launch.k_split) +
               " warps=" + std::to_string(launch.warps_per_block));
  const int64_t N = s.n, K = s.k;
  const float a = std::sqrt(3.0f / static_cast<float>(K));
  std::vector<float> w_seen;
  // misalign: W starts one element into the buffer (no 16-byte rows -> scalar path).
  std::vector<float> wv = uniform(static_cast<size_t>(N * K + 1), rng, -a, a);
  Tensor w = upload(wv, dt, &w_seen);
  const size_t esz = dtype_nbytes(dt, 1);
  const void* wp = static_cast<const char*>(w.raw()) + (misalign ? esz : 0);
  const float* wref = w_seen.data() + (misalign ? 1 : 0);

  // The input and the x the GEMV must compute from it.
  // misalign_in: the input starts one element into its buffer (scalar staging, vector weights).
  const int64_t lead = misalign_in ? 1 : 0;
  std::vector<double> x(static_cast<size_t>(K));
  Tensor in, norm;
  std::vector<float> in_seen, norm_seen;
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
  std::vector<double> ref(static_cast<size_t>(N));
  for (int64_t r = 0; r < N; ++r) {
    double acc = 0;
    for (int64_t i = 0; i < K; ++i) acc += static_cast<double>(wref[r * K + i]) * x[i];
    ref[r] = acc;
  }
  const DType ydt = out_mode == GemvOut::kStore ? dt : DType::F32;
  std::vector<float> y0 = uniform(N, rng, -2.f, 2.f), y0_seen;
  Tensor y = upload(y0, ydt, &y0_seen);
  if (out_mode == GemvOut::kAddF32)
    for (int64_t r = 0; r < N; ++r) ref[r] += y0_seen[r];

  GemvArgs g;
  g.dtype = dt;
  g.w = wp;
  g.n = N;
  g.k = K;
  g.in_mode = in_mode;
  g.in = static_cast<const char*>(in.raw()) + lead * dtype_nbytes(in.dtype(), 1);
  g.norm_w = norm.defined() ? norm.data<float>() : nullptr;
  g.eps = 1e-5f;
  g.out_mode = out_mode;
  g.y = y.raw();
  g.k_split = launch.k_split;
  g.warps_per_block = launch.warps_per_block;
  const bool expect_vec = !misalign && (K * static_cast<int64_t>(esz)) % 16 == 0;
  EXPECT_EQ(gemv_vectorized(g), expect_vec);
  gemv(g, cuda::current_stream(), pdl);
  const std::vector<float> got = download(y);
  std::vector<float> ref_f(ref.begin(), ref.end());
  EXPECT_LE(rel_error(got, ref_f), out_tol(ydt));
  // Every row, not just the norm: a skipped last row (N odd) must show.
  int bad = 0;
  for (int64_t r = 0; r < N; ++r) {
    const double err = std::abs(got[r] - ref[r]);
    if (!(err <= 20 * out_tol(ydt) * (1.0 + std::abs(ref[r]))) && ++bad <= 3)
      ADD_FAILURE() << "row " << r << ": got " << got[r] << ", want " << ref[r];
  }
}

const GemvCase kShapes[] = {
    {37, 200},     // N odd, < one block; K = 25 chunks of 8 (partial batch)
    {8195, 264},   // N >= 8192 (8-warp blocks), N odd
    {2051, 2056},  // K = 257 chunks of 8: one full 256-chunk batch + 1
    {70, 5640},    // K like TinyLlama's MLP (705 chunks: 3 batches)
    {19, 131},     // K odd: no 16-byte rows in any dtype (scalar path)
};

TEST(DecodeGemvCuda, EveryModeEveryDtypeMatchesFloat64) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  const std::pair<GemvIn, GemvOut> modes[] = {
      {GemvIn::kPlain, GemvOut::kStore},      {GemvIn::kPlain, GemvOut::kStoreF32},
      {GemvIn::kPlain, GemvOut::kAddF32},     {GemvIn::kRmsNorm, GemvOut::kStore},
      {GemvIn::kRmsNorm, GemvOut::kStoreF32}, {GemvIn::kSwiglu, GemvOut::kAddF32}};
  for (DType dt : {DType::F32, DType::F16, DType::BF16})
    for (const auto& m : modes)
      for (const GemvCase& s : kShapes) check_gemv(dt, m.first, m.second, s, /*pdl=*/true, rng);
}

TEST(DecodeGemvCuda, WithoutPdlAndMisalignedWeightsOrInput) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    check_gemv(dt, GemvIn::kRmsNorm, GemvOut::kStore, {2051, 2056}, /*pdl=*/false, rng);
    check_gemv(dt, GemvIn::kSwiglu, GemvOut::kAddF32, {37, 200}, /*pdl=*/false, rng);
    // W one element off 16-byte alignment: must fall back to the scalar path, still correct.
    check_gemv(dt, GemvIn::kPlain, GemvOut::kStoreF32, {37, 200}, /*pdl=*/true, rng,
               /*misalign=*/true);
    // Input one element off alignment: vector weights, scalar staging, every input mode.
    check_gemv(dt, GemvIn::kPlain, GemvOut::kStore, {70, 5640}, true, rng, false, true);
    check_gemv(dt, GemvIn::kRmsNorm, GemvOut::kStoreF32, {2051, 2056}, true, rng, false, true);
    check_gemv(dt, GemvIn::kSwiglu, GemvOut::kAddF32, {37, 200}, true, rng, false, true);
  }
}

// Launch shapes other than the automatic one: K split over 2..4 warps per row pair (parts of
// unequal length and empty parts included: K = 200 is 25 chunks, split 4 ways 7/7/7/4), and
// 1..8 warps per block, on every input and output mode, F16 and BF16.
TEST(DecodeGemvCuda, KSplitAndBlockShapesMatchFloat64) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  const std::pair<GemvIn, GemvOut> modes[] = {{GemvIn::kPlain, GemvOut::kStore},
                                              {GemvIn::kPlain, GemvOut::kAddF32},
                                              {GemvIn::kRmsNorm, GemvOut::kStoreF32},
                                              {GemvIn::kSwiglu, GemvOut::kAddF32}};
  const GemvShape launches[] = {{2, 2}, {3, 3}, {3, 6}, {4, 4}, {4, 8}, {1, 1}, {1, 2}, {2, 8}};
  const GemvCase shapes[] = {{37, 200}, {70, 5640}, {2051, 2056}, {5, 16}};
  for (DType dt : {DType::F16, DType::BF16})
    for (const auto& m : modes)
      for (const GemvShape& l : launches)
        for (const GemvCase& s : shapes)
          check_gemv(dt, m.first, m.second, s, /*pdl=*/true, rng, false, false, l);
  // The F32 weights and the scalar path only take k_split 1; other block sizes are fine.
  check_gemv(DType::F32, GemvIn::kPlain, GemvOut::kStore, {37, 200}, true, rng, false, false,
             {1, 2});
  check_gemv(DType::F16, GemvIn::kPlain, GemvOut::kStore, {19, 131}, true, rng, false, false,
             {1, 8});
}

TEST(DecodeGemvCuda, BadLaunchShapesAreClearErrors) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  Tensor w = upload(uniform(64 * 64, rng), DType::F16);
  Tensor x = upload(uniform(64, rng), DType::F16);
  Tensor y = upload(uniform(64, rng), DType::F16);
  Tensor w32 = upload(uniform(64 * 64, rng), DType::F32);
  auto expect_error = [&](DType dt, const void* wp, int ks, int warps, const char* what) {
    GemvArgs g;
    g.dtype = dt;
    g.w = wp;
    g.n = 64;
    g.k = 64;
    g.in = dt == DType::F32 ? static_cast<const void*>(w32.raw()) : x.raw();
    g.y = dt == DType::F32 ? static_cast<void*>(w32.raw()) : y.raw();
    g.k_split = ks;
    g.warps_per_block = warps;
    try {
      gemv(g, cuda::current_stream(), true);
      ADD_FAILURE() << "expected an error for k_split " << ks << ", warps " << warps;
    } catch (const omnirt::Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error(DType::F16, w.raw(), 5, 5, "k_split must be 1..4");
  expect_error(DType::F16, w.raw(), 3, 4, "multiple of k_split");
  expect_error(DType::F16, w.raw(), 1, 9, "warps_per_block");
  expect_error(DType::F32, w32.raw(), 2, 2, "F16 and BF16");
  // One element off alignment: the scalar path, which has no K split.
  expect_error(DType::F16, static_cast<const char*>(w.raw()) + 2, 2, 2, "vector path");
}

// RMSNorm -> QKV -> RoPE on q and k -> k, v into the caches at *pos; q rotated into y.
void check_rope_qkv(DType dt, int hq, int hkv, int D, int64_t K, int pos, std::mt19937_64& rng,
                    GemvShape launch = {0, 0}) {
  SCOPED_TRACE(std::string(dtype_name(dt)) + " hq=" + std::to_string(hq) + " hkv=" +
               std::to_string(hkv) + " D=" + std::to_string(D) + " K=" + std::to_string(K) +
               " pos=" + std::to_string(pos) + " k_split=" + std::to_string(launch.k_split));
  const int64_t N = static_cast<int64_t>(hq + 2 * hkv) * D, max_ctx = 50, half = D / 2;
  const float a = std::sqrt(3.0f / static_cast<float>(K));
  std::vector<float> w_seen, in_seen, norm_seen, kc_seen, vc_seen;
  Tensor w = upload(uniform(N * K, rng, -a, a), dt, &w_seen);
  Tensor in = upload(uniform(K, rng, -3.f, 3.f), DType::F32, &in_seen);
  Tensor norm = upload(uniform(K, rng, 0.7f, 1.3f), DType::F32, &norm_seen);
  // Caches pre-filled with random values: every other position must stay as it was.
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
  std::vector<double> r(N);
  for (int64_t row = 0; row < N; ++row) {
    double acc = 0;
    for (int64_t i = 0; i < K; ++i)
      acc += w_seen[row * K + i] * (norm_seen[i] * (in_seen[i] * inv));
    r[row] = acc;
  }
  std::vector<float> want_q(hq * D), want_kc = kc_seen, want_vc = vc_seen;
  for (int h = 0; h < hq + 2 * hkv; ++h)
    for (int64_t i = 0; i < half; ++i) {
      const double x0 = r[h * D + i], x1 = r[h * D + i + half];
      const double c = cs[pos * half + i], s = sn[pos * half + i];
      const double ra = x0 * c - x1 * s, rb = x1 * c + x0 * s;
      if (h < hq) {
        want_q[h * D + i] = static_cast<float>(ra);
        want_q[h * D + i + half] = static_cast<float>(rb);
      } else if (h < hq + hkv) {
        const int64_t base = ((h - hq) * max_ctx + pos) * D;
        want_kc[base + i] = static_cast<float>(ra);
        want_kc[base + i + half] = static_cast<float>(rb);
      } else {
        const int64_t base = ((h - hq - hkv) * max_ctx + pos) * D;
        want_vc[base + i] = static_cast<float>(x0);
        want_vc[base + i + half] = static_cast<float>(x1);
      }
    }

  GemvArgs g;
  g.dtype = dt;
  g.w = w.raw();
  g.n = N;
  g.k = K;
  g.in_mode = GemvIn::kRmsNorm;
  g.in = in.raw();
  g.norm_w = norm.data<float>();
  g.eps = 1e-5f;
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
  g.k_split = launch.k_split;
  g.warps_per_block = launch.warps_per_block;
  gemv(g, cuda::current_stream(), true);
  std::vector<float> got_q = download(y);
  got_q.resize(hq * D);
  EXPECT_LE(rel_error(got_q, want_q), out_tol(dt)) << "q";
  const std::vector<float> got_kc = download(kc), got_vc = download(vc);
  // The written rows within rounding; every other row bit-identical to before.
  for (int h = 0; h < hkv; ++h)
    for (int64_t p = 0; p < max_ctx; ++p) {
      const int64_t base = (h * max_ctx + p) * D;
      std::vector<float> gk(got_kc.begin() + base, got_kc.begin() + base + D);
      std::vector<float> wk(want_kc.begin() + base, want_kc.begin() + base + D);
      std::vector<float> gv(got_vc.begin() + base, got_vc.begin() + base + D);
      std::vector<float> wv(want_vc.begin() + base, want_vc.begin() + base + D);
      if (p == pos) {
        EXPECT_LE(rel_error(gk, wk), out_tol(dt)) << "k head " << h;
        EXPECT_LE(rel_error(gv, wv), out_tol(dt)) << "v head " << h;
      } else {
        ASSERT_EQ(gk, wk) << "k cache changed at head " << h << " position " << p;
        ASSERT_EQ(gv, wv) << "v cache changed at head " << h << " position " << p;
      }
    }
}

TEST(DecodeGemvCuda, RopeQkvEpilogueWritesQAndCaches) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    check_rope_qkv(dt, 6, 2, 32, 160, 37, rng);   // the tiny test model's attention
    check_rope_qkv(dt, 8, 2, 64, 264, 0, rng);    // position 0 (identity rotation)
    check_rope_qkv(dt, 3, 1, 128, 131, 49, rng);  // scalar path, last position
  }
  for (DType dt : {DType::F16, DType::BF16}) {
    check_rope_qkv(dt, 6, 2, 32, 160, 37, rng, {2, 4});
    check_rope_qkv(dt, 8, 2, 64, 264, 11, rng, {3, 6});
  }
}

TEST(DecodeGemvCuda, BadArgumentsAreClearErrors) {
  OMNIRT_REQUIRE_CUDA();
  Tensor w = Tensor::zeros({64}, DType::F16, Device::CUDA);
  GemvArgs g;
  g.dtype = DType::F16;
  g.w = w.raw();
  g.n = 4;
  g.k = 16;
  g.in = w.raw();
  g.y = w.raw();
  g.out_mode = GemvOut::kRopeQkv;  // N = 4 is not (hq + 2 hkv) * D
  g.rope.hq = 1;
  g.rope.hkv = 1;
  g.rope.head_dim = 2;
  try {
    gemv(g, cuda::current_stream(), false);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(hq + 2 hkv) * head_dim"), std::string::npos) << e.what();
  }
  g.out_mode = GemvOut::kStore;
  g.in_mode = GemvIn::kRmsNorm;  // no norm weights
  EXPECT_THROW(gemv(g, cuda::current_stream(), false), Error);
  g.in_mode = GemvIn::kSwiglu;
  g.out_mode = GemvOut::kStore;  // not a supported combination
  EXPECT_THROW(gemv(g, cuda::current_stream(), false), Error);
}

// ---------------------------------------------------------------------------------------------
// Attention

struct AttnCase {
  int hq, hkv, D;
  int64_t max_ctx;
  int splits;  // 0: attn_decode_default_splits
};

void check_attention(DType dt, AttnCase c, const std::vector<int>& positions, bool pdl,
                     std::mt19937_64& rng, AttnVariant variant = AttnVariant::kSplit) {
  const int splits = c.splits > 0 ? c.splits : attn_decode_default_splits(c.hkv, c.max_ctx);
  SCOPED_TRACE(std::string(dtype_name(dt)) + " hq=" + std::to_string(c.hq) +
               " hkv=" + std::to_string(c.hkv) + " D=" + std::to_string(c.D) +
               " max_ctx=" + std::to_string(c.max_ctx) + " splits=" + std::to_string(splits) +
               (pdl ? " pdl" : "") + " variant=" + std::to_string(static_cast<int>(variant)));
  const int D = c.D;
  std::vector<float> kc_seen, vc_seen;
  Tensor kc = upload(uniform(c.hkv * c.max_ctx * D, rng), dt, &kc_seen);
  Tensor vc = upload(uniform(c.hkv * c.max_ctx * D, rng), dt, &vc_seen);
  Tensor out = Tensor::zeros({c.hq * D}, dt, Device::CUDA);
  Tensor ws = Tensor::empty({static_cast<int64_t>(attn_decode_workspace_floats(c.hq, D, splits))},
                            DType::F32, Device::CUDA);
  Tensor counters = Tensor::zeros({c.hkv}, DType::I32, Device::CUDA);
  Tensor pos_t = Tensor::empty({1}, DType::I32, Device::CUDA);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  const int G = c.hq / c.hkv;
  // Several calls on the same workspace and counters, as the decode graph replays them.
  for (int pos : positions) {
    SCOPED_TRACE("pos " + std::to_string(pos));
    std::vector<float> q_seen;
    Tensor q = upload(uniform(c.hq * D, rng, -2.5f, 2.5f), dt, &q_seen);  // peaked softmax
    OMNIRT_CUDA_CHECK(cudaMemcpy(pos_t.raw(), &pos, 4, cudaMemcpyHostToDevice));
    std::vector<float> want(c.hq * D);
    for (int h = 0; h < c.hq; ++h) {
      const int kvh = h / G;
      std::vector<double> s(pos + 1);
      double mx = -1e300;
      for (int j = 0; j <= pos; ++j) {
        double dot = 0;
        for (int d = 0; d < D; ++d)
          dot += static_cast<double>(q_seen[h * D + d]) * kc_seen[(kvh * c.max_ctx + j) * D + d];
        s[j] = dot * scale;
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (double& v : s) sum += (v = std::exp(v - mx));
      for (int d = 0; d < D; ++d) {
        double o = 0;
        for (int j = 0; j <= pos; ++j) o += s[j] / sum * vc_seen[(kvh * c.max_ctx + j) * D + d];
        want[h * D + d] = static_cast<float>(o);
      }
    }
    AttnDecodeArgs a;
    a.dtype = dt;
    a.q = q.raw();
    a.k_cache = kc.raw();
    a.v_cache = vc.raw();
    a.pos = pos_t.data<int32_t>();
    a.max_ctx = c.max_ctx;
    a.hq = c.hq;
    a.hkv = c.hkv;
    a.head_dim = D;
    a.scale = static_cast<float>(scale);
    a.out = out.raw();
    a.splits = splits;
    a.workspace = ws.data<float>();
    a.counters = counters.data<int32_t>();
    a.variant = variant;
    attention_decode(a, cuda::current_stream(), pdl);
    const std::vector<float> got = download(out);
    EXPECT_LE(rel_error(got, want), out_tol(dt) * 2);
    for (int h = 0; h < c.hq; ++h) {  // per head: a wrong GQA mapping can hide in the total
      std::vector<float> gh(got.begin() + h * D, got.begin() + (h + 1) * D);
      std::vector<float> wh(want.begin() + h * D, want.begin() + (h + 1) * D);
      EXPECT_LE(rel_error(gh, wh), out_tol(dt) * 4) << "head " << h;
    }
    const std::vector<float> cnt = download(counters);
    for (float v : cnt) ASSERT_EQ(v, 0.f) << "a split counter was not reset";
  }
}

TEST(DecodeAttentionCuda, MatchesFloat64AcrossGroupsHeadDimsSplitsAndLengths) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  const AttnCase cases[] = {
      {6, 2, 32, 96, 0},     // the tiny model: group 3, default splits (many empty)
      {32, 4, 64, 1024, 0},  // TinyLlama: group 4, 32 splits
      {4, 4, 128, 64, 1},    // group 1, one split holding every key
      {16, 2, 64, 200, 5},   // group 8, 5 splits of up to 40 keys
      {3, 1, 128, 130, 3},   // one kv head, 3 splits of up to 44 keys
  };
  for (DType dt : {DType::F32, DType::F16, DType::BF16})
    for (const AttnCase& c : cases) {
      const int last = static_cast<int>(c.max_ctx) - 1;
      check_attention(dt, c, {0, 1, 37 % (last + 1), last, 17 % (last + 1)}, /*pdl=*/true, rng);
    }
  check_attention(DType::F16, {32, 4, 64, 1024, 0}, {662, 577}, /*pdl=*/false, rng);
  // kAuto past kAttnClusterMaxCtx: the split kernel, as the engine runs it for long contexts.
  check_attention(DType::F16, {32, 4, 64, 1100, 0}, {1099, 1024, 3}, /*pdl=*/true, rng,
                  AttnVariant::kAuto);
}

// The cluster kernel (16 blocks per kv head, partials combined over distributed shared memory) on
// the same cases, every dtype; positions include the full 1024-key cache (every block at its
// 64-key limit) and short contexts (most blocks empty). kAuto picks it for max_ctx <= 1024.
TEST(DecodeAttentionCuda, ClusterKernelMatchesFloat64) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  const AttnCase cases[] = {{6, 2, 32, 96, 0},
                            {32, 4, 64, 1024, 0},
                            {4, 4, 128, 64, 1},
                            {16, 2, 64, 200, 5},
                            {3, 1, 128, 130, 3}};
  for (DType dt : {DType::F32, DType::F16, DType::BF16})
    for (const AttnCase& c : cases) {
      const int last = static_cast<int>(c.max_ctx) - 1;
      check_attention(dt, c, {0, 1, 37 % (last + 1), last, 17 % (last + 1)}, /*pdl=*/true, rng,
                      AttnVariant::kCluster);
    }
  check_attention(DType::F16, {32, 4, 64, 1024, 0}, {662, 1023, 7}, /*pdl=*/false, rng,
                  AttnVariant::kCluster);
  check_attention(DType::F16, {32, 4, 64, 1024, 0}, {662, 577}, /*pdl=*/true, rng,
                  AttnVariant::kAuto);
}

TEST(DecodeAttentionCuda, BadArgumentsAreClearErrors) {
  OMNIRT_REQUIRE_CUDA();
  AttnDecodeArgs a;
  a.head_dim = 48;
  a.hq = 4;
  a.hkv = 2;
  try {
    attention_decode(a, cuda::current_stream(), false);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("head_dim"), std::string::npos) << e.what();
  }
  a.head_dim = 64;
  a.max_ctx = 1000;
  a.splits = 2;  // 2 * 64 keys cannot cover 1000 positions
  try {
    attention_decode(a, cuda::current_stream(), false);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_ctx"), std::string::npos) << e.what();
  }
  a.hq = 36;  // group of 18 > kAttnMaxGroup
  EXPECT_THROW(attention_decode(a, cuda::current_stream(), false), Error);

  // The cluster kernel forced past kAttnClusterMaxCtx: a clear error.
  Tensor buf = Tensor::zeros({64 * 2048}, DType::F32, Device::CUDA);
  Tensor cnt = Tensor::zeros({2}, DType::I32, Device::CUDA);
  AttnDecodeArgs c;
  c.dtype = DType::F16;
  c.q = c.k_cache = c.v_cache = buf.raw();
  c.out = buf.raw();
  c.workspace = buf.data<float>();
  c.counters = cnt.data<int32_t>();
  c.pos = cnt.data<int32_t>();
  c.hq = 4;
  c.hkv = 2;
  c.head_dim = 64;
  c.scale = 0.125f;
  c.splits = 32;
  c.max_ctx = 2048;
  c.variant = AttnVariant::kCluster;
  try {
    attention_decode(c, cuda::current_stream(), false);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_ctx <= 1024"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace omnirt::llm::decode
#endif
