// Image pre-processing of OmniDrive's test pipeline (spec §1.2), on the CPU, bit-exact where the
// reference is integer arithmetic:
//   1. PIL Image.resize(BICUBIC) of the uint8 image to resize_dims (antialiased: PIL's
//      convolution resampling, support widened by the scale when downscaling, 22-bit fixed-point
//      coefficients, horizontal pass then vertical pass, each rounded to uint8 as PIL does);
//   2. PIL crop to final_dim (zero fill outside the image);
//   3. cv2.resize(INTER_LINEAR) of the float32 image to the network size (mmcv.imresize, no
//      rounding: the image is float32 by then);
//   4. (x - mean) / std per RGB channel, written as planar CHW float32.
// Images are RGB here; the reference loads BGR and swaps back to RGB in the normalisation, and
// both resamplers treat channels independently, so the net effect is the same.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "io/image.h"

namespace omnirt::pipeline {

using Mat3d = std::array<double, 9>;   // row-major 3x3
using Mat4d = std::array<double, 16>;  // row-major 4x4
using Mat4f = std::array<float, 16>;   // row-major 4x4 (what the engines take)

struct PreprocessConfig {
  int final_h = 320, final_w = 640;  // ida_aug_conf final_dim (crop size)
  int out_h = 640, out_w = 640;      // ResizeMultiview3D img_scale = the network's input size
  std::array<float, 3> mean{123.675f, 116.28f, 103.53f};  // RGB
  std::array<float, 3> std{58.395f, 57.12f, 57.375f};
  // prepare_frame only: run the chain on the GPU (preprocess_cuda.h); PreparedFrame::img is then
  // a CUDA tensor of `cuda_dtype` (F32, F16 or BF16: the vision backbone's, so no conversion).
  bool cuda = false;
  DType cuda_dtype = DType::F32;
  // The OmniDrive recipe for a network input of img_h x img_w: crop to (img_h/2, img_w), then
  // stretch vertically x2 (for 640x640: final_dim (320, 640)).
  static PreprocessConfig for_network(int img_h, int img_w);
};

// The resize/crop geometry for one source image size (ResizeCropFlipRotImage, test mode).
struct ResizeCrop {
  double resize = 0;           // max(final_h / H, final_w / W)
  int resized_w = 0, resized_h = 0;  // int(W * resize), int(H * resize)
  int crop_x = 0, crop_y = 0;  // top-left of the crop in the resized image
};
ResizeCrop resize_crop_for(const PreprocessConfig& cfg, int src_w, int src_h);

// PIL Image.resize((out_w, out_h), Image.BICUBIC) of an 8-bit image (any channel count).
io::Image pil_resize_bicubic(const io::Image& src, int out_w, int out_h);
// PIL Image.crop((x0, y0, x0 + w, y0 + h)): pixels outside the source are 0.
io::Image pil_crop(const io::Image& src, int x0, int y0, int w, int h);
// cv2.resize(float image, (out_w, out_h), interpolation=INTER_LINEAR) of the uint8 values
// promoted to float32; interleaved HWC float32 result.
std::vector<float> cv2_resize_linear_f32(const io::Image& src, int out_w, int out_h);

// The resampling tables behind the functions above, shared with the CUDA version.
struct BicubicCoeffs {
  int ksize = 0;            // taps per output (the widest support)
  std::vector<int> bounds;  // per output: first input index, tap count
  std::vector<int> k;       // per output: ksize fixed-point weights (22 fractional bits)
};
BicubicCoeffs pil_bicubic_coeffs(int in_size, int out_size);
// cv2's per-output source positions for INTER_LINEAR (half-pixel centres, clamped).
struct LinearTap {
  int i0, i1;
  float w0, w1;
};
std::vector<LinearTap> cv2_linear_taps(int in_size, int out_size);

// The whole chain for one camera: writes [3, out_h, out_w] normalised float32 to dst.
void preprocess_image(const PreprocessConfig& cfg, const io::Image& src, float* dst);

// K' = S @ A @ K with A the resize/crop matrix and S the stretch (spec §1.2 "net intrinsics").
Mat3d adjust_intrinsics(const PreprocessConfig& cfg, const Mat3d& K, int src_w, int src_h);

// Rigid transforms in nuScenes conventions: rotation quaternion (w, x, y, z) + translation.
Mat4d rigid_from_quaternion(const std::array<double, 4>& wxyz, const std::array<double, 3>& t);
Mat4d rigid_inverse(const Mat4d& m);  // [R t]^-1 = [R^T, -R^T t]
Mat4d matmul4(const Mat4d& a, const Mat4d& b);
Mat4f to_float(const Mat4d& m);

// ego -> image after preprocessing: [K' 0; 0 1] @ inv(sensor2ego). (The reference calls this
// lidar2img; its "ego_temporal" infos put it in the ego frame.)
Mat4d ego_to_image(const Mat3d& K_adjusted, const Mat4d& sensor2ego);

}  // namespace omnirt::pipeline
