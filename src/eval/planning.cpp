#include "eval/planning.h"

#include <cmath>
#include <limits>
#include <regex>

#include "core/error.h"

namespace omnirt::eval {
namespace {

// The grid constants are float32 tensors in the original (torch.Tensor / torch.tensor of Python
// floats); every use promotes them to float64 with their float32 values.
constexpr float kBxF = -49.95f;  // X_BOUND[0] + X_BOUND[2] / 2
constexpr float kDxF = 0.1f;     // resolution
const double kBx = static_cast<double>(kBxF);
const double kDx = static_cast<double>(kDxF);
// bev_resolution / 2.0 is a float32 array divided by a Python float: stays float32.
const double kHalfRes = static_cast<double>(kDxF / 2.0f);
// bx / dx of two float32 arrays: a float32 division.
const double kBxOverDx = static_cast<double>(kBxF / kDxF);

constexpr double kEgoOffset = 0.5 + 0.985793;  // LiDAR-IMU offset in the original
constexpr double kEgoCollisionLength = 4.084, kEgoCollisionWidth = 1.85;
constexpr double kEgoBoundaryLength = 4.08, kEgoBoundaryWidth = 1.85;

bool is_vehicle_category(int c) { return c >= 8 && c <= 17; }

// M1: world -> pixel index of the polygon rasters (np.round half to even, then int32).
long long m1_pixel(double p) {
  return static_cast<long long>(std::nearbyint(((p - kBx) + kHalfRes) / kDx));
}

}  // namespace

// ---- answer parser --------------------------------------------------------------------------

std::optional<std::vector<std::vector<double>>> parse_planning_answer_raw(const std::string& text) {
  static const std::regex block(
      R"(\[PT, \((\+?[\d\.-]+, \+?[\d\.-]+)\)(, \(\+?[\d\.-]+, \+?[\d\.-]+\))*\])");
  static const std::regex tuple(R"(\(\+?[\d\.-]+, \+?[\d\.-]+\))");
  static const std::regex number(R"(-?\d+\.\d+)");
  std::smatch m;
  if (!std::regex_search(text, m, block)) return std::nullopt;
  const std::string found = m.str(0);
  std::vector<std::vector<double>> out;
  for (auto it = std::sregex_iterator(found.begin(), found.end(), tuple);
       it != std::sregex_iterator(); ++it) {
    const std::string t = it->str(0);
    std::vector<double> values;
    for (auto jt = std::sregex_iterator(t.begin(), t.end(), number); jt != std::sregex_iterator();
         ++jt)
      values.push_back(std::strtod(jt->str(0).c_str(), nullptr));
    out.push_back(std::move(values));
  }
  return out;
}

std::optional<std::vector<Waypoint>> parse_planning_trajectory(const std::string& text) {
  const auto raw = parse_planning_answer_raw(text);
  if (!raw || raw->size() != 6) return std::nullopt;
  std::vector<Waypoint> traj;
  for (const auto& t : *raw) {
    if (t.size() != 2) return std::nullopt;
    traj.push_back({t[0], t[1]});
  }
  return traj;
}

// ---- rasters ----------------------------------------------------------------------------------

void fill_box_cv(Raster& img, double x, double y, double yaw, double length_along,
                 double width_across) {
  // _get_poly_region_in_image with agent_length = width_across, agent_width = length_along and
  // rot = [[-sin, cos], [cos, sin]]: corner (c0, c1) -> (-sin*c0 + cos*c1, cos*c0 + sin*c1).
  const double s = std::sin(yaw), c = std::cos(yaw);
  const double a = width_across / 2, b = length_along / 2;
  const double c0[4] = {a, -a, -a, a};
  const double c1[4] = {b, b, -b, -b};
  std::vector<std::array<long long, 2>> pts(4);
  for (int k = 0; k < 4; ++k) {
    const double px = (-s) * c0[k] + c * c1[k] + x;
    const double py = c * c0[k] + s * c1[k] + y;
    pts[k] = {m1_pixel(px), m1_pixel(py)};
  }
  fill_poly_cv(img, pts, 1);
}

std::vector<Raster> agent_occupancy(const std::vector<PlanningAgent>& agents) {
  std::vector<Raster> frames(7, Raster(kBevSize, kBevSize));
  for (const auto& a : agents) {
    if (!is_vehicle_category(a.category)) continue;
    double cx = 0, cy = 0, cyaw = 0;  // cumulative sums of the deltas
    for (int t = 0; t < 7; ++t) {
      double x = a.x, y = a.y, yaw = a.yaw;
      bool valid = true;
      if (t > 0) {
        cx += a.fut_delta[t - 1][0];
        cy += a.fut_delta[t - 1][1];
        cyaw += a.fut_yaw[t - 1];
        x = cx + a.x;
        y = cy + a.y;
        yaw = cyaw + a.yaw;
        valid = a.fut_mask[t - 1] == 1;
      }
      if (valid) fill_box_cv(frames[t], x, y, yaw, a.l, a.w);
    }
  }
  return frames;
}

const std::vector<std::array<long long, 2>>& ego_collision_footprint() {
  static const std::vector<std::array<long long, 2>> footprint = [] {
    const double x_lo = -kEgoCollisionLength / 2. + 0.5 + 0.985793;
    const double x_hi = kEgoCollisionLength / 2. + 0.5 + 0.985793;
    const double half_w = kEgoCollisionWidth / 2.;
    const double xs[4] = {x_lo, x_hi, x_hi, x_lo};
    const double ys[4] = {half_w, half_w, -half_w, -half_w};
    std::vector<double> r(4), c(4);
    for (int k = 0; k < 4; ++k) {
      r[k] = (xs[k] - kBx) / kDx;  // x grid coordinate -> skimage rows
      c[k] = (ys[k] - kBx) / kDx;  // y grid coordinate -> skimage cols
    }
    return polygon_skimage(r, c);  // (x-index, y-index)
  }();
  return footprint;
}

std::vector<bool> trajectory_collisions(const std::vector<Waypoint>& traj,
                                        const std::vector<Raster>& frames, size_t first_frame) {
  OMNIRT_CHECK(frames.size() >= traj.size() + first_frame, "trajectory_collisions: ", traj.size(),
               " steps but only ", frames.size(), " occupancy frames");
  const auto& fp = ego_collision_footprint();
  std::vector<bool> out(traj.size(), false);
  Waypoint prev = {0.0, 0.0};
  for (size_t k = 0; k < traj.size(); ++k) {
    const double dx = traj[k][0] - prev[0], dy = traj[k][1] - prev[1];
    prev = traj[k];
    double angle = std::atan2(dy, dx);
    if (std::sqrt(dx * dx + dy * dy) < 1) angle = 0;  // reset, not "keep the previous heading"
    // rot_mat = torch.Tensor([[cos, -sin], [sin, cos]]) of -angle: float32 entries.
    const double rs = std::sin(-angle), rc = std::cos(-angle);
    const double m00 = static_cast<float>(rc), m01 = static_cast<float>(-rs);
    const double m10 = static_cast<float>(rs), m11 = static_cast<float>(rc);
    const double px = traj[k][0] / kDx, py = traj[k][1] / kDx;
    const Raster& occ = frames[first_frame + k];
    bool hit = false;
    for (const auto& p : fp) {
      const double ux = static_cast<double>(p[0]) + kBxOverDx;
      const double uy = static_cast<double>(p[1]) + kBxOverDx;
      // rc_ori @ rot_mat - bx/dx, rounded half to even.
      const double rx = std::nearbyint((ux * m00 + uy * m10) - kBxOverDx);
      const double ry = std::nearbyint((ux * m01 + uy * m11) - kBxOverDx);
      // + traj/dx, truncation toward zero (astype int32), clip.
      long long xi = static_cast<long long>(std::trunc(px + rx));
      long long yi = static_cast<long long>(std::trunc(py + ry));
      xi = std::clamp<long long>(xi, 0, kBevSize - 1);
      yi = std::clamp<long long>(yi, 0, kBevSize - 1);
      if (occ.at(static_cast<int>(yi), static_cast<int>(xi)) != 0) {
        hit = true;
        break;
      }
    }
    out[k] = hit;
  }
  return out;
}

std::vector<Raster> ego_boundary_frames(const std::vector<Waypoint>& traj) {
  OMNIRT_CHECK(traj.size() == 6, "ego_boundary_frames: expected 6 waypoints, got ", traj.size());
  std::vector<Raster> frames(7, Raster(kBevSize, kBevSize));
  fill_box_cv(frames[0], kEgoOffset, 0.0, 0.0, kEgoBoundaryLength, kEgoBoundaryWidth);
  for (int k = 0; k < 6; ++k) {
    const double heading = k == 0 ? std::atan2(traj[0][1], traj[0][0])
                                   : std::atan2(traj[k][1] - traj[k - 1][1],
                                                traj[k][0] - traj[k - 1][0]);
    // Centre = waypoint + (offset, 0): the offset is not rotated with the heading.
    fill_box_cv(frames[k + 1], traj[k][0] + kEgoOffset, traj[k][1] + 0.0, heading + 0.0,
                kEgoBoundaryLength, kEgoBoundaryWidth);
  }
  return frames;
}

namespace {
bool touches_non_drivable(const Raster& ego, const Raster* drivable) {
  if (!drivable) return false;
  for (int r = ego.min_row; r <= ego.max_row; ++r)
    for (int c = ego.min_col; c <= ego.max_col; ++c)
      if (ego.at(r, c) == 1 && drivable->at(r, c) == 0) return true;
  return false;
}
}  // namespace

PlanningSampleResult evaluate_planning_sample(const PlanningSample& sample,
                                              const std::optional<std::vector<Waypoint>>& pred) {
  PlanningSampleResult res;
  if (!pred) {
    res.skip_reason = "no usable trajectory";
    return res;
  }
  OMNIRT_CHECK(pred->size() == 6, "sample ", sample.token, ": expected 6 predicted waypoints, got ",
               pred->size());
  for (bool v : sample.gt_mask)
    if (!v) {
      res.skip_reason = "ground-truth future not fully valid";
      return res;
    }
  if (sample.drivable)
    OMNIRT_CHECK(sample.drivable->rows == kBevSize && sample.drivable->cols == kBevSize,
                 "sample ", sample.token, ": drivable mask must be ", kBevSize, "x", kBevSize,
                 ", got ", sample.drivable->rows, "x", sample.drivable->cols);
  res.counted = true;

  const std::vector<Raster> occupancy = agent_occupancy(sample.agents);
  const std::vector<Raster> ego = ego_boundary_frames(*pred);
  const Raster* drivable = sample.drivable.get();
  const bool rec_out = touches_non_drivable(ego[0], drivable);
  std::array<bool, 7> out_at{};
  for (int k = 1; k <= 6; ++k) out_at[k] = touches_non_drivable(ego[k], drivable);

  const std::vector<Waypoint> gt(sample.gt_traj.begin(), sample.gt_traj.end());
  for (int h = 0; h < 3; ++h) {
    const int K = (h + 1) * 2;
    // L2: sequential sum from 0 over the first K steps, divided by K.
    double sum = 0;
    for (int k = 0; k < K; ++k) {
      const double dx = (*pred)[k][0] - gt[k][0], dy = (*pred)[k][1] - gt[k][1];
      sum += std::sqrt(dx * dx + dy * dy);
    }
    res.l2[h] = sum / K;
    // Collision: both trajectories sliced to K steps (headings only look back).
    const std::vector<Waypoint> p_k(pred->begin(), pred->begin() + K);
    const std::vector<Waypoint> g_k(gt.begin(), gt.begin() + K);
    const auto gt_coll = trajectory_collisions(g_k, occupancy, 1);
    const auto pred_coll = trajectory_collisions(p_k, occupancy, 1);
    int any = 0;
    for (int k = 0; k < K; ++k) any = std::max(any, (pred_coll[k] && !gt_coll[k]) ? 1 : 0);
    res.collision[h] = any;
    bool out = false;
    for (int k = 1; k <= K; ++k) out = out || out_at[k];
    res.boundary[h] = (out && !rec_out) ? 1 : 0;
  }
  return res;
}

PlanningMetrics evaluate_planning(
    const std::vector<PlanningSample>& samples,
    const std::map<std::string, std::optional<std::vector<Waypoint>>>& preds) {
  PlanningMetrics m;
  std::array<double, 3> l2{}, col{}, bnd{};
  for (const auto& s : samples) {
    auto it = preds.find(s.token);
    if (it == preds.end()) {
      ++m.skipped_no_prediction;
      continue;
    }
    if (!it->second) {
      ++m.skipped_unparsable;
      continue;
    }
    const PlanningSampleResult r = evaluate_planning_sample(s, it->second);
    if (!r.counted) {
      ++m.skipped_invalid_gt;
      continue;
    }
    ++m.samples;
    for (int h = 0; h < 3; ++h) {
      l2[h] += r.l2[h];
      col[h] += r.collision[h];
      bnd[h] += r.boundary[h];
    }
  }
  const double n = m.samples;
  for (int h = 0; h < 3; ++h) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    m.l2[h] = m.samples ? l2[h] / n : nan;
    m.collision[h] = m.samples ? col[h] / n : nan;
    m.boundary[h] = m.samples ? bnd[h] / n : nan;
  }
  return m;
}

}  // namespace omnirt::eval
