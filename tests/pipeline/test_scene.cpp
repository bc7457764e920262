// Scene reader and frame preparation: per-frame errors name the frame and the file/field, the
// other frames stay usable.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/image.h"
#include "io/scene.h"
#include "pipeline/frame.h"

using namespace omnirt;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::vector<std::string> kCams = {"CAM_FRONT", "CAM_FRONT_RIGHT"};

json calib() {
  return {{"intrinsics", {{1266.4, 0, 816.3}, {0, 1266.4, 491.5}, {0, 0, 1}}},
          {"sensor2ego_rotation", {0.5, -0.5, 0.5, -0.5}},
          {"sensor2ego_translation", {1.7, 0.0, 1.5}}};
}

struct TempScene {
  fs::path dir;
  json root;
  explicit TempScene(const std::string& name) {
    dir = fs::temp_directory_path() / ("omnirt_scene_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    root = {{"name", name}, {"location", "singapore-onenorth"}, {"frames", json::array()}};
    root["calibration"] = {{"CAM_FRONT", calib()}, {"CAM_FRONT_RIGHT", calib()}};
  }
  ~TempScene() { fs::remove_all(dir); }
  void add_frame(double t) {
    const int i = int(root["frames"].size());
    json f = {{"timestamp", t},
              {"ego2global_rotation", {1, 0, 0, 0}},
              {"ego2global_translation", {100.0 + i, 200, 0}},
              {"command", 2},
              {"can_bus", std::vector<double>(13, 0.5)},
              {"images", json::object()}};
    for (const auto& c : kCams) {
      const std::string rel = "f" + std::to_string(i) + "_" + c + ".png";
      io::Image img(160, 90);
      for (size_t k = 0; k < img.pixels.size(); ++k) img.pixels[k] = uint8_t((k * 37 + i) % 251);
      io::write_png((dir / rel).string(), img);
      f["images"][c] = rel;
    }
    root["frames"].push_back(f);
  }
  void write() { std::ofstream(dir / "scene.json") << root.dump(1); }
};

}  // namespace

TEST(SceneReader, ReadsAValidSceneWithSceneLevelCalibration) {
  TempScene s("valid");
  for (int i = 0; i < 3; ++i) s.add_frame(10.0 + 0.5 * i);
  s.root["frames"][1]["location"] = "boston-seaport";
  s.root["frames"][2]["calibration"] = {{"CAM_FRONT_RIGHT", calib()}};
  s.root["frames"][2]["calibration"]["CAM_FRONT_RIGHT"]["sensor2ego_translation"] = {1, 2, 3};
  s.write();
  const io::Scene scene = io::read_scene(s.dir.string(), kCams);
  ASSERT_EQ(scene.frames.size(), 3u);
  EXPECT_EQ(scene.num_valid(), 3);
  EXPECT_EQ(scene.frames[0].location, "singapore-onenorth");
  EXPECT_EQ(scene.frames[1].location, "boston-seaport");
  EXPECT_DOUBLE_EQ(scene.frames[2].timestamp, 11.0);
  EXPECT_DOUBLE_EQ(scene.frames[2].calibration[1].sensor2ego_translation[2], 3.0);
  EXPECT_DOUBLE_EQ(scene.frames[2].calibration[0].sensor2ego_translation[2], 1.5);
  EXPECT_FLOAT_EQ(scene.frames[0].can_bus[12], 0.5f);

  // Preparation: tensor shape for an 80x80 network and finite, normalised values.
  const auto cfg = pipeline::PreprocessConfig::for_network(80, 80);
  const auto pf = pipeline::prepare_frame(scene, scene.frames[0], cfg, true);
  ASSERT_TRUE(pf.ok()) << pf.error;
  EXPECT_EQ(pf.img.shape(), (Shape{2, 3, 80, 80}));
  ASSERT_EQ(pf.lidar2img.size(), 2u);
  EXPECT_FLOAT_EQ(pf.ego_pose[3], 100.f);
  EXPECT_FLOAT_EQ(pf.ego_pose_inv[3], -100.f);
  EXPECT_EQ(pf.source_images.size(), 2u);
}

TEST(SceneReader, BadFramesCarryErrorsNamingFrameAndFile) {
  TempScene s("bad");
  for (int i = 0; i < 7; ++i) s.add_frame(1.0 + 0.5 * i);
  auto& fr = s.root["frames"];
  // 1: missing camera image file
  fs::remove(s.dir / fr[1]["images"]["CAM_FRONT_RIGHT"].get<std::string>());
  // 2: unreadable image (not a PNG/JPEG)
  std::ofstream(s.dir / fr[2]["images"]["CAM_FRONT"].get<std::string>()) << "not an image";
  // 3: calibration of the wrong shape (3x2 intrinsics)
  fr[3]["calibration"] = {{"CAM_FRONT", calib()}};
  fr[3]["calibration"]["CAM_FRONT"]["intrinsics"] = {{1, 0}, {0, 1}, {0, 0}};
  // 4: out of time order (earlier than frame 3)
  fr[4]["timestamp"] = 1.2;
  // 5: non-finite value (Python's json.dump writes a bare NaN, which is not JSON)
  fr[5]["ego2global_translation"][0] = 123456.789;
  s.write();
  {  // patch the text to hold a non-finite number
    std::ifstream in(s.dir / "scene.json");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string key = "123456.789";
    const auto pos = text.find(key);
    ASSERT_NE(pos, std::string::npos);
    text.replace(pos, key.size(), "NaN");
    std::ofstream(s.dir / "scene.json") << text;
  }
  const io::Scene scene = io::read_scene(s.dir.string(), kCams);
  ASSERT_EQ(scene.frames.size(), 7u);
  EXPECT_TRUE(scene.frames[0].ok()) << scene.frames[0].error;
  const std::string& e1 = scene.frames[1].error;
  EXPECT_NE(e1.find("frame 1"), std::string::npos) << e1;
  EXPECT_NE(e1.find("f1_CAM_FRONT_RIGHT.png"), std::string::npos) << e1;
  EXPECT_NE(e1.find("not found"), std::string::npos) << e1;
  EXPECT_TRUE(scene.frames[2].ok()) << "decoding happens in prepare_frame";
  const std::string& e3 = scene.frames[3].error;
  EXPECT_NE(e3.find("frame 3"), std::string::npos) << e3;
  EXPECT_NE(e3.find("calibration.CAM_FRONT.intrinsics"), std::string::npos) << e3;
  EXPECT_NE(e3.find("3x3"), std::string::npos) << e3;
  const std::string& e4 = scene.frames[4].error;
  EXPECT_NE(e4.find("frame 4"), std::string::npos) << e4;
  EXPECT_NE(e4.find("time order"), std::string::npos) << e4;
  const std::string& e5 = scene.frames[5].error;
  EXPECT_NE(e5.find("frame 5"), std::string::npos) << e5;
  EXPECT_NE(e5.find("non-finite"), std::string::npos) << e5;
  EXPECT_NE(e5.find("ego2global_translation"), std::string::npos) << e5;
  EXPECT_TRUE(scene.frames[6].ok()) << scene.frames[6].error;

  const auto cfg = pipeline::PreprocessConfig::for_network(80, 80);
  const auto p2 = pipeline::prepare_frame(scene, scene.frames[2], cfg, false);
  EXPECT_FALSE(p2.ok());
  EXPECT_NE(p2.error.find("frame 2"), std::string::npos) << p2.error;
  EXPECT_NE(p2.error.find("f2_CAM_FRONT.png"), std::string::npos) << p2.error;
  EXPECT_NE(p2.error.find("cannot decode"), std::string::npos) << p2.error;
  const auto p1 = pipeline::prepare_frame(scene, scene.frames[1], cfg, false);
  EXPECT_EQ(p1.error, scene.frames[1].error);
  const auto p6 = pipeline::prepare_frame(scene, scene.frames[6], cfg, false);
  EXPECT_TRUE(p6.ok()) << p6.error;
}

TEST(SceneReader, WholeSceneProblemsThrow) {
  EXPECT_THROW(io::read_scene("/nonexistent/omnirt/scene", kCams), Error);
  TempScene s("broken");
  std::ofstream(s.dir / "scene.json") << "{ not json";
  EXPECT_THROW(io::read_scene(s.dir.string(), kCams), Error);
  std::ofstream(s.dir / "scene.json") << R"({"frames": []})";
  EXPECT_THROW(io::read_scene(s.dir.string(), kCams), Error);
}

TEST(SceneReader, MissingCameraEntryNamesTheCamera) {
  TempScene s("nocam");
  s.add_frame(0);
  s.root["frames"][0]["images"].erase("CAM_FRONT_RIGHT");
  s.write();
  const io::Scene scene = io::read_scene(s.dir.string(), kCams);
  EXPECT_NE(scene.frames[0].error.find("images.CAM_FRONT_RIGHT: missing"), std::string::npos)
      << scene.frames[0].error;
}
