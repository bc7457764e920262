#include "models/vision/heads_cuda.h"

#include <cuda_runtime.h>

#include "core/cuda_check.h"
#include "core/error.h"

namespace omnirt::vision::cuda {
namespace {

constexpr int kMaxCams = 8;
constexpr int kMaxDepth = 128;

struct PosEmbedParams {
  float img2lidar[kMaxCams][16];
  float coords_d[kMaxDepth];
  float range[6];
  int cams, grid_h, grid_w, depth, stride, img_h, img_w;
};

// One thread per (camera, row, column, depth bin): three outputs.
__global__ void position_embedding_input_kernel(const PosEmbedParams p, float* out) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t total = static_cast<int64_t>(p.cams) * p.grid_h * p.grid_w * p.depth;
  if (idx >= total) return;
  const int k = static_cast<int>(idx % p.depth);
  const int64_t pix = idx / p.depth;
  const int j = static_cast<int>(pix % p.grid_w);
  const int i = static_cast<int>((pix / p.grid_w) % p.grid_h);
  const int cam = static_cast<int>(pix / (static_cast<int64_t>(p.grid_w) * p.grid_h));
  // Same operation order as the host; __f*_rn keeps the compiler from fusing into FMAs.
  const float u = __fmul_rn(__fdiv_rn(__fadd_rn(float(p.stride * j), float(p.stride / 2)),
                                      float(p.img_w)),
                            float(p.img_w));
  const float v = __fmul_rn(__fdiv_rn(__fadd_rn(float(p.stride * i), float(p.stride / 2)),
                                      float(p.img_h)),
                            float(p.img_h));
  const float dep = p.coords_d[k];
  const float dc = fmaxf(dep, 1e-5f);
  const float pt[3] = {__fmul_rn(u, dc), __fmul_rn(v, dc), dep};
  const float* m = p.img2lidar[cam];
  float* o = out + idx * 3;
#pragma unroll
  for (int r = 0; r < 3; ++r) {
    const float xyz = __fadd_rn(
        __fadd_rn(__fadd_rn(__fmul_rn(m[r * 4 + 0], pt[0]), __fmul_rn(m[r * 4 + 1], pt[1])),
                  __fmul_rn(m[r * 4 + 2], pt[2])),
        m[r * 4 + 3]);
    float x = __fdiv_rn(xyz - p.range[r], p.range[r + 3] - p.range[r]);
    x = fminf(fmaxf(x, 0.f), 1.f);  // mmdet inverse_sigmoid, eps 1e-5
    const float x1 = fmaxf(x, 1e-5f), x2 = fmaxf(1.f - x, 1e-5f);
    o[r] = logf(__fdiv_rn(x1, x2));
  }
}

}  // namespace

void position_embedding_input(const VisionConfig& c, const std::vector<float>& coords_d,
                              const std::vector<host::Mat4>& img2lidars, Tensor& out) {
  OMNIRT_CHECK(c.num_cams <= kMaxCams && c.depth_num <= kMaxDepth,
               "position embedding (CUDA): at most ", kMaxCams, " cameras and ", kMaxDepth,
               " depth bins, got ", c.num_cams, " and ", c.depth_num);
  OMNIRT_CHECK(static_cast<int>(img2lidars.size()) == c.num_cams &&
                   static_cast<int>(coords_d.size()) == c.depth_num,
               "position embedding (CUDA): expected ", c.num_cams, " camera matrices and ",
               c.depth_num, " depths, got ", img2lidars.size(), " and ", coords_d.size());
  const int64_t rows = int64_t(c.num_cams) * c.grid_h() * c.grid_w();
  expect_shape(out, {rows, 3 * int64_t(c.depth_num)}, "position embedding input");
  OMNIRT_CHECK(out.device() == Device::CUDA && out.dtype() == DType::F32 && out.is_contiguous(),
               "position embedding input: expected a contiguous F32 CUDA tensor, got ",
               out.describe());
  PosEmbedParams p{};
  for (int cam = 0; cam < c.num_cams; ++cam)
    for (int e = 0; e < 16; ++e) p.img2lidar[cam][e] = img2lidars[cam][e];
  for (int k = 0; k < c.depth_num; ++k) p.coords_d[k] = coords_d[k];
  for (int e = 0; e < 6; ++e) p.range[e] = c.position_range[e];
  p.cams = c.num_cams;
  p.grid_h = c.grid_h();
  p.grid_w = c.grid_w();
  p.depth = c.depth_num;
  p.stride = c.patch;
  p.img_h = c.img_h;
  p.img_w = c.img_w;
  const int64_t total = rows * c.depth_num;
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>((total + threads - 1) / threads);
  position_embedding_input_kernel<<<blocks, threads, 0, omnirt::cuda::current_stream()>>>(
      p, out.data<float>());
  OMNIRT_CUDA_CHECK_LAUNCH("position_embedding_input_kernel");
}

}  // namespace omnirt::vision::cuda
