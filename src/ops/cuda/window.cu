// Window partition / unpartition on the GPU: pure data movement, one thread per 16-byte chunk
// (or per element when a row's bytes are not a multiple of 16).
#include <algorithm>

#include "core/cuda_check.h"
#include "ops/window.h"

namespace omnirt::ops::cuda {

namespace {
template <typename Chunk, bool kToWindows>
__global__ void window_kernel(Chunk* image, Chunk* windows, int64_t n, int64_t h, int64_t w,
                              int64_t chunks_per_row, int ws, int64_t nh, int64_t nw) {
  const int64_t total = n * nh * nw * ws * ws * chunks_per_row;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t chunk = i % chunks_per_row;
    const int64_t token = i / chunks_per_row;  // index into windows' rows
    const int t = static_cast<int>(token % (ws * ws));
    const int64_t win = token / (ws * ws);
    const int64_t wx = win % nw, wy = (win / nw) % nh, b = win / (nw * nh);
    const int64_t row = wy * ws + t / ws, col = wx * ws + t % ws;
    const bool inside = row < h && col < w;
    const int64_t img_index = ((b * h + row) * w + col) * chunks_per_row + chunk;
    if (kToWindows) {
      windows[i] = inside ? image[img_index] : Chunk{};
    } else if (inside) {
      image[img_index] = windows[i];
    }
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
    window_kernel<int4, kToWindows><<<blocks_for(n * nh * nw * ws * ws * cpr), threads, 0, s>>>(
        static_cast<int4*>(image), static_cast<int4*>(windows), n, h, w, cpr, ws, nh, nw);
  } else if (elem == 4) {
    window_kernel<float, kToWindows><<<blocks_for(n * nh * nw * ws * ws * c), threads, 0, s>>>(
        static_cast<float*>(image), static_cast<float*>(windows), n, h, w, c, ws, nh, nw);
  } else {
    window_kernel<unsigned short, kToWindows>
        <<<blocks_for(n * nh * nw * ws * ws * c), threads, 0, s>>>(
            static_cast<unsigned short*>(image), static_cast<unsigned short*>(windows), n, h, w, c,
            ws, nh, nw);
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
