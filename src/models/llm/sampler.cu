// CUDA sampling step; see sampler.h for the algorithm and its equivalence with the CPU reference.
#include <cuda_fp16.h>

#include "core/cuda_check.h"
#include "core/device.h"
#include "core/error.h"
#include "models/llm/philox.h"
#include "models/llm/sampler.h"

namespace omnirt::llm {

namespace {

constexpr int kThreads = 1024;  // one block; 32 warps
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFull = 0xFFFFFFFFu;

struct KernelParams {
  int vocab;
  int ws_in_smem;  // 1: the working copy of the logits lives in dynamic shared memory
  int do_sample;
  float temperature;
  int top_k;      // 0: off
  float top_p;    // 1: off
  float penalty;  // 1: off
  uint64_t seed;
};

__device__ __forceinline__ float load_logit(const float* p, int i) { return p[i]; }
__device__ __forceinline__ float load_logit(const __half* p, int i) { return __half2float(p[i]); }

// Order-preserving map float -> uint32 (larger float <=> larger key; -inf lowest).
__device__ __forceinline__ uint32_t order_key(float f) {
  uint32_t u = __float_as_uint(f);
  if (u == 0x80000000u) u = 0;  // -0 == +0, as in the CPU's float comparisons
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// Exclusive prefix sum over the block (thread order); `total` gets the block sum. All threads call.
template <typename T>
__device__ T block_exclusive_scan(T v, T* s_warp, T& total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  T incl = v;
  for (int off = 1; off < 32; off <<= 1) {
    T o = __shfl_up_sync(kFull, incl, off);
    if (lane >= off) incl += o;
  }
  T excl = __shfl_up_sync(kFull, incl, 1);
  if (lane == 0) excl = T(0);
  if (lane == 31) s_warp[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const T w = s_warp[lane];
    T wi = w;
    for (int off = 1; off < 32; off <<= 1) {
      T o = __shfl_up_sync(kFull, wi, off);
      if (lane >= off) wi += o;
    }
    T we = __shfl_up_sync(kFull, wi, 1);
    if (lane == 0) we = T(0);
    const T tot = __shfl_sync(kFull, wi, 31);
    __syncwarp();
    s_warp[lane] = we;
    if (lane == 0) s_warp[kWarps] = tot;
  }
  __syncthreads();
  const T result = s_warp[warp] + excl;
  total = s_warp[kWarps];
  __syncthreads();  // s_warp may be reused right after
  return result;
}

// Warp 0 picks the radix bin (of 256, highest first) where the running sum `base + sum(bins
// above)` first reaches `need`; returns the bin and the sum of everything above it (incl. base).
// Falls back to the lowest non-empty bin when rounding keeps the sum below `need`.
template <typename T>
__device__ void warp_select_bin(const T* hist, T base, T need, int* s_bin, T* s_above) {
  const int lane = threadIdx.x & 31;
  T local[8];
  T lane_sum = T(0);
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    local[j] = hist[lane * 8 + j];
    lane_sum += local[j];
  }
  T incl = lane_sum;  // sum over lanes >= lane (higher bins)
  for (int off = 1; off < 32; off <<= 1) {
    T o = __shfl_down_sync(kFull, incl, off);
    if (lane + off < 32) incl += o;
  }
  T above = __shfl_down_sync(kFull, incl, 1);
  if (lane == 31) above = T(0);
  const unsigned hit = __ballot_sync(kFull, lane_sum > T(0) && base + incl >= need);
  const unsigned nonempty = __ballot_sync(kFull, lane_sum > T(0));
  const int sel = hit ? 31 - __clz(hit) : (nonempty ? __ffs(nonempty) - 1 : 0);
  if (lane == sel) {
    T run = base + above;
    int bin = -1;
    for (int j = 7; j >= 0; --j) {
      if (local[j] > T(0) && run + local[j] >= need) {
        bin = j;
        break;
      }
      run += local[j];
    }
    if (bin < 0) {  // fallback: lowest non-empty bin of this lane
      run = base + above;
      int lowest = 0;
      for (int j = 0; j < 8; ++j) {
        if (local[j] > T(0)) {
          lowest = j;
          break;
        }
      }
      for (int j = 7; j > lowest; --j) run += local[j];
      bin = lowest;
    }
    *s_bin = lane * 8 + bin;
    *s_above = run;
  }
}

template <typename LogitT>
__global__ void __launch_bounds__(kThreads)
    sample_kernel(const LogitT* __restrict__ logits, KernelParams prm, float* __restrict__ ws_global,
                  uint32_t* __restrict__ seen, unsigned long long* __restrict__ step_ptr,
                  int32_t* __restrict__ out) {
  __shared__ uint32_t s_count[256];
  __shared__ double s_mass[256];
  __shared__ double s_scan_d[kWarps + 1];
  __shared__ int s_scan_i[kWarps + 1];
  __shared__ float s_best_v[kWarps];
  __shared__ int s_best_i[kWarps];
  __shared__ int s_bin;
  __shared__ uint32_t s_count_above;
  __shared__ double s_mass_above;
  __shared__ int s_token;
  __shared__ int s_last_kept;
  __shared__ int s_cand_id[kThreads];
  __shared__ float s_cand_p[kThreads];

  // The working copy of the (processed) logits: every later pass reads it again, so it sits in
  // shared memory when it fits (128 KB for a 32000 vocabulary): each full-vocabulary pass is then
  // shared-memory reads instead of a chain of L2 round trips (issue #4: sampling cost ~60 us per
  // token more than greedy with it in global memory).
  extern __shared__ float s_ws[];
  float* __restrict__ ws = prm.ws_in_smem ? s_ws : ws_global;
  const int V = prm.vocab;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  // ---- 1. processors + argmax -------------------------------------------------------------
  // The logits are loaded kLoadBatch per thread at once (one L2 round trip per batch instead of
  // one per element: the element loop alone was ~15 us of the decode step on the H200, issue #4);
  // each thread still visits its indices in increasing order (the tie-break below relies on it).
  constexpr int kLoadBatch = 8;
  bool bad = false, any_finite = false;
  float best_v = -INFINITY;
  int best_i = 0x7FFFFFFF;
  for (int base = tid; base < V; base += kThreads * kLoadBatch) {
    float raw[kLoadBatch];
#pragma unroll
    for (int u = 0; u < kLoadBatch; ++u) {
      const int i = base + u * kThreads;
      raw[u] = i < V ? load_logit(logits, i) : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < kLoadBatch; ++u) {
      const int i = base + u * kThreads;
      if (i >= V) break;
      float l = raw[u];
      if (isnan(l) || l == INFINITY) bad = true;  // checked on the raw logits, like the CPU
      any_finite |= isfinite(l);
      if (prm.penalty != 1.0f && ((seen[i >> 5] >> (i & 31)) & 1u)) {
        l = l > 0.0f ? l / prm.penalty : l * prm.penalty;
      }
      if (prm.do_sample && prm.temperature != 1.0f) l = l / prm.temperature;
      ws[i] = l;
      if (l > best_v || (l == best_v && i < best_i)) {
        best_v = l;
        best_i = i;
      }
    }
  }
  for (int off = 16; off > 0; off >>= 1) {
    const float ov = __shfl_down_sync(kFull, best_v, off);
    const int oi = __shfl_down_sync(kFull, best_i, off);
    if (ov > best_v || (ov == best_v && oi < best_i)) {
      best_v = ov;
      best_i = oi;
    }
  }
  if (lane == 0) {
    s_best_v[warp] = best_v;
    s_best_i[warp] = best_i;
  }
  const bool any_bad = __syncthreads_or(bad);
  const bool finite = __syncthreads_or(any_finite);
  if (any_bad || !finite) {
    if (tid == 0) *out = -1;
    return;
  }
  if (warp == 0) {
    best_v = s_best_v[lane];
    best_i = s_best_i[lane];
    for (int off = 16; off > 0; off >>= 1) {
      const float ov = __shfl_down_sync(kFull, best_v, off);
      const int oi = __shfl_down_sync(kFull, best_i, off);
      if (ov > best_v || (ov == best_v && oi < best_i)) {
        best_v = ov;
        best_i = oi;
      }
    }
    if (lane == 0) {
      s_best_v[0] = best_v;
      s_best_i[0] = best_i;
    }
  }
  __syncthreads();
  const float max_logit = s_best_v[0];

  auto finish = [&](int token) {
    if (tid == 0) {
      *out = token;
      seen[token >> 5] |= 1u << (token & 31);
      *step_ptr += 1;
    }
  };
  if (!prm.do_sample) {
    finish(s_best_i[0]);
    return;
  }

  // ---- 2. top-k threshold: exact k-th largest key (radix select, 8 bits per pass) ------------
  uint32_t kth_key = 0;  // keep keys >= kth_key
  if (prm.top_k > 0 && prm.top_k < V) {
    uint32_t prefix = 0, mask = 0, above = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int b = tid; b < 256; b += kThreads) s_count[b] = 0;
      __syncthreads();
      for (int base = 0; base < V; base += kThreads) {  // uniform trip count: warp intrinsics
        const int i = base + tid;
        const uint32_t key = i < V ? order_key(ws[i]) : 0u;
        const bool active = i < V && (key & mask) == prefix;
        const unsigned act = __ballot_sync(kFull, active);
        if (active) {
          const int bin = (key >> shift) & 0xFF;
          const unsigned peers = __match_any_sync(act, bin);
          if (lane == __ffs(peers) - 1) atomicAdd(&s_count[bin], static_cast<uint32_t>(__popc(peers)));
        }
      }
      __syncthreads();
      if (warp == 0) {
        warp_select_bin<uint32_t>(s_count, above, static_cast<uint32_t>(prm.top_k), &s_bin,
                                  &s_count_above);
      }
      __syncthreads();
      prefix |= static_cast<uint32_t>(s_bin) << shift;
      mask |= 0xFFu << shift;
      above = s_count_above;
      __syncthreads();
    }
    kth_key = prefix;
  }

  // Per-thread contiguous id chunks for the id-order passes.
  const int chunk = (V + kThreads - 1) / kThreads;
  const int lo = min(V, tid * chunk), hi = min(V, lo + chunk);

  // ---- fast path: top-k left at most kThreads candidates (e.g. OmniDrive's k = 50) ----------
  // Compact them in id order into shared memory (one per thread); top-p's "mass ranked before"
  // is then an O(n) loop per candidate and the draw one block scan, instead of full-vocab passes.
  if (prm.top_k > 0 && prm.top_k < V) {
    int c_local = 0;
    for (int i = lo; i < hi; ++i) c_local += order_key(ws[i]) >= kth_key;
    int n_cand = 0;
    const int offset = block_exclusive_scan<int>(c_local, s_scan_i, n_cand);
    if (n_cand <= kThreads) {  // block-uniform
      for (int i = lo, o = offset; i < hi; ++i) {
        const float l = ws[i];
        if (order_key(l) >= kth_key) {
          s_cand_id[o] = i;
          s_cand_p[o] = expf(l - max_logit);
          ++o;
        }
      }
      if (tid == 0) {
        s_token = 0x7FFFFFFF;
        s_last_kept = -1;
      }
      __syncthreads();
      const bool have = tid < n_cand;
      const float p = have ? s_cand_p[tid] : 0.0f;
      const int id = have ? s_cand_id[tid] : -1;
      double z_cand = 0.0;
      block_exclusive_scan<double>(have ? static_cast<double>(p) : 0.0, s_scan_d, z_cand);
      const double limit_cand = static_cast<double>(prm.top_p) * z_cand;
      bool keep = have && p > 0.0f;
      if (keep && prm.top_p < 1.0f) {
        // Candidates ranked before this one: larger probability, or equal and a lower id (the
        // candidates are in ascending id order, so a lower index).
        double before = 0.0;
        for (int j = 0; j < n_cand; ++j) {
          const float pj = s_cand_p[j];
          if (pj > p || (pj == p && j < tid)) before += pj;
        }
        keep = before < limit_cand;
      }
      const double m = keep ? static_cast<double>(p) : 0.0;
      double total_cand = 0.0;
      const double excl_cand = block_exclusive_scan<double>(m, s_scan_d, total_cand);
      const double target_cand = sampling_uniform(prm.seed, *step_ptr) * total_cand;
      if (keep) {
        atomicMax(&s_last_kept, id);
        if (excl_cand <= target_cand && target_cand < excl_cand + m) atomicMin(&s_token, id);
      }
      __syncthreads();
      finish(s_token != 0x7FFFFFFF ? s_token : s_last_kept);
      return;
    }
  }

  // ---- 3. probabilities of the kept tokens (float, like the CPU), stored in place -----------
  for (int i = tid; i < V; i += kThreads) {
    const float l = ws[i];
    ws[i] = order_key(l) >= kth_key ? expf(l - max_logit) : 0.0f;
  }
  __syncthreads();

  double z_local = 0.0;
  for (int i = lo; i < hi; ++i) z_local += ws[i];
  double z = 0.0;
  block_exclusive_scan<double>(z_local, s_scan_d, z);

  // ---- 4. top-p threshold on the probabilities (mass-weighted radix select) ------------------
  const bool use_top_p = prm.top_p < 1.0f;
  const double limit = static_cast<double>(prm.top_p) * z;
  uint32_t p_key = 0;      // probability key of the boundary
  double mass_above = 0;   // mass of probabilities > boundary
  if (use_top_p) {
    uint32_t prefix = 0, mask = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
      for (int b = tid; b < 256; b += kThreads) s_mass[b] = 0.0;
      __syncthreads();
      for (int i = tid; i < V; i += kThreads) {
        const float p = ws[i];
        if (p <= 0.0f) continue;  // no mass: never decides the boundary
        const uint32_t key = __float_as_uint(p);
        if ((key & mask) == prefix) atomicAdd(&s_mass[(key >> shift) & 0xFF], static_cast<double>(p));
      }
      __syncthreads();
      if (warp == 0) warp_select_bin<double>(s_mass, mass_above, limit, &s_bin, &s_mass_above);
      __syncthreads();
      prefix |= static_cast<uint32_t>(s_bin) << shift;
      mask |= 0xFFu << shift;
      mass_above = s_mass_above;
      __syncthreads();
    }
    p_key = prefix;
  }
  const float p_tie = __uint_as_float(p_key);

  // ---- 5. inverse-CDF draw over the kept tokens in id order ---------------------------------
  int ties_local = 0;
  if (use_top_p) {
    for (int i = lo; i < hi; ++i) ties_local += ws[i] > 0.0f && __float_as_uint(ws[i]) == p_key;
  }
  int ties_total = 0;
  int tie_rank = block_exclusive_scan<int>(ties_local, s_scan_i, ties_total);

  auto kept = [&](float p, int& rank) -> bool {
    if (p <= 0.0f) return false;
    if (!use_top_p) return true;
    const uint32_t key = __float_as_uint(p);
    if (key > p_key) return true;
    if (key < p_key) return false;
    const bool keep = mass_above + static_cast<double>(rank) * static_cast<double>(p_tie) < limit;
    ++rank;
    return keep;
  };

  double s_local = 0.0;
  int last_kept = -1;
  {
    int rank = tie_rank;
    for (int i = lo; i < hi; ++i) {
      if (kept(ws[i], rank)) {
        s_local += ws[i];
        last_kept = i;
      }
    }
  }
  if (tid == 0) {
    s_token = 0x7FFFFFFF;
    s_last_kept = -1;
  }
  double total = 0.0;
  const double excl = block_exclusive_scan<double>(s_local, s_scan_d, total);
  const double target = sampling_uniform(prm.seed, *step_ptr) * total;
  if (last_kept >= 0) atomicMax(&s_last_kept, last_kept);
  if (s_local > 0.0 && excl <= target) {
    int rank = tie_rank;
    double cum = excl;
    for (int i = lo; i < hi; ++i) {
      const float p = ws[i];
      if (!kept(p, rank)) continue;
      cum += p;
      if (cum > target) {
        atomicMin(&s_token, i);
        break;
      }
    }
  }
  __syncthreads();
  finish(s_token != 0x7FFFFFFF ? s_token : s_last_kept);
}

// The logits' working copy goes to shared memory up to this size (vocabularies up to 49152; the
// kernel's static shared memory is ~12 KB of the 227 KB per block), else it stays in global memory.
constexpr size_t kMaxSmemWorkspace = 192 * 1024;

// Opts a sampler kernel in to kMaxSmemWorkspace of dynamic shared memory (above the 48 KB
// default), once per kernel.
template <typename LogitT>
void set_smem_limit() {
  static const bool done = [] {
    OMNIRT_CUDA_CHECK(cudaFuncSetAttribute(sample_kernel<LogitT>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(kMaxSmemWorkspace)));
    return true;
  }();
  (void)done;
}

}  // namespace

CudaSampler::CudaSampler(int vocab_size, SamplingConfig config)
    : vocab_(vocab_size), config_(config) {
  config_.validate();
  OMNIRT_CHECK(vocab_size > 0, "CudaSampler: vocab_size must be positive, got ", vocab_size);
  workspace_ = static_cast<float*>(device_alloc(Device::CUDA, sizeof(float) * vocab_));
  seen_ = static_cast<uint32_t*>(device_alloc(Device::CUDA, sizeof(uint32_t) * ((vocab_ + 31) / 32)));
  step_ = static_cast<uint64_t*>(device_alloc(Device::CUDA, sizeof(uint64_t)));
  token_ = static_cast<int32_t*>(device_alloc(Device::CUDA, sizeof(int32_t)));
  reset();
}

CudaSampler::~CudaSampler() {
  device_free(Device::CUDA, workspace_);
  device_free(Device::CUDA, seen_);
  device_free(Device::CUDA, step_);
  device_free(Device::CUDA, token_);
}

void CudaSampler::reset(const std::vector<int32_t>& history, uint64_t step) {
  std::vector<uint32_t> bits((vocab_ + 31) / 32, 0u);
  for (int32_t id : history) {
    if (id < 0) continue;  // the image placeholder is not a token
    OMNIRT_CHECK(id < vocab_, "CudaSampler: history token ", id, " is outside the vocabulary of ",
                 vocab_);
    bits[id >> 5] |= 1u << (id & 31);
  }
  device_copy(seen_, Device::CUDA, bits.data(), Device::CPU, bits.size() * sizeof(uint32_t));
  device_copy(step_, Device::CUDA, &step, Device::CPU, sizeof(uint64_t));
  const int32_t none = -1;
  device_copy(token_, Device::CUDA, &none, Device::CPU, sizeof(int32_t));
}

void CudaSampler::sample(const Tensor& logits, CUstream_st* stream) {
  OMNIRT_CHECK(logits.is_cuda(), "CudaSampler: logits ", logits.describe(), " must be on CUDA");
  OMNIRT_CHECK(logits.is_contiguous(), "CudaSampler: logits ", logits.describe(),
               " must be contiguous");
  OMNIRT_CHECK(logits.numel() == vocab_, "CudaSampler: logits ", logits.describe(), " have ",
               logits.numel(), " elements but the vocabulary has ", vocab_);
  sample(logits.raw(), logits.dtype(), stream);
}

void CudaSampler::sample(const void* logits, DType dtype, CUstream_st* stream) {
  KernelParams prm;
  prm.vocab = vocab_;
  prm.do_sample = config_.do_sample ? 1 : 0;
  prm.temperature = config_.temperature;
  prm.top_k = config_.top_k;
  prm.top_p = config_.top_p;
  prm.penalty = config_.repetition_penalty;
  prm.seed = config_.seed;
  auto* step = reinterpret_cast<unsigned long long*>(step_);
  cudaStream_t s = stream;
  const size_t ws_bytes = sizeof(float) * static_cast<size_t>(vocab_);
  prm.ws_in_smem = ws_bytes <= kMaxSmemWorkspace ? 1 : 0;
  const size_t smem = prm.ws_in_smem ? ws_bytes : 0;
  if (dtype == DType::F32) {
    set_smem_limit<float>();
    sample_kernel<float><<<1, kThreads, smem, s>>>(static_cast<const float*>(logits), prm,
                                                   workspace_, seen_, step, token_);
  } else if (dtype == DType::F16) {
    set_smem_limit<__half>();
    sample_kernel<__half><<<1, kThreads, smem, s>>>(static_cast<const __half*>(logits), prm,
                                                    workspace_, seen_, step, token_);
  } else {
    OMNIRT_FAIL("CudaSampler: logits must be F32 or F16, got ", dtype_name(dtype));
  }
  OMNIRT_CUDA_CHECK_LAUNCH("sample_kernel");
}

int32_t CudaSampler::token_host() const {
  int32_t t = 0;
  device_copy(&t, Device::CPU, token_, Device::CUDA, sizeof(int32_t));
  return t;
}

uint64_t CudaSampler::step_host() const {
  uint64_t s = 0;
  device_copy(&s, Device::CPU, step_, Device::CUDA, sizeof(uint64_t));
  return s;
}

}  // namespace omnirt::llm
