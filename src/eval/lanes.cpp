#include "eval/lanes.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/error.h"
#include "eval/numpy_compat.h"

namespace omnirt::eval {
namespace {

constexpr double kChamferGate = 3.0;  // THRESHOLDS_FRECHET[-1]
constexpr double kUnmatched = 1024.0;
constexpr std::array<double, 3> kThresholds = {1.0, 2.0, 3.0};
const float kEpsF32 = std::numeric_limits<float>::epsilon();

// scipy cdist 'euclidean' on float32 input: converted to float64, sequential sum of squares.
double point_distance(const LanePoint& a, const LanePoint& b) {
  double s = 0;
  for (int k = 0; k < 3; ++k) {
    const double d = static_cast<double>(a[k]) - static_cast<double>(b[k]);
    s += d * d;
  }
  return std::sqrt(s);
}

// float32 sum over a small array the way numpy reduces it (sequential below 8 values, pairwise
// above; only the small case is needed here but keep it exact for any n).
float sum_f32(const std::vector<float>& a) {
  const size_t n = a.size();
  if (n < 8) {
    float r = 0.f;
    for (float v : a) r += v;
    return r;
  }
  // numpy's pairwise sum in float32 (blocks of up to 128 with 8 accumulators).
  std::vector<float> r(a.begin(), a.begin() + 8);
  size_t i = 8;
  OMNIRT_CHECK(n <= 128, "sum_f32: only small arrays are supported");
  for (; i < n - (n % 8); i += 8)
    for (int j = 0; j < 8; ++j) r[j] += a[i + j];
  float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
  for (; i < n; ++i) res += a[i];
  return res;
}

}  // namespace

double lane_chamfer_distance(const std::vector<LanePoint>& gt_in,
                             const std::vector<LanePoint>& pred) {
  OMNIRT_CHECK(!gt_in.empty() && !pred.empty(), "chamfer distance: empty lane");
  std::vector<LanePoint> gt = gt_in;
  if (gt.size() > 1 && gt.front() == gt.back()) gt.pop_back();  // closed polyline
  std::vector<double> pred_min(pred.size(), std::numeric_limits<double>::infinity());
  std::vector<double> gt_min(gt.size(), std::numeric_limits<double>::infinity());
  for (size_t i = 0; i < pred.size(); ++i)
    for (size_t j = 0; j < gt.size(); ++j) {
      const double d = point_distance(pred[i], gt[j]);
      pred_min[i] = std::min(pred_min[i], d);
      gt_min[j] = std::min(gt_min[j], d);
    }
  return (np::mean(pred_min) + np::mean(gt_min)) / 2;
}

double lane_frechet_distance(const std::vector<LanePoint>& gt, const std::vector<LanePoint>& pred) {
  OMNIRT_CHECK(!gt.empty() && !pred.empty(), "frechet distance: empty lane");
  // similaritymeasures.frechet_dist(pred, gt): rows = pred points, cols = gt points.
  const size_t n = pred.size(), m = gt.size();
  std::vector<double> ca(n * m);
  auto c = [&](size_t i, size_t j) { return point_distance(pred[i], gt[j]); };
  ca[0] = c(0, 0);
  for (size_t i = 1; i < n; ++i) ca[i * m] = std::max(ca[(i - 1) * m], c(i, 0));
  for (size_t j = 1; j < m; ++j) ca[j] = std::max(ca[j - 1], c(0, j));
  for (size_t i = 1; i < n; ++i)
    for (size_t j = 1; j < m; ++j)
      ca[i * m + j] = std::max(
          std::min({ca[(i - 1) * m + j], ca[i * m + j - 1], ca[(i - 1) * m + j - 1]}), c(i, j));
  return ca[n * m - 1];
}

double lane_relaxation_factor(const std::vector<LanePoint>& gt) {
  // scipy euclidean(p, 0) on a float32 point: float32 dot product and square root.
  float ego = std::numeric_limits<float>::infinity();
  for (const auto& p : gt) {
    const float s = p[0] * p[0] + p[1] * p[1] + p[2] * p[2];
    ego = std::min(ego, std::sqrt(s));
  }
  return std::max(0.5, 1 - 5e-3 * static_cast<double>(ego));
}

std::vector<std::vector<double>> lane_distance_matrix(const std::vector<Lane>& gts,
                                                      const std::vector<Lane>& preds) {
  std::vector<std::vector<double>> out(gts.size(), std::vector<double>(preds.size(), kUnmatched));
  for (size_t i = 0; i < gts.size(); ++i) {
    const double relax = lane_relaxation_factor(gts[i].points);
    for (size_t j = 0; j < preds.size(); ++j) {
      const double chamfer = lane_chamfer_distance(gts[i].points, preds[j].points) * relax;
      if (chamfer < kChamferGate)
        out[i][j] = lane_frechet_distance(gts[i].points, preds[j].points) * relax;
    }
  }
  return out;
}

namespace {

// _tpfp for one frame: tp/fp flags per prediction (in prediction order).
void frame_tpfp(const std::vector<std::vector<double>>& dist, size_t num_gts,
                const std::vector<Lane>& preds, double threshold, std::vector<float>& tp,
                std::vector<float>& fp) {
  const size_t np_ = preds.size();
  tp.assign(np_, 0.f);
  fp.assign(np_, 0.f);
  if (num_gts == 0) {
    std::fill(fp.begin(), fp.end(), 1.f);
    return;
  }
  if (np_ == 0) return;
  std::vector<double> dmin(np_, std::numeric_limits<double>::infinity());
  std::vector<size_t> didx(np_, 0);
  for (size_t j = 0; j < np_; ++j)
    for (size_t i = 0; i < num_gts; ++i)
      if (dist[i][j] < dmin[j]) {  // argmin: first index on ties
        dmin[j] = dist[i][j];
        didx[j] = i;
      }
  std::vector<size_t> order(np_);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return -preds[a].confidence < -preds[b].confidence;
  });
  std::vector<bool> covered(num_gts, false);
  for (size_t j : order) {
    if (dmin[j] < threshold && !covered[didx[j]]) {
      covered[didx[j]] = true;
      tp[j] = 1.f;
    } else {
      fp[j] = 1.f;
    }
  }
}

// _pr_curve: 11-point interpolated AP accumulated in float32.
float pr_curve_11(const std::vector<float>& recalls, const std::vector<float>& precisions) {
  float ap = 0.f;
  for (int t = 0; t <= 10; ++t) {
    // np.arange(0, 1.001, 0.1) values, compared against the float32 recalls in float32 (numpy
    // 1.24 value-based casting of the Python scalar).
    const float thr = static_cast<float>(static_cast<double>(t) * 0.1);
    float best = 0.f;
    bool any = false;
    for (size_t k = 0; k < recalls.size(); ++k)
      if (recalls[k] >= thr) {
        best = any ? std::max(best, precisions[k]) : precisions[k];
        any = true;
      }
    ap += any ? best : 0.f;
  }
  return ap / 11.f;
}

}  // namespace

LaneMetrics evaluate_lanes(const std::vector<LaneFrame>& frames) {
  LaneMetrics m;
  m.num_frames = static_cast<int>(frames.size());
  std::vector<std::vector<std::vector<double>>> dists;
  dists.reserve(frames.size());
  for (const auto& f : frames) {
    dists.push_back(lane_distance_matrix(f.gts, f.preds));
    m.num_gt += static_cast<int>(f.gts.size());
    m.num_pred += static_cast<int>(f.preds.size());
  }
  for (size_t t = 0; t < kThresholds.size(); ++t) {
    std::vector<float> tps, fps, confs;
    for (size_t fi = 0; fi < frames.size(); ++fi) {
      std::vector<float> tp, fp;
      frame_tpfp(dists[fi], frames[fi].gts.size(), frames[fi].preds, kThresholds[t], tp, fp);
      tps.insert(tps.end(), tp.begin(), tp.end());
      fps.insert(fps.end(), fp.begin(), fp.end());
      for (const auto& p : frames[fi].preds) confs.push_back(p.confidence);
    }
    if (tps.empty() && m.num_gt == 0) {
      m.ap[t] = 1.f;
      continue;
    }
    std::vector<size_t> order(confs.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return -confs[a] < -confs[b]; });
    std::vector<float> recalls(order.size()), precisions(order.size());
    float tp_c = 0.f, fp_c = 0.f;
    // np.maximum(num_gts, eps) is a float64 scalar that numpy casts to float32 for the division.
    const float denom_gt = std::max(static_cast<float>(m.num_gt), kEpsF32);
    for (size_t k = 0; k < order.size(); ++k) {
      tp_c += tps[order[k]];
      fp_c += fps[order[k]];
      recalls[k] = tp_c / denom_gt;
      precisions[k] = tp_c / std::max(tp_c + fp_c, kEpsF32);
    }
    m.ap[t] = pr_curve_11(recalls, precisions);
  }
  m.det_l = sum_f32(std::vector<float>(m.ap.begin(), m.ap.end())) / 3.f;
  return m;
}

}  // namespace omnirt::eval
