#include "pipeline/runner.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/version.h"
#include "io/scene.h"
#include "pipeline/viz.h"

namespace omnirt::pipeline {

namespace fs = std::filesystem;
using nlohmann::json;

bool checkpoint_has_random_weights(const std::string& model_dir) {
  std::ifstream in(fs::path(model_dir) / "config.json");
  if (!in.good()) return false;
  try {
    const json cfg = json::parse(in);
    if (!cfg.contains("source") || !cfg["source"].is_object()) return false;
    const json& s = cfg["source"];
    if (s.contains("random") && !s["random"].is_null() && s["random"] != false) return true;
    for (const char* k : {"llm_weights", "vision_weights"})
      if (s.contains(k) && s[k] == "random") return true;
  } catch (const std::exception&) {
  }
  return false;
}

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    OMNIRT_CHECK(out.good(), "cannot write ", tmp);
    out << text;
    out.flush();
    OMNIRT_CHECK(out.good(), "error while writing ", tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  OMNIRT_CHECK(!ec, "cannot rename ", tmp, " to ", path, ": ", ec.message());
}

namespace {

json vec_json(const float* v, int n) {
  json a = json::array();
  for (int i = 0; i < n; ++i) a.push_back(v[i]);
  return a;
}

json frame_json(const RunOptions& opt, const io::Scene& scene, const PreparedFrame& f,
                const FrameOutput* out, const std::string& error) {
  json j;
  j["omnirt_version"] = omnirt::version();
  j["scene"] = scene.name;
  j["frame_index"] = f.index;
  j["token"] = f.token;
  j["timestamp"] = f.timestamp;
  j["model"] = opt.model_dir;
  j["random_weights"] = opt.random_weights;
  if (opt.random_weights) j["warning"] = kRandomWeightsWarning;
  j["status"] = error.empty() ? "ok" : "error";
  if (!error.empty()) {
    j["error"] = error;
    return j;
  }
  j["memory_reset"] = out->memory_reset;
  json boxes = json::array();
  for (const auto& b : out->boxes) {
    boxes.push_back({{"label", detection_class_names().at(size_t(b.label))},
                     {"label_id", b.label},
                     {"score", b.score},
                     {"center", vec_json(b.center.data(), 3)},
                     {"size_wlh", vec_json(b.size_wlh.data(), 3)},
                     {"yaw", b.yaw},
                     {"velocity", vec_json(b.velocity.data(), 2)}});
  }
  j["boxes"] = std::move(boxes);
  json lanes = json::array();
  for (const auto& l : out->lanes) {
    json pts = json::array();
    for (const auto& p : l.points) pts.push_back(vec_json(p.data(), 3));
    lanes.push_back({{"score", l.score}, {"points", std::move(pts)}});
  }
  j["lanes"] = std::move(lanes);
  json planner;
  planner["answer"] = out->answer;
  if (out->trajectory.empty()) {
    planner["trajectory"] = nullptr;
    planner["trajectory_error"] = out->trajectory_error;
  } else {
    json t = json::array();
    for (const auto& w : out->trajectory) t.push_back({w[0], w[1]});
    planner["trajectory"] = std::move(t);
  }
  planner["prompt_tokens"] = out->prompt_tokens;
  planner["new_tokens"] = out->new_tokens;
  planner["stop_reason"] = out->stop_reason;
  planner["location"] = f.location;
  planner["command"] = int(f.command);
  j["planner"] = std::move(planner);
  j["timings_ms"] = {{"prepare", f.prepare_ms},
                     {"vision", out->vision_ms},
                     {"prefill", out->prefill_ms},
                     {"ttft", out->vision_ms + out->prefill_ms},
                     {"decode", out->decode_ms},
                     {"tpot", out->new_tokens > 1 ? out->decode_ms / (out->new_tokens - 1) : 0.0},
                     {"total", out->vision_ms + out->prefill_ms + out->decode_ms}};
  return j;
}

// Model text can hold invalid UTF-8 (random weights, byte-fallback tokens cut mid-character):
// replace it rather than fail the frame.
std::string dump(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

std::string frame_name(int index) {
  char b[32];
  std::snprintf(b, sizeof b, "frame_%03d", index);
  return b;
}

}  // namespace

RunSummary run_scene(const RunOptions& opt, ModelEngines& engines) {
  FILE* con = opt.json_stdout ? stderr : stdout;
  const std::vector<std::string> cameras = engines.camera_names();
  const io::Scene scene = io::read_scene(opt.scene, cameras);
  fs::create_directories(opt.out_dir);
  const PreprocessConfig pcfg = preprocess_config_for(engines);
  const int n = opt.max_frames >= 0 ? std::min<int>(opt.max_frames, int(scene.frames.size()))
                                    : int(scene.frames.size());
  std::fprintf(con, "scene %s: %zu frames (%d valid), cameras:", scene.name.c_str(),
               scene.frames.size(), scene.num_valid());
  for (const auto& c : cameras) std::fprintf(con, " %s", c.c_str());
  std::fprintf(con, "\nmodel: %s (%s)\n", opt.model_dir.c_str(), engines.description().c_str());
  if (!opt.model_note.empty()) std::fprintf(con, "%s\n", opt.model_note.c_str());
  if (opt.random_weights) std::fprintf(con, "WARNING: %s\n", kRandomWeightsWarning);
  std::fprintf(con, "output: %s\n", opt.out_dir.c_str());

  viz::VizOptions vopt;
  vopt.random_weights = opt.random_weights;
  RunSummary sum;
  json summary_frames = json::array();
  std::vector<io::Image> thumbs;
  std::vector<std::string> thumb_labels;
  bool first = true;
  auto prepare = [&](int i) { return prepare_frame(scene, scene.frames[size_t(i)], pcfg, opt.viz); };
  std::future<PreparedFrame> next;
  if (n > 0) next = std::async(std::launch::async, prepare, 0);
  const auto t_start = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    PreparedFrame f = next.get();
    // Overlap: decode + pre-process frame i+1 while the engines work on frame i.
    if (i + 1 < n) next = std::async(std::launch::async, prepare, i + 1);
    const std::string base = (fs::path(opt.out_dir) / frame_name(f.index)).string();
    std::string error = f.error;
    FrameOutput out;
    if (error.empty()) {
      try {
        out = engines.run(f, first);
        first = false;
      } catch (const std::exception& e) {
        error = "frame " + std::to_string(f.index) + " (" + f.token + "): " + e.what();
      }
    }
    const json j = frame_json(opt, scene, f, error.empty() ? &out : nullptr, error);
    write_text_atomic(base + ".json", dump(j, 1) + "\n");
    ++sum.frames;
    json s = {{"frame_index", f.index}, {"token", f.token}, {"file", frame_name(f.index) + ".json"}};
    if (error.empty()) {
      ++sum.ok;
      if (opt.viz) {
        try {
          const std::string title = scene.name + "  " + f.token + "  t=" +
                                    std::to_string(f.timestamp - scene.frames[0].timestamp).substr(0, 5) + " s";
          const io::Image bev = viz::render_bev(out, title, vopt);
          io::write_png(base + "_bev.png", bev);
          io::write_png(base + "_cameras.png", viz::render_cameras(f, cameras, out, vopt));
          thumbs.push_back(pil_resize_bicubic(bev, 320, 320));
          thumb_labels.push_back(f.token);
        } catch (const std::exception& e) {
          std::fprintf(con, "frame %d: pictures failed: %s\n", f.index, e.what());
        }
      }
      std::fprintf(con, "frame %d (%s): %zu boxes, %zu lanes, %d new tokens, %s, vision %.1f ms, "
                   "TTFT %.1f ms, total %.1f ms%s\n",
                   f.index, f.token.c_str(), out.boxes.size(), out.lanes.size(), out.new_tokens,
                   out.trajectory.empty() ? "no trajectory (answer did not parse)" : "trajectory parsed",
                   out.vision_ms, out.vision_ms + out.prefill_ms,
                   out.vision_ms + out.prefill_ms + out.decode_ms,
                   out.memory_reset ? " [memory reset]" : "");
      s["status"] = "ok";
      s["trajectory_parsed"] = !out.trajectory.empty();
    } else {
      ++sum.failed;
      std::fprintf(con, "frame %d: ERROR %s\n", f.index, error.c_str());
      s["status"] = "error";
      s["error"] = error;
    }
    if (opt.json_stdout) std::printf("%s\n", dump(j, -1).c_str()), std::fflush(stdout);
    std::fflush(con);
    summary_frames.push_back(s);
    // The summary is rewritten after every frame, so an interrupted run still has one.
    json summary = {{"omnirt_version", omnirt::version()},
                    {"commit", omnirt::git_commit()},
                    {"scene", scene.name},
                    {"scene_dir", scene.dir},
                    {"model", opt.model_dir},
                    {"model_description", engines.description()},
                    {"random_weights", opt.random_weights},
                    {"frames_total", n},
                    {"frames_done", sum.frames},
                    {"frames_ok", sum.ok},
                    {"frames_failed", sum.failed},
                    {"complete", sum.frames == n},
                    {"wall_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count()},
                    {"frames", summary_frames}};
    if (opt.random_weights) summary["warning"] = kRandomWeightsWarning;
    if (!opt.model_note.empty()) summary["note"] = opt.model_note;
    write_text_atomic((fs::path(opt.out_dir) / "summary.json").string(), dump(summary, 1) + "\n");
  }
  if (opt.viz && !thumbs.empty())
    io::write_png((fs::path(opt.out_dir) / "bev_contact_sheet.png").string(),
                  viz::contact_sheet(thumbs, thumb_labels, 320, 4));
  std::fprintf(con, "done: %d frames, %d ok, %d failed%s\n", sum.frames, sum.ok, sum.failed,
               opt.random_weights ? " (random weights: boxes and text are meaningless)" : "");
  return sum;
}

}  // namespace omnirt::pipeline
