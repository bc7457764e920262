// The library API (include/omnirt/omnirt.h) on the tiny checkpoint (2 cameras, 80x80, CPU):
// its results equal what `omnirt run`'s runner (pipeline::run_scene) writes for the same frames,
// decoded RGB buffers give the same result as file paths, and bad input is a clear omnirt::Error
// that leaves the model usable.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "omnirt/omnirt.h"
#include "pipeline/engines.h"
#include "pipeline/runner.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kModel = std::string(OMNIRT_TEST_DATA_DIR) + "/tiny_ckpt";
const std::string kScene = std::string(OMNIRT_TEST_DATA_DIR) + "/tiny_scene";

omnirt::ModelOptions cpu_options(bool greedy, int max_new, uint64_t seed = 0) {
  omnirt::ModelOptions o;
  o.device = omnirt::Backend::kCpu;
  o.greedy = greedy;
  o.max_new_tokens = max_new;
  o.seed = seed;
  return o;
}

// What the runner behind `omnirt run` writes for the tiny scene: frame_NNN.json per frame.
std::vector<json> runner_frames(bool greedy, int max_new, uint64_t seed) {
  omnirt::pipeline::EngineOptions eo;
  eo.device = omnirt::Device::CPU;
  eo.greedy = greedy;
  eo.max_new_tokens = max_new;
  eo.seed = seed;
  auto engines = omnirt::pipeline::ModelEngines::load(kModel, eo);
  omnirt::pipeline::RunOptions ro;
  ro.scene = kScene;
  ro.model_dir = kModel;
  ro.out_dir = (fs::temp_directory_path() /
                ("omnirt_api_runner_" + std::to_string(::getpid()) + "_" + std::to_string(seed)))
                   .string();
  const auto sum = omnirt::pipeline::run_scene(ro, *engines);
  EXPECT_EQ(sum.ok, 3);
  std::vector<json> out;
  for (int i = 0; i < 3; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "frame_%03d.json", i);
    std::ifstream in(fs::path(ro.out_dir) / name);
    out.push_back(json::parse(in));
  }
  fs::remove_all(ro.out_dir);
  return out;
}

// The runner's JSON holds floats as doubles with round-trip precision: exact comparisons.
void expect_same(const omnirt::FrameResult& r, const json& j) {
  SCOPED_TRACE("frame " + std::to_string(r.index));
  ASSERT_EQ(j["status"], "ok") << j.dump();
  EXPECT_EQ(r.token, j["token"]);
  EXPECT_EQ(r.memory_reset, j["memory_reset"].get<bool>());
  ASSERT_EQ(r.boxes.size(), j["boxes"].size());
  for (size_t i = 0; i < r.boxes.size(); ++i) {
    const auto& b = r.boxes[i];
    const json& e = j["boxes"][i];
    EXPECT_EQ(b.label, e["label_id"].get<int>());
    EXPECT_EQ(b.label_name, e["label"].get<std::string>());
    EXPECT_EQ(b.score, e["score"].get<float>());
    for (int k = 0; k < 3; ++k) EXPECT_EQ(b.center[k], e["center"][k].get<float>());
    for (int k = 0; k < 3; ++k) EXPECT_EQ(b.size_wlh[k], e["size_wlh"][k].get<float>());
    EXPECT_EQ(b.yaw, e["yaw"].get<float>());
    for (int k = 0; k < 2; ++k) EXPECT_EQ(b.velocity[k], e["velocity"][k].get<float>());
  }
  ASSERT_EQ(r.lanes.size(), j["lanes"].size());
  for (size_t i = 0; i < r.lanes.size(); ++i) {
    EXPECT_EQ(r.lanes[i].score, j["lanes"][i]["score"].get<float>());
    ASSERT_EQ(r.lanes[i].points.size(), j["lanes"][i]["points"].size());
    for (size_t p = 0; p < r.lanes[i].points.size(); ++p)
      for (int k = 0; k < 3; ++k)
        EXPECT_EQ(r.lanes[i].points[p][k], j["lanes"][i]["points"][p][k].get<float>());
  }
  const json& pl = j["planner"];
  // The runner replaces invalid UTF-8 (random weights) when it writes JSON; compare the same way.
  EXPECT_EQ(json(r.answer).dump(-1, ' ', false, json::error_handler_t::replace), pl["answer"].dump());
  EXPECT_EQ(r.new_tokens, pl["new_tokens"].get<int>());
  EXPECT_EQ(r.prompt_tokens, pl["prompt_tokens"].get<int>());
  EXPECT_EQ(r.stop_reason, pl["stop_reason"].get<std::string>());
  EXPECT_EQ(r.trajectory.empty(), pl["trajectory"].is_null());
  EXPECT_GT(r.timings.vision_ms, 0);
  EXPECT_GT(r.timings.prefill_ms, 0);
  EXPECT_DOUBLE_EQ(r.timings.ttft_ms, r.timings.vision_ms + r.timings.prefill_ms);
}

// Runs `fn`, expects an omnirt::Error whose message contains every string in `parts`.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no omnirt::Error thrown (expected one mentioning \"" << parts[0] << "\")";
  } catch (const omnirt::Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "\"" << p << "\" not in: " << msg;
  }
}

}  // namespace

TEST(Api, GreedyFramesEqualTheRunnersOutput) {
  const auto expected = runner_frames(/*greedy=*/true, 24, 0);
  omnirt::Model model(kModel, cpu_options(true, 24));
  EXPECT_FALSE(model.on_cuda());
  EXPECT_TRUE(model.random_weights());
  EXPECT_EQ(model.camera_names(), (std::vector<std::string>{"CAM_FRONT", "CAM_FRONT_RIGHT"}));
  EXPECT_EQ(model.input_height(), 80);
  const omnirt::Scene scene = omnirt::load_scene(kScene, model.camera_names());
  EXPECT_EQ(scene.name, "tiny_scene");
  ASSERT_EQ(scene.frames.size(), 3u);
  EXPECT_TRUE(scene.errors.empty());
  for (int i = 0; i < 3; ++i) expect_same(model.run(scene.frames[size_t(i)]), expected[size_t(i)]);
}

TEST(Api, SampledFramesEqualTheRunnersOutput) {
  // OmniDrive sampling: the seed and the frame index fix the draws in both.
  const auto expected = runner_frames(/*greedy=*/false, 24, 77);
  omnirt::Model model(kModel, cpu_options(false, 24, 77));
  const omnirt::Scene scene = omnirt::load_scene(kScene, model.camera_names());
  for (int i = 0; i < 3; ++i) expect_same(model.run(scene.frames[size_t(i)]), expected[size_t(i)]);
}

TEST(Api, RgbBuffersGiveTheSameResultAsPaths) {
  omnirt::Model a(kModel, cpu_options(true, 12)), b(kModel, cpu_options(true, 12));
  const omnirt::Scene scene = omnirt::load_scene(kScene, a.camera_names());
  for (size_t i = 0; i < 2; ++i) {
    omnirt::Frame f = scene.frames[i];
    // Reverse the camera order too: cameras are matched by name.
    std::reverse(f.cameras.begin(), f.cameras.end());
    for (auto& cam : f.cameras) {
      omnirt::decode_image(cam);
      EXPECT_TRUE(cam.path.empty());
      ASSERT_EQ(cam.rgb.size(), size_t(cam.width) * cam.height * 3);
    }
    const omnirt::FrameResult ra = a.run(scene.frames[i]), rb = b.run(f);
    ASSERT_EQ(ra.boxes.size(), rb.boxes.size());
    for (size_t k = 0; k < ra.boxes.size(); ++k) {
      EXPECT_EQ(ra.boxes[k].score, rb.boxes[k].score);
      EXPECT_EQ(ra.boxes[k].center, rb.boxes[k].center);
    }
    ASSERT_EQ(ra.lanes.size(), rb.lanes.size());
    for (size_t k = 0; k < ra.lanes.size(); ++k) EXPECT_EQ(ra.lanes[k].points, rb.lanes[k].points);
    EXPECT_EQ(ra.answer, rb.answer);
    EXPECT_EQ(ra.memory_reset, rb.memory_reset);
  }
}

TEST(Api, BadInputIsAClearErrorAndLeavesTheModelUsable) {
  omnirt::Model model(kModel, cpu_options(true, 6));
  const omnirt::Scene scene = omnirt::load_scene(kScene, model.camera_names());
  const omnirt::Frame good = scene.frames[0];
  auto run = [&](const omnirt::Frame& f) { return [&model, f]() { model.run(f); }; };

  omnirt::Frame f = good;
  f.cameras.erase(f.cameras.begin() + 1);
  expect_error(run(f), {"frame 0 (frame_000)", "camera CAM_FRONT_RIGHT: missing",
                        "CAM_FRONT, CAM_FRONT_RIGHT"});

  f = good;
  f.cameras[0].intrinsics.resize(6);
  expect_error(run(f), {"camera CAM_FRONT intrinsics", "expected 9 values", "got 6"});
  f = good;
  f.cameras[1].sensor2ego_translation = {1, 2};
  expect_error(run(f), {"camera CAM_FRONT_RIGHT sensor2ego_translation", "expected 3", "got 2"});
  f = good;
  f.cameras[0].intrinsics = {100, 0, 40, 0, 100, 40, 0, 1, 1};
  expect_error(run(f), {"camera CAM_FRONT intrinsics: not a camera matrix"});
  f = good;
  f.cameras[0].sensor2ego_rotation = {1, 1, 0, 0};
  expect_error(run(f), {"camera CAM_FRONT sensor2ego_rotation", "not unit length"});

  f = good;
  f.ego2global_translation[1] = std::nan("");
  expect_error(run(f), {"frame 0", "ego2global_translation[1]: non-finite"});
  f = good;
  f.cameras[1].intrinsics[2] = INFINITY;
  expect_error(run(f), {"camera CAM_FRONT_RIGHT intrinsics[2]: non-finite"});
  f = good;
  f.can_bus[4] = std::nan("");
  expect_error(run(f), {"can_bus[4]: non-finite"});
  f = good;
  f.timestamp = NAN;
  expect_error(run(f), {"timestamp: non-finite"});
  f = good;
  f.command = 5;
  expect_error(run(f), {"command: expected 0 (left), 1 (right) or 2 (forward), got 5"});

  f = good;
  omnirt::decode_image(f.cameras[0]);
  f.cameras[0].rgb.pop_back();
  expect_error(run(f), {"camera CAM_FRONT: rgb holds", "expected"});
  f = good;
  f.cameras[0].width = 3;
  expect_error(run(f), {"camera CAM_FRONT: give either an image path or decoded pixels"});
  f = good;
  f.cameras[1].path = kScene + "/frames/000/no_such.png";
  expect_error(run(f), {"frame 0 (frame_000)", "no_such.png"});

  // None of that touched the model: its frames now equal a fresh model's.
  omnirt::Model fresh(kModel, cpu_options(true, 6));
  for (size_t i = 0; i < 2; ++i) {
    const auto a = model.run(scene.frames[i]), b = fresh.run(scene.frames[i]);
    EXPECT_EQ(a.memory_reset, b.memory_reset);
    ASSERT_EQ(a.boxes.size(), b.boxes.size());
    for (size_t k = 0; k < a.boxes.size(); ++k) EXPECT_EQ(a.boxes[k].center, b.boxes[k].center);
    EXPECT_EQ(a.answer, b.answer);
  }
  // Time goes forward within a scene; reset() starts a new one.
  expect_error(run(scene.frames[0]), {"timestamp", "is not after the previous frame", "reset()"});
  model.reset();
  EXPECT_TRUE(model.run(scene.frames[0]).memory_reset);
}

TEST(Api, BadModelOptionsAreClearErrors) {
  expect_error([] { omnirt::Model m(std::string(OMNIRT_TEST_DATA_DIR) + "/no_such_model"); },
               {"no_such_model", "config.json not found"});
  auto o = cpu_options(true, 8);
  o.vision_precision = omnirt::Precision::kFp16;
  expect_error([&] { omnirt::Model m(kModel, o); }, {"vision_precision", "fp32 only"});
  o = cpu_options(true, 0);
  expect_error([&] { omnirt::Model m(kModel, o); }, {"max_new_tokens", "got 0"});
  if (!omnirt::cuda_available()) {
    o = cpu_options(true, 8);
    o.device = omnirt::Backend::kCuda;
    expect_error([&] { omnirt::Model m(kModel, o); }, {"kCuda", "no CUDA device"});
  }
  expect_error([] { omnirt::load_scene(std::string(OMNIRT_TEST_DATA_DIR) + "/nope", {"CAM_FRONT"}); },
               {"nope", "scene.json"});
}
