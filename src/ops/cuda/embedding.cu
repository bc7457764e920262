// Embedding gather: one thread block per id copies one table row (16-byte vectors when the row
// length and alignment allow). Ids were range-checked on the host by the dispatcher.
#include "ops/cuda/embedding.h"

#include "ops/cuda/common.cuh"

namespace omnirt::ops::cuda {

namespace {

template <typename T, int kVec>
__global__ void embedding_kernel(const T* table, const int32_t* ids, T* out, int64_t dim) {
  const T* src = table + int64_t(ids[blockIdx.x]) * dim;
  T* dst = out + int64_t(blockIdx.x) * dim;
  for (int64_t i = threadIdx.x; i < dim / kVec; i += blockDim.x)
    store_vec(dst + i * kVec, load_vec<kVec>(src + i * kVec));
}

}  // namespace

void embedding(const Tensor& table, const Tensor& ids, Tensor& out) {
  const int64_t dim = table.dim(1);
  const unsigned n = static_cast<unsigned>(ids.dim(0));
  dispatch_float(table.dtype(), "ops::embedding", [&](auto tag) {
    using T = decltype(tag);
    constexpr int kWide = kVec16<T>;
    const bool wide = dim % kWide == 0 && is_aligned(table.raw(), 16) && is_aligned(out.raw(), 16);
    const int threads = row_block_threads(wide ? dim / kWide : dim);
    cudaStream_t stream = current_stream();
    if (wide) {
      embedding_kernel<T, kWide>
          <<<n, threads, 0, stream>>>(table.data<T>(), ids.data<int32_t>(), out.data<T>(), dim);
    } else {
      embedding_kernel<T, 1>
          <<<n, threads, 0, stream>>>(table.data<T>(), ids.data<int32_t>(), out.data<T>(), dim);
    }
    OMNIRT_CUDA_CHECK_LAUNCH("embedding_kernel");
  });
}

}  // namespace omnirt::ops::cuda
