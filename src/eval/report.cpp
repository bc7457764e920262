#include "eval/report.h"

#include <cmath>
#include <cstdio>
#include <sstream>

namespace omnirt::eval {
namespace {

std::string fmt(const char* f, double v) {
  if (std::isnan(v)) return "nan";
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

// nlohmann writes NaN as null, which is what the devkit's JSON readers expect for "no value".
nlohmann::json num(double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); }

}  // namespace

EvalReport run_evaluation(const GroundTruth& gt, const Predictions& pred, const EvalOptions& opt) {
  EvalReport r;
  if (opt.detection) {
    EvalBoxes gt_boxes = gt.boxes;
    EvalBoxes pred_boxes = pred.boxes;
    size_t missing = 0;
    for (const auto& token : gt.tokens)
      if (!pred_boxes.has_sample(token)) {
        pred_boxes.add_sample(token);
        ++missing;
      }
    if (missing)
      r.notes.push_back("detection: " + std::to_string(missing) +
                        " ground-truth sample(s) have no prediction record and count as having "
                        "no boxes (the devkit requires every sample)");
    if (opt.filter_boxes) {
      const DetectionConfig cfg = DetectionConfig::cvpr_2019();
      filter_eval_boxes(gt_boxes, cfg, gt.racks);
      filter_eval_boxes(pred_boxes, cfg, gt.racks);
    }
    r.det_gt_boxes = gt_boxes.num_boxes();
    r.det_pred_boxes = pred_boxes.num_boxes();
    r.detection = evaluate_detection(gt_boxes, pred_boxes);
  }
  if (opt.planning) {
    r.planning = evaluate_planning(gt.planning, pred.trajectories);
    if (gt.planning.empty()) r.notes.push_back("planning: the ground truth has no planning targets");
  }
  if (opt.lanes) {
    std::vector<LaneFrame> frames = gt.lanes;
    size_t missing = 0;
    for (auto& f : frames) {
      auto it = pred.lanes.find(f.token);
      if (it == pred.lanes.end())
        ++missing;
      else
        f.preds = it->second;
    }
    if (missing)
      r.notes.push_back("lanes: " + std::to_string(missing) +
                        " lane frame(s) have no predicted lanes (all their GT lanes are misses)");
    if (gt.lanes.empty()) r.notes.push_back("lanes: the ground truth has no lane annotations");
    r.lanes = evaluate_lanes(frames);
  }
  return r;
}

std::string format_report(const EvalReport& r) {
  std::ostringstream os;
  if (r.detection) {
    const auto& d = *r.detection;
    os << "== nuScenes detection (detection_cvpr_2019; " << r.det_gt_boxes << " GT / "
       << r.det_pred_boxes << " predicted boxes after filtering) ==\n";
    os << "mAP: " << fmt("%.4f", d.mean_ap) << "\n";
    for (int k = 0; k < kNumTpMetrics; ++k)
      os << tp_metric_short_name(static_cast<TpMetric>(k)) << ": " << fmt("%.4f", d.tp_errors[k])
         << "\n";
    os << "NDS: " << fmt("%.4f", d.nd_score) << "\n\n";
    os << "Per-class results:\n";
    os << "Object Class          AP      ATE     ASE     AOE     AVE     AAE\n";
    for (const auto& cls : d.class_names) {
      char line[160];
      const auto& e = d.label_tp_errors.at(cls);
      std::snprintf(line, sizeof(line), "%-20s  %-6s  %-6s  %-6s  %-6s  %-6s  %s\n", cls.c_str(),
                    fmt("%.3f", d.mean_dist_aps.at(cls)).c_str(), fmt("%.3f", e[0]).c_str(),
                    fmt("%.3f", e[1]).c_str(), fmt("%.3f", e[2]).c_str(),
                    fmt("%.3f", e[3]).c_str(), fmt("%.3f", e[4]).c_str());
      os << line;
    }
    os << "\n";
  }
  if (r.planning) {
    const auto& p = *r.planning;
    os << "== OmniDrive planning (" << p.samples << " samples counted; skipped: "
       << p.skipped_no_prediction << " without prediction, " << p.skipped_unparsable
       << " unparsable, " << p.skipped_invalid_gt << " with an incomplete GT future) ==\n";
    os << "                 1s      2s      3s\n";
    auto row = [&](const char* name, const std::array<double, 3>& v) {
      char line[128];
      std::snprintf(line, sizeof(line), "%-14s  %-6s  %-6s  %s\n", name,
                    fmt("%.4f", v[0]).c_str(), fmt("%.4f", v[1]).c_str(),
                    fmt("%.4f", v[2]).c_str());
      os << line;
    };
    row("L2 (m)", p.l2);
    row("Collision", p.collision);
    row("Boundary", p.boundary);
    os << "\n";
  }
  if (r.lanes) {
    const auto& l = *r.lanes;
    os << "== OpenLane-V2 lane centerlines (" << l.num_frames << " frames, " << l.num_gt << " GT / "
       << l.num_pred << " predicted lanes) ==\n";
    os << "AP@1m: " << fmt("%.4f", l.ap[0]) << "  AP@2m: " << fmt("%.4f", l.ap[1])
       << "  AP@3m: " << fmt("%.4f", l.ap[2]) << "\n";
    os << "DET_l: " << fmt("%.4f", l.det_l) << "\n\n";
  }
  for (const auto& n : r.notes) os << "note: " << n << "\n";
  return os.str();
}

nlohmann::json report_to_json(const EvalReport& r) {
  nlohmann::json j = nlohmann::json::object();
  if (r.detection) {
    const auto& d = *r.detection;
    nlohmann::json det;
    det["mean_ap"] = num(d.mean_ap);
    det["nd_score"] = num(d.nd_score);
    for (int k = 0; k < kNumTpMetrics; ++k) {
      const char* name = tp_metric_name(static_cast<TpMetric>(k));
      det["tp_errors"][name] = num(d.tp_errors[k]);
      det["tp_scores"][name] = num(d.tp_scores[k]);
    }
    for (const auto& cls : d.class_names) {
      det["mean_dist_aps"][cls] = num(d.mean_dist_aps.at(cls));
      for (size_t t = 0; t < d.dist_ths.size(); ++t) {
        char key[16];
        std::snprintf(key, sizeof(key), "%.1f", d.dist_ths[t]);
        det["label_aps"][cls][key] = num(d.label_aps.at(cls)[t]);
      }
      for (int k = 0; k < kNumTpMetrics; ++k)
        det["label_tp_errors"][cls][tp_metric_name(static_cast<TpMetric>(k))] =
            num(d.label_tp_errors.at(cls)[k]);
    }
    det["num_gt_boxes"] = r.det_gt_boxes;
    det["num_pred_boxes"] = r.det_pred_boxes;
    j["detection"] = det;
  }
  if (r.planning) {
    const auto& p = *r.planning;
    nlohmann::json pl;
    for (int h = 0; h < 3; ++h) {
      const std::string s = std::to_string(h + 1) + "s";
      pl["plan_obj_box_col_" + s] = num(p.collision[h]);
      pl["plan_boundary_" + s] = num(p.boundary[h]);
      pl["l2_" + s] = num(p.l2[h]);
    }
    pl["samples"] = p.samples;
    pl["skipped_no_prediction"] = p.skipped_no_prediction;
    pl["skipped_unparsable"] = p.skipped_unparsable;
    pl["skipped_invalid_gt"] = p.skipped_invalid_gt;
    j["planning"] = pl;
  }
  if (r.lanes) {
    const auto& l = *r.lanes;
    nlohmann::json ln;
    ln["DET_l"] = num(l.det_l);
    ln["AP_1.0"] = num(l.ap[0]);
    ln["AP_2.0"] = num(l.ap[1]);
    ln["AP_3.0"] = num(l.ap[2]);
    ln["num_frames"] = l.num_frames;
    ln["num_gt"] = l.num_gt;
    ln["num_pred"] = l.num_pred;
    j["lanes"] = ln;
  }
  j["notes"] = r.notes;
  return j;
}

}  // namespace omnirt::eval
