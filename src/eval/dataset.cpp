#include "eval/dataset.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_set>

#include "core/error.h"

namespace omnirt::eval {
namespace {

// ordered_json keeps the key order of the file: the devkit iterates predictions in insertion
// order, and that order decides ties between equal scores.
using Json = nlohmann::ordered_json;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  OMNIRT_CHECK(in.good(), what, " file '", path, "' cannot be opened");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Json parse_json(const std::string& text, const std::string& name) {
  try {
    return Json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    OMNIRT_FAIL(name, ": malformed or truncated JSON (", e.what(), ")");
  } catch (const nlohmann::json::out_of_range& e) {
    // JSON has no NaN/Inf literals; a non-finite value arrives as a number that overflows a
    // double. The parser does not say where, so find the first such literal ourselves.
    size_t line = 1, col = 1, pos = 0;
    for (; pos < text.size(); ++pos) {
      if (text[pos] == '\n') {
        ++line;
        col = 1;
        continue;
      }
      if ((text[pos] == '-' || std::isdigit(static_cast<unsigned char>(text[pos]))) &&
          (pos == 0 || std::string(",[: \t\n\r").find(text[pos - 1]) != std::string::npos)) {
        char* end = nullptr;
        const double v = std::strtod(text.c_str() + pos, &end);
        if (!std::isfinite(v)) break;
      }
      ++col;
    }
    OMNIRT_FAIL(name, ": non-finite number at line ", line, ", column ", col,
                " (every value must be a finite number; ", e.what(), ")");
  }
}

// Where we are in a file, for error messages: "gt.json: sample 'abc' (index 3): box 2".
struct Ctx {
  std::string file;
  std::string where;
  Ctx sub(const std::string& more) const { return {file, where.empty() ? more : where + ": " + more}; }
  std::string at(const std::string& field) const {
    return file + ": " + (where.empty() ? "" : where + ": ") + "field '" + field + "'";
  }
};

const Json& require(const Json& obj, const std::string& key, const Ctx& ctx) {
  OMNIRT_CHECK(obj.is_object(), ctx.file, ": ", ctx.where, ": expected a JSON object, got ",
               obj.type_name());
  auto it = obj.find(key);
  OMNIRT_CHECK(it != obj.end(), ctx.at(key), ": missing");
  return *it;
}

double number(const Json& v, const Ctx& ctx, const std::string& field, bool allow_null = false) {
  if (allow_null && v.is_null()) return kNaN;
  OMNIRT_CHECK(v.is_number(), ctx.at(field), ": expected a number, got ", v.type_name(),
               allow_null ? " (null is allowed for NaN)" : "");
  const double d = v.get<double>();
  OMNIRT_CHECK(std::isfinite(d), ctx.at(field), ": expected a finite number, got ", d);
  return d;
}

template <size_t N>
std::array<double, N> vec(const Json& v, const Ctx& ctx, const std::string& field,
                          bool allow_null = false) {
  OMNIRT_CHECK(v.is_array() && v.size() == N, ctx.at(field), ": expected an array of ", N,
               " numbers, got ", v.is_array() ? std::to_string(v.size()) + " values" : v.type_name());
  std::array<double, N> out{};
  for (size_t i = 0; i < N; ++i)
    out[i] = number(v[i], ctx, field + "[" + std::to_string(i) + "]", allow_null);
  return out;
}

std::string string_field(const Json& obj, const std::string& key, const Ctx& ctx,
                         const std::string& fallback, bool required) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    OMNIRT_CHECK(!required, ctx.at(key), ": missing");
    return fallback;
  }
  OMNIRT_CHECK(it->is_string(), ctx.at(key), ": expected a string, got ", it->type_name());
  return it->get<std::string>();
}

std::array<double, 4> rotation_field(const Json& obj, const Ctx& ctx) {
  if (obj.contains("rotation")) return vec<4>(obj["rotation"], ctx, "rotation");
  OMNIRT_CHECK(obj.contains("yaw"), ctx.at("rotation"), ": missing (give 'rotation' [w,x,y,z] or 'yaw')");
  return yaw_to_quaternion(number(obj["yaw"], ctx, "yaw"));
}

EgoPose parse_pose(const Json& v, const Ctx& ctx) {
  EgoPose p;
  p.translation = vec<3>(require(v, "translation", ctx), ctx, "translation");
  p.rotation = rotation_field(v, ctx);
  return p;
}

DetectionBox parse_box(const Json& b, const Ctx& ctx, bool is_gt) {
  OMNIRT_CHECK(b.is_object(), ctx.file, ": ", ctx.where, ": expected a box object, got ",
               b.type_name());
  DetectionBox box;
  box.detection_name = string_field(b, "detection_name", ctx, "", true);
  OMNIRT_CHECK(is_detection_class(box.detection_name), ctx.at("detection_name"),
               ": unknown detection class '", box.detection_name,
               "' (expected one of car, truck, bus, trailer, construction_vehicle, pedestrian, "
               "motorcycle, bicycle, traffic_cone, barrier)");
  box.translation = vec<3>(require(b, "translation", ctx), ctx, "translation");
  box.size = vec<3>(require(b, "size", ctx), ctx, "size");
  for (int i = 0; i < 3; ++i)
    OMNIRT_CHECK(box.size[i] > 0, ctx.at("size"), ": sizes (w, l, h) must be > 0, got [",
                 box.size[0], ", ", box.size[1], ", ", box.size[2], "]");
  box.rotation = rotation_field(b, ctx);
  // Velocity may be NaN (null): the devkit's GT has NaN velocity for single-annotation instances.
  box.velocity = b.contains("velocity") ? vec<2>(b["velocity"], ctx, "velocity", true)
                                        : std::array<double, 2>{kNaN, kNaN};
  box.attribute_name = string_field(b, "attribute_name", ctx, "", false);
  OMNIRT_CHECK(box.attribute_name.empty() || is_detection_attribute(box.attribute_name),
               ctx.at("attribute_name"), ": unknown attribute '", box.attribute_name, "'");
  if (is_gt) {
    box.detection_score = -1.0;
    box.num_pts = -1;
    if (b.contains("num_pts")) {
      const double n = number(b["num_pts"], ctx, "num_pts");
      OMNIRT_CHECK(n >= 0 && n == std::floor(n), ctx.at("num_pts"),
                   ": expected a non-negative integer, got ", n);
      box.num_pts = static_cast<int>(n);
    }
  } else {
    box.detection_score = number(require(b, "detection_score", ctx), ctx, "detection_score");
  }
  return box;
}

std::vector<LanePoint> parse_lane_points(const Json& v, const Ctx& ctx) {
  const Json& pts = v.is_object() ? require(v, "points", ctx) : v;
  OMNIRT_CHECK(pts.is_array() && pts.size() >= 2, ctx.at("points"),
               ": expected an array of at least 2 [x, y, z] points");
  std::vector<LanePoint> out;
  for (size_t i = 0; i < pts.size(); ++i) {
    const auto p = vec<3>(pts[i], ctx, "points[" + std::to_string(i) + "]");
    out.push_back({static_cast<float>(p[0]), static_cast<float>(p[1]), static_cast<float>(p[2])});
  }
  return out;
}

std::shared_ptr<const Raster> parse_drivable(const Json& v, const Ctx& ctx,
                                             const std::string& gt_path) {
  const std::string field = "planning.drivable";
  if (v.is_string()) {
    OMNIRT_CHECK(v.get<std::string>() == "all", ctx.at(field),
                 ": expected \"all\", {\"rle\": [...]} or {\"raw\": \"file\"}");
    return nullptr;  // every pixel drivable
  }
  OMNIRT_CHECK(v.is_object(), ctx.at(field), ": expected \"all\", {\"rle\": [...]} or {\"raw\": \"file\"}");
  auto r = std::make_shared<Raster>(kBevSize, kBevSize, 0);
  const size_t total = static_cast<size_t>(kBevSize) * kBevSize;
  if (v.contains("rle")) {
    const Json& runs = v["rle"];
    OMNIRT_CHECK(runs.is_array(), ctx.at(field + ".rle"), ": expected an array of run lengths");
    size_t pos = 0;
    uint8_t value = 0;
    for (size_t i = 0; i < runs.size(); ++i) {
      const double n = number(runs[i], ctx, field + ".rle[" + std::to_string(i) + "]");
      OMNIRT_CHECK(n >= 0 && n == std::floor(n), ctx.at(field + ".rle"),
                   ": run lengths must be non-negative integers");
      OMNIRT_CHECK(pos + static_cast<size_t>(n) <= total, ctx.at(field + ".rle"),
                   ": runs cover more than ", total, " pixels");
      std::fill_n(r->data.begin() + pos, static_cast<size_t>(n), value);
      pos += static_cast<size_t>(n);
      value ^= 1;
    }
    OMNIRT_CHECK(pos == total, ctx.at(field + ".rle"), ": runs cover ", pos, " pixels, expected ",
                 total, " (1000x1000)");
    return r;
  }
  if (v.contains("raw")) {
    OMNIRT_CHECK(v["raw"].is_string(), ctx.at(field + ".raw"), ": expected a file name");
    std::filesystem::path p(v["raw"].get<std::string>());
    if (p.is_relative()) p = std::filesystem::path(gt_path).parent_path() / p;
    const std::string bytes = read_file(p.string(), "drivable mask");
    OMNIRT_CHECK(bytes.size() == total, ctx.at(field + ".raw"), ": '", p.string(), "' has ",
                 bytes.size(), " bytes, expected ", total, " (1000x1000 uint8, rows = y)");
    for (size_t i = 0; i < total; ++i) r->data[i] = bytes[i] != 0 ? 1 : 0;
    return r;
  }
  OMNIRT_FAIL(ctx.at(field), ": expected \"all\", {\"rle\": [...]} or {\"raw\": \"file\"}");
}

template <size_t N>
std::array<double, N> optional_vec(const Json& obj, const std::string& key, const Ctx& ctx,
                                   double fill) {
  std::array<double, N> out;
  out.fill(fill);
  if (obj.contains(key)) out = vec<N>(obj[key], ctx, key);
  return out;
}

PlanningSample parse_planning(const Json& p, const std::string& token, const Ctx& ctx,
                              const std::string& gt_path) {
  PlanningSample s;
  s.token = token;
  const Json& traj = require(p, "trajectory", ctx);
  OMNIRT_CHECK(traj.is_array() && traj.size() == 6, ctx.at("planning.trajectory"),
               ": expected 6 [x, y] waypoints, got ",
               traj.is_array() ? std::to_string(traj.size()) : std::string(traj.type_name()));
  for (int k = 0; k < 6; ++k)
    s.gt_traj[k] = vec<2>(traj[k], ctx, "planning.trajectory[" + std::to_string(k) + "]");
  s.gt_mask.fill(true);
  if (p.contains("mask")) {
    const Json& m = p["mask"];
    OMNIRT_CHECK(m.is_array() && m.size() == 6, ctx.at("planning.mask"),
                 ": expected 6 values (1 = valid)");
    for (int k = 0; k < 6; ++k) {
      const Json& e = m[k];
      if (e.is_boolean())
        s.gt_mask[k] = e.get<bool>();
      else if (e.is_array())  // gt_planning_mask layout: [mx, my]
        s.gt_mask[k] = vec<2>(e, ctx, "planning.mask")[0] != 0 && vec<2>(e, ctx, "planning.mask")[1] != 0;
      else
        s.gt_mask[k] = number(e, ctx, "planning.mask") != 0;
    }
  }
  s.command = string_field(p, "command", ctx, "", false);
  if (p.contains("agents")) {
    const Json& agents = p["agents"];
    OMNIRT_CHECK(agents.is_array(), ctx.at("planning.agents"), ": expected an array");
    for (size_t i = 0; i < agents.size(); ++i) {
      const Ctx a = ctx.sub("planning.agents[" + std::to_string(i) + "]");
      const Json& j = agents[i];
      PlanningAgent ag;
      ag.x = number(require(j, "x", a), a, "x");
      ag.y = number(require(j, "y", a), a, "y");
      ag.l = number(require(j, "l", a), a, "l");
      ag.w = number(require(j, "w", a), a, "w");
      ag.yaw = number(require(j, "yaw", a), a, "yaw");
      const double cat = number(require(j, "category", a), a, "category");
      OMNIRT_CHECK(cat == std::floor(cat), a.at("category"), ": expected an integer, got ", cat);
      ag.category = static_cast<int>(cat);
      if (j.contains("fut_delta")) {
        const Json& d = j["fut_delta"];
        OMNIRT_CHECK(d.is_array() && d.size() >= 6, a.at("fut_delta"),
                     ": expected at least 6 [dx, dy] steps");
        for (int k = 0; k < 6; ++k)
          ag.fut_delta[k] = vec<2>(d[k], a, "fut_delta[" + std::to_string(k) + "]");
      }
      // Missing futures: a stationary agent (zero deltas) that exists at every step.
      ag.fut_mask = optional_vec<6>(j, "fut_mask", a, 1.0);
      ag.fut_yaw = optional_vec<6>(j, "fut_yaw", a, 0.0);
      s.agents.push_back(ag);
    }
  }
  s.drivable = p.contains("drivable") ? parse_drivable(p["drivable"], ctx, gt_path) : nullptr;
  return s;
}

std::array<double, 3> rotate(const std::array<double, 4>& q, const std::array<double, 3>& v) {
  // v' = q v q*, written out for a unit quaternion (normalised first).
  const double n = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  const double w = q[0] / n, x = q[1] / n, y = q[2] / n, z = q[3] / n;
  const double r[3][3] = {{1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)},
                          {2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)},
                          {2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)}};
  return {r[0][0] * v[0] + r[0][1] * v[1] + r[0][2] * v[2],
          r[1][0] * v[0] + r[1][1] * v[1] + r[1][2] * v[2],
          r[2][0] * v[0] + r[2][1] * v[1] + r[2][2] * v[2]};
}

void fill_ego_translation(DetectionBox& b, const EgoPose& pose) {
  for (int i = 0; i < 3; ++i) b.ego_translation[i] = b.translation[i] - pose.translation[i];
}

}  // namespace

bool GroundTruth::has_lanes(const std::string& token) const {
  for (const auto& f : lanes)
    if (f.token == token) return true;
  return false;
}

DetectionBox ego_box_to_global(const DetectionBox& box, const EgoPose& pose) {
  DetectionBox g = box;
  const auto t = rotate(pose.rotation, box.translation);
  for (int i = 0; i < 3; ++i) g.translation[i] = t[i] + pose.translation[i];
  const auto& a = pose.rotation;
  const auto& b = box.rotation;
  g.rotation = {a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3],
                a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2],
                a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1],
                a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0]};
  const auto v = rotate(pose.rotation, {box.velocity[0], box.velocity[1], 0.0});
  g.velocity = {v[0], v[1]};
  return g;
}

namespace {

// The ground truth a scene folder ships with (python/make_sample_scene.py, docs/scene_format.md):
// {"format": "omnirt-scene-gt", "frames": [{"token", "boxes": [{"label", "center", "size",
// "yaw", "velocity"}], "gt_planning": 6 x [x, y], "command": 0|1|2, "lanes"?}]}, everything in
// the ego frame of its frame. Rewritten as the evaluator's layout with an identity ego pose:
// every metric depends only on ego-relative positions, so ego frame + identity pose gives the
// same numbers as the global frame + the true pose. There are no agents and no map, so the
// collision rate is 0 and the boundary rate 0 by construction.
Json scene_gt_to_eval_gt(const Json& root, const std::string& name) {
  const Ctx top{name, ""};
  const Json& frames = require(root, "frames", top);
  OMNIRT_CHECK(frames.is_array(), top.at("frames"), ": expected an array of frames");
  Json out = Json::object();
  out["format"] = "omnirt-eval-gt";
  out["samples"] = Json::array();
  static const char* kCommands[] = {"turn left", "turn right", "go straight"};
  for (size_t fi = 0; fi < frames.size(); ++fi) {
    const Json& f = frames[fi];
    const Ctx ctx{name, "frame " + std::to_string(fi)};
    OMNIRT_CHECK(f.is_object(), ctx.file, ": ", ctx.where, ": expected an object");
    Json s = Json::object();
    s["token"] = require(f, "token", ctx);
    if (f.contains("boxes")) {
      const Json& boxes = f["boxes"];
      OMNIRT_CHECK(boxes.is_array(), ctx.at("boxes"), ": expected an array");
      s["boxes"] = Json::array();
      for (size_t bi = 0; bi < boxes.size(); ++bi) {
        const Ctx bc = ctx.sub("box " + std::to_string(bi));
        const Json& b = boxes[bi];
        Json e = Json::object();
        e["detection_name"] = require(b, "label", bc);
        e["translation"] = require(b, "center", bc);
        e["size"] = require(b, "size", bc);
        e["yaw"] = require(b, "yaw", bc);
        if (b.contains("velocity")) e["velocity"] = b["velocity"];
        if (b.contains("attribute_name")) e["attribute_name"] = b["attribute_name"];
        if (b.contains("num_pts")) e["num_pts"] = b["num_pts"];
        s["boxes"].push_back(std::move(e));
      }
    }
    if (f.contains("gt_planning") && !f["gt_planning"].is_null()) {
      Json p = Json::object();
      p["trajectory"] = f["gt_planning"];
      if (f.contains("gt_planning_mask")) p["mask"] = f["gt_planning_mask"];
      if (f.contains("command") && f["command"].is_number_integer()) {
        const int c = f["command"].get<int>();
        OMNIRT_CHECK(c >= 0 && c <= 2, ctx.at("command"), ": expected 0 (left), 1 (right) or 2 "
                     "(straight), got ", c);
        p["command"] = kCommands[c];
      }
      s["planning"] = std::move(p);
    }
    if (f.contains("lanes")) s["lanes"] = f["lanes"];
    out["samples"].push_back(std::move(s));
  }
  return out;
}

}  // namespace

GroundTruth parse_ground_truth(const std::string& text, const std::string& name) {
  Json root = parse_json(text, name);
  const Ctx top{name, ""};
  if (root.is_object() && !root.contains("samples") && root.contains("frames"))
    root = scene_gt_to_eval_gt(root, name);
  const Json& samples = require(root, "samples", top);
  OMNIRT_CHECK(samples.is_array(), top.at("samples"), ": expected an array of samples");
  GroundTruth gt;
  gt.path = name;
  for (size_t si = 0; si < samples.size(); ++si) {
    const Json& s = samples[si];
    const Ctx idx{name, "sample " + std::to_string(si)};
    const std::string token = string_field(s, "token", idx, "", true);
    OMNIRT_CHECK(!token.empty(), idx.at("token"), ": must not be empty");
    const Ctx ctx{name, "sample '" + token + "' (index " + std::to_string(si) + ")"};
    OMNIRT_CHECK(!gt.ego_poses.count(token), ctx.at("token"), ": duplicate sample token");
    gt.tokens.push_back(token);
    const EgoPose pose = s.contains("ego_pose") ? parse_pose(s["ego_pose"], ctx.sub("ego_pose"))
                                                : EgoPose{};
    gt.ego_poses[token] = pose;

    gt.boxes.add_sample(token);
    if (s.contains("boxes")) {
      const Json& boxes = s["boxes"];
      OMNIRT_CHECK(boxes.is_array(), ctx.at("boxes"), ": expected an array");
      for (size_t bi = 0; bi < boxes.size(); ++bi) {
        DetectionBox b = parse_box(boxes[bi], ctx.sub("box " + std::to_string(bi)), true);
        fill_ego_translation(b, pose);
        gt.boxes.add(token, std::move(b));
      }
    }
    if (s.contains("bicycle_racks")) {
      const Json& racks = s["bicycle_racks"];
      OMNIRT_CHECK(racks.is_array(), ctx.at("bicycle_racks"), ": expected an array");
      for (size_t ri = 0; ri < racks.size(); ++ri) {
        const Ctx rc = ctx.sub("bicycle_rack " + std::to_string(ri));
        RackBox rb;
        rb.translation = vec<3>(require(racks[ri], "translation", rc), rc, "translation");
        rb.size = vec<3>(require(racks[ri], "size", rc), rc, "size");
        rb.rotation = rotation_field(racks[ri], rc);
        gt.racks[token].push_back(rb);
      }
    }
    if (s.contains("planning") && !s["planning"].is_null())
      gt.planning.push_back(parse_planning(s["planning"], token, ctx, name));
    if (s.contains("lanes") && !s["lanes"].is_null()) {
      const Json& lanes = s["lanes"];
      OMNIRT_CHECK(lanes.is_array(), ctx.at("lanes"), ": expected an array");
      LaneFrame f;
      f.token = token;
      for (size_t li = 0; li < lanes.size(); ++li)
        f.gts.push_back({parse_lane_points(lanes[li], ctx.sub("lane " + std::to_string(li))), 1.f});
      gt.lanes.push_back(std::move(f));
    }
  }
  return gt;
}

GroundTruth load_ground_truth(const std::string& path) {
  return parse_ground_truth(read_file(path, "ground-truth"), path);
}

GroundTruth subset_ground_truth(const GroundTruth& gt, const std::vector<std::string>& tokens) {
  GroundTruth out;
  out.path = gt.path;
  std::unordered_set<std::string> keep;
  for (const auto& t : tokens) {
    OMNIRT_CHECK(gt.ego_poses.count(t), gt.path, ": no sample with token '", t,
                 "' (the ground truth must cover every evaluated frame)");
    OMNIRT_CHECK(keep.insert(t).second, "subset_ground_truth: token '", t, "' given twice");
  }
  for (const auto& t : gt.tokens) {  // file order, as the full ground truth
    if (!keep.count(t)) continue;
    out.tokens.push_back(t);
    out.ego_poses[t] = gt.ego_poses.at(t);
    out.boxes.add_sample(t);
    for (const auto& b : gt.boxes[t]) out.boxes.add(t, b);
    if (auto it = gt.racks.find(t); it != gt.racks.end()) out.racks[t] = it->second;
  }
  for (const auto& p : gt.planning)
    if (keep.count(p.token)) out.planning.push_back(p);
  for (const auto& l : gt.lanes)
    if (keep.count(l.token)) out.lanes.push_back(l);
  return out;
}

Predictions parse_predictions(const std::string& text, const std::string& name,
                              const GroundTruth& gt) {
  const Json root = parse_json(text, name);
  const Ctx top{name, ""};
  OMNIRT_CHECK(root.is_object(), name, ": expected a JSON object with 'results' or 'frames'");
  std::string default_frame = "global";
  if (root.contains("box_frame")) default_frame = string_field(root, "box_frame", top, "global", false);

  // Normalise both layouts to (token, record) pairs in file order.
  std::vector<std::pair<std::string, const Json*>> records;
  std::vector<Ctx> ctxs;
  if (root.contains("results")) {
    const Json& results = root["results"];
    OMNIRT_CHECK(results.is_object(), top.at("results"), ": expected an object keyed by sample token");
    size_t i = 0;
    for (auto it = results.begin(); it != results.end(); ++it, ++i) {
      records.emplace_back(it.key(), &it.value());
      ctxs.push_back({name, "sample '" + it.key() + "' (index " + std::to_string(i) + ")"});
    }
  } else if (root.contains("frames")) {
    const Json& frames = root["frames"];
    OMNIRT_CHECK(frames.is_array(), top.at("frames"), ": expected an array");
    for (size_t i = 0; i < frames.size(); ++i) {
      const Ctx idx{name, "frame " + std::to_string(i)};
      const std::string token = string_field(frames[i], "sample_token", idx, "", true);
      records.emplace_back(token, &frames[i]);
      ctxs.push_back({name, "frame " + std::to_string(i) + " (sample '" + token + "')"});
    }
  } else {
    OMNIRT_FAIL(name, ": expected a 'results' object (nuScenes style) or a 'frames' list (omnirt run)");
  }

  Predictions pred;
  pred.path = name;
  std::unordered_set<std::string> seen;
  for (size_t r = 0; r < records.size(); ++r) {
    const std::string& token = records[r].first;
    const Json& rec = *records[r].second;
    const Ctx& ctx = ctxs[r];
    auto pose_it = gt.ego_poses.find(token);
    OMNIRT_CHECK(pose_it != gt.ego_poses.end(), ctx.file, ": ", ctx.where,
                 ": sample token is not in the ground truth (", gt.path, ")");
    OMNIRT_CHECK(seen.insert(token).second, ctx.file, ": ", ctx.where, ": duplicate sample token");
    pred.tokens.push_back(token);
    pred.boxes.add_sample(token);

    // A bare list is a nuScenes detection submission: the boxes of that sample.
    const Json* boxes = rec.is_array() ? &rec : (rec.contains("boxes") ? &rec["boxes"] : nullptr);
    OMNIRT_CHECK(rec.is_array() || rec.is_object(), ctx.file, ": ", ctx.where,
                 ": expected an object or a list of boxes, got ", rec.type_name());
    std::string frame = default_frame;
    if (rec.is_object() && rec.contains("box_frame"))
      frame = string_field(rec, "box_frame", ctx, default_frame, false);
    OMNIRT_CHECK(frame == "global" || frame == "ego", ctx.at("box_frame"),
                 ": expected \"global\" or \"ego\", got \"", frame, "\"");
    if (boxes) {
      OMNIRT_CHECK(boxes->is_array(), ctx.at("boxes"), ": expected an array");
      OMNIRT_CHECK(boxes->size() <= 500, ctx.at("boxes"), ": ", boxes->size(),
                   " boxes, the nuScenes limit is 500 per sample");
      for (size_t bi = 0; bi < boxes->size(); ++bi) {
        DetectionBox b = parse_box((*boxes)[bi], ctx.sub("box " + std::to_string(bi)), false);
        if (frame == "ego") b = ego_box_to_global(b, pose_it->second);
        fill_ego_translation(b, pose_it->second);
        pred.boxes.add(token, std::move(b));
      }
    }
    if (!rec.is_object()) continue;
    if (rec.contains("lanes")) {
      const Json& lanes = rec["lanes"];
      OMNIRT_CHECK(lanes.is_array(), ctx.at("lanes"), ": expected an array");
      auto& out = pred.lanes[token];
      for (size_t li = 0; li < lanes.size(); ++li) {
        const Ctx lc = ctx.sub("lane " + std::to_string(li));
        Lane l;
        l.points = parse_lane_points(lanes[li], lc);
        const char* key = lanes[li].contains("confidence") ? "confidence" : "score";
        l.confidence = static_cast<float>(number(require(lanes[li], key, lc), lc, key));
        out.push_back(std::move(l));
      }
    }
    if (rec.contains("answer")) {
      OMNIRT_CHECK(rec["answer"].is_string(), ctx.at("answer"), ": expected a string");
      pred.answers[token] = rec["answer"].get<std::string>();
      pred.trajectories[token] = parse_planning_trajectory(pred.answers[token]);
    } else if (rec.contains("trajectory") && !rec["trajectory"].is_null()) {
      const Json& t = rec["trajectory"];
      OMNIRT_CHECK(t.is_array(), ctx.at("trajectory"), ": expected an array of [x, y]");
      if (t.size() != 6) {
        pred.trajectories[token] = std::nullopt;  // same rule as an answer with n != 6 points
      } else {
        std::vector<Waypoint> w;
        for (size_t k = 0; k < 6; ++k)
          w.push_back(vec<2>(t[k], ctx, "trajectory[" + std::to_string(k) + "]"));
        pred.trajectories[token] = w;
      }
    }
  }
  return pred;
}

namespace {

// An `omnirt run` output folder (docs/scene_format.md): its frame_NNN.json files in name order,
// rewritten as the "frames" layout. Their boxes are ego-frame label / score / center / size_wlh
// / yaw / velocity, the answer is planner.answer. A frame whose status is not "ok" has no
// results and is left out (its sample then counts as having no prediction, with a note).
std::string run_folder_predictions(const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.rfind("frame_", 0) == 0 && e.path().extension() == ".json")
      files.push_back(e.path());
  }
  // frame_999 before frame_1000: shorter names first, then by name.
  std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
    const std::string x = a.filename().string(), y = b.filename().string();
    return x.size() != y.size() ? x.size() < y.size() : x < y;
  });
  OMNIRT_CHECK(!files.empty(), "prediction folder '", dir,
               "': no frame_*.json files (expected an `omnirt run` output folder)");
  Json frames = Json::array();
  for (const auto& f : files) {
    const std::string name = f.string();
    const Json j = parse_json(read_file(name, "prediction"), name);
    const Ctx ctx{name, ""};
    if (!j.is_object() || !j.contains("status") || j["status"] != "ok") continue;
    Json rec = Json::object();
    rec["sample_token"] = require(j, "token", ctx);
    rec["boxes"] = Json::array();
    const Json& boxes = require(j, "boxes", ctx);
    OMNIRT_CHECK(boxes.is_array(), ctx.at("boxes"), ": expected an array");
    for (size_t i = 0; i < boxes.size(); ++i) {
      const Ctx bc = ctx.sub("box " + std::to_string(i));
      const Json& b = boxes[i];
      rec["boxes"].push_back({{"detection_name", require(b, "label", bc)},
                              {"detection_score", require(b, "score", bc)},
                              {"translation", require(b, "center", bc)},
                              {"size", require(b, "size_wlh", bc)},
                              {"yaw", require(b, "yaw", bc)},
                              {"velocity", require(b, "velocity", bc)}});
    }
    if (j.contains("lanes")) rec["lanes"] = j["lanes"];
    if (j.contains("planner") && j["planner"].is_object() && j["planner"].contains("answer"))
      rec["answer"] = j["planner"]["answer"];
    frames.push_back(std::move(rec));
  }
  return Json{{"box_frame", "ego"}, {"frames", std::move(frames)}}.dump();
}

}  // namespace

Predictions load_predictions(const std::string& path, const GroundTruth& gt) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    return parse_predictions(run_folder_predictions(path), path, gt);
  return parse_predictions(read_file(path, "prediction"), path, gt);
}

}  // namespace omnirt::eval
