// `omnirt eval` end to end: run the selected metrics on loaded GT/predictions and report them as
// a devkit-style text table and as JSON.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "eval/dataset.h"

namespace omnirt::eval {

struct EvalOptions {
  bool detection = true, planning = true, lanes = true;
  bool filter_boxes = true;  // the devkit's range / num_pts / bike-rack filter
};

struct EvalReport {
  std::optional<DetectionMetrics> detection;
  size_t det_gt_boxes = 0, det_pred_boxes = 0;  // after filtering
  std::optional<PlanningMetrics> planning;
  std::optional<LaneMetrics> lanes;
  std::vector<std::string> notes;  // e.g. samples without predictions
};

EvalReport run_evaluation(const GroundTruth& gt, const Predictions& pred, const EvalOptions& opt);
std::string format_report(const EvalReport& report);
nlohmann::json report_to_json(const EvalReport& report);

}  // namespace omnirt::eval
