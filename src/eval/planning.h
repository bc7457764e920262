// OmniDrive open-loop planning metrics: L2, box collision rate and road-boundary rate at 1/2/3 s.
//
// A port of NVlabs/OmniDrive evaluation/eval_planning.py + planning_utils.py with the same
// arithmetic (float32 grid constants, OpenCV/skimage rasterisation, rounding and truncation), see
// /work/shared/spec/evaluation.md §2. Deliberate differences from the original are documented in
// docs/eval_format.md (an answer with other than six waypoints is not counted; the original
// counts n > 6 with garbage boundary rasters).
#pragma once

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "eval/raster.h"

namespace omnirt::eval {

using Waypoint = std::array<double, 2>;  // (x forward, y left) metres, current ego frame

// Text -> waypoints, as eval_planning.py main(): the first "[PT, (a, b), ...]" block; inside it
// every "(a, b)" tuple; inside a tuple every "-?\d+\.\d+" number. Returns nullopt when no block
// is found. Tuples may come back with 0, 1 or more numbers (integers without a decimal point are
// dropped, as in the original); see parse_planning_trajectory for the usable form.
std::optional<std::vector<std::vector<double>>> parse_planning_answer_raw(const std::string& text);

// The waypoints the metrics can use: exactly 6 tuples of exactly 2 numbers, otherwise nullopt
// (the original drops n < 6 and ragged answers through an exception, see docs/eval_format.md).
std::optional<std::vector<Waypoint>> parse_planning_trajectory(const std::string& text);

// One other road user, in the current ego frame (gt_boxes / gt_fut_* of the OmniDrive infos).
struct PlanningAgent {
  double x = 0, y = 0;
  double l = 0, w = 0;  // length (along yaw) and width, metres
  double yaw = 0;
  int category = -1;    // index into nuScenes category.json (vehicles are 8..17)
  std::array<Waypoint, 6> fut_delta{};  // per-step centre deltas (first 6 of 12)
  std::array<double, 6> fut_mask{};     // 1 where the future step is valid
  std::array<double, 6> fut_yaw{};      // per-step yaw deltas
};

constexpr int kBevSize = 1000;  // 100 m at 0.1 m

struct PlanningSample {
  std::string token;
  std::array<Waypoint, 6> gt_traj{};  // future ego positions at 0.5 s .. 3.0 s
  std::array<bool, 6> gt_mask{};      // gt_planning_mask (both coordinates) per step
  std::vector<PlanningAgent> agents;
  // 1000x1000, rows = y, cols = x, 1 = drivable (get_map_mask layout). Null = every pixel
  // drivable (no map available).
  std::shared_ptr<const Raster> drivable;
  std::string command;  // informational
};

struct PlanningSampleResult {
  bool counted = false;
  std::string skip_reason;  // when not counted
  std::array<double, 3> l2{};
  std::array<int, 3> collision{};
  std::array<int, 3> boundary{};
};

struct PlanningMetrics {
  int samples = 0;          // the denominator (counted samples)
  int skipped_no_prediction = 0, skipped_unparsable = 0, skipped_invalid_gt = 0;
  std::array<double, 3> l2{}, collision{}, boundary{};  // 1 s, 2 s, 3 s (NaN if samples == 0)
};

// ---- building blocks (exposed for tests) ------------------------------------------------------

// get_birds_eye_view_label(add_rec=True): 7 frames (current + 6 futures) of vehicle occupancy.
std::vector<Raster> agent_occupancy(const std::vector<PlanningAgent>& agents);

// The polygon raster of one box (M1 map + cv2.fillPoly): centre, yaw, size along/across yaw.
void fill_box_cv(Raster& img, double x, double y, double yaw, double length_along,
                 double width_across);

// The ego collision footprint of evaluate_single_coll: (x-index, y-index) pixels (M2 map).
const std::vector<std::array<long long, 2>>& ego_collision_footprint();

// evaluate_single_coll: per-step collision flags; step k is tested against
// frames[first_frame + k] (the evaluator passes the agent frames 1..6, i.e. first_frame = 1).
std::vector<bool> trajectory_collisions(const std::vector<Waypoint>& traj,
                                        const std::vector<Raster>& frames, size_t first_frame);

// get_ego_seg(add_rec=True) for a 6-point trajectory: frame 0 + 6 future frames.
std::vector<Raster> ego_boundary_frames(const std::vector<Waypoint>& traj);

PlanningSampleResult evaluate_planning_sample(const PlanningSample& sample,
                                              const std::optional<std::vector<Waypoint>>& pred);

// Over a dataset: `preds` maps token -> parsed trajectory (nullopt = answer present but not
// parsable); tokens missing from `preds` have no prediction. Samples are taken in `samples` order.
PlanningMetrics evaluate_planning(
    const std::vector<PlanningSample>& samples,
    const std::map<std::string, std::optional<std::vector<Waypoint>>>& preds);

}  // namespace omnirt::eval
