#include "pipeline/preprocess.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace omnirt::pipeline {

PreprocessConfig PreprocessConfig::for_network(int img_h, int img_w) {
  OMNIRT_CHECK(img_h > 0 && img_w > 0 && img_h % 2 == 0, "network input ", img_h, "x", img_w,
               ": expected a positive, even height");
  PreprocessConfig cfg;
  cfg.final_h = img_h / 2;
  cfg.final_w = img_w;
  cfg.out_h = img_h;
  cfg.out_w = img_w;
  return cfg;
}

ResizeCrop resize_crop_for(const PreprocessConfig& cfg, int src_w, int src_h) {
  OMNIRT_CHECK(src_w > 0 && src_h > 0, "image size ", src_w, "x", src_h, " is empty");
  // ResizeCropFlipRotImage._sample_augmentation, test branch (bot_pct_lim = (0, 0)).
  ResizeCrop rc;
  rc.resize = std::max(double(cfg.final_h) / src_h, double(cfg.final_w) / src_w);
  rc.resized_w = int(src_w * rc.resize);
  rc.resized_h = int(src_h * rc.resize);
  rc.crop_y = rc.resized_h - cfg.final_h;  // int((1 - 0) * newH) - fH
  rc.crop_x = int(std::max(0, rc.resized_w - cfg.final_w) / 2.0);
  return rc;
}

namespace {

// Pillow's Resample.c, 8-bit path.
constexpr int kPrecisionBits = 32 - 8 - 2;

double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

}  // namespace

// precompute_coeffs + normalize_coeffs_8bpc for the whole input range (no box).
BicubicCoeffs pil_bicubic_coeffs(int in_size, int out_size) {
  constexpr double kSupport = 2.0;  // bicubic
  const double scale = double(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = kSupport * filterscale;
  BicubicCoeffs c;
  c.ksize = int(std::ceil(support)) * 2 + 1;
  c.bounds.resize(size_t(out_size) * 2);
  c.k.assign(size_t(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = int(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = int(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      w[x] = bicubic_filter((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double v = ww != 0.0 ? w[x] / ww : w[x];
      const double scaled = v * (1 << kPrecisionBits);
      c.k[size_t(xx) * c.ksize + x] = v < 0 ? int(-0.5 + scaled) : int(0.5 + scaled);
    }
    c.bounds[size_t(xx) * 2] = xmin;
    c.bounds[size_t(xx) * 2 + 1] = xmax;
  }
  return c;
}

namespace {

inline uint8_t clip8(int v) {
  if (v >= (1 << kPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return uint8_t(v >> kPrecisionBits);
}

io::Image resample_horizontal(const io::Image& src, int out_w) {
  const BicubicCoeffs c = pil_bicubic_coeffs(src.width, out_w);
  const int ch = src.channels;
  io::Image out(out_w, src.height, ch);
  for (int y = 0; y < src.height; ++y) {
    const uint8_t* in = src.row(y);
    uint8_t* o = out.row(y);
    for (int xx = 0; xx < out_w; ++xx) {
      const int xmin = c.bounds[size_t(xx) * 2], n = c.bounds[size_t(xx) * 2 + 1];
      const int* k = &c.k[size_t(xx) * c.ksize];
      for (int ci = 0; ci < ch; ++ci) {
        int ss = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < n; ++x) ss += int(in[(x + xmin) * ch + ci]) * k[x];
        o[xx * ch + ci] = clip8(ss);
      }
    }
  }
  return out;
}

io::Image resample_vertical(const io::Image& src, int out_h) {
  const BicubicCoeffs c = pil_bicubic_coeffs(src.height, out_h);
  const int ch = src.channels;
  const int row_len = src.width * ch;
  io::Image out(src.width, out_h, ch);
  std::vector<int> acc(row_len);
  for (int yy = 0; yy < out_h; ++yy) {
    const int ymin = c.bounds[size_t(yy) * 2], n = c.bounds[size_t(yy) * 2 + 1];
    const int* k = &c.k[size_t(yy) * c.ksize];
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    for (int y = 0; y < n; ++y) {
      const uint8_t* in = src.row(ymin + y);
      const int w = k[y];
      for (int i = 0; i < row_len; ++i) acc[i] += int(in[i]) * w;
    }
    uint8_t* o = out.row(yy);
    for (int i = 0; i < row_len; ++i) o[i] = clip8(acc[i]);
  }
  return out;
}

}  // namespace

std::vector<LinearTap> cv2_linear_taps(int in_size, int out_size) {
  const double inv_scale = double(out_size) / in_size;
  const double scale = 1.0 / inv_scale;
  std::vector<LinearTap> taps(out_size);
  for (int d = 0; d < out_size; ++d) {
    float f = float((d + 0.5) * scale - 0.5);
    int s = int(std::floor(f));
    f -= s;
    if (s < 0) {
      f = 0;
      s = 0;
    }
    if (s >= in_size - 1) {
      f = 0;
      s = in_size - 1;
    }
    taps[d] = {s, std::min(s + 1, in_size - 1), 1.f - f, f};
  }
  return taps;
}

io::Image pil_resize_bicubic(const io::Image& src, int out_w, int out_h) {
  OMNIRT_CHECK(src.width > 0 && src.height > 0 && out_w > 0 && out_h > 0, "resize ", src.width,
               "x", src.height, " -> ", out_w, "x", out_h, ": empty size");
  // ImagingResampleInner: horizontal pass first (when the width changes), then vertical.
  io::Image tmp = out_w != src.width ? resample_horizontal(src, out_w) : src;
  return out_h != tmp.height ? resample_vertical(tmp, out_h) : tmp;
}

io::Image pil_crop(const io::Image& src, int x0, int y0, int w, int h) {
  io::Image out(w, h, src.channels);  // zero filled
  for (int y = 0; y < h; ++y) {
    const int sy = y0 + y;
    if (sy < 0 || sy >= src.height) continue;
    for (int x = 0; x < w; ++x) {
      const int sx = x0 + x;
      if (sx < 0 || sx >= src.width) continue;
      for (int c = 0; c < src.channels; ++c) out.at(x, y, c) = src.at(sx, sy, c);
    }
  }
  return out;
}

std::vector<float> cv2_resize_linear_f32(const io::Image& src, int out_w, int out_h) {
  const int ch = src.channels;
  const auto tx = cv2_linear_taps(src.width, out_w);
  const auto ty = cv2_linear_taps(src.height, out_h);
  // Horizontal pass per source row (float), then the vertical blend, as cv2's resizeGeneric.
  std::vector<float> hrow(size_t(src.height) * out_w * ch);
  for (int y = 0; y < src.height; ++y) {
    const uint8_t* in = src.row(y);
    float* o = &hrow[size_t(y) * out_w * ch];
    for (int x = 0; x < out_w; ++x)
      for (int c = 0; c < ch; ++c)
        o[x * ch + c] = float(in[tx[x].i0 * ch + c]) * tx[x].w0 + float(in[tx[x].i1 * ch + c]) * tx[x].w1;
  }
  std::vector<float> out(size_t(out_h) * out_w * ch);
  const size_t row_len = size_t(out_w) * ch;
  for (int y = 0; y < out_h; ++y) {
    const float* r0 = &hrow[size_t(ty[y].i0) * row_len];
    const float* r1 = &hrow[size_t(ty[y].i1) * row_len];
    float* o = &out[size_t(y) * row_len];
    for (size_t i = 0; i < row_len; ++i) o[i] = r0[i] * ty[y].w0 + r1[i] * ty[y].w1;
  }
  return out;
}

void preprocess_image(const PreprocessConfig& cfg, const io::Image& src, float* dst) {
  OMNIRT_CHECK(src.channels == 3, "preprocess: expected an RGB image, got ", src.channels,
               " channels");
  const ResizeCrop rc = resize_crop_for(cfg, src.width, src.height);
  const io::Image resized = pil_resize_bicubic(src, rc.resized_w, rc.resized_h);
  const io::Image cropped = pil_crop(resized, rc.crop_x, rc.crop_y, cfg.final_w, cfg.final_h);
  const std::vector<float> stretched = cv2_resize_linear_f32(cropped, cfg.out_w, cfg.out_h);
  const size_t plane = size_t(cfg.out_h) * cfg.out_w;
  for (int c = 0; c < 3; ++c) {
    const float mean = cfg.mean[c];
    const float inv_std = float(1.0 / double(cfg.std[c]));  // mmcv multiplies by 1/std
    float* o = dst + c * plane;
    for (size_t p = 0; p < plane; ++p) o[p] = (stretched[p * 3 + c] - mean) * inv_std;
  }
}

Mat3d adjust_intrinsics(const PreprocessConfig& cfg, const Mat3d& K, int src_w, int src_h) {
  const ResizeCrop rc = resize_crop_for(cfg, src_w, src_h);
  // ida_mat: scale by resize, translate by -crop (no flip, no rotation).
  const Mat3d A{rc.resize, 0, -double(rc.crop_x), 0, rc.resize, -double(rc.crop_y), 0, 0, 1};
  // ResizeMultiview3D: rows 0/1 scaled by new/old width/height.
  const double sx = double(cfg.out_w) / cfg.final_w, sy = double(cfg.out_h) / cfg.final_h;
  Mat3d AK{};
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      double s = 0;
      for (int k = 0; k < 3; ++k) s += A[i * 3 + k] * K[k * 3 + j];
      AK[i * 3 + j] = s;
    }
  for (int j = 0; j < 3; ++j) {
    AK[j] *= sx;
    AK[3 + j] *= sy;
  }
  return AK;
}

Mat4d rigid_from_quaternion(const std::array<double, 4>& q, const std::array<double, 3>& t) {
  const double n = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  OMNIRT_CHECK(std::isfinite(n) && n > 1e-12, "quaternion has zero or non-finite norm");
  // pyquaternion normalises before rotation_matrix.
  const double w = q[0] / n, x = q[1] / n, y = q[2] / n, z = q[3] / n;
  return Mat4d{1 - 2 * (y * y + z * z), 2 * (x * y - w * z),     2 * (x * z + w * y),     t[0],
               2 * (x * y + w * z),     1 - 2 * (x * x + z * z), 2 * (y * z - w * x),     t[1],
               2 * (x * z - w * y),     2 * (y * z + w * x),     1 - 2 * (x * x + y * y), t[2],
               0,                       0,                       0,                       1};
}

Mat4d rigid_inverse(const Mat4d& m) {
  Mat4d r{};
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) r[i * 4 + j] = m[j * 4 + i];
    r[i * 4 + 3] = -(m[0 * 4 + i] * m[3] + m[1 * 4 + i] * m[7] + m[2 * 4 + i] * m[11]);
  }
  r[15] = 1;
  return r;
}

Mat4d matmul4(const Mat4d& a, const Mat4d& b) {
  Mat4d r{};
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      double s = 0;
      for (int k = 0; k < 4; ++k) s += a[i * 4 + k] * b[k * 4 + j];
      r[i * 4 + j] = s;
    }
  return r;
}

Mat4f to_float(const Mat4d& m) {
  Mat4f r{};
  for (int i = 0; i < 16; ++i) r[i] = float(m[i]);
  return r;
}

Mat4d ego_to_image(const Mat3d& K, const Mat4d& sensor2ego) {
  Mat4d K4{K[0], K[1], K[2], 0, K[3], K[4], K[5], 0, K[6], K[7], K[8], 0, 0, 0, 0, 1};
  return matmul4(K4, rigid_inverse(sensor2ego));
}

}  // namespace omnirt::pipeline
