// CPU attention: one query row at a time (scores for that row, softmax, weighted sum of V);
// the full Sq x Sk score matrix is never formed.
#include "ops/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace omnirt::ops::cpu {

void attention(const AttentionDims& dims, const Tensor& q, const Tensor& k, const Tensor& v,
               Tensor& out, const Tensor& mask) {
  const int64_t group = dims.heads_q / dims.heads_kv;  // query heads per kv head
  const int64_t d = dims.head_dim;
  const uint8_t* mask_data = mask.defined() ? mask.data<uint8_t>() : nullptr;
  const auto& qs = q.strides();
  const auto& ks = k.strides();
  const auto& vs = v.strides();
  const auto& os = out.strides();
  const float* qd = q.data<float>();
  const float* kd = k.data<float>();
  const float* vd = v.data<float>();
  float* od = out.data<float>();
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  std::vector<float> scores(dims.seq_k);
  std::vector<float> acc(d);

  for (int64_t b = 0; b < dims.batch; ++b) {
    for (int64_t h = 0; h < dims.heads_q; ++h) {
      const int64_t hk = h / group;
      const float* kbase = kd + b * ks[0] + hk * ks[1];
      const float* vbase = vd + b * vs[0] + hk * vs[1];
      for (int64_t i = 0; i < dims.seq_q; ++i) {
        const float* qrow = qd + b * qs[0] + h * qs[1] + i * qs[2];
        float* orow = od + b * os[0] + h * os[1] + i * os[2];
        // Keys after `last_visible` are hidden by causality (aligned to the end of the keys).
        const int64_t last_visible = dims.causal ? i + (dims.seq_k - dims.seq_q) : dims.seq_k - 1;
        float row_max = kNegInf;
        for (int64_t j = 0; j < dims.seq_k; ++j) {
          const bool blocked =
              j > last_visible || (mask_data && mask_data[i * dims.seq_k + j] != 0);
          if (blocked) {
            scores[j] = kNegInf;
            continue;
          }
          const float* krow = kbase + j * ks[2];
          float dot = 0.f;
          for (int64_t e = 0; e < d; ++e) dot += qrow[e] * krow[e];
          scores[j] = dot * dims.scale;
          row_max = std::max(row_max, scores[j]);
        }
        if (row_max == kNegInf) {
          // Every key blocked: softmax is undefined; NaN like PyTorch (documented).
          for (int64_t e = 0; e < d; ++e) orow[e] = std::numeric_limits<float>::quiet_NaN();
          continue;
        }
        float sum = 0.f;
        std::fill(acc.begin(), acc.end(), 0.f);
        for (int64_t j = 0; j < dims.seq_k; ++j) {
          if (scores[j] == kNegInf) continue;
          const float p = std::exp(scores[j] - row_max);
          sum += p;
          const float* vrow = vbase + j * vs[2];
          for (int64_t e = 0; e < d; ++e) acc[e] += p * vrow[e];
        }
        for (int64_t e = 0; e < d; ++e) orow[e] = acc[e] / sum;
      }
    }
  }
}

}  // namespace omnirt::ops::cpu
