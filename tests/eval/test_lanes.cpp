// OpenLane-V2 DET_l against spec/evaluation.md §3.2 (original OpenLane-V2 functions,
// similaritymeasures 42b44a9, scipy 1.10.1).
#include <gtest/gtest.h>

#include "eval/lanes.h"

namespace omnirt::eval {
namespace {

Lane lane(double x0, double y0, double dx, double dy, float conf = 1.0f) {
  Lane l;
  for (int i = 0; i <= 10; ++i)
    l.points.push_back({static_cast<float>(x0 + i * dx), static_cast<float>(y0 + i * dy), 0.f});
  l.confidence = conf;
  return l;
}

std::vector<LaneFrame> golden_frames() {
  LaneFrame f1;
  f1.token = "f1";
  f1.gts = {lane(0, 0, 3, 0), lane(0, 3.5, 3, 0), lane(-30, -3.5, 3, 0)};
  f1.preds = {lane(0, 0.4, 3, 0, 0.9f), lane(0, 5.0, 3, 0, 0.8f), lane(0, 0.2, 3, 0, 0.7f),
              lane(0, -3.5, -3, 0, 0.6f)};
  LaneFrame f2;
  f2.token = "f2";
  f2.gts = {lane(40, 0, 2, 0.5)};
  f2.preds = {lane(40, 2.5, 2, 0.5, 0.95f)};
  return {f1, f2};
}

TEST(LanesGolden, DistanceMatrices) {
  const auto frames = golden_frames();
  const auto d1 = lane_distance_matrix(frames[0].gts, frames[0].preds);
  const std::vector<std::vector<double>> want1 = {
      {0.4, 1024, 0.2, 1024}, {1024, 1.47375, 1024, 1024}, {1024, 1024, 1024, 29.475}};
  ASSERT_EQ(d1.size(), 3u);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j)
      EXPECT_NEAR(d1[i][j], want1[i][j], 1e-6) << i << "," << j;  // float32 lane points
  const auto d2 = lane_distance_matrix(frames[1].gts, frames[1].preds);
  EXPECT_NEAR(d2[0][0], 2.0, 1e-6);
  // The reversed lane: Chamfer 0 but Fréchet 29.475 after relaxation (order matters).
  EXPECT_NEAR(lane_chamfer_distance(frames[0].gts[2].points, frames[0].preds[3].points), 0.0, 1e-9);
  EXPECT_NEAR(lane_relaxation_factor(frames[1].gts[0].points), 0.8, 1e-12);
}

TEST(LanesGolden, ApAndDetL) {
  const LaneMetrics m = evaluate_lanes(golden_frames());
  // float32 results: compare exactly.
  EXPECT_EQ(static_cast<double>(m.ap[0]), 0.13636364042758942);
  EXPECT_EQ(static_cast<double>(m.ap[1]), 0.3636363744735718);
  EXPECT_EQ(static_cast<double>(m.ap[2]), 0.7272727489471436);
  EXPECT_EQ(static_cast<double>(m.det_l), 0.40909090638160706);
  EXPECT_EQ(m.num_gt, 4);
  EXPECT_EQ(m.num_pred, 5);
}

TEST(Lanes, FrechetIsTheDiscreteCouplingDistance) {
  // Two 3-point polylines: the coupling must pass (1,0)-(1,1), so the distance is 1, although
  // the Hausdorff-like pointwise minimum would be smaller elsewhere.
  std::vector<LanePoint> a = {{0, 0, 0}, {1, 0, 0}, {2, 0, 0}};
  std::vector<LanePoint> b = {{0, 0, 0}, {1, 1, 0}, {2, 0, 0}};
  EXPECT_DOUBLE_EQ(lane_frechet_distance(a, b), 1.0);
  // Reversal: the endpoints must be coupled to each other -> 2.
  std::vector<LanePoint> r = {{2, 0, 0}, {1, 0, 0}, {0, 0, 0}};
  EXPECT_DOUBLE_EQ(lane_frechet_distance(a, r), 2.0);
}

TEST(Lanes, EmptyCases) {
  // No GT and no predictions anywhere: AP = 1 by definition.
  LaneFrame empty;
  empty.token = "e";
  LaneMetrics m = evaluate_lanes({empty});
  EXPECT_EQ(m.ap[0], 1.f);
  EXPECT_EQ(m.det_l, 1.f);
  // Predictions but no GT: every prediction is a false positive -> 0.
  LaneFrame fp_only = empty;
  fp_only.preds = {lane(0, 0, 1, 0, 0.5f)};
  m = evaluate_lanes({fp_only});
  EXPECT_EQ(m.det_l, 0.f);
  // GT but no predictions -> 0.
  LaneFrame gt_only = empty;
  gt_only.gts = {lane(0, 0, 1, 0)};
  m = evaluate_lanes({gt_only});
  EXPECT_EQ(m.det_l, 0.f);
}

TEST(Lanes, OnlyTheNearestGtIsTried) {
  // Two GTs 1 m apart; the stronger prediction sits on g0, the weaker one is nearest to g0 too
  // (0.3 m) although g1 is within 0.7 m: it becomes an FP instead of matching g1.
  LaneFrame f;
  f.token = "f";
  f.gts = {lane(0, 0, 2, 0), lane(0, 1.0, 2, 0)};
  f.preds = {lane(0, 0, 2, 0, 0.9f), lane(0, 0.3, 2, 0, 0.8f)};
  const LaneMetrics m = evaluate_lanes({f});
  // tp = [1, 0], fp = [0, 1] -> recall 0.5, 0.5; precision 1, 0.5 -> 11-pt AP = 6/11.
  EXPECT_EQ(m.ap[0], 6.f / 11.f);
}

}  // namespace
}  // namespace omnirt::eval
