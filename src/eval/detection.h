// nuScenes detection metrics (mAP, TP errors, NDS) with the devkit's exact semantics.
//
// A port of nuscenes-devkit python-sdk/nuscenes/eval/detection (algo.py accumulate/calc_ap/calc_tp,
// evaluate.py, common/utils.py, common/loaders.py filter_eval_boxes) under the detection_cvpr_2019
// configuration. The rules, including the ones that look like accidents (ties go to the larger
// prediction index, np.interp keeps the last of repeated recall values, velocity errors are NaN
// rather than inf), are written down in /work/shared/spec/evaluation.md §1 and kept here on purpose:
// the goal is the same number as the devkit, not a "better" metric.
#pragma once

#include <array>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace omnirt::eval {

// The 10 detection classes in the devkit's order (the order of class_range in the config).
const std::vector<std::string>& detection_class_names();
// The 8 attribute names.
const std::vector<std::string>& detection_attribute_names();
bool is_detection_class(const std::string& name);
bool is_detection_attribute(const std::string& name);

// One box, GT or prediction, in the global frame (nuScenes conventions).
struct DetectionBox {
  std::string sample_token;
  std::array<double, 3> translation{0, 0, 0};     // x, y, z (global)
  std::array<double, 3> size{1, 1, 1};            // w, l, h
  std::array<double, 4> rotation{0, 0, 0, 0};     // quaternion w, x, y, z (normalised on use)
  std::array<double, 2> velocity{0, 0};           // vx, vy (global); may be NaN
  std::array<double, 3> ego_translation{0, 0, 0};  // translation - ego pose translation
  int num_pts = -1;                               // lidar+radar points; predictions: -1
  std::string detection_name = "car";
  double detection_score = -1.0;                  // GT: -1
  std::string attribute_name;                     // '' or one of the 8 attributes

  double ego_dist() const;  // sqrt(ex^2 + ey^2)
};

// EvalBoxes: sample token -> boxes, remembering the order in which samples were first added (the
// devkit iterates a Python dict, i.e. insertion order, and that order decides score ties).
class EvalBoxes {
 public:
  void add(const std::string& sample_token, DetectionBox box);
  void add_sample(const std::string& sample_token);  // an (empty) sample, keeps its order
  const std::vector<DetectionBox>& operator[](const std::string& sample_token) const;
  std::vector<DetectionBox>& mutable_boxes(const std::string& sample_token);
  const std::vector<std::string>& sample_tokens() const { return order_; }
  bool has_sample(const std::string& token) const { return boxes_.count(token) != 0; }
  size_t num_boxes() const;

 private:
  std::vector<std::string> order_;
  std::unordered_map<std::string, std::vector<DetectionBox>> boxes_;
};

struct DetectionConfig {
  std::map<std::string, double> class_range;  // max ego xy distance per class (m)
  std::vector<double> dist_ths{0.5, 1.0, 2.0, 4.0};
  double dist_th_tp = 2.0;
  double min_recall = 0.1;
  double min_precision = 0.1;
  int max_boxes_per_sample = 500;
  double mean_ap_weight = 5.0;

  static DetectionConfig cvpr_2019();
};

enum class TpMetric { kTrans = 0, kScale, kOrient, kVel, kAttr };
constexpr int kNumTpMetrics = 5;
// The devkit's TP_METRICS order and names: trans_err, scale_err, orient_err, vel_err, attr_err.
const char* tp_metric_name(TpMetric m);
const char* tp_metric_short_name(TpMetric m);  // mATE, mASE, mAOE, mAVE, mAAE

// DetectionMetricData: 101-point curves.
struct MetricData {
  static constexpr int kNelem = 101;
  std::vector<double> recall, precision, confidence;
  std::array<std::vector<double>, kNumTpMetrics> errors;  // indexed by TpMetric

  const std::vector<double>& error(TpMetric m) const { return errors[static_cast<int>(m)]; }
  // The last index with confidence != 0, or 0 if none.
  int max_recall_ind() const;
  static MetricData no_predictions();
};

// --- the devkit's helper functions (common/utils.py), exposed for tests ----------------------
double center_distance(const DetectionBox& gt, const DetectionBox& pred);
double velocity_l2(const DetectionBox& gt, const DetectionBox& pred);  // NaN if either is NaN
double scale_iou(const DetectionBox& a, const DetectionBox& b);          // sizes must be > 0
double quaternion_yaw(const std::array<double, 4>& q_wxyz);
double angle_diff(double x, double y, double period);
double yaw_diff(const DetectionBox& gt, const DetectionBox& pred, double period);
double attr_acc(const DetectionBox& gt, const DetectionBox& pred);  // NaN if GT attribute is ''
std::vector<double> cummean(const std::vector<double>& x);
std::array<double, 4> yaw_to_quaternion(double yaw);  // (cos(yaw/2), 0, 0, sin(yaw/2))

// --- algo.py -----------------------------------------------------------------------------------
MetricData accumulate(const EvalBoxes& gt, const EvalBoxes& pred, const std::string& class_name,
                      double dist_th);
double calc_ap(const MetricData& md, double min_recall, double min_precision);
double calc_tp(const MetricData& md, double min_recall, TpMetric metric);

// --- evaluate.py / DetectionMetrics -------------------------------------------------------------
struct DetectionMetrics {
  std::vector<std::string> class_names;
  std::vector<double> dist_ths;
  std::map<std::string, std::vector<double>> label_aps;  // class -> AP per dist_th
  std::map<std::string, double> mean_dist_aps;
  std::map<std::string, std::array<double, kNumTpMetrics>> label_tp_errors;
  double mean_ap = 0;
  std::array<double, kNumTpMetrics> tp_errors{};
  std::array<double, kNumTpMetrics> tp_scores{};
  double nd_score = 0;
};

// Runs accumulate for every class and threshold on already filtered boxes and aggregates.
DetectionMetrics evaluate_detection(const EvalBoxes& gt, const EvalBoxes& pred,
                                    const DetectionConfig& cfg = DetectionConfig::cvpr_2019());

// A static_object.bicycle_rack box (global frame) used by the bike-rack filter.
struct RackBox {
  std::array<double, 3> translation{0, 0, 0};
  std::array<double, 3> size{1, 1, 1};  // w, l, h
  std::array<double, 4> rotation{1, 0, 0, 0};
};
// points_in_box for one point (inclusive on every axis).
bool point_in_box(const RackBox& box, const std::array<double, 3>& point);

// filter_eval_boxes: per sample, keep ego_dist < class_range (strict), drop num_pts == 0, and
// drop bicycles/motorcycles whose centre lies in one of the sample's bike racks.
void filter_eval_boxes(EvalBoxes& boxes, const DetectionConfig& cfg,
                       const std::unordered_map<std::string, std::vector<RackBox>>& racks = {});

}  // namespace omnirt::eval
