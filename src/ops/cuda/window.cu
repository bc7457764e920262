// Window partition / unpartition on the GPU: pure data movement, one thread per 16-byte chunk
// (or per element when a row's bytes are not a multiple of 16).
#include <algorithm>

#include "core/cuda_check.h"
#include "ops/window.h"

namespace omnirt::ops::cuda {

namespace {
// Index: int32_t when every index fits (the usual case: 32-bit division is several times cheaper
// than 64-bit, and this kernel does five per 16-byte chunk), else int64_t.
template <typename Chunk, bool kToWindows, typename Index>
__global__ void window_kernel(Chunk* image, Chunk* windows, Index n, Index h, Index w,
                              Index chunks_per_row, Index ws, Index nh, Index nw) {
  const Index total = n * nh * nw * ws * ws * chunks_per_row;
  for (Index i = blockIdx.x * Index(blockDim.x) + threadIdx.x; i < total;
       i += Index(gridDim.x) * blockDim.x) {
    const Index token = i / chunks_per_row;  // index into windows' rows
    const Index chunk = i - token * chunks_per_row;
    const Index win = token / (ws * ws);
    const Index t = token - win * (ws * ws);
    const Index wx = win % nw, wy = (win / nw) % nh, b = win / (nw * nh);
    const Index ty = t / ws;
    const Index row = wy * ws + ty, col = wx * ws + (t - ty * ws);
    const bool inside = row < h && col < w;
    const Index img_index = ((b * h + row) * w + col) * chunks_per_row + chunk;
    if (kToWindows) {
      windows[i] = inside ? image[img_index] : Chunk{};
    } else if (inside) {
      image[img_index] = windows[i];
    }
  }
}

template <typename Chunk, bool kToWindows>
void launch_chunks(void* image, void* windows, int64_t n, int64_t h, int64_t w, int64_t cpr, int ws,
                   int64_t nh, int64_t nw, unsigned blocks, int threads, cudaStream_t s) {
  Chunk* im = static_cast<Chunk*>(image);
  Chunk* wi = static_cast<Chunk*>(windows);
  const int64_t total = n * nh * nw * ws * ws * cpr;
  // The grid-stride loop's last increment may pass total by up to the grid size.
  if (total + int64_t(blocks) * threads < (int64_t{1} << 31)) {
    window_kernel<Chunk, kToWindows, int32_t>
        <<<blocks, threads, 0, s>>>(im, wi, int32_t(n), int32_t(h), int32_t(w), int32_t(cpr),
                                    int32_t(ws), int32_t(nh), int32_t(nw));
  } else {
    window_kernel<Chunk, kToWindows, int64_t>
        <<<blocks, threads, 0, s>>>(im, wi, n, h, w, cpr, int64_t(ws), nh, nw);
  }
}

template <bool kToWindows>
void launch(void* image, void* windows, int64_t n, int64_t h, int64_t w, int64_t c, size_t elem,
            int ws) {
  const int64_t nh = (h + ws - 1) / ws, nw = (w + ws - 1) / ws;
  const int64_t row_bytes = c * static_cast<int64_t>(elem);
  const int threads = 256;
  auto blocks_for = [&](int64_t total) {
    return static_cast<unsigned>(std::min<int64_t>((total + threads - 1) / threads, 65535 * 8));
  };
  cudaStream_t s = ::omnirt::cuda::current_stream();
  if (row_bytes % 16 == 0) {
    const int64_t cpr = row_bytes / 16;
    launch_chunks<int4, kToWindows>(image, windows, n, h, w, cpr, ws, nh, nw,
                                    blocks_for(n * nh * nw * ws * ws * cpr), threads, s);
  } else if (elem == 4) {
    launch_chunks<float, kToWindows>(image, windows, n, h, w, c, ws, nh, nw,
                                     blocks_for(n * nh * nw * ws * ws * c), threads, s);
  } else {
    launch_chunks<unsigned short, kToWindows>(image, windows, n, h, w, c, ws, nh, nw,
                                              blocks_for(n * nh * nw * ws * ws * c), threads, s);
  }
  OMNIRT_CUDA_CHECK_LAUNCH("window_partition/unpartition");
}
}  // namespace

void window_partition(const Tensor& x, int window, Tensor& out) {
  const size_t elem = dtype_bits(x.dtype()) / 8;
  OMNIRT_CHECK(elem == 2 || elem == 4, "window_partition: unsupported dtype ", x.describe());
  launch<true>(const_cast<void*>(x.raw()), out.raw(), x.dim(0), x.dim(1), x.dim(2), x.dim(3), elem,
               window);
}

void window_unpartition(const Tensor& windows, int window, Tensor& out) {
  const size_t elem = dtype_bits(out.dtype()) / 8;
  OMNIRT_CHECK(elem == 2 || elem == 4, "window_unpartition: unsupported dtype ", out.describe());
  launch<false>(out.raw(), const_cast<void*>(windows.raw()), out.dim(0), out.dim(1), out.dim(2),
                out.dim(3), elem, window);
}

}  // namespace omnirt::ops::cuda
