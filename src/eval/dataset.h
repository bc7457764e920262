// Ground truth and prediction files for `omnirt eval` (format: docs/eval_format.md).
//
// Ground truth: one JSON file with per-sample boxes (nuScenes conventions, global frame), the ego
// pose, the planning target with the agents and drivable mask the planning metrics need, and the
// lane centerlines. Predictions: either a nuScenes-style {"results": {token: ...}} object or the
// {"frames": [...]} list that `omnirt run` writes. Every malformed input is reported as an
// omnirt::Error naming the file, the sample token or index and the field.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "eval/detection.h"
#include "eval/lanes.h"
#include "eval/planning.h"

namespace omnirt::eval {

struct EgoPose {
  std::array<double, 3> translation{0, 0, 0};
  std::array<double, 4> rotation{1, 0, 0, 0};  // w, x, y, z (ego -> global)
};

struct GroundTruth {
  std::string path;
  std::vector<std::string> tokens;  // file order
  std::unordered_map<std::string, EgoPose> ego_poses;
  // Detection: every sample (an absent "boxes" list is an empty one). ego_translation is filled.
  EvalBoxes boxes;
  std::unordered_map<std::string, std::vector<RackBox>> racks;
  // Planning: samples that carry a "planning" object, in file order.
  std::vector<PlanningSample> planning;
  // Lanes: samples that carry a "lanes" list, in file order (preds empty).
  std::vector<LaneFrame> lanes;
  bool has_lanes(const std::string& token) const;
};

struct Predictions {
  std::string path;
  std::vector<std::string> tokens;  // file order (decides detection score ties)
  EvalBoxes boxes;                  // global frame, ego_translation filled from the GT ego pose
  std::unordered_map<std::string, std::vector<Lane>> lanes;
  // token -> parsed trajectory; nullopt when an answer/trajectory is present but not usable.
  std::map<std::string, std::optional<std::vector<Waypoint>>> trajectories;
  std::map<std::string, std::string> answers;  // raw answer text, when given
};

// Also reads a scene folder's ground_truth.json ("format": "omnirt-scene-gt", ego-frame boxes,
// gt_planning; docs/eval_format.md), converted to this layout with identity ego poses.
GroundTruth load_ground_truth(const std::string& path);
GroundTruth parse_ground_truth(const std::string& text, const std::string& name);

// The samples of `gt` whose tokens are in `tokens` (file order kept); a token the ground truth
// does not have is an error naming it.
GroundTruth subset_ground_truth(const GroundTruth& gt, const std::vector<std::string>& tokens);

// Prediction tokens must all exist in `gt` (the error names the first one that does not).
// `path` may also be an `omnirt run` output folder (its frame_*.json files; failed frames are
// left out).
Predictions load_predictions(const std::string& path, const GroundTruth& gt);
Predictions parse_predictions(const std::string& text, const std::string& name,
                              const GroundTruth& gt);

// Rigid transform of an ego-frame box into the global frame with the sample's ego pose.
DetectionBox ego_box_to_global(const DetectionBox& box, const EgoPose& pose);

}  // namespace omnirt::eval
