// nuScenes detection metrics against the golden values of spec/evaluation.md §1.10, which were
// produced by the original devkit code (numpy 1.24.2). Tolerance |Δ| <= 1e-12 as the spec asks.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "eval/detection.h"
#include "eval/numpy_compat.h"

namespace omnirt::eval {
namespace {

constexpr double kTol = 1e-12;
const double kPi = std::acos(-1.0);  // == math.pi
const double kNaN = std::nan("");

DetectionBox make_box(const std::string& name, std::array<double, 3> t, std::array<double, 3> s,
                      double yaw, std::array<double, 2> v, const std::string& attr, double score) {
  DetectionBox b;
  b.detection_name = name;
  b.translation = t;
  b.size = s;
  b.rotation = yaw_to_quaternion(yaw);
  b.velocity = v;
  b.attribute_name = attr;
  b.detection_score = score;
  return b;
}

DetectionBox car(double x, double y, double score = -1.0, std::array<double, 3> size = {1, 1, 1}) {
  // The devkit test helper's defaults: rot (0,0,0,0), vel (0,0), attr vehicle.parked.
  DetectionBox b;
  b.detection_name = "car";
  b.translation = {x, y, 1};
  b.size = size;
  b.rotation = {0, 0, 0, 0};
  b.velocity = {0, 0};
  b.attribute_name = "vehicle.parked";
  b.detection_score = score;
  return b;
}

struct ApCase {
  std::vector<DetectionBox> gt, pred;
  double ap;
  int max_recall_ind;
};

TEST(DetectionGolden, ApCasesA1toA6) {
  const DetectionBox c1 = car(1, 1), c2 = car(3, 3);
  auto scored = [](DetectionBox b, double s) {
    b.detection_score = s;
    return b;
  };
  const std::vector<ApCase> cases = {
      {{c1}, {scored(c1, 1.0)}, 1.0000000000000004, 100},
      {{c1, c2}, {scored(c1, 1.0)}, 0.4444444444444445, 50},
      {{c1}, {scored(c1, 1.0), scored(c2, 0.7)}, 0.9938271604938275, 100},
      {{c2}, {scored(c1, 1.0), scored(c2, 0.7)}, 0.19999999999999998, 100},
      {{}, {scored(c1, 1.0)}, 0.0, 0},
      {{c1}, {}, 0.0, 0},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case A" + std::to_string(i + 1));
    EvalBoxes gt, pred;
    gt.add_sample("s");
    pred.add_sample("s");
    for (const auto& b : cases[i].gt) gt.add("s", b);
    for (const auto& b : cases[i].pred) pred.add("s", b);
    const MetricData md = accumulate(gt, pred, "car", 2.0);
    EXPECT_NEAR(calc_ap(md, 0.1, 0.1), cases[i].ap, kTol);
    EXPECT_EQ(md.max_recall_ind(), cases[i].max_recall_ind);
  }
}

TEST(DetectionGolden, ApA3UsesLastOfRepeatedRecall) {
  // TP then FP with one GT: rec = [1, 1], prec = [1, 0.5]; np.interp takes the last -> 0.5.
  EvalBoxes gt, pred;
  gt.add("s", car(1, 1));
  DetectionBox p1 = car(1, 1, 1.0), p2 = car(3, 3, 0.7);
  pred.add("s", p1);
  pred.add("s", p2);
  const MetricData md = accumulate(gt, pred, "car", 2.0);
  EXPECT_EQ(md.precision[100], 0.5);
  EXPECT_EQ(md.precision[99], 1.0);
}

TEST(DetectionGolden, TransErrT1T2) {
  const DetectionBox gt1 = car(1, 1), gt2 = car(10, 10, -1, {2, 2, 2}),
                     gt3 = car(20, 20, -1, {2, 4, 2});
  DetectionBox p1 = gt1;
  p1.detection_score = 1.0;
  const DetectionBox p2 = car(11, 10, 0.9, {2, 2, 2}), p4 = car(20, 20, 0.7, {2, 4, 2});
  {
    EvalBoxes gt, pred;
    gt.add("s", gt1);
    gt.add("s", gt2);
    pred.add("s", p1);
    pred.add("s", p2);
    const MetricData md = accumulate(gt, pred, "car", 2.0);
    EXPECT_NEAR(calc_tp(md, 0.1, TpMetric::kTrans), 0.14166666666666672, kTol);
  }
  {
    EvalBoxes gt, pred;
    gt.add("s", gt1);
    gt.add("s", gt2);
    gt.add("s", gt3);
    pred.add("s", p1);
    pred.add("s", p2);
    pred.add("s", p4);
    const MetricData md = accumulate(gt, pred, "car", 2.0);
    EXPECT_NEAR(calc_tp(md, 0.1, TpMetric::kTrans), 0.2487592592592593, kTol);
  }
}

TEST(DetectionGolden, Helpers) {
  EXPECT_NEAR(angle_diff(0.1, 2 * kPi - 0.1, 2 * kPi), 0.1999999999999993, kTol);
  EXPECT_NEAR(angle_diff(0.3, 0.3 + kPi, kPi), 0.0, kTol);
  EXPECT_NEAR(angle_diff(-3.0, 3.0, 2 * kPi), 0.28318530717958623, kTol);
  const auto cm = cummean({kNaN, 3, kNaN, 1});
  ASSERT_EQ(cm.size(), 4u);
  EXPECT_EQ(cm[0], 0.0);
  EXPECT_EQ(cm[1], 3.0);
  EXPECT_EQ(cm[2], 3.0);
  EXPECT_EQ(cm[3], 2.0);
  const auto all_nan = cummean({kNaN, kNaN});
  EXPECT_EQ(all_nan, std::vector<double>({1.0, 1.0}));
  // Zero quaternion -> R = 0 -> yaw = atan2(0, 0) = 0.
  EXPECT_EQ(quaternion_yaw({0, 0, 0, 0}), 0.0);
  EXPECT_NEAR(quaternion_yaw(yaw_to_quaternion(1.0)), 1.0, 1e-15);
  // scale_iou asserts positive sizes.
  DetectionBox a = car(0, 0), b = car(0, 0);
  b.size = {1, 0, 1};
  EXPECT_THROW(scale_iou(a, b), Error);
  b.size = {2, 1, 0.5};
  EXPECT_DOUBLE_EQ(scale_iou(a, b), 0.5 / (1 + 1 - 0.5));
  // velocity_l2 is NaN (not inf) when a velocity is NaN.
  b.velocity = {kNaN, kNaN};
  EXPECT_TRUE(std::isnan(velocity_l2(a, b)));
  // attr_acc is NaN for an empty GT attribute.
  DetectionBox g = car(0, 0);
  g.attribute_name = "";
  EXPECT_TRUE(std::isnan(attr_acc(g, a)));
}

// Full multi-class fixture D of §1.10.
struct FixtureD {
  EvalBoxes gt, pred;
};

FixtureD make_fixture_d(const std::vector<std::string>& pred_sample_order) {
  FixtureD f;
  const double nan = kNaN;
  f.gt.add_sample("s1");
  f.gt.add_sample("s2");
  f.gt.add_sample("s3");
  f.gt.add("s1", make_box("car", {10, 0, 0}, {2, 4.5, 1.5}, 0, {5, 0}, "vehicle.moving", -1));
  f.gt.add("s1", make_box("car", {20, 5, 0}, {2, 4, 1.6}, kPi / 2, {0, 0}, "vehicle.parked", -1));
  f.gt.add("s1", make_box("pedestrian", {5, -3, 0}, {0.6, 0.7, 1.8}, kPi, {1, 1},
                          "pedestrian.moving", -1));
  f.gt.add("s1", make_box("barrier", {8, 8, 0}, {2.5, 0.5, 1}, 0.3, {0, 0}, "", -1));
  f.gt.add("s1", make_box("traffic_cone", {6, 2, 0}, {0.4, 0.4, 1}, 0, {0, 0}, "", -1));
  f.gt.add("s2", make_box("car", {0, 15, 0}, {2, 4.5, 1.5}, -kPi / 4, {nan, nan}, "", -1));
  f.gt.add("s2", make_box("truck", {-12, 3, 0}, {2.5, 8, 3}, 0, {3, 0}, "vehicle.moving", -1));
  f.gt.add("s2", make_box("pedestrian", {3, 3, 0}, {0.6, 0.7, 1.8}, 0.5, {0, 1},
                          "pedestrian.standing", -1));

  std::map<std::string, std::vector<DetectionBox>> p;
  p["s1"] = {
      make_box("car", {10.3, 0.4, 0}, {2.1, 4.4, 1.5}, 0.1, {4.5, 0.2}, "vehicle.moving", 0.9),
      make_box("car", {19, 5.5, 0}, {1.9, 4.2, 1.5}, kPi / 2 + kPi, {0.5, 0}, "vehicle.moving",
               0.6),
      make_box("car", {30, -10, 0}, {2, 4.5, 1.5}, 0, {0, 0}, "vehicle.parked", 0.75),
      make_box("pedestrian", {5.2, -3.1, 0}, {0.5, 0.6, 1.7}, 3.0, {0.8, 1.2},
               "pedestrian.standing", 0.8),
      make_box("barrier", {8.1, 8.2, 0}, {2.4, 0.6, 1}, 0.3 + kPi, {0, 0}, "", 0.7),
      make_box("traffic_cone", {6.1, 2, 0}, {0.4, 0.4, 1}, 0, {0, 0}, "", 0.5),
  };
  p["s2"] = {
      make_box("car", {0.8, 15.5, 0}, {2, 4.5, 1.5}, -kPi / 4 + 0.2, {1, 1}, "vehicle.parked",
               0.9),
      make_box("truck", {-13.5, 3, 0}, {2.5, 8, 3}, 0, {3, 0}, "vehicle.moving", 0.55),
      make_box("pedestrian", {3.3, 2.6, 0}, {0.6, 0.7, 1.8}, 0.5, {0, 1}, "pedestrian.standing",
               0.3),
      make_box("pedestrian", {3.1, 3.1, 0}, {0.6, 0.7, 1.8}, 0.5, {0, 1}, "pedestrian.moving",
               0.35),
  };
  p["s3"] = {make_box("car", {5, 5, 0}, {2, 4.5, 1.5}, 0, {0, 0}, "vehicle.parked", 0.95)};
  for (const auto& s : pred_sample_order) {
    f.pred.add_sample(s);
    for (const auto& b : p[s]) f.pred.add(s, b);
  }
  return f;
}

void expect_near_or_nan(double got, double want, const std::string& what) {
  if (std::isnan(want))
    EXPECT_TRUE(std::isnan(got)) << what << " should be NaN, got " << got;
  else
    EXPECT_NEAR(got, want, kTol) << what;
}

TEST(DetectionGolden, FullFixtureD) {
  const FixtureD f = make_fixture_d({"s1", "s2", "s3"});
  const DetectionMetrics m = evaluate_detection(f.gt, f.pred);
  EXPECT_NEAR(m.mean_ap, 0.37871008230452685, kTol);
  EXPECT_NEAR(m.nd_score, 0.34819843045505483, kTol);
  const double mtpe[5] = {0.7932772198807967, 0.549748594664134, 0.6206806565891068,
                          0.6800922747269372, 0.7677673611111111};
  for (int k = 0; k < 5; ++k) EXPECT_NEAR(m.tp_errors[k], mtpe[k], kTol) << "metric " << k;

  const std::map<std::string, std::vector<double>> aps = {
      {"car", {0, 0.26222222222222225, 0.45132098765432105, 0.45132098765432105}},
      {"truck", {0, 0, 1.0000000000000004, 1.0000000000000004}},
      {"pedestrian", std::vector<double>(4, 0.9958847736625516)},
      {"traffic_cone", std::vector<double>(4, 1.0000000000000004)},
      {"barrier", std::vector<double>(4, 1.0000000000000004)},
      {"bus", std::vector<double>(4, 0.0)},
      {"trailer", std::vector<double>(4, 0.0)},
      {"construction_vehicle", std::vector<double>(4, 0.0)},
      {"motorcycle", std::vector<double>(4, 0.0)},
      {"bicycle", std::vector<double>(4, 0.0)},
  };
  for (const auto& [cls, want] : aps)
    for (int t = 0; t < 4; ++t)
      EXPECT_NEAR(m.label_aps.at(cls)[t], want[t], kTol) << cls << " threshold " << t;

  const std::map<std::string, std::array<double, 5>> tp = {
      {"car",
       {0.8972015408556382, 0.023556132359176127, 0.4645922149707216, 0.19796486960811666,
        0.1421388888888889}},
      {"truck", {1.5, 0, 0, 0, 0}},
      {"pedestrian",
       {0.211963860202351, 0.2792989417989417, 0.1215336943312391, 0.24277332820738126, 1.0}},
      {"traffic_cone", {0.09999999999999964, 0.0, kNaN, kNaN, kNaN}},
      {"barrier", {0.2236067977499782, 0.19463087248322147, 0.0, kNaN, kNaN}},
      {"bus", {1, 1, 1, 1, 1}},
      {"trailer", {1, 1, 1, 1, 1}},
      {"construction_vehicle", {1, 1, 1, 1, 1}},
      {"motorcycle", {1, 1, 1, 1, 1}},
      {"bicycle", {1, 1, 1, 1, 1}},
  };
  for (const auto& [cls, want] : tp)
    for (int k = 0; k < 5; ++k)
      expect_near_or_nan(m.label_tp_errors.at(cls)[k], want[k],
                         cls + " " + tp_metric_name(static_cast<TpMetric>(k)));
}

TEST(DetectionGolden, FixtureDCarCurveAt2m) {
  const FixtureD f = make_fixture_d({"s1", "s2", "s3"});
  const MetricData md = accumulate(f.gt, f.pred, "car", 2.0);
  EXPECT_EQ(md.max_recall_ind(), 100);
  const int idx[] = {0, 10, 11, 40, 75, 100};
  const double prec[] = {0.0, 0.15000000000000002, 0.165, 0.5333333333333333, 0.525, 0.6};
  const double conf[] = {0.95, 0.9349999999999999, 0.9335, 0.9, 0.7125, 0.6};
  for (int n = 0; n < 6; ++n) {
    EXPECT_NEAR(md.precision[idx[n]], prec[n], kTol) << "i=" << idx[n];
    EXPECT_NEAR(md.confidence[idx[n]], conf[n], kTol) << "i=" << idx[n];
  }
  const auto& te = md.error(TpMetric::kTrans);
  for (int i = 0; i <= 60; ++i) EXPECT_NEAR(te[i], 0.9433981132056605, kTol) << "i=" << i;
  EXPECT_NEAR(te[75], 0.804268834133469, kTol);
  EXPECT_NEAR(te[100], 0.8538107006518519, kTol);
}

TEST(DetectionGolden, TieBreakDependsOnSampleOrder) {
  const FixtureD f = make_fixture_d({"s2", "s1", "s3"});
  const DetectionMetrics m = evaluate_detection(f.gt, f.pred);
  EXPECT_NEAR(m.label_tp_errors.at("car")[static_cast<int>(TpMetric::kTrans)],
              0.6213093815276719, kTol);
  EXPECT_NEAR(m.label_tp_errors.at("car")[static_cast<int>(TpMetric::kVel)], 0.5330417909409303,
              kTol);
  EXPECT_NEAR(m.nd_score, 0.34703840298197774, kTol);
}

// ---- cases of our own (expected values derived by hand from the devkit rules) ------------------

TEST(Detection, EmptyPredictionsGiveZeroApAndUnitErrors) {
  FixtureD f = make_fixture_d({"s1", "s2", "s3"});
  EvalBoxes empty;
  for (const auto& s : f.gt.sample_tokens()) empty.add_sample(s);
  const DetectionMetrics m = evaluate_detection(f.gt, empty);
  EXPECT_EQ(m.mean_ap, 0.0);
  for (int k = 0; k < 5; ++k) EXPECT_EQ(m.tp_errors[k], 1.0);
  // NDS = (5*0 + 5*0)/10.
  EXPECT_EQ(m.nd_score, 0.0);
}

TEST(Detection, EmptyGroundTruthForAClass) {
  // Only cars in GT; a perfect car prediction plus a bus false positive. The bus has no GT, so its
  // AP is 0 and its errors are 1; it does not hurt the car.
  EvalBoxes gt, pred;
  gt.add("s", make_box("car", {5, 0, 0}, {2, 4, 1.5}, 0.2, {1, 0}, "vehicle.moving", -1));
  pred.add("s", make_box("car", {5, 0, 0}, {2, 4, 1.5}, 0.2, {1, 0}, "vehicle.moving", 0.8));
  pred.add("s", make_box("bus", {20, 0, 0}, {3, 10, 3}, 0, {0, 0}, "vehicle.parked", 0.9));
  const DetectionMetrics m = evaluate_detection(gt, pred);
  for (int t = 0; t < 4; ++t) {
    EXPECT_NEAR(m.label_aps.at("car")[t], 1.0, kTol);
    EXPECT_EQ(m.label_aps.at("bus")[t], 0.0);
  }
  for (int k = 0; k < 5; ++k) {
    EXPECT_NEAR(m.label_tp_errors.at("car")[k], 0.0, kTol);
    EXPECT_EQ(m.label_tp_errors.at("bus")[k], 1.0);
  }
  EXPECT_NEAR(m.mean_ap, 0.1, kTol);
  // trans/scale over 10 classes: 9 ones and car 0 -> 0.9; orient over 9 (cone NaN) -> 8/9;
  // vel/attr over 8 classes -> 7/8.
  EXPECT_NEAR(m.tp_errors[0], 0.9, kTol);
  EXPECT_NEAR(m.tp_errors[1], 0.9, kTol);
  EXPECT_NEAR(m.tp_errors[2], 8.0 / 9.0, kTol);
  EXPECT_NEAR(m.tp_errors[3], 7.0 / 8.0, kTol);
  EXPECT_NEAR(m.tp_errors[4], 7.0 / 8.0, kTol);
  const double nds = (5 * 0.1 + 0.1 + 0.1 + 1.0 / 9.0 + 0.125 + 0.125) / 10;
  EXPECT_NEAR(m.nd_score, nds, kTol);
}

TEST(Detection, OneClassOnlyWithPartialRecall) {
  // Two pedestrians, one found exactly: recall reaches 0.5 at precision 1.
  EvalBoxes gt, pred;
  gt.add("a", make_box("pedestrian", {1, 2, 0}, {0.6, 0.7, 1.8}, 0, {0, 0}, "pedestrian.moving",
                       -1));
  gt.add("b", make_box("pedestrian", {-4, 2, 0}, {0.6, 0.7, 1.8}, 0, {0, 0}, "pedestrian.moving",
                       -1));
  pred.add("a", make_box("pedestrian", {1, 2, 0}, {0.6, 0.7, 1.8}, 0, {0, 0}, "pedestrian.moving",
                         0.4));
  pred.add_sample("b");
  const MetricData md = accumulate(gt, pred, "pedestrian", 1.0);
  // Grid points 0..50 take precision 1, 51..100 are beyond the reached recall -> 0.
  EXPECT_EQ(md.max_recall_ind(), 50);
  EXPECT_EQ(md.precision[50], 1.0);
  EXPECT_EQ(md.precision[51], 0.0);
  // AP = (40 values of 0.9) / 90 / 0.9 = 4/9.
  EXPECT_NEAR(calc_ap(md, 0.1, 0.1), 4.0 / 9.0, kTol);
  EXPECT_NEAR(calc_tp(md, 0.1, TpMetric::kTrans), 0.0, kTol);
}

TEST(Detection, ExactScoreTiesGoToTheLargerIndex) {
  // One GT, two predictions with equal scores. The later one (index 1) is visited first and takes
  // the GT, so the match has trans_err 0.5 rather than 0.1 (and the other becomes an FP).
  EvalBoxes gt, pred;
  gt.add("s", car(0, 0));
  pred.add("s", car(0.1, 0, 0.5));
  pred.add("s", car(0.5, 0, 0.5));
  MetricData md = accumulate(gt, pred, "car", 2.0);
  EXPECT_NEAR(calc_tp(md, 0.1, TpMetric::kTrans), 0.5, kTol);
  // Reversed insertion: now the 0.1 box comes later and wins.
  EvalBoxes pred2;
  pred2.add("s", car(0.5, 0, 0.5));
  pred2.add("s", car(0.1, 0, 0.5));
  md = accumulate(gt, pred2, "car", 2.0);
  EXPECT_NEAR(calc_tp(md, 0.1, TpMetric::kTrans), 0.1, kTol);
}

TEST(Detection, EquidistantGtFirstIndexWinsAndThresholdIsStrict) {
  EvalBoxes gt, pred;
  DetectionBox g0 = car(-1, 0), g1 = car(1, 0);
  g0.velocity = {1, 0};
  g1.velocity = {5, 0};
  gt.add("s", g0);
  gt.add("s", g1);
  pred.add("s", car(0, 0, 0.9));
  MetricData md = accumulate(gt, pred, "car", 2.0);
  // Matched to g0 (velocity error 1, not 5).
  EXPECT_NEAR(md.error(TpMetric::kVel)[0], 1.0, kTol);
  // Distance exactly 1.0 at threshold 1.0 is not a match.
  md = accumulate(gt, pred, "car", 1.0);
  EXPECT_EQ(md.max_recall_ind(), 0);
  EXPECT_EQ(calc_ap(md, 0.1, 0.1), 0.0);
}

TEST(Detection, FilterRangeNumPtsAndBikeRack) {
  EvalBoxes boxes;
  DetectionBox near_cone = make_box("traffic_cone", {0, 0, 0}, {0.4, 0.4, 1}, 0, {0, 0}, "", -1);
  near_cone.ego_translation = {29.9, 0, 0};
  DetectionBox far_cone = near_cone;
  far_cone.ego_translation = {30.0, 0, 0};  // strict <: dropped
  DetectionBox empty_car = make_box("car", {0, 0, 0}, {2, 4, 1.5}, 0, {0, 0}, "", -1);
  empty_car.num_pts = 0;
  DetectionBox bike = make_box("bicycle", {10, 10, 0.5}, {0.6, 1.7, 1.2}, 0, {0, 0}, "", -1);
  DetectionBox bike_out = bike;
  bike_out.translation = {14, 10, 0.5};
  boxes.add("s", near_cone);
  boxes.add("s", far_cone);
  boxes.add("s", empty_car);
  boxes.add("s", bike);
  boxes.add("s", bike_out);
  RackBox rack;
  rack.translation = {10, 10, 0.5};
  rack.size = {1, 4, 1};
  rack.rotation = yaw_to_quaternion(0.3);
  filter_eval_boxes(boxes, DetectionConfig::cvpr_2019(), {{"s", {rack}}});
  ASSERT_EQ(boxes["s"].size(), 2u);
  EXPECT_EQ(boxes["s"][0].detection_name, "traffic_cone");
  EXPECT_EQ(boxes["s"][1].translation[0], 14);
}

TEST(NumpyCompat, PairwiseSumMatchesNumpyOrder) {
  // 0.1 summed 90 times: numpy's pairwise order gives a different last bit than a naive loop.
  std::vector<double> v(90, 0.9);
  EXPECT_EQ(np::mean(v) / 0.9, 1.0000000000000004);  // golden A1
  // Below 8 values numpy adds sequentially: (1e16 + 1) + 1 rounds back to 1e16 twice.
  EXPECT_EQ(np::sum(std::vector<double>{1e16, 1.0, 1.0}), 1e16);
  // 17 values: 8 interleaved accumulators. Checked against numpy's own np.sum on this input.
  std::vector<double> v17(17, 1.0);
  v17[8] = 1e16;
  EXPECT_EQ(np::sum(v17), 1.0000000000000016e16);
}

TEST(NumpyCompat, InterpLastOfRepeatedAndEnds) {
  const double zero = 0;
  auto r = np::interp({-1, 0.5, 1.0, 2.0}, {0.0, 1.0, 1.0}, {3.0, 1.0, 0.5}, nullptr, &zero);
  EXPECT_EQ(r[0], 3.0);   // left = fp[0]
  EXPECT_EQ(r[1], 2.0);   // linear
  EXPECT_EQ(r[2], 0.5);   // last of the repeated xp
  EXPECT_EQ(r[3], 0.0);   // right
  const auto ls = np::linspace(0, 1, 101);
  EXPECT_EQ(ls[3], 3 * 0.01);  // i*step, not i/100
  EXPECT_EQ(ls[100], 1.0);
}

}  // namespace
}  // namespace omnirt::eval
