// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a
// counter-based generator, i.e. a pure function (counter, key) -> 4 random words. The sampler
// draws its uniform for generation step t from counter = (t, 0, 0, 0), key = seed, so the CPU
// reference and the CUDA kernel get bit-identical uniforms for the same (seed, step) without
// carrying generator state (and a CUDA graph only needs the step counter in device memory).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define OMNIRT_HD __host__ __device__
#else
#define OMNIRT_HD
#endif

namespace omnirt::llm {

struct Philox4x32Out {
  uint32_t v[4];
};

OMNIRT_HD inline void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// Ten rounds, Random123's constants.
OMNIRT_HD inline Philox4x32Out philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                             uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kM0, c0, hi0, lo0);
    philox_mulhilo(kM1, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n1 = lo1;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    const uint32_t n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += kW0;
    k1 += kW1;
  }
  return {{c0, c1, c2, c3}};
}

// The sampler's uniform in [0, 1) for (seed, step): 53 random bits -> an exact double.
OMNIRT_HD inline double sampling_uniform(uint64_t seed, uint64_t step) {
  const Philox4x32Out r =
      philox4x32_10(static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32), 0u, 0u,
                    static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  const uint64_t bits = (static_cast<uint64_t>(r.v[0]) << 21) ^ (r.v[1] >> 11);  // 53 bits
  return static_cast<double>(bits & ((uint64_t{1} << 53) - 1)) * 0x1.0p-53;
}

}  // namespace omnirt::llm
