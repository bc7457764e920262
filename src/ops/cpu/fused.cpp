// Reference fused ViT ops: the unfused ops' definitions written as plain loops.
#include "ops/cpu/fused.h"

#include "ops/check.h"
#include "ops/cpu/activation.h"
#include "ops/cpu/norm.h"

namespace omnirt::ops::cpu {

void swiglu_layernorm(const Tensor& gate_up, const Tensor& weight, const Tensor& bias, float eps,
                      Tensor& out) {
  // By definition: the SwiGLU rows, then LayerNorm of them (in place on out).
  swiglu_concat(gate_up, out);
  layernorm(out, weight, bias, eps, out);
}

void qkv_rope_heads(const Tensor& qkv, const Tensor& qkv_bias, const Tensor& cos, const Tensor& sin,
                    int window, Tensor& out) {
  const int64_t gh = qkv.dim(1), gw = qkv.dim(2), e3 = qkv.dim(3);
  const int64_t e = e3 / 3;
  const int64_t batch = out.dim(1), heads = out.dim(2), seq = out.dim(3), d = out.dim(4);
  const int64_t wh = window > 0 ? window : gh, ww = window > 0 ? window : gw;
  const int64_t nwh = (gh + wh - 1) / wh, nww = (gw + ww - 1) / ww;
  const float* in = qkv.data<float>();
  const float* bias = qkv_bias.data<float>();
  const float* c = cos.data<float>();
  const float* s = sin.data<float>();
  float* o = out.data<float>();
  for (int64_t which = 0; which < 3; ++which)
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t img = b / (nwh * nww), wy = (b / nww) % nwh, wx = b % nww;
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t t = 0; t < seq; ++t) {
          const int64_t row = wy * wh + t / ww, col = wx * ww + t % ww;
          const int64_t feature = which * e + h * d;
          // A padded token's projection is the bias (its normalised input is zero).
          const float* src = (row < gh && col < gw)
                                 ? in + ((img * gh + row) * gw + col) * e3 + feature
                                 : bias + feature;
          float* dst = o + (((which * batch + b) * heads + h) * seq + t) * d;
          for (int64_t j = 0; j < d; j += 2) {
            if (which == 2) {  // v: no rotation
              dst[j] = src[j];
              dst[j + 1] = src[j + 1];
            } else {
              const float* ct = c + t * d;
              const float* st = s + t * d;
              dst[j] = src[j] * ct[j] - src[j + 1] * st[j];
              dst[j + 1] = src[j + 1] * ct[j + 1] + src[j] * st[j + 1];
            }
          }
        }
    }
}

}  // namespace omnirt::ops::cpu
