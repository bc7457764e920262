// GT / prediction files: the golden cases end to end through the JSON formats, both prediction
// layouts, ego->global boxes, and a clear error for every kind of bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "core/error.h"
#include "eval/dataset.h"
#include "eval/report.h"
#include "eval_fixtures.h"

namespace omnirt::eval {
namespace {

using fixtures::Json;
constexpr double kTol = 1e-12;

EvalReport evaluate(const Json& gt_json, const Json& pred_json) {
  const GroundTruth gt = parse_ground_truth(gt_json.dump(), "gt.json");
  const Predictions pred = parse_predictions(pred_json.dump(), "pred.json", gt);
  return run_evaluation(gt, pred, EvalOptions{});
}

TEST(EvalDataset, GoldenValuesThroughTheFileFormats) {
  const EvalReport r = evaluate(fixtures::golden_gt(), fixtures::golden_pred());
  ASSERT_TRUE(r.detection && r.planning && r.lanes);
  // §1.10-D (every box is within range and has no num_pts, so the filter keeps all of them).
  EXPECT_EQ(r.det_gt_boxes, 8u);
  EXPECT_EQ(r.det_pred_boxes, 11u);
  EXPECT_NEAR(r.detection->mean_ap, 0.37871008230452685, kTol);
  EXPECT_NEAR(r.detection->nd_score, 0.34819843045505483, kTol);
  // §2.9.
  EXPECT_EQ(r.planning->samples, 6);
  const double col[3] = {0.0, 0.16666666666666666, 0.3333333333333333};
  const double bnd[3] = {0.0, 0.16666666666666666, 0.16666666666666666};
  const double l2[3] = {0.4779508497187474, 1.0257514161979122, 1.8429964271215216};
  for (int h = 0; h < 3; ++h) {
    EXPECT_NEAR(r.planning->collision[h], col[h], kTol);
    EXPECT_NEAR(r.planning->boundary[h], bnd[h], kTol);
    EXPECT_NEAR(r.planning->l2[h], l2[h], kTol);
  }
  // §3.2.
  EXPECT_EQ(static_cast<double>(r.lanes->det_l), 0.40909090638160706);
}

TEST(EvalDataset, PredictionFileOrderDecidesScoreTies) {
  // §1.10-D tie-break check: inserting s2 before s1 changes NDS. Only an order-preserving JSON
  // reader gives this.
  const EvalReport r = evaluate(fixtures::golden_gt(), fixtures::golden_pred({"s2", "s1", "s3"}));
  EXPECT_NEAR(r.detection->nd_score, 0.34703840298197774, kTol);
  EXPECT_NEAR(r.detection->label_tp_errors.at("car")[0], 0.6213093815276719, kTol);
}

TEST(EvalDataset, FramesLayoutEqualsResultsLayout) {
  const Json res = fixtures::golden_pred();
  Json frames = Json::array();
  for (auto it = res["results"].begin(); it != res["results"].end(); ++it) {
    Json f = it.value();
    f["sample_token"] = it.key();
    frames.push_back(f);
  }
  const EvalReport a = evaluate(fixtures::golden_gt(), res);
  const EvalReport b = evaluate(fixtures::golden_gt(), Json{{"frames", frames}});
  EXPECT_EQ(a.detection->nd_score, b.detection->nd_score);
  EXPECT_EQ(a.planning->l2, b.planning->l2);
  EXPECT_EQ(a.lanes->det_l, b.lanes->det_l);
}

TEST(EvalDataset, EgoFrameBoxesAreMovedToGlobal) {
  Json gt = {{"samples",
              {{{"token", "a"},
                {"ego_pose",
                 {{"translation", {100, 200, 1}},
                  {"yaw", fixtures::kPi / 2}}}}}}};
  Json pred = {{"box_frame", "ego"},
               {"results",
                {{"a", {{"boxes", {fixtures::box("car", {10, 0, 0.5}, {2, 4, 1.5}, 0.25, {1, 0},
                                                 "vehicle.moving", 0.5)}}}}}}};
  const GroundTruth g = parse_ground_truth(gt.dump(), "gt.json");
  const Predictions p = parse_predictions(pred.dump(), "pred.json", g);
  const DetectionBox& b = p.boxes["a"][0];
  EXPECT_NEAR(b.translation[0], 100, 1e-12);
  EXPECT_NEAR(b.translation[1], 210, 1e-12);
  EXPECT_NEAR(b.translation[2], 1.5, 1e-12);
  EXPECT_NEAR(quaternion_yaw(b.rotation), fixtures::kPi / 2 + 0.25, 1e-12);
  EXPECT_NEAR(b.velocity[0], 0, 1e-12);
  EXPECT_NEAR(b.velocity[1], 1, 1e-12);
  // ego_translation is relative to the ego pose (for the range filter).
  EXPECT_NEAR(b.ego_translation[1], 10, 1e-12);
}

TEST(EvalDataset, GtFilterUsesNumPtsRangeAndRacks) {
  Json gt = {{"samples",
              {{{"token", "a"},
                {"ego_pose", {{"translation", {100, 0, 0}}, {"rotation", {1, 0, 0, 0}}}},
                {"boxes",
                 {fixtures::box("car", {110, 0, 0}, {2, 4, 1.5}, 0, {0, 0}, ""),
                  fixtures::box("car", {151, 0, 0}, {2, 4, 1.5}, 0, {0, 0}, ""),
                  fixtures::box("bicycle", {120, 0, 0.5}, {0.6, 1.7, 1}, 0, {0, 0}, "")}},
                {"bicycle_racks",
                 {{{"translation", {120, 0, 0.5}}, {"size", {2, 5, 2}}, {"yaw", 0.0}}}}}}}};
  gt["samples"][0]["boxes"][0]["num_pts"] = 0;  // no points -> dropped
  const GroundTruth g = parse_ground_truth(gt.dump(), "gt.json");
  const Predictions p = parse_predictions(Json{{"results", Json::object()}}.dump(), "p.json", g);
  const EvalReport r = run_evaluation(g, p, EvalOptions{true, false, false, true});
  EXPECT_EQ(r.det_gt_boxes, 0u);  // no points, beyond 50 m, in a bike rack
  const EvalReport unfiltered = run_evaluation(g, p, EvalOptions{true, false, false, false});
  EXPECT_EQ(unfiltered.det_gt_boxes, 3u);
}

// ---- bad input -----------------------------------------------------------------------------

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  const std::string msg = error_of(f);
  for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

// A scene folder's ground_truth.json (python/make_sample_scene.py): ego-frame boxes with
// label/center/size/yaw/velocity and gt_planning, read with identity ego poses.
TEST(EvalDataset, SceneGroundTruthIsReadAsEgoFrameSamples) {
  const std::string path = std::string(OMNIRT_TEST_DATA_DIR) + "/tiny_scene/ground_truth.json";
  const GroundTruth g = load_ground_truth(path);
  ASSERT_EQ(g.tokens, (std::vector<std::string>{"frame_000", "frame_001", "frame_002"}));
  const auto& b0 = g.boxes["frame_000"];
  ASSERT_EQ(b0.size(), 5u);
  EXPECT_EQ(b0[0].detection_name, "car");
  EXPECT_EQ(b0[0].translation, (std::array<double, 3>{14.0, 0.0, 0.8}));
  EXPECT_EQ(b0[0].ego_translation, b0[0].translation) << "identity ego pose";
  EXPECT_EQ(b0[0].size, (std::array<double, 3>{1.9, 4.6, 1.6}));
  EXPECT_EQ(b0[0].velocity, (std::array<double, 2>{-2.0, 0.0}));
  EXPECT_EQ(b0[4].detection_name, "truck");
  EXPECT_NEAR(quaternion_yaw(b0[1].rotation), 3.141592653589793, 1e-12);
  ASSERT_EQ(g.planning.size(), 3u);
  EXPECT_EQ(g.planning[0].gt_traj[5], (Waypoint{15.0, 0.0}));
  EXPECT_EQ(g.planning[0].command, "go straight");
  EXPECT_TRUE(g.planning[0].agents.empty());

  // Perfect predictions in the `omnirt run` style (ego frame): AP 1 for the two classes present
  // (mAP = 2/10), L2 0, no collisions.
  Json pred = {{"box_frame", "ego"}, {"frames", Json::array()}};
  for (const auto& t : g.tokens) {
    Json boxes = Json::array();
    for (const auto& b : g.boxes[t])
      boxes.push_back({{"detection_name", b.detection_name}, {"detection_score", 0.9},
                       {"translation", b.translation}, {"size", b.size},
                       {"rotation", b.rotation}, {"velocity", b.velocity}});
    std::vector<Waypoint> traj;
    for (const auto& p : g.planning) if (p.token == t) traj.assign(p.gt_traj.begin(), p.gt_traj.end());
    std::string answer = "[PT";
    for (const auto& w : traj) answer += ", (+" + std::to_string(w[0]) + ", +" + std::to_string(w[1]) + ")";
    pred["frames"].push_back({{"sample_token", t}, {"boxes", boxes}, {"answer", answer + "]"}});
  }
  const Predictions p = parse_predictions(pred.dump(), "pred.json", g);
  const EvalReport r = run_evaluation(g, p, EvalOptions{});
  ASSERT_TRUE(r.detection && r.planning);
  EXPECT_NEAR(r.detection->mean_ap, 0.2, 1e-12);
  EXPECT_EQ(r.planning->samples, 3);
  for (int h = 0; h < 3; ++h) {
    EXPECT_NEAR(r.planning->l2[h], 0.0, 1e-12);
    EXPECT_EQ(r.planning->collision[h], 0.0);
  }

  // Subsets keep file order and name a missing token.
  const GroundTruth s = subset_ground_truth(g, {"frame_002", "frame_000"});
  EXPECT_EQ(s.tokens, (std::vector<std::string>{"frame_000", "frame_002"}));
  EXPECT_EQ(s.boxes.sample_tokens(), s.tokens);
  EXPECT_EQ(s.boxes["frame_002"].size(), g.boxes["frame_002"].size());
  ASSERT_EQ(s.planning.size(), 2u);
  EXPECT_EQ(s.planning[1].token, "frame_002");
  expect_error([&] { subset_ground_truth(g, {"frame_000", "frame_009"}); },
               {"ground_truth.json", "'frame_009'"});

  // Bad scene ground truth: the error names the file, frame and field.
  Json bad = Json::parse(R"({"format": "omnirt-scene-gt", "frames": [{"token": "f0", "boxes": [
      {"label": "car", "size": [1, 1, 1], "yaw": 0}]}]})");
  expect_error([&] { parse_ground_truth(bad.dump(), "scene_gt.json"); },
               {"scene_gt.json", "frame 0", "box 0", "'center'", "missing"});
  bad = Json::parse(R"({"frames": [{"token": "f0", "gt_planning": [[1, 0]], "command": 2}]})");
  expect_error([&] { parse_ground_truth(bad.dump(), "scene_gt.json"); },
               {"scene_gt.json", "planning.trajectory", "6"});
}

// An `omnirt run` output folder as predictions: frame files in frame order, failed frames left
// out, run-style box fields mapped; an empty folder is an error naming it.
TEST(EvalDataset, RunOutputFolderAsPredictions) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("omnirt_eval_run_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const GroundTruth g = parse_ground_truth(fixtures::golden_gt().dump(), "gt.json");
  expect_error([&] { load_predictions(dir.string(), g); }, {dir.string(), "no frame_*.json"});
  Json ok = {{"status", "ok"}, {"token", "s1"},
             {"boxes", {{{"label", "car"}, {"score", 0.8}, {"center", {1.0, 2.0, 0.5}},
                         {"size_wlh", {1.9, 4.5, 1.6}}, {"yaw", 0.25}, {"velocity", {1.0, 0.0}}}}},
             {"lanes", {{{"score", 0.7}, {"points", {{0, 0, 0}, {10, 0, 0}}}}}},
             {"planner", {{"answer", "[PT, (+1.00, +0.00)]"}}}};
  Json failed = {{"status", "error"}, {"token", "s2"}, {"error", "frame 1: missing image"}};
  std::ofstream(dir / "frame_000.json") << ok.dump();
  std::ofstream(dir / "frame_001.json") << failed.dump();
  std::ofstream(dir / "summary.json") << "{}";
  const Predictions p = load_predictions(dir.string(), g);
  EXPECT_EQ(p.tokens, std::vector<std::string>{"s1"});
  ASSERT_EQ(p.boxes["s1"].size(), 1u);
  const DetectionBox& b = p.boxes["s1"][0];
  // Ego frame -> global with the GT ego pose of s1, exactly as the "frames" layout does.
  Json frames = {{"box_frame", "ego"},
                 {"frames", {{{"sample_token", "s1"},
                              {"boxes", {{{"detection_name", "car"}, {"detection_score", 0.8},
                                          {"translation", {1.0, 2.0, 0.5}},
                                          {"size", {1.9, 4.5, 1.6}}, {"yaw", 0.25},
                                          {"velocity", {1.0, 0.0}}}}}}}}};
  Predictions from_frames = parse_predictions(frames.dump(), "f.json", g);  // kept alive: e refers into it
  const DetectionBox& e = from_frames.boxes["s1"][0];
  EXPECT_EQ(b.translation, e.translation);
  EXPECT_EQ(b.rotation, e.rotation);
  EXPECT_EQ(b.size, e.size);
  EXPECT_EQ(b.velocity, e.velocity);
  EXPECT_EQ(b.detection_score, 0.8);
  ASSERT_EQ(p.lanes.at("s1").size(), 1u);
  EXPECT_FLOAT_EQ(p.lanes.at("s1")[0].confidence, 0.7f);
  EXPECT_EQ(p.answers.at("s1"), "[PT, (+1.00, +0.00)]");
  // A box missing a field: the error names the frame file and box.
  ok["boxes"][0].erase("center");
  std::ofstream(dir / "frame_000.json") << ok.dump();
  expect_error([&] { load_predictions(dir.string(), g); }, {"frame_000.json", "box 0", "'center'"});
  fs::remove_all(dir);
}

TEST(EvalDatasetErrors, MalformedAndTruncatedJson) {
  expect_error([] { parse_ground_truth("{\"samples\": [1, 2,, ]}", "gt.json"); },
               {"gt.json", "malformed or truncated JSON"});
  const std::string full = fixtures::golden_gt().dump();
  expect_error([&] { parse_ground_truth(full.substr(0, full.size() / 2), "gt.json"); },
               {"gt.json", "malformed or truncated JSON"});
  const GroundTruth g = parse_ground_truth(full, "gt.json");
  const std::string pred = fixtures::golden_pred().dump();
  expect_error([&] { parse_predictions(pred.substr(0, pred.size() - 3), "pred.json", g); },
               {"pred.json", "malformed or truncated JSON"});
  expect_error([] { load_ground_truth("/nonexistent/gt.json"); }, {"/nonexistent/gt.json"});
}

TEST(EvalDatasetErrors, NonFiniteBoxValues) {
  // JSON has no NaN/Inf literals; a value that overflows a double (what a writer produces for
  // inf with %g-style printing) is rejected with the file and the position of the literal.
  Json gt = fixtures::golden_gt();
  std::string text = gt.dump(1);
  const std::string key = "5.0,";  // translation of the second car of s1, on its own line
  const std::string box_key = "\"translation\": [\n      20.0,\n      ";
  const size_t at = text.find(box_key);
  ASSERT_NE(at, std::string::npos);
  const size_t num = at + box_key.size();
  ASSERT_EQ(text.substr(num, key.size()), key);
  text.replace(num, 3, "1e999");
  const size_t line = 1 + std::count(text.begin(), text.begin() + num, '\n');
  expect_error([&] { parse_ground_truth(text, "gt.json"); },
               {"gt.json", "non-finite number at line " + std::to_string(line) + ",", "1e999"});
  // A prediction score the same way.
  const GroundTruth g = parse_ground_truth(fixtures::golden_gt().dump(), "gt.json");
  std::string ptext = fixtures::golden_pred().dump();
  const std::string skey = "\"detection_score\":0.95";
  ASSERT_NE(ptext.find(skey), std::string::npos);
  ptext.replace(ptext.find(skey), skey.size(), "\"detection_score\":-1e999");
  expect_error([&] { parse_predictions(ptext, "pred.json", g); },
               {"pred.json", "non-finite number at line 1,"});
  // null is only allowed for velocity (NaN); elsewhere it names the record and field.
  gt["samples"][0]["boxes"][0]["size"][2] = nullptr;
  expect_error([&] { parse_ground_truth(gt.dump(), "gt.json"); },
               {"gt.json", "sample 's1'", "box 0", "size[2]", "expected a number"});
  Json pred = fixtures::golden_pred();
  pred["results"]["s3"]["boxes"][0]["translation"][0] = "12";
  expect_error([&] { parse_predictions(pred.dump(), "pred.json", g); },
               {"pred.json", "sample 's3'", "box 0", "translation[0]", "expected a number"});
}

TEST(EvalDatasetErrors, UnknownClassAndAttribute) {
  Json gt = fixtures::golden_gt();
  gt["samples"][1]["boxes"][2]["detection_name"] = "unicorn";
  expect_error([&] { parse_ground_truth(gt.dump(), "gt.json"); },
               {"gt.json", "sample 's2'", "box 2", "detection_name", "unknown detection class 'unicorn'"});
  const GroundTruth g = parse_ground_truth(fixtures::golden_gt().dump(), "gt.json");
  Json pred = fixtures::golden_pred();
  pred["results"]["s1"]["boxes"][3]["attribute_name"] = "pedestrian.flying";
  expect_error([&] { parse_predictions(pred.dump(), "pred.json", g); },
               {"pred.json", "sample 's1'", "box 3", "attribute_name", "pedestrian.flying"});
}

TEST(EvalDatasetErrors, PredictionTokenNotInGroundTruth) {
  const GroundTruth g = parse_ground_truth(fixtures::golden_gt().dump(), "gt.json");
  Json pred = fixtures::golden_pred();
  pred["results"]["zz-unknown"] = Json{{"boxes", Json::array()}};
  expect_error([&] { parse_predictions(pred.dump(), "pred.json", g); },
               {"pred.json", "sample 'zz-unknown'", "not in the ground truth", "gt.json"});
  Json frames = {{"frames", {{{"sample_token", "nope"}}}}};
  expect_error([&] { parse_predictions(frames.dump(), "run.json", g); },
               {"run.json", "frame 0", "'nope'", "not in the ground truth"});
}

TEST(EvalDatasetErrors, StructuralProblems) {
  Json gt = fixtures::golden_gt();
  gt["samples"][0]["boxes"][0]["size"] = {2, 4.5};
  expect_error([&] { parse_ground_truth(gt.dump(), "gt.json"); },
               {"sample 's1'", "box 0", "'size'", "array of 3"});
  gt = fixtures::golden_gt();
  gt["samples"][0]["boxes"][0]["size"] = {2, 0, 1};
  expect_error([&] { parse_ground_truth(gt.dump(), "gt.json"); }, {"box 0", "must be > 0"});
  gt = fixtures::golden_gt();
  gt["samples"][1]["token"] = "s1";
  expect_error([&] { parse_ground_truth(gt.dump(), "gt.json"); }, {"'s1'", "duplicate"});
  gt = fixtures::golden_gt();
  gt["samples"][4]["planning"]["trajectory"].erase(5);
  expect_error([&] { parse_ground_truth(gt.dump(), "gt.json"); },
               {"sample 'p2'", "planning.trajectory", "6"});
  gt = fixtures::golden_gt();
  gt["samples"][6]["planning"]["drivable"] = {{"rle", {10, 20}}};
  expect_error([&] { parse_ground_truth(gt.dump(), "gt.json"); },
               {"sample 'p4'", "planning.drivable.rle", "1000x1000"});
  expect_error([] { parse_ground_truth("{\"samples\": {}}", "gt.json"); },
               {"gt.json", "'samples'", "array"});
  const GroundTruth g = parse_ground_truth(fixtures::golden_gt().dump(), "gt.json");
  Json many = Json::array();
  for (int i = 0; i < 501; ++i)
    many.push_back(fixtures::box("car", {1, 1, 0}, {1, 1, 1}, 0, {0, 0}, "", 0.5));
  expect_error([&] { parse_predictions(Json{{"results", {{"s1", many}}}}.dump(), "p.json", g); },
               {"p.json", "sample 's1'", "501 boxes", "500"});
  expect_error([&] { parse_predictions("[1, 2]", "p.json", g); }, {"p.json", "JSON object"});
  expect_error([&] { parse_predictions("{\"x\": 1}", "p.json", g); }, {"p.json", "'results'"});
}

}  // namespace
}  // namespace omnirt::eval
