// CUDA pre-processing (preprocess_cuda.h). One thread per output value; the tables come from the
// CPU code (pil_bicubic_coeffs, cv2_linear_taps), so both sides resample with the same numbers.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "core/cuda_check.h"
#include "core/device.h"
#include "core/error.h"
#include "ops/cuda/common.cuh"
#include "pipeline/preprocess_cuda.h"

namespace omnirt::pipeline {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's 8-bit path, as preprocess.cpp
constexpr int kThreads = 256;

// Device memory from the caching allocator, returned on scope exit.
struct DeviceBuffer {
  void* p = nullptr;
  size_t bytes = 0;
  explicit DeviceBuffer(size_t n) : p(n ? device_alloc(Device::CUDA, n) : nullptr), bytes(n) {}
  ~DeviceBuffer() {
    if (p) device_free(Device::CUDA, p, bytes);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

template <typename T>
void upload(DeviceBuffer& dst, const T* src, size_t count, cudaStream_t s) {
  OMNIRT_CUDA_CHECK(cudaMemcpyAsync(dst.p, src, count * sizeof(T), cudaMemcpyHostToDevice, s));
}

__device__ __forceinline__ uint8_t clip8(int v) {
  if (v >= (1 << kPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return uint8_t(v >> kPrecisionBits);
}

// in [h, in_w, ch] -> out [h, out_w, ch]; grid (ceil(out_w * ch / threads), h).
__global__ void resample_horizontal_kernel(const uint8_t* __restrict__ in, int in_w, int ch,
                                           const int* __restrict__ bounds,
                                           const int* __restrict__ k, int ksize,
                                           uint8_t* __restrict__ out, int out_w) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= out_w * ch) return;
  const int y = blockIdx.y;
  const int xx = i / ch, c = i - xx * ch;
  const int xmin = bounds[2 * xx], n = bounds[2 * xx + 1];
  const int* kk = k + size_t(xx) * ksize;
  const uint8_t* row = in + size_t(y) * in_w * ch;
  int ss = 1 << (kPrecisionBits - 1);
  for (int x = 0; x < n; ++x) ss += int(row[(x + xmin) * ch + c]) * kk[x];
  out[size_t(y) * out_w * ch + i] = clip8(ss);
}

// in [in_h, row_len] -> out [out_h, row_len]; grid (ceil(row_len / threads), out_h).
__global__ void resample_vertical_kernel(const uint8_t* __restrict__ in, int row_len,
                                         const int* __restrict__ bounds,
                                         const int* __restrict__ k, int ksize,
                                         uint8_t* __restrict__ out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= row_len) return;
  const int yy = blockIdx.y;
  const int ymin = bounds[2 * yy], n = bounds[2 * yy + 1];
  const int* kk = k + size_t(yy) * ksize;
  int ss = 1 << (kPrecisionBits - 1);
  for (int y = 0; y < n; ++y) ss += int(in[size_t(ymin + y) * row_len + i]) * kk[y];
  out[size_t(yy) * row_len + i] = clip8(ss);
}

using ops::cuda::from_float;  // ops/cuda/common.cuh

struct StretchParams {
  int rw, rh;            // resized image (uint8 [rh, rw, 3])
  int crop_x, crop_y;    // top-left of the crop in it
  int crop_w, crop_h;    // crop size = the stretch's input size
  int out_w, out_h;
  float mean[3], inv_std[3];
};

// pil_crop (zero outside the resized image) of one pixel, as float.
__device__ __forceinline__ float cropped(const uint8_t* r, const StretchParams& p, int x, int y,
                                         int c) {
  const int sx = p.crop_x + x, sy = p.crop_y + y;
  if (sx < 0 || sx >= p.rw || sy < 0 || sy >= p.rh) return 0.f;
  return float(r[(size_t(sy) * p.rw + sx) * 3 + c]);
}

// Crop + cv2 INTER_LINEAR stretch + (x - mean) * inv_std, planar out [3, out_h, out_w].
// The CPU's order: row blend h = a * w0 + b * w1 per source row, then h0 * wy0 + h1 * wy1.
template <typename T>
__global__ void stretch_normalise_kernel(const uint8_t* __restrict__ resized,
                                         const LinearTap* __restrict__ tx,
                                         const LinearTap* __restrict__ ty, StretchParams p,
                                         T* __restrict__ out) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  if (x >= p.out_w) return;
  const int y = blockIdx.y;
  const LinearTap hx = tx[x], vy = ty[y];
  for (int c = 0; c < 3; ++c) {
    const float h0 = __fadd_rn(__fmul_rn(cropped(resized, p, hx.i0, vy.i0, c), hx.w0),
                               __fmul_rn(cropped(resized, p, hx.i1, vy.i0, c), hx.w1));
    const float h1 = __fadd_rn(__fmul_rn(cropped(resized, p, hx.i0, vy.i1, c), hx.w0),
                               __fmul_rn(cropped(resized, p, hx.i1, vy.i1, c), hx.w1));
    const float v = __fadd_rn(__fmul_rn(h0, vy.w0), __fmul_rn(h1, vy.w1));
    const float o = __fmul_rn(__fsub_rn(v, p.mean[c]), p.inv_std[c]);
    out[(size_t(c) * p.out_h + y) * p.out_w + x] = from_float<T>(o);
  }
}

dim3 grid_for(int n, int rows) {
  OMNIRT_CHECK(rows > 0 && rows <= 65535, "preprocess (CUDA): ", rows,
               " rows exceed the grid's y limit of 65535");
  return dim3(unsigned((n + kThreads - 1) / kThreads), unsigned(rows));
}

using Keep = std::vector<std::unique_ptr<DeviceBuffer>>;

DeviceBuffer& keep_new(Keep& keep, size_t bytes) {
  keep.push_back(std::make_unique<DeviceBuffer>(bytes));
  return *keep.back();
}

// One PIL resample pass's tables on the device (bounds then weights), kept in `keep`.
struct DeviceCoeffs {
  const int* bounds;
  const int* k;
  int ksize;
};
DeviceCoeffs upload_coeffs(int in_size, int out_size, cudaStream_t s, Keep& keep) {
  const BicubicCoeffs c = pil_bicubic_coeffs(in_size, out_size);
  DeviceBuffer& b = keep_new(keep, (c.bounds.size() + c.k.size()) * sizeof(int));
  int* d = b.as<int>();
  OMNIRT_CUDA_CHECK(cudaMemcpyAsync(d, c.bounds.data(), c.bounds.size() * sizeof(int),
                                    cudaMemcpyHostToDevice, s));
  OMNIRT_CUDA_CHECK(cudaMemcpyAsync(d + c.bounds.size(), c.k.data(), c.k.size() * sizeof(int),
                                    cudaMemcpyHostToDevice, s));
  return {d, d + c.bounds.size(), c.ksize};
}

// PIL's resize of the uint8 RGB image at d_src ([h, w, 3]) to out_w x out_h on stream s. The
// result and every table live in `keep` until the caller has synchronised the stream (the
// pageable host tables are copied before cudaMemcpyAsync returns, the device ones are read
// by the kernels); d_src itself is returned when nothing changes.
const uint8_t* resize_on_device(const uint8_t* d_src, int w, int h, int out_w, int out_h,
                                cudaStream_t s, Keep& keep) {
  constexpr int ch = 3;
  const uint8_t* cur = d_src;
  int cur_w = w;
  // ImagingResampleInner: horizontal pass first (when the width changes), then vertical.
  if (out_w != w) {
    const DeviceCoeffs c = upload_coeffs(w, out_w, s, keep);
    uint8_t* out = keep_new(keep, size_t(h) * out_w * ch).as<uint8_t>();
    resample_horizontal_kernel<<<grid_for(out_w * ch, h), kThreads, 0, s>>>(
        cur, w, ch, c.bounds, c.k, c.ksize, out, out_w);
    OMNIRT_CUDA_CHECK_LAUNCH("resample_horizontal");
    cur = out;
    cur_w = out_w;
  }
  if (out_h != h) {
    const DeviceCoeffs c = upload_coeffs(h, out_h, s, keep);
    uint8_t* out = keep_new(keep, size_t(out_h) * cur_w * ch).as<uint8_t>();
    resample_vertical_kernel<<<grid_for(cur_w * ch, out_h), kThreads, 0, s>>>(
        cur, cur_w * ch, c.bounds, c.k, c.ksize, out);
    OMNIRT_CUDA_CHECK_LAUNCH("resample_vertical");
    cur = out;
  }
  return cur;
}

}  // namespace

io::Image pil_resize_bicubic_cuda(const io::Image& src, int out_w, int out_h) {
  OMNIRT_CHECK(src.channels == 3, "pil_resize_bicubic_cuda: expected an RGB image, got ",
               src.channels, " channels");
  OMNIRT_CHECK(src.width > 0 && src.height > 0 && out_w > 0 && out_h > 0, "resize ", src.width,
               "x", src.height, " -> ", out_w, "x", out_h, ": empty size");
  OMNIRT_CHECK(src.pixels.size() == size_t(src.width) * src.height * 3, "pil_resize_bicubic_cuda: ",
               src.pixels.size(), " bytes for a ", src.width, "x", src.height, " RGB image");
  cudaStream_t s = cuda::current_stream();
  DeviceBuffer d_src(src.pixels.size());
  upload(d_src, src.pixels.data(), src.pixels.size(), s);
  Keep keep;
  const uint8_t* d_out =
      resize_on_device(d_src.as<uint8_t>(), src.width, src.height, out_w, out_h, s, keep);
  io::Image out(out_w, out_h, 3);
  OMNIRT_CUDA_CHECK(cudaMemcpyAsync(out.pixels.data(), d_out, out.pixels.size(),
                                    cudaMemcpyDeviceToHost, s));
  OMNIRT_CUDA_CHECK(cudaStreamSynchronize(s));
  return out;
}

void preprocess_image_cuda(const PreprocessConfig& cfg, const io::Image& src, void* dst,
                           DType dtype) {
  OMNIRT_CHECK(src.channels == 3, "preprocess: expected an RGB image, got ", src.channels,
               " channels");
  OMNIRT_CHECK(src.pixels.size() == size_t(src.width) * src.height * 3, "preprocess: ",
               src.pixels.size(), " bytes for a ", src.width, "x", src.height, " RGB image");
  OMNIRT_CHECK(dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16,
               "preprocess (CUDA): output dtype must be F32, F16 or BF16, got ", dtype_name(dtype));
  const ResizeCrop rc = resize_crop_for(cfg, src.width, src.height);
  cudaStream_t s = cuda::current_stream();
  DeviceBuffer d_src(src.pixels.size());
  upload(d_src, src.pixels.data(), src.pixels.size(), s);
  Keep keep;
  const uint8_t* resized = resize_on_device(d_src.as<uint8_t>(), src.width, src.height,
                                            rc.resized_w, rc.resized_h, s, keep);
  const std::vector<LinearTap> tx = cv2_linear_taps(cfg.final_w, cfg.out_w);
  const std::vector<LinearTap> ty = cv2_linear_taps(cfg.final_h, cfg.out_h);
  DeviceBuffer d_tx(tx.size() * sizeof(LinearTap)), d_ty(ty.size() * sizeof(LinearTap));
  upload(d_tx, tx.data(), tx.size(), s);
  upload(d_ty, ty.data(), ty.size(), s);
  StretchParams p;
  p.rw = rc.resized_w;
  p.rh = rc.resized_h;
  p.crop_x = rc.crop_x;
  p.crop_y = rc.crop_y;
  p.crop_w = cfg.final_w;
  p.crop_h = cfg.final_h;
  p.out_w = cfg.out_w;
  p.out_h = cfg.out_h;
  for (int c = 0; c < 3; ++c) {
    p.mean[c] = cfg.mean[c];
    p.inv_std[c] = float(1.0 / double(cfg.std[c]));  // as the CPU (mmcv multiplies by 1/std)
  }
  const dim3 grid = grid_for(cfg.out_w, cfg.out_h);
  if (dtype == DType::F32)
    stretch_normalise_kernel<float><<<grid, kThreads, 0, s>>>(
        resized, d_tx.as<LinearTap>(), d_ty.as<LinearTap>(), p, static_cast<float*>(dst));
  else if (dtype == DType::F16)
    stretch_normalise_kernel<__half><<<grid, kThreads, 0, s>>>(
        resized, d_tx.as<LinearTap>(), d_ty.as<LinearTap>(), p, static_cast<__half*>(dst));
  else
    stretch_normalise_kernel<__nv_bfloat16><<<grid, kThreads, 0, s>>>(
        resized, d_tx.as<LinearTap>(), d_ty.as<LinearTap>(), p, static_cast<__nv_bfloat16*>(dst));
  OMNIRT_CUDA_CHECK_LAUNCH("stretch_normalise");
  OMNIRT_CUDA_CHECK(cudaStreamSynchronize(s));  // before the temporaries go back to the cache
}

}  // namespace omnirt::pipeline
