#include "models/vision/host_math.h"

#include <cmath>

#include "core/error.h"

namespace omnirt::vision::host {

Mat4 identity4() {
  Mat4 m{};
  m[0] = m[5] = m[10] = m[15] = 1.f;
  return m;
}

Mat4 matmul4(const Mat4& a, const Mat4& b) {
  Mat4 c{};
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      float s = 0.f;
      for (int k = 0; k < 4; ++k) s += a[i * 4 + k] * b[k * 4 + j];
      c[i * 4 + j] = s;
    }
  return c;
}

void transform_point(const Mat4& m, const float* p, float* out) {
  for (int i = 0; i < 3; ++i)
    out[i] = m[i * 4 + 0] * p[0] + m[i * 4 + 1] * p[1] + m[i * 4 + 2] * p[2] + m[i * 4 + 3];
}

Mat4 inverse4(const Mat4& m, const char* what) {
  double a[4][8];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 8; ++j) a[i][j] = j < 4 ? m[i * 4 + j] : (j - 4 == i ? 1.0 : 0.0);
  double scale = 0;
  for (float v : m) scale = std::max(scale, std::fabs(double(v)));
  for (int col = 0; col < 4; ++col) {
    int piv = col;
    for (int r = col + 1; r < 4; ++r)
      if (std::fabs(a[r][col]) > std::fabs(a[piv][col])) piv = r;
    OMNIRT_CHECK(std::fabs(a[piv][col]) > 1e-12 * std::max(scale, 1.0), what,
                 ": the 4x4 matrix is not invertible");
    if (piv != col)
      for (int j = 0; j < 8; ++j) std::swap(a[piv][j], a[col][j]);
    const double d = a[col][col];
    for (int j = 0; j < 8; ++j) a[col][j] /= d;
    for (int r = 0; r < 4; ++r)
      if (r != col) {
        const double f = a[r][col];
        for (int j = 0; j < 8; ++j) a[r][j] -= f * a[col][j];
      }
  }
  Mat4 out;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) out[i * 4 + j] = static_cast<float>(a[i][j + 4]);
  return out;
}

float inverse_sigmoid(float x, float eps) {
  x = std::min(std::max(x, 0.f), 1.f);
  const float x1 = std::max(x, eps), x2 = std::max(1.f - x, eps);
  return std::log(x1 / x2);
}

void nerf_pe(const float* in, int n, float* out) {
  for (int f = 0; f < 6; ++f) {
    const float freq = static_cast<float>(1 << f);
    for (int i = 0; i < n; ++i) out[(2 * f) * n + i] = std::sin(in[i] * freq);
    for (int i = 0; i < n; ++i) out[(2 * f + 1) * n + i] = std::cos(in[i] * freq);
  }
}

void pos2posemb1d(double p, int num_feats, float* out) {
  const double scaled = p * (2 * M_PI);
  for (int k = 0; k < num_feats; ++k) {
    const float expo = static_cast<float>(2 * (k / 2)) / static_cast<float>(num_feats);
    const float dim_t = std::pow(10000.f, expo);
    const double v = scaled / static_cast<double>(dim_t);
    out[k] = static_cast<float>(k % 2 == 0 ? std::sin(v) : std::cos(v));
  }
}

}  // namespace omnirt::vision::host
