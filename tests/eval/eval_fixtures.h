// JSON fixtures shared by the dataset and CLI tests: the golden cases of spec/evaluation.md
// (§1.10-D detection, §2.9 planning, §3.2 lanes) written in the docs/eval_format.md layout.
#pragma once

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace omnirt::eval::fixtures {

using Json = nlohmann::ordered_json;
inline const double kPi = std::acos(-1.0);

inline Json box(const std::string& name, std::vector<double> t, std::vector<double> s, double yaw,
                Json v, const std::string& attr, double score = -1) {
  Json b = {{"detection_name", name}, {"translation", t}, {"size", s}, {"yaw", yaw},
            {"velocity", v},          {"attribute_name", attr}};
  if (score >= 0) b["detection_score"] = score;
  return b;
}

inline std::string fmt_num(double v) {
  if (std::abs(std::round(v * 100) / 100) <= 0.01) return "0.0";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%+.2f", v);
  return buf;
}

inline std::string answer(const std::vector<std::array<double, 2>>& pts) {
  std::string s = "Here is the planning trajectory [PT";
  for (const auto& p : pts) s += ", (" + fmt_num(p[0]) + ", " + fmt_num(p[1]) + ")";
  return s + "].";
}

inline Json traj(double dx, double dy) {
  Json t = Json::array();
  for (int k = 1; k <= 6; ++k) t.push_back({dx * k, dy * k});
  return t;
}

inline std::vector<std::array<double, 2>> pts(double dx, double dy) {
  std::vector<std::array<double, 2>> t;
  for (int k = 1; k <= 6; ++k) t.push_back({dx * k, dy * k});
  return t;
}

inline Json agent(double x, double y, double yaw, int cat) {
  return {{"x", x}, {"y", y}, {"l", 4.5}, {"w", 2.0}, {"yaw", yaw}, {"category", cat}};
}

inline Json lane(double x0, double y0, double dx, double dy) {
  Json p = Json::array();
  for (int i = 0; i <= 10; ++i) p.push_back({x0 + i * dx, y0 + i * dy, 0.0});
  return p;
}

// GT with samples s1..s3 (detection fixture D), p1..p8 (planning) and f1, f2 (lanes).
inline Json golden_gt() {
  const Json nan2 = {nullptr, nullptr};
  Json samples = Json::array();
  auto sample = [](const std::string& token) {
    return Json{{"token", token},
                {"ego_pose", {{"translation", {0, 0, 0}}, {"rotation", {1, 0, 0, 0}}}}};
  };
  Json s1 = sample("s1"), s2 = sample("s2"), s3 = sample("s3");
  s1["boxes"] = {
      box("car", {10, 0, 0}, {2, 4.5, 1.5}, 0, {5, 0}, "vehicle.moving"),
      box("car", {20, 5, 0}, {2, 4, 1.6}, kPi / 2, {0, 0}, "vehicle.parked"),
      box("pedestrian", {5, -3, 0}, {0.6, 0.7, 1.8}, kPi, {1, 1}, "pedestrian.moving"),
      box("barrier", {8, 8, 0}, {2.5, 0.5, 1}, 0.3, {0, 0}, ""),
      box("traffic_cone", {6, 2, 0}, {0.4, 0.4, 1}, 0, {0, 0}, "")};
  s2["boxes"] = {box("car", {0, 15, 0}, {2, 4.5, 1.5}, -kPi / 4, nan2, ""),
                 box("truck", {-12, 3, 0}, {2.5, 8, 3}, 0, {3, 0}, "vehicle.moving"),
                 box("pedestrian", {3, 3, 0}, {0.6, 0.7, 1.8}, 0.5, {0, 1}, "pedestrian.standing")};
  s3["boxes"] = Json::array();
  samples.push_back(s1);
  samples.push_back(s2);
  samples.push_back(s3);

  const Json gt_p2 = {{1, 0}, {2, 0}, {3, 0}, {4, 0}, {4, 0}, {4, 0}};
  // "road": drivable only on rows 450..550, as run lengths (0s first).
  const Json road = {{"rle", {450 * 1000, 101 * 1000, 449 * 1000}}};
  auto plan = [&](const std::string& token, Json gt_traj, Json agents, Json drivable,
                  Json mask = nullptr) {
    Json s = sample(token);
    s["planning"] = {{"trajectory", gt_traj}, {"agents", agents}, {"drivable", drivable},
                     {"command", "go straight"}};
    if (!mask.is_null()) s["planning"]["mask"] = mask;
    return s;
  };
  samples.push_back(plan("p1", traj(2, 0), Json::array(), "all"));
  samples.push_back(plan("p2", gt_p2, {agent(10, 0, 0, 8)}, "all"));
  samples.push_back(plan("p3", gt_p2, {agent(10, 0, 0, 0)}, "all"));
  samples.push_back(plan("p4", traj(3, 0), Json::array(), road));
  samples.push_back(plan("p5", traj(2, 0), Json::array(), "all", {1, 1, 1, 1, 0, 0}));
  samples.push_back(plan("p6", traj(2, 0), Json::array(), "all"));
  samples.push_back(plan("p7", traj(2, 0), {agent(14, 3, kPi / 4, 12)}, "all"));
  samples.push_back(plan("p8", traj(2, 0), {agent(14, 4, kPi / 4, 12)}, "all"));

  Json f1 = sample("f1"), f2 = sample("f2");
  f1["lanes"] = {{{"points", lane(0, 0, 3, 0)}}, {{"points", lane(0, 3.5, 3, 0)}},
                 {{"points", lane(-30, -3.5, 3, 0)}}};
  f2["lanes"] = {{{"points", lane(40, 0, 2, 0.5)}}};
  samples.push_back(f1);
  samples.push_back(f2);
  return {{"format", "omnirt-eval-gt"}, {"version", 1}, {"samples", samples}};
}

// Predictions in the `results` layout; detection sample order s1, s2, s3 (or as given).
inline Json golden_pred(const std::vector<std::string>& det_order = {"s1", "s2", "s3"}) {
  Json det;
  det["s1"] = {
      box("car", {10.3, 0.4, 0}, {2.1, 4.4, 1.5}, 0.1, {4.5, 0.2}, "vehicle.moving", 0.9),
      box("car", {19, 5.5, 0}, {1.9, 4.2, 1.5}, kPi / 2 + kPi, {0.5, 0}, "vehicle.moving", 0.6),
      box("car", {30, -10, 0}, {2, 4.5, 1.5}, 0, {0, 0}, "vehicle.parked", 0.75),
      box("pedestrian", {5.2, -3.1, 0}, {0.5, 0.6, 1.7}, 3.0, {0.8, 1.2}, "pedestrian.standing",
          0.8),
      box("barrier", {8.1, 8.2, 0}, {2.4, 0.6, 1}, 0.3 + kPi, {0, 0}, "", 0.7),
      box("traffic_cone", {6.1, 2, 0}, {0.4, 0.4, 1}, 0, {0, 0}, "", 0.5)};
  det["s2"] = {
      box("car", {0.8, 15.5, 0}, {2, 4.5, 1.5}, -kPi / 4 + 0.2, {1, 1}, "vehicle.parked", 0.9),
      box("truck", {-13.5, 3, 0}, {2.5, 8, 3}, 0, {3, 0}, "vehicle.moving", 0.55),
      box("pedestrian", {3.3, 2.6, 0}, {0.6, 0.7, 1.8}, 0.5, {0, 1}, "pedestrian.standing", 0.3),
      box("pedestrian", {3.1, 3.1, 0}, {0.6, 0.7, 1.8}, 0.5, {0, 1}, "pedestrian.moving", 0.35)};
  det["s3"] = {box("car", {5, 5, 0}, {2, 4.5, 1.5}, 0, {0, 0}, "vehicle.parked", 0.95)};
  Json results = Json::object();
  for (const auto& s : det_order) results[s] = {{"boxes", det[s]}};

  const std::vector<std::array<double, 2>> p7 = {{2, 0}, {4, 0.2}, {6, 0.6},
                                                 {8, 1.2}, {10, 2}, {12, 3}};
  results["p1"] = {{"answer", answer(pts(2.1, 0.05))}};
  results["p2"] = {{"answer", answer(pts(1.5, 0))}};
  results["p3"] = {{"answer", answer(pts(1.5, 0))}};
  results["p4"] = {{"answer", answer({{3, 0.5}, {6, 1.5}, {9, 3}, {12, 4.5}, {15, 6}, {18, 7.5}})}};
  results["p5"] = {{"answer", answer(pts(2, 1))}};
  results["p6"] = {{"answer", "I would keep going straight at the same speed."}};
  results["p7"] = {{"answer", answer(p7)}};
  results["p8"] = {{"answer", answer(p7)}};

  auto pl = [](double x0, double y0, double dx, double dy, double c) {
    return Json{{"points", lane(x0, y0, dx, dy)}, {"confidence", c}};
  };
  results["f1"] = {{"lanes",
                    {pl(0, 0.4, 3, 0, 0.9), pl(0, 5.0, 3, 0, 0.8), pl(0, 0.2, 3, 0, 0.7),
                     pl(0, -3.5, -3, 0, 0.6)}}};
  results["f2"] = {{"lanes", {pl(40, 2.5, 2, 0.5, 0.95)}}};
  return {{"meta", {{"use_camera", true}}}, {"results", results}};
}

}  // namespace omnirt::eval::fixtures
