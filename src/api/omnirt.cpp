// The library API (include/omnirt/omnirt.h) over the pipeline: the same ModelEngines and
// prepare_frame that `omnirt run` uses, with the caller's frame validated field by field first.
#include "omnirt/omnirt.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <sstream>

#include "core/device.h"
#include "io/image.h"
#include "io/scene.h"
#include "pipeline/engines.h"
#include "pipeline/frame.h"
#include "pipeline/runner.h"

namespace omnirt {

const std::vector<std::string>& detection_class_names() {
  return pipeline::detection_class_names();
}

void decode_image(CameraInput& camera) {
  io::Image img = io::load_image_rgb(camera.path);
  camera.width = img.width;
  camera.height = img.height;
  camera.rgb = std::move(img.pixels);
  camera.path.clear();
}

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

template <size_t N>
std::array<double, N> finite_vector(const std::vector<double>& v, const std::string& field,
                                    const char* what) {
  OMNIRT_CHECK(v.size() == N, field, ": expected ", N, " values (", what, "), got ", v.size());
  std::array<double, N> a{};
  for (size_t i = 0; i < N; ++i) {
    OMNIRT_CHECK(std::isfinite(v[i]), field, "[", i, "]: non-finite value (", v[i], ")");
    a[i] = v[i];
  }
  return a;
}

std::array<double, 4> unit_quaternion(const std::vector<double>& v, const std::string& field) {
  const auto q = finite_vector<4>(v, field, "quaternion w, x, y, z");
  const double n = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  OMNIRT_CHECK(std::abs(n - 1.0) < 1e-3, field,
               ": quaternion (w, x, y, z) is not unit length (|q| = ", n, ")");
  return q;
}

io::CameraCalibration calibration_of(const CameraInput& c) {
  const std::string f = "camera " + c.name;
  io::CameraCalibration cal;
  cal.intrinsics = finite_vector<9>(c.intrinsics, f + " intrinsics", "3x3 row-major");
  const auto& k = cal.intrinsics;
  OMNIRT_CHECK(k[0] > 0 && k[4] > 0 && k[6] == 0 && k[7] == 0 && k[8] == 1, f,
               " intrinsics: not a camera matrix (expected fx > 0, fy > 0 and last row [0, 0, 1])");
  cal.sensor2ego_rotation = unit_quaternion(c.sensor2ego_rotation, f + " sensor2ego_rotation");
  cal.sensor2ego_translation =
      finite_vector<3>(c.sensor2ego_translation, f + " sensor2ego_translation", "metres x, y, z");
  return cal;
}

// Camera input -> (path or decoded image), checked.
struct CameraSource {
  std::string path;
  io::Image image;  // pixels empty: decode `path`
};

CameraSource source_of(const CameraInput& c) {
  const std::string f = "camera " + c.name;
  const bool has_pixels = !c.rgb.empty() || c.width != 0 || c.height != 0;
  OMNIRT_CHECK(!(has_pixels && !c.path.empty()), f,
               ": give either an image path or decoded pixels, not both");
  OMNIRT_CHECK(has_pixels || !c.path.empty(), f,
               ": no image (set path, or rgb with width and height)");
  CameraSource s;
  s.path = c.path;
  if (has_pixels) {
    OMNIRT_CHECK(c.width > 0 && c.height > 0, f, ": image size ", c.width, "x", c.height,
                 " is empty");
    const size_t want = size_t(c.width) * size_t(c.height) * 3;
    OMNIRT_CHECK(c.rgb.size() == want, f, ": rgb holds ", c.rgb.size(), " bytes, expected ",
                 want, " (", c.width, "x", c.height, " RGB, 3 bytes per pixel)");
    s.image.width = c.width;
    s.image.height = c.height;
    s.image.channels = 3;
    s.image.pixels = c.rgb;
  }
  return s;
}

}  // namespace

struct Model::Impl {
  std::string dir;
  ModelOptions options;
  std::unique_ptr<pipeline::ModelEngines> engines;
  std::vector<std::string> cameras;
  pipeline::PreprocessConfig pcfg;
  bool cuda = false;
  bool random = false;
  bool first = true;  // the next frame starts the temporal memory
  double last_timestamp = 0;

  // The frame as the pipeline's SceneFrame + images; throws naming the field.
  io::SceneFrame to_scene_frame(const Frame& in, std::vector<CameraSource>& sources) const {
    io::SceneFrame f;
    f.index = in.index;
    f.token = in.token.empty() ? "frame_" + std::to_string(in.index) : in.token;
    OMNIRT_CHECK(std::isfinite(in.timestamp), "timestamp: non-finite value (", in.timestamp, ")");
    f.timestamp = in.timestamp;
    OMNIRT_CHECK(first || in.timestamp > last_timestamp, "timestamp ", in.timestamp,
                 " s is not after the previous frame's (", last_timestamp,
                 " s): frames of a scene go in time order (call reset() for a new scene)");
    std::set<std::string> seen;
    for (const auto& c : in.cameras) {
      OMNIRT_CHECK(!c.name.empty(), "a camera has no name (the model needs ", join(cameras), ")");
      OMNIRT_CHECK(seen.insert(c.name).second, "camera ", c.name, ": given twice");
    }
    for (const auto& name : cameras) {
      const auto it = std::find_if(in.cameras.begin(), in.cameras.end(),
                                   [&](const CameraInput& c) { return c.name == name; });
      OMNIRT_CHECK(it != in.cameras.end(), "camera ", name, ": missing (the model needs ",
                   join(cameras), ")");
      sources.push_back(source_of(*it));
      f.image_paths.push_back(it->path);
      f.calibration.push_back(calibration_of(*it));
    }
    f.ego2global_rotation = unit_quaternion(in.ego2global_rotation, "ego2global_rotation");
    f.ego2global_translation =
        finite_vector<3>(in.ego2global_translation, "ego2global_translation", "metres x, y, z");
    OMNIRT_CHECK(in.can_bus.empty() || in.can_bus.size() == 13, "can_bus: expected 13 values ",
                 "(or none), got ", in.can_bus.size());
    for (size_t i = 0; i < in.can_bus.size(); ++i) {
      OMNIRT_CHECK(std::isfinite(in.can_bus[i]), "can_bus[", i, "]: non-finite value (",
                   in.can_bus[i], ")");
      f.can_bus[i] = float(in.can_bus[i]);
    }
    OMNIRT_CHECK(in.command == 0 || in.command == 1 || in.command == 2,
                 "command: expected 0 (left), 1 (right) or 2 (forward), got ", in.command);
    f.command = in.command;
    f.location = in.location;
    return f;
  }
};

Model::Model(const std::string& model_dir, const ModelOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.dir = model_dir;
  m.options = options;
  std::error_code ec;
  OMNIRT_CHECK(std::filesystem::is_regular_file(std::filesystem::path(model_dir) / "config.json", ec),
               "model ", model_dir, ": config.json not found (a model is a checkpoint folder made "
               "by python/omnidrive_export.py)");
  OMNIRT_CHECK(options.max_new_tokens >= 1 && options.max_new_tokens <= 2048,
               "ModelOptions::max_new_tokens: expected 1..2048, got ", options.max_new_tokens);
  m.cuda = options.device == Backend::kAuto ? cuda_available() : options.device == Backend::kCuda;
  OMNIRT_CHECK(!m.cuda || cuda_available(), "ModelOptions::device kCuda: no CUDA device (or this "
               "build has no CUDA backend)");
  pipeline::EngineOptions eo;
  eo.device = m.cuda ? Device::CUDA : Device::CPU;
  const Precision p = options.vision_precision == Precision::kAuto
                          ? (m.cuda ? Precision::kFp16 : Precision::kFp32)
                          : options.vision_precision;
  eo.vision_dtype = p == Precision::kFp16 ? DType::F16 : p == Precision::kBf16 ? DType::BF16 : DType::F32;
  OMNIRT_CHECK(m.cuda || eo.vision_dtype == DType::F32, "ModelOptions::vision_precision ",
               dtype_name(eo.vision_dtype), ": the CPU backend runs fp32 only");
  eo.greedy = options.greedy;
  eo.max_new_tokens = options.max_new_tokens;
  eo.seed = options.seed;
  m.engines = pipeline::ModelEngines::load(model_dir, eo);
  m.cameras = m.engines->camera_names();
  m.pcfg = pipeline::preprocess_config_for(*m.engines);
  m.random = pipeline::checkpoint_has_random_weights(model_dir);
}

Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

void Model::reset() { impl_->first = true; }

std::vector<std::string> Model::camera_names() const { return impl_->cameras; }
int Model::input_height() const { return impl_->engines->input_h(); }
int Model::input_width() const { return impl_->engines->input_w(); }
bool Model::on_cuda() const { return impl_->cuda; }
std::string Model::description() const { return impl_->engines->description(); }
bool Model::random_weights() const { return impl_->random; }

FrameResult Model::run(const Frame& frame) {
  OMNIRT_CHECK(impl_, "Model::run on a moved-from Model");
  Impl& m = *impl_;
  const std::string where = "frame " + std::to_string(frame.index) + " (" +
                            (frame.token.empty() ? "frame_" + std::to_string(frame.index)
                                                 : frame.token) + ")";
  std::vector<CameraSource> sources;
  io::SceneFrame sf;
  try {
    sf = m.to_scene_frame(frame, sources);
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  const bool any_pixels = std::any_of(sources.begin(), sources.end(),
                                      [](const CameraSource& s) { return !s.image.pixels.empty(); });
  pipeline::PreparedFrame pf;
  if (!any_pixels) {
    io::Scene scene;  // prepare_frame decodes the paths, one task per camera
    scene.cameras = m.cameras;
    pf = pipeline::prepare_frame(scene, sf, m.pcfg, false);
  } else {
    std::vector<io::Image> images;
    try {
      for (auto& s : sources)
        images.push_back(s.image.pixels.empty() ? io::load_image_rgb(s.path) : std::move(s.image));
    } catch (const Error& e) {
      throw Error(where + ": " + e.what());
    }
    pf = pipeline::prepare_frame(sf, images, m.pcfg, false);
  }
  if (!pf.ok()) throw Error(pf.error);  // names the frame and the file/camera

  pipeline::FrameOutput o;
  try {
    o = m.engines->run(pf, m.first);
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  m.first = false;
  m.last_timestamp = frame.timestamp;

  FrameResult r;
  r.index = frame.index;
  r.token = sf.token;
  for (const auto& b : o.boxes) {
    Box x;
    x.center = b.center;
    x.size_wlh = b.size_wlh;
    x.yaw = b.yaw;
    x.velocity = b.velocity;
    x.score = b.score;
    x.label = b.label;
    x.label_name = pipeline::detection_class_names().at(size_t(b.label));
    r.boxes.push_back(std::move(x));
  }
  for (auto& l : o.lanes) r.lanes.push_back({std::move(l.points), l.score});
  r.memory_reset = o.memory_reset;
  r.answer = std::move(o.answer);
  r.trajectory = std::move(o.trajectory);
  r.trajectory_error = std::move(o.trajectory_error);
  r.prompt_tokens = o.prompt_tokens;
  r.new_tokens = o.new_tokens;
  r.stop_reason = std::move(o.stop_reason);
  Timings& t = r.timings;
  t.prepare_ms = pf.prepare_ms;
  t.vision_ms = o.vision_ms;
  t.prefill_ms = o.prefill_ms;
  t.decode_ms = o.decode_ms;
  t.ttft_ms = o.vision_ms + o.prefill_ms;
  t.tpot_ms = o.new_tokens > 1 ? o.decode_ms / (o.new_tokens - 1) : 0.0;
  t.total_ms = o.vision_ms + o.prefill_ms + o.decode_ms;
  return r;
}

Scene load_scene(const std::string& path, const std::vector<std::string>& cameras) {
  const io::Scene s = io::read_scene(path, cameras);
  Scene out;
  out.name = s.name;
  for (const auto& f : s.frames) {
    if (!f.ok()) {
      out.errors.push_back(f.error);
      continue;
    }
    Frame x;
    x.index = f.index;
    x.token = f.token;
    x.timestamp = f.timestamp;
    for (size_t c = 0; c < cameras.size(); ++c) {
      CameraInput ci;
      ci.name = cameras[c];
      ci.path = f.image_paths[c];
      const auto& cal = f.calibration[c];
      ci.intrinsics.assign(cal.intrinsics.begin(), cal.intrinsics.end());
      ci.sensor2ego_rotation.assign(cal.sensor2ego_rotation.begin(), cal.sensor2ego_rotation.end());
      ci.sensor2ego_translation.assign(cal.sensor2ego_translation.begin(),
                                       cal.sensor2ego_translation.end());
      x.cameras.push_back(std::move(ci));
    }
    x.ego2global_rotation.assign(f.ego2global_rotation.begin(), f.ego2global_rotation.end());
    x.ego2global_translation.assign(f.ego2global_translation.begin(), f.ego2global_translation.end());
    x.can_bus.assign(f.can_bus.begin(), f.can_bus.end());
    x.command = f.command;
    x.location = f.location;
    out.frames.push_back(std::move(x));
  }
  return out;
}

}  // namespace omnirt
