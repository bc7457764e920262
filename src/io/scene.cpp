#include "io/scene.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace omnirt::io {

namespace fs = std::filesystem;
using nlohmann::json;

const std::vector<std::string>& nuscenes_camera_names() {
  static const std::vector<std::string> names = {"CAM_FRONT",     "CAM_FRONT_RIGHT",
                                                 "CAM_FRONT_LEFT", "CAM_BACK",
                                                 "CAM_BACK_LEFT", "CAM_BACK_RIGHT"};
  return names;
}

int Scene::num_valid() const {
  int n = 0;
  for (const auto& f : frames) n += f.ok();
  return n;
}

namespace {

// Field readers: throw a plain message naming the field; the caller prefixes frame and file.
// Python's json module writes non-finite floats as bare NaN / Infinity / -Infinity, which is not
// JSON. Quote them (outside strings) so that one bad value is an error of its frame, not of the
// whole file.
std::string quote_non_finite_tokens(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (in_string) {
      out += ch;
      if (ch == '\\' && i + 1 < text.size()) out += text[++i];
      else if (ch == '"') in_string = false;
      continue;
    }
    if (ch == '"') in_string = true;
    bool replaced = false;
    for (const char* tok : {"-Infinity", "Infinity", "NaN"}) {
      const size_t n = std::char_traits<char>::length(tok);
      if (text.compare(i, n, tok) == 0) {
        out += '"';
        out += tok;
        out += '"';
        i += n - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += ch;
  }
  return out;
}

double read_number(const json& j, const std::string& field) {
  if (j.is_string()) {
    const auto s = j.get<std::string>();
    OMNIRT_CHECK(s != "NaN" && s != "Infinity" && s != "-Infinity", field, ": non-finite value (",
                 s, ")");
  }
  OMNIRT_CHECK(j.is_number(), field, ": expected a number, got ", j.type_name());
  const double v = j.get<double>();
  OMNIRT_CHECK(std::isfinite(v), field, ": non-finite value");
  return v;
}

template <size_t N>
std::array<double, N> read_vector(const json& j, const std::string& field) {
  OMNIRT_CHECK(j.is_array() && j.size() == N, field, ": expected an array of ", N,
               " numbers, got ", j.is_array() ? std::to_string(j.size()) + " entries" : j.type_name());
  std::array<double, N> v{};
  for (size_t i = 0; i < N; ++i) v[i] = read_number(j[i], field + "[" + std::to_string(i) + "]");
  return v;
}

std::array<double, 9> read_mat3(const json& j, const std::string& field) {
  // [[a,b,c],[d,e,f],[g,h,i]] (or a flat list of 9).
  if (j.is_array() && j.size() == 9 && j[0].is_number()) return read_vector<9>(j, field);
  OMNIRT_CHECK(j.is_array() && j.size() == 3, field, ": expected a 3x3 matrix, got ",
               j.is_array() ? std::to_string(j.size()) + " rows" : j.type_name());
  std::array<double, 9> m{};
  for (int r = 0; r < 3; ++r) {
    const std::string rf = field + "[" + std::to_string(r) + "]";
    OMNIRT_CHECK(j[r].is_array() && j[r].size() == 3, rf, ": expected a row of 3 numbers, got ",
                 j[r].is_array() ? std::to_string(j[r].size()) + " entries" : j[r].type_name(),
                 " (a 3x3 matrix is needed)");
    for (int c = 0; c < 3; ++c) m[r * 3 + c] = read_number(j[r][c], rf + "[" + std::to_string(c) + "]");
  }
  OMNIRT_CHECK(m[0] > 0 && m[4] > 0 && m[8] == 1 && m[6] == 0 && m[7] == 0, field,
               ": not a camera matrix (expected fx > 0, fy > 0 and last row [0, 0, 1])");
  return m;
}

std::array<double, 4> read_quaternion(const json& j, const std::string& field) {
  const auto q = read_vector<4>(j, field);
  const double n = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  OMNIRT_CHECK(std::abs(n - 1.0) < 1e-3, field, ": quaternion (w, x, y, z) is not unit length (|q| = ",
               n, ")");
  return q;
}

CameraCalibration read_calibration(const json& j, const std::string& field) {
  OMNIRT_CHECK(j.is_object(), field, ": expected an object with intrinsics, sensor2ego_rotation, "
               "sensor2ego_translation");
  for (const char* k : {"intrinsics", "sensor2ego_rotation", "sensor2ego_translation"})
    OMNIRT_CHECK(j.contains(k), field, ": missing \"", k, "\"");
  CameraCalibration c;
  c.intrinsics = read_mat3(j["intrinsics"], field + ".intrinsics");
  c.sensor2ego_rotation = read_quaternion(j["sensor2ego_rotation"], field + ".sensor2ego_rotation");
  c.sensor2ego_translation = read_vector<3>(j["sensor2ego_translation"], field + ".sensor2ego_translation");
  return c;
}

// Strips the omnirt::Error location prefix ("file:line: ") if present, keeping the message.
std::string message_of(const std::exception& e) {
  std::string s = e.what();
  const auto p = s.find(": ");
  if (p != std::string::npos && s.find(".cpp:") < p) return s.substr(p + 2);
  return s;
}

}  // namespace

Scene read_scene(const std::string& path, const std::vector<std::string>& cameras) {
  OMNIRT_CHECK(!cameras.empty(), "read_scene: no cameras requested");
  fs::path json_path = path;
  std::error_code ec;
  if (fs::is_directory(json_path, ec)) json_path /= "scene.json";
  OMNIRT_CHECK(fs::is_regular_file(json_path, ec), "scene ", path, ": ", json_path.string(),
               " not found (a scene is a folder with scene.json, see docs/scene_format.md)");
  std::ifstream in(json_path);
  OMNIRT_CHECK(in.good(), "scene ", json_path.string(), ": cannot open");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  json root;
  try {
    root = json::parse(quote_non_finite_tokens(text));
  } catch (const std::exception& e) {
    OMNIRT_FAIL("scene ", json_path.string(), ": not valid JSON (", e.what(), ")");
  }
  const std::string where = json_path.string();
  OMNIRT_CHECK(root.is_object(), "scene ", where, ": expected a JSON object at the top level");
  OMNIRT_CHECK(root.contains("frames") && root["frames"].is_array() && !root["frames"].empty(),
               "scene ", where, ": missing or empty \"frames\" array");

  Scene scene;
  scene.dir = json_path.parent_path().string();
  if (scene.dir.empty()) scene.dir = ".";
  scene.name = root.value("name", json_path.parent_path().filename().string());
  scene.cameras = cameras;
  const std::string scene_location =
      root.contains("location") && root["location"].is_string() ? root["location"].get<std::string>()
                                                                : "boston";

  // Scene-level calibration, per camera (optional; a frame's own entry wins). Errors here are
  // reported on every frame that needs the camera.
  std::vector<CameraCalibration> scene_calib(cameras.size());
  std::vector<std::string> scene_calib_error(cameras.size());
  std::vector<bool> has_scene_calib(cameras.size(), false);
  if (root.contains("calibration")) {
    const json& c = root["calibration"];
    for (size_t i = 0; i < cameras.size(); ++i) {
      if (!c.is_object() || !c.contains(cameras[i])) continue;
      has_scene_calib[i] = true;
      try {
        scene_calib[i] = read_calibration(c[cameras[i]], "calibration." + cameras[i]);
      } catch (const std::exception& e) {
        scene_calib_error[i] = message_of(e);
      }
    }
  }

  double last_time = -INFINITY;
  int last_valid = -1;
  const json& frames = root["frames"];
  for (size_t fi = 0; fi < frames.size(); ++fi) {
    SceneFrame f;
    f.index = int(fi);
    f.token = "frame_" + std::to_string(fi);
    const json& j = frames[fi];
    try {
      OMNIRT_CHECK(j.is_object(), "expected an object");
      if (j.contains("token") && j["token"].is_string()) f.token = j["token"].get<std::string>();
      OMNIRT_CHECK(j.contains("timestamp"), "missing \"timestamp\" (seconds)");
      f.timestamp = read_number(j["timestamp"], "timestamp");
      OMNIRT_CHECK(j.contains("images") && j["images"].is_object(),
                   "missing \"images\" object (camera name -> image path)");
      for (size_t ci = 0; ci < cameras.size(); ++ci) {
        const std::string& cam = cameras[ci];
        OMNIRT_CHECK(j["images"].contains(cam) && j["images"][cam].is_string(), "images.", cam,
                     ": missing (the model needs cameras ", [&] {
                       std::string s;
                       for (const auto& c : cameras) s += (s.empty() ? "" : ", ") + c;
                       return s;
                     }(), ")");
        fs::path p = j["images"][cam].get<std::string>();
        if (p.is_relative()) p = fs::path(scene.dir) / p;
        OMNIRT_CHECK(fs::is_regular_file(p, ec), "images.", cam, ": image file ", p.string(),
                     " not found");
        f.image_paths.push_back(p.string());
        if (j.contains("calibration") && j["calibration"].is_object() &&
            j["calibration"].contains(cam)) {
          f.calibration.push_back(read_calibration(j["calibration"][cam], "calibration." + cam));
        } else {
          OMNIRT_CHECK(has_scene_calib[ci], "calibration.", cam,
                       ": missing (give it in the frame or once at scene level)");
          OMNIRT_CHECK(scene_calib_error[ci].empty(), "scene-level ", scene_calib_error[ci]);
          f.calibration.push_back(scene_calib[ci]);
        }
      }
      OMNIRT_CHECK(j.contains("ego2global_rotation") && j.contains("ego2global_translation"),
                   "missing ego pose (\"ego2global_rotation\" w,x,y,z and "
                   "\"ego2global_translation\")");
      f.ego2global_rotation = read_quaternion(j["ego2global_rotation"], "ego2global_rotation");
      f.ego2global_translation = read_vector<3>(j["ego2global_translation"], "ego2global_translation");
      if (j.contains("can_bus")) {
        const auto cb = read_vector<13>(j["can_bus"], "can_bus");
        for (int i = 0; i < 13; ++i) f.can_bus[i] = float(cb[i]);
      }
      if (j.contains("command")) {
        const double c = read_number(j["command"], "command");
        OMNIRT_CHECK(c == 0 || c == 1 || c == 2, "command: expected 0 (left), 1 (right) or 2 "
                     "(forward), got ", c);
        f.command = int(c);
      }
      f.location = scene_location;
      if (j.contains("location")) {
        OMNIRT_CHECK(j["location"].is_string(), "location: expected a string");
        f.location = j["location"].get<std::string>();
      }
      OMNIRT_CHECK(f.timestamp > last_time, "timestamp ", f.timestamp,
                   " s is not after the previous frame's (", last_time, " s, frame ", last_valid,
                   "): frames must be in time order");
    } catch (const std::exception& e) {
      std::ostringstream os;
      os << "frame " << fi << " (" << f.token << ") in " << where << ": " << message_of(e);
      f.error = os.str();
    }
    if (f.ok()) {
      last_time = f.timestamp;
      last_valid = int(fi);
    }
    scene.frames.push_back(std::move(f));
  }
  return scene;
}

}  // namespace omnirt::io
