#include "eval/detection.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>

#include "core/error.h"
#include "eval/numpy_compat.h"

namespace omnirt::eval {
namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kPi = 3.141592653589793;  // np.pi
}  // namespace

const std::vector<std::string>& detection_class_names() {
  static const std::vector<std::string> names = {
      "car",        "truck",      "bus",     "trailer",      "construction_vehicle",
      "pedestrian", "motorcycle", "bicycle", "traffic_cone", "barrier"};
  return names;
}

const std::vector<std::string>& detection_attribute_names() {
  static const std::vector<std::string> names = {
      "pedestrian.moving", "pedestrian.sitting_lying_down", "pedestrian.standing",
      "cycle.with_rider",  "cycle.without_rider",           "vehicle.moving",
      "vehicle.parked",    "vehicle.stopped"};
  return names;
}

bool is_detection_class(const std::string& name) {
  const auto& n = detection_class_names();
  return std::find(n.begin(), n.end(), name) != n.end();
}

bool is_detection_attribute(const std::string& name) {
  const auto& n = detection_attribute_names();
  return std::find(n.begin(), n.end(), name) != n.end();
}

double DetectionBox::ego_dist() const {
  return std::sqrt(ego_translation[0] * ego_translation[0] +
                   ego_translation[1] * ego_translation[1]);
}

// ---- EvalBoxes ------------------------------------------------------------------------------

void EvalBoxes::add_sample(const std::string& sample_token) {
  if (boxes_.emplace(sample_token, std::vector<DetectionBox>{}).second)
    order_.push_back(sample_token);
}

void EvalBoxes::add(const std::string& sample_token, DetectionBox box) {
  add_sample(sample_token);
  box.sample_token = sample_token;
  boxes_[sample_token].push_back(std::move(box));
}

const std::vector<DetectionBox>& EvalBoxes::operator[](const std::string& sample_token) const {
  auto it = boxes_.find(sample_token);
  OMNIRT_CHECK(it != boxes_.end(), "sample token '", sample_token, "' is not in the box set");
  return it->second;
}

std::vector<DetectionBox>& EvalBoxes::mutable_boxes(const std::string& sample_token) {
  auto it = boxes_.find(sample_token);
  OMNIRT_CHECK(it != boxes_.end(), "sample token '", sample_token, "' is not in the box set");
  return it->second;
}

size_t EvalBoxes::num_boxes() const {
  size_t n = 0;
  for (const auto& [token, boxes] : boxes_) n += boxes.size();
  return n;
}

// ---- configuration -----------------------------------------------------------------------------

DetectionConfig DetectionConfig::cvpr_2019() {
  DetectionConfig cfg;
  cfg.class_range = {{"car", 50},          {"truck", 50},      {"bus", 50},
                     {"trailer", 50},      {"construction_vehicle", 50},
                     {"pedestrian", 40},   {"motorcycle", 40}, {"bicycle", 40},
                     {"traffic_cone", 30}, {"barrier", 30}};
  return cfg;
}

const char* tp_metric_name(TpMetric m) {
  static const char* names[] = {"trans_err", "scale_err", "orient_err", "vel_err", "attr_err"};
  return names[static_cast<int>(m)];
}

const char* tp_metric_short_name(TpMetric m) {
  static const char* names[] = {"mATE", "mASE", "mAOE", "mAVE", "mAAE"};
  return names[static_cast<int>(m)];
}

int MetricData::max_recall_ind() const {
  for (int i = static_cast<int>(confidence.size()) - 1; i >= 0; --i)
    if (confidence[i] != 0) return i;
  return 0;
}

MetricData MetricData::no_predictions() {
  MetricData md;
  md.recall = np::linspace(0, 1, kNelem);
  md.precision.assign(kNelem, 0.0);
  md.confidence.assign(kNelem, 0.0);
  for (auto& e : md.errors) e.assign(kNelem, 1.0);
  return md;
}

// ---- common/utils.py ------------------------------------------------------------------------

double center_distance(const DetectionBox& gt, const DetectionBox& pred) {
  const double dx = pred.translation[0] - gt.translation[0];
  const double dy = pred.translation[1] - gt.translation[1];
  return std::sqrt(dx * dx + dy * dy);
}

double velocity_l2(const DetectionBox& gt, const DetectionBox& pred) {
  const double dx = pred.velocity[0] - gt.velocity[0];
  const double dy = pred.velocity[1] - gt.velocity[1];
  return std::sqrt(dx * dx + dy * dy);  // NaN propagates, as in np.linalg.norm
}

double scale_iou(const DetectionBox& a, const DetectionBox& b) {
  for (int i = 0; i < 3; ++i) {
    OMNIRT_CHECK(a.size[i] > 0 && b.size[i] > 0,
                 "scale_iou: box sizes must be > 0, got (", a.size[0], ", ", a.size[1], ", ",
                 a.size[2], ") and (", b.size[0], ", ", b.size[1], ", ", b.size[2], ")");
  }
  const double vol_a = a.size[0] * a.size[1] * a.size[2];
  const double vol_b = b.size[0] * b.size[1] * b.size[2];
  const double inter = std::min(a.size[0], b.size[0]) * std::min(a.size[1], b.size[1]) *
                       std::min(a.size[2], b.size[2]);
  const double uni = vol_a + vol_b - inter;
  return inter / uni;
}

namespace {
// pyquaternion: normalise unless already unit to 1e-14; a zero quaternion stays zero.
std::array<double, 4> normalised(const std::array<double, 4>& q) {
  const double ss = q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3];
  if (std::abs(1.0 - ss) < 1e-14) return q;
  const double n = std::sqrt(ss);
  if (!(n > 0)) return q;
  return {q[0] / n, q[1] / n, q[2] / n, q[3] / n};
}

// Rotation matrix as pyquaternion builds it: (Q * Qbar^T)[1:,1:], each entry a 4-term dot product
// in column order.
std::array<std::array<double, 3>, 3> rotation_matrix(const std::array<double, 4>& q_in) {
  const auto q = normalised(q_in);
  const double w = q[0], x = q[1], y = q[2], z = q[3];
  const double Q[4][4] = {{w, -x, -y, -z}, {x, w, -z, y}, {y, z, w, -x}, {z, -y, x, w}};
  const double B[4][4] = {{w, -x, -y, -z}, {x, w, z, -y}, {y, -z, w, x}, {z, y, -x, w}};
  std::array<std::array<double, 3>, 3> r{};
  for (int i = 1; i < 4; ++i)
    for (int j = 1; j < 4; ++j)
      r[i - 1][j - 1] = Q[i][0] * B[j][0] + Q[i][1] * B[j][1] + Q[i][2] * B[j][2] +
                        Q[i][3] * B[j][3];
  return r;
}
}  // namespace

double quaternion_yaw(const std::array<double, 4>& q_wxyz) {
  const auto r = rotation_matrix(q_wxyz);
  return std::atan2(r[1][0], r[0][0]);
}

std::array<double, 4> yaw_to_quaternion(double yaw) {
  return {std::cos(yaw / 2), 0.0, 0.0, std::sin(yaw / 2)};
}

double angle_diff(double x, double y, double period) {
  double diff = np::floor_mod(x - y + period / 2, period) - period / 2;
  if (diff > kPi) diff = diff - 2 * kPi;
  return diff;
}

double yaw_diff(const DetectionBox& gt, const DetectionBox& pred, double period) {
  return std::abs(angle_diff(quaternion_yaw(gt.rotation), quaternion_yaw(pred.rotation), period));
}

double attr_acc(const DetectionBox& gt, const DetectionBox& pred) {
  if (gt.attribute_name.empty()) return kNaN;
  return gt.attribute_name == pred.attribute_name ? 1.0 : 0.0;
}

std::vector<double> cummean(const std::vector<double>& x) {
  const bool all_nan =
      std::all_of(x.begin(), x.end(), [](double v) { return std::isnan(v); });
  if (all_nan) return std::vector<double>(x.size(), 1.0);
  std::vector<double> out(x.size(), 0.0);
  double sum = 0.0;
  long long count = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isnan(x[i])) {
      sum += x[i];
      ++count;
    }
    out[i] = count != 0 ? sum / static_cast<double>(count) : 0.0;
  }
  return out;
}

// ---- algo.py ------------------------------------------------------------------------------

MetricData accumulate(const EvalBoxes& gt, const EvalBoxes& pred, const std::string& class_name,
                      double dist_th) {
  size_t npos = 0;
  for (const auto& token : gt.sample_tokens())
    for (const auto& b : gt[token]) npos += b.detection_name == class_name ? 1 : 0;
  if (npos == 0) return MetricData::no_predictions();

  // Predictions of this class in container order (sample insertion order, then box order).
  std::vector<const DetectionBox*> preds;
  for (const auto& token : pred.sample_tokens())
    for (const auto& b : pred[token])
      if (b.detection_name == class_name) preds.push_back(&b);

  // The devkit sorts (score, index) pairs ascending and reverses: descending score, and among
  // equal scores the larger index first.
  std::vector<size_t> order(preds.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const double sa = preds[a]->detection_score, sb = preds[b]->detection_score;
    if (sa != sb) return sa > sb;
    return a > b;
  });

  std::vector<double> tp, fp, conf;
  std::array<std::vector<double>, kNumTpMetrics> match_err;
  std::vector<double> match_conf;
  std::set<std::pair<std::string, size_t>> taken;
  static const std::vector<DetectionBox> kNoBoxes;
  const double period = class_name == "barrier" ? kPi : 2 * kPi;

  for (size_t ind : order) {
    const DetectionBox& p = *preds[ind];
    const auto& sample_gt = gt.has_sample(p.sample_token) ? gt[p.sample_token] : kNoBoxes;
    double min_dist = std::numeric_limits<double>::infinity();
    long long match_idx = -1;
    for (size_t gi = 0; gi < sample_gt.size(); ++gi) {
      const DetectionBox& g = sample_gt[gi];
      if (g.detection_name != class_name || taken.count({p.sample_token, gi})) continue;
      const double d = center_distance(g, p);
      if (d < min_dist) {  // strict: the first GT index wins a tie
        min_dist = d;
        match_idx = static_cast<long long>(gi);
      }
    }
    const bool is_match = min_dist < dist_th;
    if (is_match) {
      taken.insert({p.sample_token, static_cast<size_t>(match_idx)});
      tp.push_back(1);
      fp.push_back(0);
      conf.push_back(p.detection_score);
      const DetectionBox& g = sample_gt[match_idx];
      match_err[static_cast<int>(TpMetric::kTrans)].push_back(center_distance(g, p));
      match_err[static_cast<int>(TpMetric::kVel)].push_back(velocity_l2(g, p));
      match_err[static_cast<int>(TpMetric::kScale)].push_back(1 - scale_iou(g, p));
      match_err[static_cast<int>(TpMetric::kOrient)].push_back(yaw_diff(g, p, period));
      match_err[static_cast<int>(TpMetric::kAttr)].push_back(1 - attr_acc(g, p));
      match_conf.push_back(p.detection_score);
    } else {
      tp.push_back(0);
      fp.push_back(1);
      conf.push_back(p.detection_score);
    }
  }
  if (match_conf.empty()) return MetricData::no_predictions();

  // Cumulative counts (np.cumsum of ints, then float).
  std::vector<double> prec(tp.size()), rec(tp.size());
  double tp_c = 0, fp_c = 0;
  for (size_t i = 0; i < tp.size(); ++i) {
    tp_c += tp[i];
    fp_c += fp[i];
    prec[i] = tp_c / (fp_c + tp_c);
    rec[i] = tp_c / static_cast<double>(npos);
  }

  MetricData md;
  md.recall = np::linspace(0, 1, MetricData::kNelem);
  const double zero = 0.0;
  md.precision = np::interp(md.recall, rec, prec, nullptr, &zero);
  md.confidence = np::interp(md.recall, rec, conf, nullptr, &zero);

  // TP errors: cumulative mean in match order, resampled at the grid's confidences.
  std::vector<double> conf_rev(md.confidence.rbegin(), md.confidence.rend());
  std::vector<double> match_conf_rev(match_conf.rbegin(), match_conf.rend());
  for (int m = 0; m < kNumTpMetrics; ++m) {
    const std::vector<double> tmp = cummean(match_err[m]);
    std::vector<double> tmp_rev(tmp.rbegin(), tmp.rend());
    std::vector<double> r = np::interp(conf_rev, match_conf_rev, tmp_rev);
    md.errors[m].assign(r.rbegin(), r.rend());
  }
  return md;
}

double calc_ap(const MetricData& md, double min_recall, double min_precision) {
  OMNIRT_CHECK(0 <= min_precision && min_precision < 1, "calc_ap: min_precision must be in [0,1), got ",
               min_precision);
  OMNIRT_CHECK(0 <= min_recall && min_recall <= 1, "calc_ap: min_recall must be in [0,1], got ",
               min_recall);
  const long long start = np::round_half_even(100 * min_recall) + 1;
  std::vector<double> prec;
  for (size_t i = static_cast<size_t>(start); i < md.precision.size(); ++i) {
    double v = md.precision[i] - min_precision;
    prec.push_back(v < 0 ? 0.0 : v);
  }
  return np::mean(prec) / (1.0 - min_precision);
}

double calc_tp(const MetricData& md, double min_recall, TpMetric metric) {
  const long long first = np::round_half_even(100 * min_recall) + 1;
  const long long last = md.max_recall_ind();
  if (last < first) return 1.0;
  const auto& e = md.error(metric);
  return np::mean(e.data() + first, static_cast<size_t>(last - first + 1));
}

// ---- evaluate.py ------------------------------------------------------------------------------

DetectionMetrics evaluate_detection(const EvalBoxes& gt, const EvalBoxes& pred,
                                    const DetectionConfig& cfg) {
  DetectionMetrics m;
  m.class_names = detection_class_names();
  m.dist_ths = cfg.dist_ths;
  OMNIRT_CHECK(std::find(cfg.dist_ths.begin(), cfg.dist_ths.end(), cfg.dist_th_tp) !=
                   cfg.dist_ths.end(),
               "detection config: dist_th_tp ", cfg.dist_th_tp, " is not one of dist_ths");

  std::vector<double> class_mean_aps;
  std::array<std::vector<double>, kNumTpMetrics> class_errors;
  for (const auto& cls : m.class_names) {
    std::vector<double> aps;
    MetricData md_tp;
    bool have_tp = false;
    for (double th : cfg.dist_ths) {
      MetricData md = accumulate(gt, pred, cls, th);
      aps.push_back(calc_ap(md, cfg.min_recall, cfg.min_precision));
      if (th == cfg.dist_th_tp && !have_tp) {
        md_tp = std::move(md);
        have_tp = true;
      }
    }
    m.label_aps[cls] = aps;
    m.mean_dist_aps[cls] = np::mean(aps);
    class_mean_aps.push_back(m.mean_dist_aps[cls]);

    std::array<double, kNumTpMetrics> errs{};
    for (int k = 0; k < kNumTpMetrics; ++k) {
      const auto metric = static_cast<TpMetric>(k);
      const bool cone_nan = cls == "traffic_cone" &&
                            (metric == TpMetric::kAttr || metric == TpMetric::kVel ||
                             metric == TpMetric::kOrient);
      const bool barrier_nan =
          cls == "barrier" && (metric == TpMetric::kAttr || metric == TpMetric::kVel);
      errs[k] = (cone_nan || barrier_nan) ? kNaN : calc_tp(md_tp, cfg.min_recall, metric);
      class_errors[k].push_back(errs[k]);
    }
    m.label_tp_errors[cls] = errs;
  }

  m.mean_ap = np::mean(class_mean_aps);
  for (int k = 0; k < kNumTpMetrics; ++k) {
    m.tp_errors[k] = np::nanmean(class_errors[k]);
    m.tp_scores[k] = std::max(0.0, 1.0 - m.tp_errors[k]);
  }
  std::vector<double> scores(m.tp_scores.begin(), m.tp_scores.end());
  const double total = cfg.mean_ap_weight * m.mean_ap + np::sum(scores);
  m.nd_score = total / (cfg.mean_ap_weight + static_cast<double>(kNumTpMetrics));
  return m;
}

// ---- loaders.py filter_eval_boxes --------------------------------------------------------------

bool point_in_box(const RackBox& box, const std::array<double, 3>& point) {
  // nuScenes Box.corners(): x = l/2 * [1,1,1,1,-1,-1,-1,-1], y = w/2 * [1,-1,-1,1,1,-1,-1,1],
  // z = h/2 * [1,1,-1,-1,1,1,-1,-1]; corner 0 is the origin, 4/1/3 span the three edges.
  const auto r = rotation_matrix(box.rotation);
  const double w = box.size[0], l = box.size[1], h = box.size[2];
  auto corner = [&](double cx, double cy, double cz) {
    std::array<double, 3> c{};
    for (int i = 0; i < 3; ++i)
      c[i] = r[i][0] * cx + r[i][1] * cy + r[i][2] * cz + box.translation[i];
    return c;
  };
  const auto p1 = corner(l / 2, w / 2, h / 2);
  const auto px = corner(-l / 2, w / 2, h / 2);
  const auto py = corner(l / 2, -w / 2, h / 2);
  const auto pz = corner(l / 2, w / 2, -h / 2);
  auto dot = [](const std::array<double, 3>& a, const std::array<double, 3>& b) {
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  };
  auto sub = [](const std::array<double, 3>& a, const std::array<double, 3>& b) {
    return std::array<double, 3>{a[0] - b[0], a[1] - b[1], a[2] - b[2]};
  };
  const auto i = sub(px, p1), j = sub(py, p1), k = sub(pz, p1), v = sub(point, p1);
  const double iv = dot(i, v), jv = dot(j, v), kv = dot(k, v);
  return 0 <= iv && iv <= dot(i, i) && 0 <= jv && jv <= dot(j, j) && 0 <= kv && kv <= dot(k, k);
}

void filter_eval_boxes(EvalBoxes& boxes, const DetectionConfig& cfg,
                       const std::unordered_map<std::string, std::vector<RackBox>>& racks) {
  for (const auto& token : boxes.sample_tokens()) {
    auto& list = boxes.mutable_boxes(token);
    const auto rack_it = racks.find(token);
    std::vector<DetectionBox> kept;
    for (auto& b : list) {
      auto range = cfg.class_range.find(b.detection_name);
      OMNIRT_CHECK(range != cfg.class_range.end(), "sample ", token, ": unknown detection class '",
                   b.detection_name, "'");
      if (!(b.ego_dist() < range->second)) continue;
      if (b.num_pts == 0) continue;
      if ((b.detection_name == "bicycle" || b.detection_name == "motorcycle") &&
          rack_it != racks.end()) {
        bool in_rack = false;
        for (const auto& rack : rack_it->second) in_rack |= point_in_box(rack, b.translation);
        if (in_rack) continue;
      }
      kept.push_back(std::move(b));
    }
    list = std::move(kept);
  }
}

}  // namespace omnirt::eval
