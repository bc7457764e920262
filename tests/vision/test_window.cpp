#include <gtest/gtest.h>

#include "common/test_util.h"
#include "core/error.h"
#include "ops/window.h"

using namespace omnirt;

namespace {
// Independent naive reference: for every padded cell, find its window/token by division.
std::vector<float> naive_partition(const Tensor& x, int ws) {
  const int64_t n = x.dim(0), h = x.dim(1), w = x.dim(2), c = x.dim(3);
  const int64_t nh = (h + ws - 1) / ws, nw = (w + ws - 1) / ws;
  std::vector<float> out(n * nh * nw * ws * ws * c, 0.f);
  const float* p = x.data<float>();
  for (int64_t b = 0; b < n; ++b)
    for (int64_t r = 0; r < h; ++r)
      for (int64_t col = 0; col < w; ++col)
        for (int64_t ch = 0; ch < c; ++ch) {
          int64_t win = (b * nh + r / ws) * nw + col / ws;
          int64_t tok = (r % ws) * ws + col % ws;
          out[(win * ws * ws + tok) * c + ch] = p[((b * h + r) * w + col) * c + ch];
        }
  return out;
}
}  // namespace

TEST(Window, CpuPartitionMatchesNaiveAndRoundTrips) {
  std::mt19937_64 rng(omnirt::testing::test_seed());
  for (auto [n, h, w, c, ws] : std::vector<std::array<int, 5>>{{2, 5, 5, 3, 4}, {1, 40, 40, 7, 16},
                                                                {3, 7, 9, 1, 3}, {1, 4, 4, 5, 4}}) {
    Tensor x = omnirt::testing::random_tensor({n, h, w, c}, rng);
    const int64_t nwin = int64_t(n) * ((h + ws - 1) / ws) * ((w + ws - 1) / ws);
    Tensor win = Tensor::empty({nwin, int64_t(ws) * ws, c}, DType::F32);
    ops::window_partition(x, ws, win);
    EXPECT_EQ(win.to_float_vector(), naive_partition(x, ws));
    Tensor back = Tensor::empty({n, h, w, c}, DType::F32);
    ops::window_unpartition(win, ws, back);
    EXPECT_EQ(back.to_float_vector(), x.to_float_vector());
  }
}

TEST(Window, BadShapesAreClearErrors) {
  Tensor x = Tensor::zeros({1, 5, 5, 3}, DType::F32);
  Tensor wrong = Tensor::empty({3, 16, 3}, DType::F32);
  EXPECT_THROW(ops::window_partition(x, 4, wrong), Error);
  Tensor x3 = Tensor::zeros({5, 5, 3}, DType::F32);
  Tensor ok = Tensor::empty({4, 16, 3}, DType::F32);
  EXPECT_THROW(ops::window_partition(x3, 4, ok), Error);
}

TEST(Window, CudaMatchesCpu) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    for (auto [n, h, w, c, ws] : std::vector<std::array<int, 5>>{{2, 5, 5, 3, 4}, {6, 40, 40, 768, 16},
                                                                  {3, 7, 9, 1, 3}, {1, 9, 9, 8, 4}}) {
      Tensor x = omnirt::testing::random_tensor({n, h, w, c}, rng).to_dtype(dt);
      const int64_t nwin = int64_t(n) * ((h + ws - 1) / ws) * ((w + ws - 1) / ws);
      std::vector<float> ref = naive_partition(Tensor::from_vector(x.to_float_vector(), x.shape()), ws);
      Tensor gx = x.to(Device::CUDA);
      Tensor gwin = Tensor::empty({nwin, int64_t(ws) * ws, c}, dt, Device::CUDA);
      device_memset(Device::CUDA, gwin.raw(), 0xff, gwin.nbytes());  // poison (NaN pattern)
      ops::window_partition(gx, ws, gwin);
      EXPECT_EQ(gwin.to_float_vector(), ref) << dtype_name(dt) << " " << h << "x" << w;
      Tensor gback = Tensor::empty({n, h, w, c}, dt, Device::CUDA);
      device_memset(Device::CUDA, gback.raw(), 0xff, gback.nbytes());
      ops::window_unpartition(gwin, ws, gback);
      EXPECT_EQ(gback.to_float_vector(), x.to_float_vector());
    }
  }
}
