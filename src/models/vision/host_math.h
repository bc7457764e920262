// Small host-side functions of the heads, written to follow the PyTorch reference's arithmetic
// (dtype by dtype): positional encodings, inverse sigmoid, 4x4 rigid transforms.
// They run on a few thousand values per frame, so they stay on the CPU in every backend.
#pragma once

#include <array>
#include <cstdint>
#include <cmath>
#include <vector>

#include "core/tensor.h"
#include "models/vision/vision_config.h"

namespace omnirt::vision::host {

using Mat4 = std::array<float, 16>;  // row-major

Mat4 identity4();
Mat4 matmul4(const Mat4& a, const Mat4& b);  // float32, like torch's 4x4 @ 4x4
// (m @ [p; 1])[:3] in float32.
void transform_point(const Mat4& m, const float* p, float* out);
// The same products accumulated in float64 and rounded once: for the memory alignment, where the
// result (a relative pose, a point near the ego car) is the small difference of terms of the size
// of the global frame (~1e3 m). float32 accumulation loses ~1e-4 m there, which the temporal
// encodings (NeRF frequencies up to 32) turn into 3e-3 changes (issue #5, frame >= 1).
Mat4 matmul4_accurate(const Mat4& a, const Mat4& b);
void transform_point_accurate(const Mat4& m, const float* p, float* out);
// float32 4x4 inverse (Gauss-Jordan with partial pivoting); throws if singular. `what` names it.
Mat4 inverse4(const Mat4& m, const char* what);

// mmdet's inverse_sigmoid: clamp to [0,1], log(max(x,eps) / max(1-x,eps)), float32.
float inverse_sigmoid(float x, float eps = 1e-5f);
inline float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }

// NeRF PE of `in` (n values) into out (12*n): [sin(f x) all dims, cos(f x) all dims] for
// f = 1, 2, 4, 8, 16, 32 (float32).
void nerf_pe(const float* in, int n, float* out);

// pos2posemb1d of one scalar into out[num_feats]: out[2m] = sin(2*pi*p / T^(2m/F)),
// out[2m+1] = cos(...). The position is double (the reference keeps memory timestamps in
// float64); dim_t is float32 as in the original; the result is rounded to float32.
void pos2posemb1d(double p, int num_feats, float* out);
// pos2posemb1d's float32 frequency table: dim_t[k] = 10000^(2 (k / 2) / num_feats).
std::vector<float> posemb_dim_t(int num_feats);

// The 3-D position-embedding MLP input (spec §2.1): for every camera, patch centre and depth
// bin, the frustum point mapped to the ego frame by img2lidar, normalised by the position range
// and passed through inverse_sigmoid. F32 [num_cams * gh * gw, 3 * depth_num] on the host.
Tensor position_embedding_input(const VisionConfig& cfg, const std::vector<float>& coords_d,
                                const std::vector<Mat4>& img2lidars);

// The regression branches' outputs mapped to ego coordinates (reference: heads.py, the
// "outputs_coord" lines). reg and out are [rows, cols] row-major; row r belongs to query
// q = r % queries (rows stack the layers). For column k < ref_cols:
//   out[r, k] = sigmoid(reg[r, k] + ref_inv[q * ref_cols + k]) * (pc[k%3 + 3] - pc[k%3]) + pc[k%3]
// (ref_inv: the reference points, already inverse-sigmoided); other columns are copied.
void regression_to_ego(const float* reg, int64_t rows, int cols, const float* ref_inv,
                       int64_t queries, int ref_cols, const std::array<float, 6>& pc, float* out);

// Indices of the k largest scores, largest first; equal scores in increasing index order (the
// order of a stable descending sort, which is what the reference's torch.topk gives on ties
// in practice). k is clamped to the number of scores.
std::vector<int> topk_indices(const std::vector<float>& score, int k);

}  // namespace omnirt::vision::host
