#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>

#include "common/test_util.h"
#include "core/error.h"
#include "models/llm/philox.h"
#include "models/llm/sampler.h"

namespace omnirt::llm {
namespace {

// ---- an independent reference of HF's processors, written the way HF's code reads ----------
// (repetition penalty, temperature, top-k "remove < k-th value", top-p via ascending sort,
// softmax, cumsum, remove cumsum <= 1 - top_p, keep the last). Double precision throughout.
std::vector<double> hf_reference(const std::vector<float>& logits, const SamplingConfig& c,
                                 const std::vector<int32_t>& history) {
  const int n = static_cast<int>(logits.size());
  std::vector<double> s(logits.begin(), logits.end());
  for (int i = 0; i < n; ++i) {
    if (std::find(history.begin(), history.end(), i) != history.end() &&
        c.repetition_penalty != 1.0f) {
      s[i] = s[i] > 0 ? s[i] / c.repetition_penalty : s[i] * c.repetition_penalty;
    }
  }
  for (double& v : s) v /= c.temperature;
  if (c.top_k > 0 && c.top_k < n) {
    std::vector<double> sorted = s;
    std::sort(sorted.begin(), sorted.end(), std::greater<double>());
    const double kth = sorted[c.top_k - 1];
    for (double& v : s)
      if (v < kth) v = -INFINITY;
  }
  if (c.top_p < 1.0f) {
    std::vector<int> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    // ascending; among equal values the higher id first (so that descending = lower id first)
    std::sort(idx.begin(), idx.end(), [&](int a, int b) { return s[a] < s[b] || (s[a] == s[b] && a > b); });
    double mx = *std::max_element(s.begin(), s.end()), z = 0;
    for (double v : s) z += std::exp(v - mx);
    double cum = 0;
    std::vector<bool> remove(n, false);
    for (int r = 0; r < n; ++r) {
      cum += std::exp(s[idx[r]] - mx) / z;
      remove[idx[r]] = cum <= 1.0 - c.top_p;
    }
    remove[idx[n - 1]] = false;
    for (int i = 0; i < n; ++i)
      if (remove[i]) s[i] = -INFINITY;
  }
  double mx = *std::max_element(s.begin(), s.end()), z = 0;
  std::vector<double> p(n);
  for (int i = 0; i < n; ++i) z += (p[i] = std::exp(s[i] - mx));
  for (double& v : p) v /= z;
  return p;
}

std::vector<float> random_logits(int n, std::mt19937_64& rng, float scale) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

TEST(Philox, KnownAnswerVectors) {
  // Random123's kat_vectors for philox4x32-10.
  Philox4x32Out a = philox4x32_10(0, 0, 0, 0, 0, 0);
  EXPECT_EQ(a.v[0], 0x6627e8d5u);
  EXPECT_EQ(a.v[1], 0xe169c58du);
  EXPECT_EQ(a.v[2], 0xbc57ac4cu);
  EXPECT_EQ(a.v[3], 0x9b00dbd8u);
  Philox4x32Out b = philox4x32_10(~0u, ~0u, ~0u, ~0u, ~0u, ~0u);
  EXPECT_EQ(b.v[0], 0x408f276du);
  EXPECT_EQ(b.v[1], 0x41c83b0eu);
  EXPECT_EQ(b.v[2], 0xa20bc7c6u);
  EXPECT_EQ(b.v[3], 0x6d5451fdu);
  Philox4x32Out c = philox4x32_10(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u,
                                  0xa4093822u, 0x299f31d0u);
  EXPECT_EQ(c.v[0], 0xd16cfe09u);
  EXPECT_EQ(c.v[1], 0x94fdccebu);
  EXPECT_EQ(c.v[2], 0x5001e420u);
  EXPECT_EQ(c.v[3], 0x24126ea1u);
}

TEST(Philox, UniformsAreInRangeAndUnbiased) {
  double sum = 0, sum2 = 0;
  const int n = 200000;
  for (int t = 0; t < n; ++t) {
    double u = sampling_uniform(12345, t);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sum2 += u * u;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.005);
  EXPECT_NEAR(sum2 / n - (sum / n) * (sum / n), 1.0 / 12, 0.002);
  EXPECT_NE(sampling_uniform(1, 0), sampling_uniform(2, 0));
  EXPECT_NE(sampling_uniform(1, 0), sampling_uniform(1, 1));
}

TEST(SamplingConfig, Defaults) {
  SamplingConfig c = SamplingConfig::omnidrive_planning();
  EXPECT_TRUE(c.do_sample);
  EXPECT_FLOAT_EQ(c.temperature, 0.1f);
  EXPECT_FLOAT_EQ(c.top_p, 0.75f);
  EXPECT_EQ(c.top_k, 50);
  EXPECT_FLOAT_EQ(c.repetition_penalty, 1.0f);
  EXPECT_EQ(c.max_new_tokens, 320);
  EXPECT_FALSE(SamplingConfig::greedy().do_sample);
  SamplingConfig bad = c;
  bad.temperature = 0;
  EXPECT_THROW(bad.validate(), Error);
  bad = c;
  bad.top_p = 0;
  EXPECT_THROW(bad.validate(), Error);
  bad = c;
  bad.top_k = -1;
  EXPECT_THROW(bad.validate(), Error);
}

TEST(Sampler, GreedyArgmaxTiesToLowestId) {
  std::vector<float> l = {0.5f, 3.0f, -1.0f, 3.0f, 3.0f};
  EXPECT_EQ(sample_token(l, SamplingConfig::greedy(), {}, 0), 1);
  l[1] = 2.9f;
  EXPECT_EQ(sample_token(l, SamplingConfig::greedy(), {}, 7), 3);
  // Greedy still applies the repetition penalty (an HF logits *processor*).
  SamplingConfig g = SamplingConfig::greedy();
  g.repetition_penalty = 2.0f;
  std::vector<int32_t> hist = {3, 4};
  EXPECT_EQ(sample_token(l, g, hist, 0), 1);  // 3.0 -> 1.5 for ids 3, 4
  std::vector<double> p = sampling_distribution(l, g, hist);
  EXPECT_EQ(p[1], 1.0);
}

TEST(Sampler, RejectsNonFiniteLogits) {
  SamplingConfig c = SamplingConfig::omnidrive_planning();
  std::vector<float> l = {0.f, 1.f, NAN, 2.f};
  EXPECT_THROW(sample_token(l, c, {}, 0), Error);
  l[2] = INFINITY;
  EXPECT_THROW(sample_token(l, c, {}, 0), Error);
  l[2] = -INFINITY;  // a masked token is fine
  EXPECT_NO_THROW(sample_token(l, c, {}, 0));
  std::vector<float> all_masked(4, -INFINITY);
  EXPECT_THROW(sample_token(all_masked, c, {}, 0), Error);
  EXPECT_THROW(sample_token(std::vector<float>{}, c, {}, 0), Error);
  std::vector<int32_t> bad_hist = {9};
  c.repetition_penalty = 1.3f;
  EXPECT_THROW(sample_token(std::vector<float>{0.f, 1.f}, c, bad_hist, 0), Error);
}

// Hand-worked example of the processor order: top-p acts on the temperature-scaled, top-k
// renormalised distribution.
TEST(Sampler, ProcessorOrderHandWorked) {
  // logits ln(4), ln(3), ln(2), ln(1): probs 0.4 0.3 0.2 0.1 at T = 1.
  std::vector<float> l = {std::log(4.f), std::log(3.f), std::log(2.f), 0.f};
  SamplingConfig c;
  c.top_p = 0.6f;  // 0.4 < 0.6 -> keep 2nd; 0.7 >= 0.6 -> stop: {0, 1}
  std::vector<double> p = sampling_distribution(l, c, {});
  EXPECT_NEAR(p[0], 4.0 / 7, 1e-6);
  EXPECT_NEAR(p[1], 3.0 / 7, 1e-6);
  EXPECT_EQ(p[2], 0.0);
  EXPECT_EQ(p[3], 0.0);
  // top_p = 0.5: at T = 1 the mass before token 1 is 0.4 < 0.5 -> {0, 1}; T = 0.5 squares the
  // odds (16:9:4:1 / 30), the mass before token 1 is 0.533 >= 0.5 -> only {0}.
  c.top_p = 0.5f;
  p = sampling_distribution(l, c, {});
  EXPECT_GT(p[1], 0.0);
  c.temperature = 0.5f;
  p = sampling_distribution(l, c, {});
  EXPECT_EQ(p[0], 1.0);
  // top-k before top-p: k = 3 renormalises to 4:3:2 / 9; top_p 0.75: 0.444, 0.777 -> {0, 1} at
  // T = 1, and token 2 (0.222 of the k-set) is out although 0.4 + 0.3 < 0.75 on the full set.
  c.temperature = 1.0f;
  c.top_k = 3;
  c.top_p = 0.75f;
  p = sampling_distribution(l, c, {});
  EXPECT_NEAR(p[0], 4.0 / 7, 1e-6);
  EXPECT_EQ(p[2], 0.0);
  c.top_k = 0;
  p = sampling_distribution(l, c, {});
  EXPECT_NEAR(p[2], 2.0 / 9, 1e-6);  // full set: 0.4, 0.7 < 0.75 -> {0, 1, 2}
  // Repetition penalty first: token 0 seen, penalty 4 -> logit ln(4)/4 < ln(3): 1 is the top.
  c = SamplingConfig::greedy();
  c.repetition_penalty = 4.0f;
  std::vector<int32_t> hist = {0};
  EXPECT_EQ(sample_token(l, c, hist, 0), 1);
  // ... and negative logits are multiplied.
  std::vector<float> neg = {-1.0f, -1.5f};
  hist = {0};
  c.repetition_penalty = 2.0f;
  EXPECT_EQ(sample_token(neg, c, hist, 0), 1);  // -2.0 < -1.5
}

TEST(Sampler, TopKKeepsTiesAtTheKthValue) {
  std::vector<float> l = {1.f, 3.f, 2.f, 2.f, 0.f};
  SamplingConfig c;
  c.top_k = 2;
  std::vector<double> p = sampling_distribution(l, c, {});
  EXPECT_GT(p[2], 0.0);
  EXPECT_GT(p[3], 0.0);  // tied with the 2nd value: HF keeps it
  EXPECT_EQ(p[0], 0.0);
  EXPECT_EQ(p[4], 0.0);
}

TEST(Sampler, DistributionMatchesIndependentHfReference) {
  std::mt19937_64 rng(omnirt::testing::test_seed());
  for (int trial = 0; trial < 60; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 300);
    std::vector<float> l = random_logits(n, rng, 1.0f + (trial % 5));
    SamplingConfig c;
    c.temperature = std::vector<float>{1.f, 0.1f, 0.7f, 1.5f}[trial % 4];
    c.top_k = std::vector<int>{0, 1, 5, 50, 1000}[trial % 5];
    c.top_p = std::vector<float>{1.f, 0.75f, 0.3f, 0.95f, 0.01f, 1.f}[trial % 6];
    c.repetition_penalty = trial % 3 == 0 ? 1.3f : 1.0f;
    std::vector<int32_t> hist;
    for (int k = 0; k < 5; ++k) hist.push_back(static_cast<int32_t>(rng() % n));
    std::vector<double> got = sampling_distribution(l, c, hist);
    std::vector<double> want = hf_reference(l, c, hist);
    for (int i = 0; i < n; ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-5) << "trial " << trial << " id " << i << " " << c.describe();
    }
  }
}

// Frequencies of many draws (different seeds) match the renormalised nucleus distribution.
TEST(Sampler, StatisticsMatchNucleusDistribution) {
  std::mt19937_64 rng(omnirt::testing::test_seed());
  struct Case {
    float temperature;
    int top_k;
    float top_p;
  };
  const Case cases[] = {{1.0f, 0, 0.8f}, {0.7f, 6, 1.0f}, {1.3f, 10, 0.9f}, {1.0f, 0, 1.0f}};
  for (const Case& cs : cases) {
    const int n = 17;
    std::vector<float> l = random_logits(n, rng, 1.2f);
    SamplingConfig c;
    c.temperature = cs.temperature;
    c.top_k = cs.top_k;
    c.top_p = cs.top_p;
    std::vector<double> want = hf_reference(l, c, {});
    const int draws = 100000;
    std::vector<int> counts(n, 0);
    for (int d = 0; d < draws; ++d) {
      c.seed = 1000003ull * d + 17;  // a new seed per draw, step 0
      counts[sample_token(l, c, {}, 0)]++;
    }
    for (int i = 0; i < n; ++i) {
      const double f = static_cast<double>(counts[i]) / draws;
      if (want[i] == 0.0) {
        EXPECT_EQ(counts[i], 0) << "token " << i << " outside the nucleus was drawn";
      } else {
        const double sigma = std::sqrt(want[i] * (1 - want[i]) / draws);
        EXPECT_NEAR(f, want[i], 5 * sigma + 1e-4) << "token " << i << " " << c.describe();
      }
    }
  }
}

TEST(Sampler, SameSeedAndStepSameToken) {
  std::mt19937_64 rng(omnirt::testing::test_seed());
  std::vector<float> l = random_logits(500, rng, 2.0f);
  SamplingConfig c;
  c.seed = 42;
  int differs_by_step = 0;
  for (uint64_t step = 0; step < 50; ++step) {
    const int32_t a = sample_token(l, c, {}, step);
    EXPECT_EQ(a, sample_token(l, c, {}, step));
    differs_by_step += a != sample_token(l, c, {}, step + 1);
  }
  EXPECT_GT(differs_by_step, 25);  // T = 1 over 500 tokens: consecutive draws mostly differ
  // The Sampler class walks the steps and the history.
  Sampler s(c);
  s.reset({3, 4}, 10);
  const int32_t t = s.sample(l);
  EXPECT_EQ(t, sample_token(l, c, std::vector<int32_t>{3, 4}, 10));
  EXPECT_EQ(s.step(), 11u);
  EXPECT_EQ(s.history().back(), t);
}

TEST(Sampler, AcceptsHalfTensors) {
  std::mt19937_64 rng(omnirt::testing::test_seed());
  Tensor f32 = omnirt::testing::random_tensor({257}, rng, -4.f, 4.f);
  Tensor f16 = f32.to_dtype(DType::F16);
  std::vector<float> rounded = f16.to_float_vector();
  SamplingConfig c = SamplingConfig::omnidrive_planning(5);
  c.temperature = 1.0f;
  for (uint64_t step = 0; step < 20; ++step) {
    EXPECT_EQ(sample_token(f16, c, {}, step), sample_token(rounded, c, {}, step));
  }
}

}  // namespace
}  // namespace omnirt::llm
