#include <algorithm>
#include <cstring>

#include "ops/window.h"

namespace omnirt::ops::cpu {

// Both directions walk the padded grid window by window; a token maps to image cell
// (wy*ws + ty, wx*ws + tx), which is padding when it falls outside H x W.
template <bool kToWindows>
static void walk(float* image, float* windows, int64_t n, int64_t h, int64_t w, int64_t c, int ws) {
  const int64_t nh = (h + ws - 1) / ws, nw = (w + ws - 1) / ws;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t wy = 0; wy < nh; ++wy)
      for (int64_t wx = 0; wx < nw; ++wx)
        for (int ty = 0; ty < ws; ++ty)
          for (int tx = 0; tx < ws; ++tx) {
            const int64_t row = wy * ws + ty, col = wx * ws + tx;
            float* win_row = windows + (((b * nh + wy) * nw + wx) * ws * ws + ty * ws + tx) * c;
            const bool inside = row < h && col < w;
            float* img_row = inside ? image + ((b * h + row) * w + col) * c : nullptr;
            if (kToWindows) {
              if (inside)
                std::memcpy(win_row, img_row, c * sizeof(float));
              else
                std::fill(win_row, win_row + c, 0.f);
            } else if (inside) {
              std::memcpy(img_row, win_row, c * sizeof(float));
            }
          }
}

void window_partition(const Tensor& x, int window, Tensor& out) {
  walk<true>(const_cast<float*>(x.data<float>()), out.data<float>(), x.dim(0), x.dim(1), x.dim(2),
             x.dim(3), window);
}

void window_unpartition(const Tensor& windows, int window, Tensor& out) {
  walk<false>(out.data<float>(), const_cast<float*>(windows.data<float>()), out.dim(0), out.dim(1),
              out.dim(2), out.dim(3), window);
}

}  // namespace omnirt::ops::cpu
