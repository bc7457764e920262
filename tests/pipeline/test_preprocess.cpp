// Pre-processing vs the reference libraries: expectations made by Pillow / OpenCV with
// python/make_preprocess_fixtures.py (committed under tests/data/preprocess).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "common/test_util.h"
#include "core/error.h"
#include "io/image.h"
#include "pipeline/preprocess.h"

using namespace omnirt;
using namespace omnirt::pipeline;

namespace {

const std::string kDir = std::string(OMNIRT_TEST_DATA_DIR) + "/preprocess/";

// The fixture cases (a static copy: range-for over a temporary's member would dangle).
const nlohmann::json& fixture_cases() {
  static const nlohmann::json all = [] {
    std::ifstream f(kDir + "manifest.json");
    EXPECT_TRUE(f.good()) << "missing " << kDir << "manifest.json";
    return nlohmann::json::parse(f)["cases"];
  }();
  return all;
}

std::vector<float> read_f32(const std::string& path, size_t n) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path;
  std::vector<float> v(n);
  f.read(reinterpret_cast<char*>(v.data()), std::streamsize(n * 4));
  EXPECT_EQ(size_t(f.gcount()), n * 4) << path << ": wrong size";
  return v;
}

// Same formula as make_preprocess_fixtures.py::pattern.
io::Image pattern(int w, int h) {
  io::Image img(w, h);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      img.at(x, y, 0) = uint8_t(((x * 7 + y * 13) ^ (x * y / 7)) & 255);
      img.at(x, y, 1) = uint8_t(((x * 3) ^ (y * 5) ^ (x / 9 * y / 11)) & 255);
      img.at(x, y, 2) = uint8_t((((x / 16 + y / 16) % 2) * 200 + (x + 2 * y) % 50) & 255);
    }
  return img;
}

int max_abs_diff(const io::Image& a, const io::Image& b) {
  EXPECT_EQ(a.pixels.size(), b.pixels.size());
  int m = 0;
  for (size_t i = 0; i < a.pixels.size() && i < b.pixels.size(); ++i)
    m = std::max(m, std::abs(int(a.pixels[i]) - int(b.pixels[i])));
  return m;
}

}  // namespace

TEST(PilResize, MatchesPillowBicubicOnSmallImages) {
  int cases = 0;
  for (const auto& c : fixture_cases()) {
    if (c["kind"] != "pil_resize") continue;
    const io::Image src = io::load_image_rgb(kDir + c["input"].get<std::string>());
    const io::Image exp = io::load_image_rgb(kDir + c["expected"].get<std::string>());
    const io::Image got = pil_resize_bicubic(src, c["out_w"], c["out_h"]);
    ASSERT_EQ(got.width, exp.width);
    ASSERT_EQ(got.height, exp.height);
    // Pillow's integer arithmetic is reproduced exactly; the task allows +-1, we see 0.
    EXPECT_LE(max_abs_diff(got, exp), 1) << c["input"];
    EXPECT_EQ(got.pixels, exp.pixels) << c["input"] << ": not bit-exact";
    ++cases;
  }
  EXPECT_EQ(cases, 4);
}

TEST(PilResize, MatchesPillowAtTheReferenceSize1600x900To640x360) {
  nlohmann::json c;
  for (const auto& x : fixture_cases())
    if (x["kind"] == "pil_resize_full") c = x;
  ASSERT_FALSE(c.is_null());
  const io::Image got = pil_resize_bicubic(pattern(1600, 900), 640, 360);
  const io::Image rows = io::load_image_rgb(kDir + c["expected_rows"].get<std::string>());
  const io::Image cols = io::load_image_rgb(kDir + c["expected_cols"].get<std::string>());
  const auto r = c["rows"].get<std::vector<int>>();
  const auto cl = c["cols"].get<std::vector<int>>();
  int worst = 0;
  for (size_t i = 0; i < r.size(); ++i)
    for (int x = 0; x < 640; ++x)
      for (int ch = 0; ch < 3; ++ch)
        worst = std::max(worst, std::abs(int(got.at(x, r[i], ch)) - int(rows.at(x, int(i), ch))));
  for (size_t j = 0; j < cl.size(); ++j)
    for (int y = 0; y < 360; ++y)
      for (int ch = 0; ch < 3; ++ch)
        worst = std::max(worst, std::abs(int(got.at(cl[j], y, ch)) - int(cols.at(int(j), y, ch))));
  EXPECT_EQ(worst, 0);
}

TEST(Cv2Linear, MatchesOpenCvOnFloat32) {
  int cases = 0;
  for (const auto& c : fixture_cases()) {
    if (c["kind"] != "cv2_linear") continue;
    const io::Image src = io::load_image_rgb(kDir + c["input"].get<std::string>());
    const int w = c["out_w"], h = c["out_h"];
    const auto exp = read_f32(kDir + c["expected"].get<std::string>(), size_t(w) * h * 3);
    const auto got = cv2_resize_linear_f32(src, w, h);
    ASSERT_EQ(got.size(), exp.size());
    float worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - exp[i]));
    // OpenCV's float path may use SIMD fused multiply-adds: allow float rounding only.
    EXPECT_LE(worst, 1e-3f) << c["input"];
    ++cases;
  }
  EXPECT_EQ(cases, 3);
}

TEST(Preprocess, WholeChainMatchesReferencePipeline) {
  int cases = 0;
  for (const auto& c : fixture_cases()) {
    if (c["kind"] != "chain") continue;
    const io::Image src = io::load_image_rgb(kDir + c["input"].get<std::string>());
    const auto cfg = PreprocessConfig::for_network(c["net_h"], c["net_w"]);
    const ResizeCrop rc = resize_crop_for(cfg, src.width, src.height);
    EXPECT_DOUBLE_EQ(rc.resize, c["resize"].get<double>());
    EXPECT_EQ(rc.resized_w, c["resized_w"].get<int>());
    EXPECT_EQ(rc.resized_h, c["resized_h"].get<int>());
    EXPECT_EQ(rc.crop_x, c["crop_x"].get<int>());
    EXPECT_EQ(rc.crop_y, c["crop_y"].get<int>());
    const size_t n = size_t(3) * cfg.out_h * cfg.out_w;
    const auto exp = read_f32(kDir + c["expected"].get<std::string>(), n);
    std::vector<float> got(n);
    preprocess_image(cfg, src, got.data());
    float worst = 0;
    for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(got[i] - exp[i]));
    EXPECT_LE(worst, 1e-5f) << c["input"];  // normalised units; one uint8 level is ~0.017
    ++cases;
  }
  EXPECT_EQ(cases, 2);
}

TEST(Preprocess, ReferenceGeometryFor1600x900) {
  const PreprocessConfig cfg;  // 640x640 network
  const ResizeCrop rc = resize_crop_for(cfg, 1600, 900);
  EXPECT_DOUBLE_EQ(rc.resize, 0.4);
  EXPECT_EQ(rc.resized_w, 640);
  EXPECT_EQ(rc.resized_h, 360);
  EXPECT_EQ(rc.crop_x, 0);
  EXPECT_EQ(rc.crop_y, 40);
  // Spec §1.2 net intrinsics: fx'=0.4fx, cx'=0.4cx, fy'=0.8fy, cy'=2(0.4cy-40).
  const Mat3d K{1266.4, 0.3, 816.27, 0, 1267.1, 491.51, 0, 0, 1};
  const Mat3d Kp = adjust_intrinsics(cfg, K, 1600, 900);
  EXPECT_NEAR(Kp[0], 0.4 * 1266.4, 1e-9);
  EXPECT_NEAR(Kp[1], 0.4 * 0.3, 1e-9);
  EXPECT_NEAR(Kp[2], 0.4 * 816.27, 1e-9);
  EXPECT_NEAR(Kp[3], 0, 1e-12);
  EXPECT_NEAR(Kp[4], 0.8 * 1267.1, 1e-9);
  EXPECT_NEAR(Kp[5], 2 * (0.4 * 491.51 - 40), 1e-9);
  EXPECT_NEAR(Kp[8], 1, 1e-12);
}

TEST(Geometry, QuaternionRotationMatchesHamiltonProduct) {
  std::mt19937_64 rng(omnirt::testing::test_seed());
  std::normal_distribution<double> g(0, 1);
  for (int it = 0; it < 20; ++it) {
    std::array<double, 4> q{g(rng), g(rng), g(rng), g(rng)};
    const std::array<double, 3> t{g(rng), g(rng), g(rng)};
    const double n = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    const Mat4d m = rigid_from_quaternion(q, t);
    const double v[3] = {g(rng), g(rng), g(rng)};
    // q v q* with the unit quaternion, written out as two Hamilton products.
    const double w = q[0] / n, x = q[1] / n, y = q[2] / n, z = q[3] / n;
    const double a0 = -x * v[0] - y * v[1] - z * v[2], a1 = w * v[0] + y * v[2] - z * v[1],
                 a2 = w * v[1] + z * v[0] - x * v[2], a3 = w * v[2] + x * v[1] - y * v[0];
    const double r[3] = {-a0 * x + a1 * w - a2 * z + a3 * y, -a0 * y + a2 * w - a3 * x + a1 * z,
                         -a0 * z + a3 * w - a1 * y + a2 * x};
    for (int i = 0; i < 3; ++i) {
      const double got = m[i * 4] * v[0] + m[i * 4 + 1] * v[1] + m[i * 4 + 2] * v[2] + m[i * 4 + 3];
      EXPECT_NEAR(got, r[i] + t[i], 1e-9);
    }
    const Mat4d id = matmul4(m, rigid_inverse(m));
    for (int i = 0; i < 16; ++i) EXPECT_NEAR(id[i], (i % 5 == 0) ? 1.0 : 0.0, 1e-12);
  }
  EXPECT_THROW(rigid_from_quaternion({0, 0, 0, 0}, {0, 0, 0}), Error);
}

TEST(Geometry, EgoToImageProjectsAPointInFrontOfTheCamera) {
  // Camera at (1.5, 0, 1.6) looking forward along ego +x (nuScenes CAM_FRONT-like rotation:
  // camera z -> ego x, camera x -> ego -y, camera y -> ego -z).
  const Mat4d s2e{0, 0, 1, 1.5, -1, 0, 0, 0, 0, -1, 0, 1.6, 0, 0, 0, 1};
  const Mat3d K{500, 0, 320, 0, 400, 300, 0, 0, 1};
  const Mat4d P = ego_to_image(K, s2e);
  const double p[4] = {11.5, 2.0, 0.6, 1};  // 10 m ahead, 2 m left, 1 m below the camera
  double o[4] = {0, 0, 0, 0};
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) o[i] += P[i * 4 + j] * p[j];
  EXPECT_NEAR(o[2], 10.0, 1e-12);                    // depth
  EXPECT_NEAR(o[0] / o[2], 320 - 500 * 0.2, 1e-9);   // left of centre
  EXPECT_NEAR(o[1] / o[2], 300 + 400 * 0.1, 1e-9);   // below centre
}

// Not an equality: stb_image and libjpeg-turbo (OpenCV, the reference) use different IDCT and
// chroma upsampling. This measures the difference (printed) and bounds it, in uint8 levels and
// after pre-processing in normalised units.
TEST(JpegDecode, StbVersusOpenCvDifferenceIsSmall) {
  nlohmann::json c;
  for (const auto& x : fixture_cases())
    if (x["kind"] == "jpeg") c = x;
  ASSERT_FALSE(c.is_null());
  const io::Image stb = io::load_image_rgb(kDir + c["input"].get<std::string>());
  const io::Image cv = io::load_image_rgb(kDir + c["cv2_decoded"].get<std::string>());
  ASSERT_EQ(stb.width, cv.width);
  ASSERT_EQ(stb.height, cv.height);
  double mean = 0;
  for (size_t i = 0; i < stb.pixels.size(); ++i) mean += std::abs(int(stb.pixels[i]) - int(cv.pixels[i]));
  mean /= double(stb.pixels.size());
  const int worst = max_abs_diff(stb, cv);
  const auto cfg = PreprocessConfig::for_network(48, 48);
  std::vector<float> a(3 * 48 * 48), b(a.size());
  preprocess_image(cfg, stb, a.data());
  preprocess_image(cfg, cv, b.data());
  float worst_norm = 0;
  for (size_t i = 0; i < a.size(); ++i) worst_norm = std::max(worst_norm, std::abs(a[i] - b[i]));
  std::printf("[ jpeg ] stb vs OpenCV decode: max %d, mean %.3f uint8 levels; after "
              "pre-processing: max %.4f normalised units\n", worst, mean, worst_norm);
  EXPECT_LE(worst, 24);
  EXPECT_LE(mean, 2.0);
}
