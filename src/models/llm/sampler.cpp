#include "models/llm/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "core/error.h"
#include "models/llm/philox.h"

namespace omnirt::llm {

SamplingConfig SamplingConfig::omnidrive_planning(uint64_t seed) {
  SamplingConfig c;
  c.do_sample = true;
  c.temperature = 0.1f;
  c.top_p = 0.75f;
  c.top_k = 50;
  c.repetition_penalty = 1.0f;
  c.max_new_tokens = 320;
  c.seed = seed;
  return c;
}

SamplingConfig SamplingConfig::greedy() {
  SamplingConfig c;
  c.do_sample = false;
  c.max_new_tokens = 320;
  return c;
}

void SamplingConfig::validate() const {
  OMNIRT_CHECK(std::isfinite(temperature) && temperature > 0, "sampling: temperature must be > 0, got ",
               temperature);
  OMNIRT_CHECK(top_k >= 0, "sampling: top_k must be >= 0 (0 = off), got ", top_k);
  OMNIRT_CHECK(top_p > 0 && top_p <= 1, "sampling: top_p must be in (0, 1], got ", top_p);
  OMNIRT_CHECK(std::isfinite(repetition_penalty) && repetition_penalty > 0,
               "sampling: repetition_penalty must be > 0, got ", repetition_penalty);
  OMNIRT_CHECK(max_new_tokens > 0, "sampling: max_new_tokens must be > 0, got ", max_new_tokens);
}

std::string SamplingConfig::describe() const {
  std::ostringstream os;
  if (!do_sample) {
    os << "greedy";
  } else {
    os << "sample(T=" << temperature << ", top_k=" << top_k << ", top_p=" << top_p
       << ", seed=" << seed << ")";
  }
  if (repetition_penalty != 1.0f) os << " repetition_penalty=" << repetition_penalty;
  os << " max_new_tokens=" << max_new_tokens;
  return os.str();
}

namespace {

// The logits after the processors (repetition penalty, and for sampling temperature), with the
// non-finite checks. Mirrors the float32 arithmetic of the CUDA kernel.
std::vector<float> processed_logits(std::span<const float> logits, const SamplingConfig& config,
                                    std::span<const int32_t> history) {
  config.validate();
  const int64_t vocab = static_cast<int64_t>(logits.size());
  OMNIRT_CHECK(vocab > 0, "sampling: empty logits");
  std::vector<float> l(logits.begin(), logits.end());
  bool any_finite = false;
  for (int64_t i = 0; i < vocab; ++i) {
    OMNIRT_CHECK(!std::isnan(l[i]) && l[i] != INFINITY, "sampling: logit of token ", i, " is ",
                 l[i], " (non-finite logits)");
    any_finite |= std::isfinite(l[i]);
  }
  OMNIRT_CHECK(any_finite, "sampling: every logit is -inf");
  if (config.repetition_penalty != 1.0f) {
    std::vector<bool> seen(vocab, false);
    for (int32_t id : history) {
      if (id < 0) continue;  // the image placeholder is not a token
      OMNIRT_CHECK(id < vocab, "sampling: history token ", id, " is outside the vocabulary of ",
                   vocab);
      seen[id] = true;
    }
    for (int64_t i = 0; i < vocab; ++i) {
      if (seen[i]) l[i] = l[i] > 0 ? l[i] / config.repetition_penalty : l[i] * config.repetition_penalty;
    }
  }
  if (config.do_sample && config.temperature != 1.0f) {
    for (float& v : l) v = v / config.temperature;
  }
  return l;
}

int32_t argmax_lowest_id(const std::vector<float>& l) {
  int32_t best = 0;
  for (int32_t i = 1; i < static_cast<int32_t>(l.size()); ++i) {
    if (l[i] > l[best]) best = i;
  }
  return best;
}

// Unnormalised probabilities of the kept tokens (0 elsewhere) for a sampling step.
std::vector<double> kept_masses(const std::vector<float>& l, const SamplingConfig& config) {
  const int64_t vocab = static_cast<int64_t>(l.size());
  std::vector<char> kept(vocab, 1);
  if (config.top_k > 0 && config.top_k < vocab) {
    std::vector<float> sorted(l);
    std::nth_element(sorted.begin(), sorted.begin() + (config.top_k - 1), sorted.end(),
                     std::greater<float>());
    const float kth = sorted[config.top_k - 1];
    for (int64_t i = 0; i < vocab; ++i) kept[i] = l[i] >= kth;
  }
  float max_logit = -INFINITY;
  for (int64_t i = 0; i < vocab; ++i)
    if (kept[i]) max_logit = std::max(max_logit, l[i]);
  std::vector<double> mass(vocab, 0.0);
  double z = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (!kept[i]) continue;
    // float exp like the kernel (and like HF's float32 softmax); sums in double.
    const float prob = std::exp(l[i] - max_logit);
    mass[i] = prob;
    z += mass[i];
  }
  if (config.top_p < 1.0f) {
    const double limit = static_cast<double>(config.top_p) * z;
    std::vector<int32_t> order;
    for (int64_t i = 0; i < vocab; ++i)
      if (kept[i]) order.push_back(static_cast<int32_t>(i));
    // By probability (the float values above), ties: lower id first.
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return mass[a] > mass[b]; });
    double before = 0;
    for (int32_t id : order) {
      if (before < limit) {
        before += mass[id];
      } else {
        mass[id] = 0;
      }
    }
  }
  return mass;
}

}  // namespace

std::vector<double> sampling_distribution(std::span<const float> logits,
                                          const SamplingConfig& config,
                                          std::span<const int32_t> history) {
  std::vector<float> l = processed_logits(logits, config, history);
  std::vector<double> p(l.size(), 0.0);
  if (!config.do_sample) {
    p[argmax_lowest_id(l)] = 1.0;
    return p;
  }
  p = kept_masses(l, config);
  const double s = std::accumulate(p.begin(), p.end(), 0.0);
  for (double& v : p) v /= s;
  return p;
}

int32_t sample_token(std::span<const float> logits, const SamplingConfig& config,
                     std::span<const int32_t> history, uint64_t step) {
  std::vector<float> l = processed_logits(logits, config, history);
  if (!config.do_sample) return argmax_lowest_id(l);
  const std::vector<double> mass = kept_masses(l, config);
  const double total = std::accumulate(mass.begin(), mass.end(), 0.0);
  const double target = sampling_uniform(config.seed, step) * total;
  double cum = 0;
  int32_t last = -1;
  for (int32_t i = 0; i < static_cast<int32_t>(mass.size()); ++i) {
    if (mass[i] <= 0) continue;
    cum += mass[i];
    last = i;
    if (cum > target) return i;
  }
  return last;  // u * total rounded up to the full sum
}

int32_t sample_token(const Tensor& logits, const SamplingConfig& config,
                     std::span<const int32_t> history, uint64_t step) {
  OMNIRT_CHECK(!logits.is_cuda(), "sample_token: logits ", logits.describe(),
               " must be on the CPU (use CudaSampler on the GPU)");
  OMNIRT_CHECK(logits.dtype() == DType::F32 || logits.dtype() == DType::F16 ||
                   logits.dtype() == DType::BF16,
               "sample_token: logits must be F32, F16 or BF16, got ", logits.describe());
  std::vector<float> v = logits.to_float_vector();
  return sample_token(std::span<const float>(v), config, history, step);
}

Sampler::Sampler(SamplingConfig config) : config_(config) { config_.validate(); }

void Sampler::reset(std::vector<int32_t> history, uint64_t step) {
  history_ = std::move(history);
  step_ = step;
}

int32_t Sampler::sample(std::span<const float> logits) {
  const int32_t token = sample_token(logits, config_, history_, step_);
  history_.push_back(token);
  ++step_;
  return token;
}

}  // namespace omnirt::llm
