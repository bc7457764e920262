// Host-callable CUDA helpers of the LLM engine that other translation units need. Only
// declared (and defined, in llama_cuda.cu) when omnirt is built with CUDA.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace omnirt::llm {

#ifdef OMNIRT_WITH_CUDA
// dst[i] = offset + scale * hash_uniform(seed, i) for a contiguous F32/F16/BF16 device buffer,
// on the current stream (the same numbers the host-side fill produces).
void cuda_fill_hash_uniform(void* dst, DType dtype, int64_t n, uint64_t seed, float scale,
                            float offset);
#endif

}  // namespace omnirt::llm
