// OmniDrive planning metrics against spec/evaluation.md §2.9, whose numbers come from the original
// eval_planning.py / planning_utils.py (torch 1.13.1, OpenCV 4.6.0, skimage 0.19.3, 1 thread).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "eval/planning.h"

namespace omnirt::eval {
namespace {

constexpr double kTol = 1e-12;
const double kPi = std::acos(-1.0);

// The training answer format: sign and two decimals, "0.0" when the rounded value is ~0.
std::string fmt(double v) {
  char buf[32];
  if (std::abs(std::round(v * 100) / 100) <= 0.01) return "0.0";
  std::snprintf(buf, sizeof(buf), "%+.2f", v);
  return buf;
}

std::string answer(const std::vector<Waypoint>& pts) {
  std::string s = "Here is the planning trajectory [PT";
  for (const auto& p : pts) s += ", (" + fmt(p[0]) + ", " + fmt(p[1]) + ")";
  return s + "].";
}

std::array<Waypoint, 6> line(double dx, double dy) {
  std::array<Waypoint, 6> t{};
  for (int k = 1; k <= 6; ++k) t[k - 1] = {dx * k, dy * k};
  return t;
}

PlanningAgent agent(double x, double y, double l, double w, double yaw, int cat) {
  PlanningAgent a;
  a.x = x;
  a.y = y;
  a.l = l;
  a.w = w;
  a.yaw = yaw;
  a.category = cat;
  a.fut_mask.fill(1.0);  // stationary: zero deltas, all masks 1
  return a;
}

std::shared_ptr<const Raster> road_mask() {
  auto r = std::make_shared<Raster>(kBevSize, kBevSize, 0);
  for (int row = 450; row <= 550; ++row)
    for (int col = 0; col < kBevSize; ++col) r->at(row, col) = 1;
  return r;
}

struct Case {
  PlanningSample sample;
  std::string answer;
};

std::vector<Case> golden_cases() {
  std::vector<Case> cases;
  auto full = std::make_shared<const Raster>(kBevSize, kBevSize, 1);
  auto add = [&](const std::string& token, std::array<Waypoint, 6> gt,
                 const std::vector<Waypoint>& pred, std::vector<PlanningAgent> agents,
                 std::shared_ptr<const Raster> mask, int valid_steps = 6,
                 std::string text_override = "") {
    Case c;
    c.sample.token = token;
    c.sample.gt_traj = gt;
    for (int k = 0; k < 6; ++k) c.sample.gt_mask[k] = k < valid_steps;
    c.sample.agents = std::move(agents);
    c.sample.drivable = mask;
    c.answer = text_override.empty() ? answer(pred) : text_override;
    cases.push_back(std::move(c));
  };
  auto vec = [](std::array<Waypoint, 6> a) { return std::vector<Waypoint>(a.begin(), a.end()); };
  const std::array<Waypoint, 6> gt_p2 = {{{1, 0}, {2, 0}, {3, 0}, {4, 0}, {4, 0}, {4, 0}}};
  const std::vector<Waypoint> p7 = {{2, 0}, {4, 0.2}, {6, 0.6}, {8, 1.2}, {10, 2}, {12, 3}};
  add("p1", line(2, 0), vec(line(2.1, 0.05)), {}, full);
  add("p2", gt_p2, vec(line(1.5, 0)), {agent(10, 0, 4.5, 2.0, 0, 8)}, full);
  add("p3", gt_p2, vec(line(1.5, 0)), {agent(10, 0, 4.5, 2.0, 0, 0)}, full);
  add("p4", line(3, 0), {{3, 0.5}, {6, 1.5}, {9, 3}, {12, 4.5}, {15, 6}, {18, 7.5}}, {},
      road_mask());
  add("p5", line(2, 0), vec(line(2, 1)), {}, full, 4);
  add("p6", line(2, 0), {}, {}, full, 6, "I would keep going straight at the same speed.");
  add("p7", line(2, 0), p7, {agent(14, 3, 4.5, 2.0, kPi / 4, 12)}, full);
  add("p8", line(2, 0), p7, {agent(14, 4, 4.5, 2.0, kPi / 4, 12)}, full);
  return cases;
}

struct Expect {
  bool counted;
  std::array<double, 3> l2;
  std::array<int, 3> col, bnd;
};

TEST(PlanningGolden, PerSample) {
  const std::vector<Expect> want = {
      {true, {0.16770509831248434, 0.27950849718747384, 0.39131189606246325}, {0, 0, 0}, {0, 0, 0}},
      {true, {0.75, 1.25, 2.25}, {0, 1, 1}, {0, 0, 0}},
      {true, {0.75, 1.25, 2.25}, {0, 0, 0}, {0, 0, 0}},
      {true, {1.0, 2.375, 3.8333333333333335}, {0, 0, 0}, {0, 1, 1}},
      {false, {}, {}, {}},
      {false, {}, {}, {}},
      {true, {0.1, 0.5, 1.1666666666666667}, {0, 0, 0}, {0, 0, 0}},
      {true, {0.1, 0.5, 1.1666666666666667}, {0, 0, 1}, {0, 0, 0}},
  };
  const auto cases = golden_cases();
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].sample.token);
    const auto r =
        evaluate_planning_sample(cases[i].sample, parse_planning_trajectory(cases[i].answer));
    ASSERT_EQ(r.counted, want[i].counted) << r.skip_reason;
    if (!r.counted) continue;
    for (int h = 0; h < 3; ++h) {
      EXPECT_NEAR(r.l2[h], want[i].l2[h], kTol) << "horizon " << h + 1;
      EXPECT_EQ(r.collision[h], want[i].col[h]) << "horizon " << h + 1;
      EXPECT_EQ(r.boundary[h], want[i].bnd[h]) << "horizon " << h + 1;
    }
  }
}

TEST(PlanningGolden, Aggregate) {
  std::vector<PlanningSample> samples;
  std::map<std::string, std::optional<std::vector<Waypoint>>> preds;
  for (const auto& c : golden_cases()) {
    samples.push_back(c.sample);
    preds[c.sample.token] = parse_planning_trajectory(c.answer);
  }
  const PlanningMetrics m = evaluate_planning(samples, preds);
  EXPECT_EQ(m.samples, 6);
  EXPECT_EQ(m.skipped_unparsable, 1);
  EXPECT_EQ(m.skipped_invalid_gt, 1);
  const double col[3] = {0.0, 0.16666666666666666, 0.3333333333333333};
  const double bnd[3] = {0.0, 0.16666666666666666, 0.16666666666666666};
  const double l2[3] = {0.4779508497187474, 1.0257514161979122, 1.8429964271215216};
  for (int h = 0; h < 3; ++h) {
    EXPECT_NEAR(m.collision[h], col[h], kTol);
    EXPECT_NEAR(m.boundary[h], bnd[h], kTol);
    EXPECT_NEAR(m.l2[h], l2[h], kTol);
  }
}

TEST(PlanningGolden, RasterSizes) {
  // 45-degree l=4.5, w=2 agent: 943 pixels per frame.
  const auto frames = agent_occupancy({agent(14, 3, 4.5, 2.0, kPi / 4, 12)});
  ASSERT_EQ(frames.size(), 7u);
  for (const auto& f : frames) EXPECT_EQ(f.count_nonzero(), 943u);
  // Ego collision footprint: 738 pixels, x-index 494..534, y-index 491..508.
  const auto& fp = ego_collision_footprint();
  EXPECT_EQ(fp.size(), 738u);
  long long xmin = 1 << 30, xmax = -1, ymin = 1 << 30, ymax = -1;
  for (const auto& p : fp) {
    xmin = std::min(xmin, p[0]);
    xmax = std::max(xmax, p[0]);
    ymin = std::min(ymin, p[1]);
    ymax = std::max(ymax, p[1]);
  }
  EXPECT_EQ(xmin, 494);
  EXPECT_EQ(xmax, 534);
  EXPECT_EQ(ymin, 491);
  EXPECT_EQ(ymax, 508);
}

TEST(PlanningGolden, NonVehicleAgentsAreNotDrawn) {
  const auto frames = agent_occupancy({agent(10, 0, 4.5, 2.0, 0, 0), agent(10, 0, 4.5, 2, 0, 18)});
  for (const auto& f : frames) EXPECT_EQ(f.count_nonzero(), 0u);
}

// ---- parser behaviour (§2.2) -------------------------------------------------------------------

TEST(PlanningParser, TrainingFormat) {
  const auto t = parse_planning_trajectory(
      "Here is the planning trajectory [PT, (+4.57, -0.35), (+9.10, 0.0), (+13.60, +0.12), "
      "(+18.00, +0.30), (+22.41, +0.55), (+26.80, +0.90)].");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ((*t)[0][0], 4.57);
  EXPECT_EQ((*t)[0][1], -0.35);
  EXPECT_EQ((*t)[1][1], 0.0);
  EXPECT_EQ((*t)[5][0], 26.80);
}

TEST(PlanningParser, IntegersAreDroppedLikeTheOriginal) {
  const auto raw = parse_planning_answer_raw("[PT, (5, 1.5), (2.0, 3.0)]");
  ASSERT_TRUE(raw.has_value());
  ASSERT_EQ(raw->size(), 2u);
  EXPECT_EQ((*raw)[0], std::vector<double>({1.5}));  // "5" has no decimal point
  EXPECT_EQ((*raw)[1], std::vector<double>({2.0, 3.0}));
}

TEST(PlanningParser, FewerOrMoreThanSixPointsAreNotUsable) {
  std::string five = "[PT, (1.0, 0.0), (2.0, 0.0), (3.0, 0.0), (4.0, 0.0), (5.0, 0.0)]";
  std::string seven =
      "[PT, (1.0, 0.0), (2.0, 0.0), (3.0, 0.0), (4.0, 0.0), (5.0, 0.0), (6.0, 0.0), (7.0, 0.0)]";
  EXPECT_EQ(parse_planning_answer_raw(five)->size(), 5u);
  EXPECT_EQ(parse_planning_answer_raw(seven)->size(), 7u);
  EXPECT_FALSE(parse_planning_trajectory(five).has_value());
  EXPECT_FALSE(parse_planning_trajectory(seven).has_value());
}

TEST(PlanningParser, FirstBlockWinsAndSpacingIsStrict) {
  // Missing space after the comma breaks the block pattern.
  EXPECT_FALSE(parse_planning_answer_raw("[PT,(1.0, 2.0)]").has_value());
  const auto raw = parse_planning_answer_raw("x [PT, (1.0, 2.0)] y [PT, (3.0, 4.0), (5.0, 6.0)]");
  ASSERT_TRUE(raw.has_value());
  ASSERT_EQ(raw->size(), 1u);
  EXPECT_EQ((*raw)[0], std::vector<double>({1.0, 2.0}));
  EXPECT_FALSE(parse_planning_answer_raw("no trajectory here").has_value());
}

// ---- rasteriser (cv::fillPoly rules) -----------------------------------------------------------

TEST(Raster, FillPolyAxisAlignedRectangleIsInclusive) {
  Raster img(20, 20);
  fill_poly_cv(img, {{2, 3}, {7, 3}, {7, 9}, {2, 9}}, 1);
  // OpenCV fills vertices and edges inclusively: 6 x 7 pixels.
  EXPECT_EQ(img.count_nonzero(), 42u);
  EXPECT_EQ(img.at(3, 2), 1);
  EXPECT_EQ(img.at(9, 7), 1);
  EXPECT_EQ(img.at(10, 7), 0);
}

TEST(Raster, FillPolyClipsOutsideTheImage) {
  Raster img(10, 10);
  fill_poly_cv(img, {{-5, -5}, {4, -5}, {4, 4}, {-5, 4}}, 1);
  EXPECT_EQ(img.count_nonzero(), 25u);  // rows 0..4 x cols 0..4
}

TEST(Raster, DiamondMatchesBruteForceInteriorPlusOutline) {
  // A diamond |x-10| + |y-10| <= 6: OpenCV draws exactly the lattice points with
  // |dx| + |dy| <= 6 (the 8-connected outline is the boundary itself).
  Raster img(21, 21);
  fill_poly_cv(img, {{10, 4}, {16, 10}, {10, 16}, {4, 10}}, 1);
  size_t expect = 0;
  for (int y = 0; y < 21; ++y)
    for (int x = 0; x < 21; ++x) {
      const bool in = std::abs(x - 10) + std::abs(y - 10) <= 6;
      expect += in;
      EXPECT_EQ(img.at(y, x), in ? 1 : 0) << x << "," << y;
    }
  EXPECT_EQ(img.count_nonzero(), expect);
}

}  // namespace
}  // namespace omnirt::eval

// ---- rasteriser against OpenCV itself ----------------------------------------------------------
// tests/data/eval/fillpoly_cv.json holds cv2.fillPoly outputs (python/make_eval_fixtures.py):
// rotated boxes like the planning rasters, random convex/concave/self-intersecting polygons,
// degenerate ones and polygons crossing the border.
namespace omnirt::eval {
namespace {

TEST(Raster, FillPolyMatchesOpenCvFixtures) {
  std::ifstream in(std::string(OMNIRT_TEST_DATA_DIR) + "/eval/fillpoly_cv.json");
  ASSERT_TRUE(in.good()) << "missing tests/data/eval/fillpoly_cv.json";
  const nlohmann::json j = nlohmann::json::parse(in);
  const int rows = j["rows"], cols = j["cols"];
  ASSERT_GE(j["cases"].size(), 30u);
  for (size_t c = 0; c < j["cases"].size(); ++c) {
    const auto& cs = j["cases"][c];
    std::vector<std::array<long long, 2>> pts;
    for (const auto& p : cs["points"]) pts.push_back({p[0].get<long long>(), p[1].get<long long>()});
    std::vector<uint8_t> want;
    uint8_t v = 0;
    for (const auto& n : cs["rle"]) {
      want.insert(want.end(), n.get<size_t>(), v);
      v ^= 1;
    }
    ASSERT_EQ(want.size(), size_t(rows) * cols) << "case " << c;
    Raster img(rows, cols);
    fill_poly_cv(img, pts, 1);
    size_t diff = 0;
    for (size_t i = 0; i < want.size(); ++i) diff += img.data[i] != want[i];
    EXPECT_EQ(diff, 0u) << "case " << c << ": " << cs["points"].dump();
  }
}

}  // namespace
}  // namespace omnirt::eval
