// OpenLane-V2 lane-centerline detection metric DET_l, as OmniDrive evaluates its lane head.
//
// A port of openlanev2/centerline/evaluation (distance.py pairwise/chamfer/frechet, evaluate.py
// _tpfp/_AP/_pr_curve) restricted to the lane part: relaxed Chamfer pre-filter (< 3 m), relaxed
// discrete Fréchet distance, per-frame greedy matching against the *nearest* GT only, pooled
// 11-point AP in float32, averaged over the thresholds 1, 2, 3 m. See spec/evaluation.md §3.
#pragma once

#include <array>
#include <string>
#include <vector>

namespace omnirt::eval {

// Lane points are float32 in OpenLane-V2 (GT pkl and model output alike).
using LanePoint = std::array<float, 3>;

struct Lane {
  std::vector<LanePoint> points;
  float confidence = 1.0f;  // predictions only
};

struct LaneFrame {
  std::string token;
  std::vector<Lane> gts, preds;
};

// distance.py: chamfer_distance(gt, pred) and frechet_distance(gt, pred), unrelaxed.
double lane_chamfer_distance(const std::vector<LanePoint>& gt, const std::vector<LanePoint>& pred);
double lane_frechet_distance(const std::vector<LanePoint>& gt, const std::vector<LanePoint>& pred);
// max(0.5, 1 - 0.005 * min_p |p|): the per-GT relaxation factor.
double lane_relaxation_factor(const std::vector<LanePoint>& gt);

// GT x pred matrix: relaxed Fréchet where the relaxed Chamfer is < 3, else 1024.
std::vector<std::vector<double>> lane_distance_matrix(const std::vector<Lane>& gts,
                                                      const std::vector<Lane>& preds);

struct LaneMetrics {
  std::array<float, 3> ap{};  // at 1, 2, 3 m
  float det_l = 0;            // mean of the three (float32, as numpy does it)
  int num_gt = 0, num_pred = 0, num_frames = 0;
};

// Confidence ties: the original sorts with numpy's unstable quicksort; here ties keep their
// input order (frame order, then lane order), which is what numpy does for small arrays.
LaneMetrics evaluate_lanes(const std::vector<LaneFrame>& frames);

}  // namespace omnirt::eval
