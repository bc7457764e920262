// Next-token sampling on one row of logits [vocab].
//
// Semantics are HF transformers' `generate` (4.31, what OmniDrive's PyTorch reference runs). The
// logits processors are applied in HF's order:
//   1. repetition penalty (a processor: also applied when greedy): for every token id already in
//      the history, logit > 0 ? logit / penalty : logit * penalty;
//   2. temperature: logit / T                         (sampling only)
//   3. top-k: drop logits < the k-th largest value; ties with it are all kept   (sampling only)
//   4. top-p: over softmax of what is left, sorted by probability (ties: lower id first), keep a
//      token when the probability mass ranked before it is < top_p; at least one token is kept
//                                                       (sampling only)
// then greedy = argmax (ties -> lowest id), sampling = one draw from the renormalised kept
// probabilities.
//
// The draw is inverse-CDF with a counter-based uniform u = sampling_uniform(seed, step) (Philox,
// philox.h) walked over the kept tokens in ascending *token id* order: any fixed order gives the
// same distribution, and id order needs no sort on the GPU. So the CPU reference and the CUDA
// kernel pick the same token for the same (logits, history, seed, step). (They do not reproduce
// torch.multinomial's stream: that depends on torch's generator.)
//
// Non-finite logits (NaN, +inf) are an error: the CPU throws; the CUDA kernel writes token -1.
#pragma once

#include <cstdint>
#if __cplusplus >= 202002L
#include <span>
#endif
#include <string>
#include <vector>

#include "core/tensor.h"

namespace omnirt::llm {

struct SamplingConfig {
  bool do_sample = true;           // false: greedy argmax
  float temperature = 1.0f;        // > 0
  int top_k = 0;                   // 0 or >= vocab: off
  float top_p = 1.0f;              // in (0, 1]; 1: off
  float repetition_penalty = 1.0f; // > 0; 1: off
  uint64_t seed = 0;
  int max_new_tokens = 320;

  // OmniDrive's PyTorch reference (spec §4.4): do_sample, T = 0.1, top_p = 0.75, HF's default
  // top_k = 50, no repetition penalty, at most 320 new tokens.
  static SamplingConfig omnidrive_planning(uint64_t seed = 0);
  // Greedy decoding, for numerical comparison (the same limits otherwise).
  static SamplingConfig greedy();

  void validate() const;  // throws omnirt::Error naming the bad field
  std::string describe() const;
};

// The CPU API below uses std::span (C++20); a translation unit compiled as C++17 (an nvcc without
// the C++20 flag) sees only SamplingConfig and CudaSampler.
#if __cplusplus >= 202002L
// The probabilities the sampler draws from for one step, after all processors (double, sums to
// 1; exactly one-hot for greedy). `history` = token ids already in the sequence.
std::vector<double> sampling_distribution(std::span<const float> logits,
                                          const SamplingConfig& config,
                                          std::span<const int32_t> history);

// One sampling step (CPU reference).
int32_t sample_token(std::span<const float> logits, const SamplingConfig& config,
                     std::span<const int32_t> history, uint64_t step);
// Same on a CPU tensor of numel == vocab (F32, F16 or BF16).
int32_t sample_token(const Tensor& logits, const SamplingConfig& config,
                     std::span<const int32_t> history, uint64_t step);

// CPU sampler for a generation loop: keeps the history (prompt + generated ids) and the step.
class Sampler {
 public:
  explicit Sampler(SamplingConfig config);
  // `history`: the ids the repetition penalty looks at (HF: the input_ids; with inputs_embeds
  // only the generated ones). `step`: the RNG counter of the next draw.
  void reset(std::vector<int32_t> history = {}, uint64_t step = 0);
  int32_t sample(std::span<const float> logits);  // appends the token, advances the step
  const SamplingConfig& config() const { return config_; }
  const std::vector<int32_t>& history() const { return history_; }
  uint64_t step() const { return step_; }

 private:
  SamplingConfig config_;
  std::vector<int32_t> history_;
  uint64_t step_ = 0;
};
#endif  // C++20

}  // namespace omnirt::llm

#if defined(OMNIRT_WITH_CUDA)
struct CUstream_st;

namespace omnirt::llm {

// The CUDA sampling step: one kernel, one thread block, no host synchronisation. Everything that
// changes between steps lives in device memory (the RNG step counter, the repetition-penalty
// history as a bitmask over the vocabulary, the output token), so sample() can be captured in a
// CUDA graph and replayed.
//
// Algorithm (block of 1024 threads; the processed logits go to a [vocab] float workspace):
//   1. load logits (F32/F16), repetition penalty, temperature; block argmax (greedy stops here);
//   2. top-k: exact k-th largest value by 4-pass radix select (8 bits per pass) on the logits'
//      order-preserving uint32 keys; kept = logit >= that value (HF keeps ties);
//   fast path: when top-k leaves <= 1024 candidates (OmniDrive: k = 50), they are compacted in id
//      order into shared memory, one per thread; top-p's "mass ranked before" is an O(n) loop per
//      candidate and the draw one block scan (steps 3-5 below are skipped);
//   3. probabilities expf(l - max) (float, like the CPU) and their sum Z (double);
//   4. top-p: the same radix select weighted by probability mass finds the logit value t with
//      mass(l > t) < top_p * Z <= mass(l >= t); tokens above t are kept, tokens equal to t are
//      kept in id order while the mass ranked before them is < top_p * Z (the CPU rule). This
//      needs no sort and no top-k, so top-p alone over the whole 32000-token vocabulary is exact;
//   5. inverse-CDF draw in id order: per-thread sums of contiguous id chunks, a block scan, and
//      the thread whose chunk holds u * S scans it; token -> device memory, history bit set,
//      step counter + 1.
class CudaSampler {
 public:
  CudaSampler(int vocab_size, SamplingConfig config);
  ~CudaSampler();
  CudaSampler(const CudaSampler&) = delete;
  CudaSampler& operator=(const CudaSampler&) = delete;

  // Not capturable (host -> device copies): sets the history and the next RNG step.
  void reset(const std::vector<int32_t>& history = {}, uint64_t step = 0);
  // Capturable: one step on `logits` (CUDA, contiguous, F32 or F16, numel == vocab).
  void sample(const Tensor& logits, CUstream_st* stream);
  // Same on a raw device pointer.
  void sample(const void* logits, DType dtype, CUstream_st* stream);

  // Device address of the sampled token (int32; -1 after non-finite logits).
  const int32_t* token_device() const { return token_; }
  // Synchronous reads, for tests and the host loop.
  int32_t token_host() const;
  uint64_t step_host() const;
  const SamplingConfig& config() const { return config_; }
  int vocab_size() const { return vocab_; }

 private:
  int vocab_;
  SamplingConfig config_;
  float* workspace_ = nullptr;   // [vocab] processed logits
  uint32_t* seen_ = nullptr;     // [ceil(vocab / 32)] history bitmask
  uint64_t* step_ = nullptr;     // RNG counter of the next draw
  int32_t* token_ = nullptr;     // output
};

}  // namespace omnirt::llm
#endif
