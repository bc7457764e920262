// End to end: `omnirt run` of the tiny checkpoint (2 cameras, 80x80) on the CPU over the tiny
// test scene (tests/data/tiny_scene, made by python/make_sample_scene.py) with one broken frame
// added: JSON per frame, the error frame names its file, pictures written, summary complete.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/image.h"
#include "pipeline/engines.h"
#include "pipeline/runner.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json read_json(const fs::path& p) {
  std::ifstream in(p);
  EXPECT_TRUE(in.good()) << p;
  return json::parse(in);  // throws on a partial / corrupt file
}

int run_cli(const std::string& args, const fs::path& log) {
  const std::string cmd = std::string(OMNIRT_CLI_PATH) + " " + args + " > '" + log.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST(AtomicWrite, ReplacesTheFileAndLeavesNoTemporary) {
  const fs::path dir = fs::temp_directory_path() / ("omnirt_atomic_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string p = (dir / "a.json").string();
  omnirt::pipeline::write_text_atomic(p, "{\"v\": 1}\n");
  omnirt::pipeline::write_text_atomic(p, "{\"v\": 2}\n");
  EXPECT_EQ(slurp(p), "{\"v\": 2}\n");
  EXPECT_FALSE(fs::exists(p + ".tmp"));
  EXPECT_THROW(omnirt::pipeline::write_text_atomic((dir / "no/such/dir/x.json").string(), "x"),
               std::exception);
  fs::remove_all(dir);
}

TEST(RunCli, TinyCheckpointOnCpuWritesJsonAndPicturesAndReportsTheBadFrame) {
  const fs::path tmp = fs::temp_directory_path() / ("omnirt_run_" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  const fs::path scene = tmp / "scene", out = tmp / "out";
  fs::create_directories(tmp);
  fs::copy(fs::path(OMNIRT_TEST_DATA_DIR) / "tiny_scene", scene, fs::copy_options::recursive);
  // Frame 3: a copy of frame 2 0.5 s later whose CAM_FRONT_RIGHT image is missing.
  json sj = read_json(scene / "scene.json");
  json bad = sj["frames"][2];
  bad["token"] = "frame_bad";
  bad["timestamp"] = bad["timestamp"].get<double>() + 0.5;
  bad["images"]["CAM_FRONT_RIGHT"] = "frames/missing/CAM_FRONT_RIGHT.png";
  sj["frames"].push_back(bad);
  json good = sj["frames"][2];
  good["token"] = "frame_after_bad";
  good["timestamp"] = good["timestamp"].get<double>() + 1.0;
  sj["frames"].push_back(good);
  std::ofstream(scene / "scene.json") << sj.dump(1);

  const std::string model = std::string(OMNIRT_TEST_DATA_DIR) + "/tiny_ckpt";
  const int rc = run_cli("run '" + scene.string() + "' --model '" + model + "' --out '" +
                             out.string() + "' --device cpu --greedy --max-new 40 --viz",
                         tmp / "log.txt");
  const std::string log = slurp(tmp / "log.txt");
  EXPECT_EQ(rc, 2) << "exit code 2 = some frames failed\n" << log;
  EXPECT_NE(log.find("random weights: boxes and text are meaningless"), std::string::npos) << log;
  EXPECT_NE(log.find("frames/missing/CAM_FRONT_RIGHT.png"), std::string::npos) << log;

  for (int i : {0, 1, 2, 4}) {
    char name[32];
    std::snprintf(name, sizeof name, "frame_%03d", i);
    const json j = read_json(out / (std::string(name) + ".json"));
    EXPECT_EQ(j["status"], "ok") << name << ": " << j.dump();
    EXPECT_EQ(j["random_weights"], true);
    EXPECT_EQ(j["warning"], "random weights: boxes and text are meaningless");
    ASSERT_TRUE(j["boxes"].is_array());
    EXPECT_EQ(j["boxes"].size(), 12u) << "tiny config max_boxes";
    for (const auto& b : j["boxes"]) {
      EXPECT_TRUE(b["label"].is_string());
      EXPECT_EQ(b["center"].size(), 3u);
      EXPECT_EQ(b["size_wlh"].size(), 3u);
      EXPECT_GT(b["size_wlh"][0].get<double>(), 0);
      EXPECT_GE(b["score"].get<double>(), 0);
      EXPECT_LE(b["score"].get<double>(), 1);
    }
    EXPECT_EQ(j["lanes"].size(), 12u) << "tiny config num_lane_one2one";
    EXPECT_EQ(j["lanes"][0]["points"].size(), 11u);
    EXPECT_TRUE(j["planner"]["answer"].is_string());
    EXPECT_GT(j["planner"]["new_tokens"].get<int>(), 0);
    EXPECT_LE(j["planner"]["new_tokens"].get<int>(), 40);
    // Random weights: the answer almost surely does not parse; either way the JSON says which.
    EXPECT_TRUE(j["planner"]["trajectory"].is_array() ||
                !j["planner"]["trajectory_error"].get<std::string>().empty());
    EXPECT_GT(j["timings_ms"]["vision"].get<double>(), 0);
    EXPECT_TRUE(fs::exists(out / (std::string(name) + "_bev.png")));
    const auto cams = omnirt::io::load_image_rgb((out / (std::string(name) + "_cameras.png")).string());
    EXPECT_EQ(cams.width, 3 * 533);
  }
  EXPECT_EQ(read_json(out / "frame_000.json")["memory_reset"], true);
  const json badj = read_json(out / "frame_003.json");
  EXPECT_EQ(badj["status"], "error");
  const std::string err = badj["error"];
  EXPECT_NE(err.find("frame 3"), std::string::npos) << err;
  EXPECT_NE(err.find("frames/missing/CAM_FRONT_RIGHT.png"), std::string::npos) << err;

  const json sum = read_json(out / "summary.json");
  EXPECT_EQ(sum["frames_done"], 5);
  EXPECT_EQ(sum["frames_ok"], 4);
  EXPECT_EQ(sum["frames_failed"], 1);
  EXPECT_EQ(sum["complete"], true);
  const auto sheet = omnirt::io::load_image_rgb((out / "bev_contact_sheet.png").string());
  EXPECT_EQ(sheet.width, 4 * 320);
  for (const auto& e : fs::directory_iterator(out))
    EXPECT_NE(e.path().extension(), ".tmp") << "temporary left behind: " << e.path();

  // --json: one JSON object per frame on stdout, the messages on stderr.
  const std::string cmd = std::string(OMNIRT_CLI_PATH) + " run '" + scene.string() + "' --model '" +
                          model + "' --out '" + (tmp / "out2").string() +
                          "' --device cpu --greedy --max-new 8 --max-frames 2 --json 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[1 << 16];
  std::string all;
  while (fgets(buf, sizeof buf, p)) all += buf;
  pclose(p);
  int lines = 0;
  size_t start = 0;
  while (start < all.size()) {
    const size_t end = all.find('\n', start);
    const json j = json::parse(all.substr(start, end - start));
    EXPECT_EQ(j["frame_index"], lines);
    ++lines;
    start = end == std::string::npos ? all.size() : end + 1;
  }
  EXPECT_EQ(lines, 2);
  fs::remove_all(tmp);
}

// Half-precision vision options are CUDA-only: on the CPU backend they are a clear error naming
// the flag, before any model is loaded.
TEST(RunCli, HalfVisionOptionsOnTheCpuAreClearErrors) {
  const fs::path log = fs::temp_directory_path() / ("omnirt_run_half_" + std::to_string(::getpid()));
  const std::string scene = std::string(OMNIRT_SOURCE_DIR) + "/examples/sample_scene";
  EXPECT_NE(run_cli("run '" + scene + "' --device cpu --vision-heads fp16", log), 0);
  EXPECT_NE(slurp(log).find("--vision-heads fp16: the CPU backend runs fp32 only"), std::string::npos)
      << slurp(log);
  EXPECT_NE(run_cli("run '" + scene + "' --device cpu --vision-heads tf32", log), 0);
  EXPECT_NE(slurp(log).find("--vision-heads tf32: the CPU backend runs fp32 only"), std::string::npos)
      << slurp(log);
  EXPECT_NE(run_cli("run '" + scene + "' --device cpu --vision-dtype bf16", log), 0);
  EXPECT_NE(slurp(log).find("--vision-dtype bf16: the CPU backend runs fp32 only"), std::string::npos)
      << slurp(log);
  fs::remove(log);
}
