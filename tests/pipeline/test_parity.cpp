// `omnirt parity`: precision parsing, the box identity across runs (query lineage), box drift,
// and the CLI end to end on the tiny checkpoint (CPU): fp32 against the fp32 reference drifts by
// exactly 0, the table has its rows, and the metrics equal what `omnirt eval` computes from
// `omnirt run --greedy`'s output for the same frames. CUDA: the half-precision drifts are > 0 and
// within bounds.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "common/test_util.h"
#include "core/error.h"
#include "io/scene.h"
#include "models/vision/host_math.h"
#include "models/vision/vision_engine.h"
#include "pipeline/engines.h"
#include "pipeline/frame.h"
#include "pipeline/parity.h"
#include "pipeline/vision_outputs.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace omnirt;
using namespace omnirt::pipeline;

namespace {

const std::string kData = OMNIRT_TEST_DATA_DIR;
const std::string kModel = kData + "/tiny_ckpt";
const std::string kScene = kData + "/tiny_scene";

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

json read_json(const fs::path& p) {
  std::ifstream in(p);
  EXPECT_TRUE(in.good()) << p;
  return json::parse(in);
}

// Runs the CLI; stdout and stderr go to separate files.
int run_cli(const std::string& args, const fs::path& out, const fs::path& err) {
  const std::string cmd = std::string(OMNIRT_CLI_PATH) + " " + args + " > '" + out.string() +
                          "' 2> '" + err.string() + "'";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / (name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "expected an error";
  } catch (const std::exception& e) {
    for (const auto& n : needles)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what() << "\nmissing: " << n;
  }
}

Box3D box(float x, float y, float score, int label, float yaw = 0.3f) {
  Box3D b;
  b.center = {x, y, 1.0f};
  b.size_wlh = {1.9f, 4.5f, 1.6f};
  b.yaw = yaw;
  b.velocity = {1.0f, -0.5f};
  b.score = score;
  b.label = label;
  return b;
}

}  // namespace

TEST(ParityPrecisions, ParsesTheListsAndRejectsBadNames) {
  auto v = parse_precisions("fp32,tf32,fp16,bf16", true, Device::CUDA, "--vision");
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(v[0].dtype, DType::F32);
  EXPECT_FALSE(v[0].tf32);
  EXPECT_EQ(v[1].dtype, DType::F32);
  EXPECT_TRUE(v[1].tf32);
  EXPECT_EQ(v[2].dtype, DType::F16);
  EXPECT_EQ(v[3].dtype, DType::BF16);
  auto l = parse_precisions("bf16,fp32", false, Device::CUDA, "--llm");
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0].name, "bf16");
  EXPECT_EQ(l[1].dtype, DType::F32);
  EXPECT_EQ(parse_precisions("fp32", true, Device::CPU, "--vision").size(), 1u);

  expect_error([] { parse_precisions("fp32,fp8", true, Device::CUDA, "--vision"); },
               {"--vision", "unknown precision 'fp8'", "fp32, tf32, fp16, bf16"});
  expect_error([] { parse_precisions("tf32", false, Device::CUDA, "--llm"); },
               {"--llm", "unknown precision 'tf32'", "fp32, fp16, bf16"});
  expect_error([] { parse_precisions("fp16", true, Device::CPU, "--vision"); },
               {"--vision fp16", "CPU backend runs fp32 only"});
  expect_error([] { parse_precisions("fp32,bf16", false, Device::CPU, "--llm"); },
               {"--llm bf16", "CPU backend runs fp32 only"});
  expect_error([] { parse_precisions("fp16,fp16", true, Device::CUDA, "--vision"); },
               {"'fp16' given twice"});
  expect_error([] { parse_precisions(",", true, Device::CUDA, "--vision"); },
               {"--vision", "no precision"});
}

// The memory rule of PetrHeads::forward: after a frame the memory is [the frame's top-k queries
// (best first), the first memory_len - topk entries of the old memory]; the next frame's
// propagated queries are the first num_propagated memory entries.
TEST(ParityLineage, FollowsTheMemoryUpdateAndIgnoresSlotOrder) {
  LineageTable table;
  // 3 detection queries, 2 propagated, memory of 4, top-k 2.
  QueryLineage a(3, 2, 4, 2, table), b(3, 2, 4, 2, table);
  const std::vector<int64_t> a0 = a.begin_frame(0, true), b0 = b.begin_frame(0, true);
  ASSERT_EQ(a0.size(), 5u);
  EXPECT_EQ(a0, b0) << "same frame, same reset: same identities";
  std::set<int64_t> distinct(a0.begin(), a0.end());
  EXPECT_EQ(distinct.size(), 5u);
  // Run a keeps queries 1 then 0; run b the same two in swapped order.
  a.end_frame({1, 0});
  b.end_frame({0, 1});
  const std::vector<int64_t> a1 = a.begin_frame(1, false), b1 = b.begin_frame(1, false);
  for (int q = 0; q < 3; ++q) EXPECT_EQ(a1[q], b1[q]) << "detection query " << q;
  EXPECT_EQ(a1[3], b1[4]) << "the object of query 1 sits in slot 0 in a, slot 1 in b";
  EXPECT_EQ(a1[4], b1[3]);
  EXPECT_NE(a1[3], a1[4]);
  for (int q = 0; q < 5; ++q) EXPECT_EQ(std::count(a0.begin(), a0.end(), a1[q]), 0) << q;

  // Frame 1 of a keeps its propagated query 3 (slot 0 = object of frame-0 query 1) and detection
  // query 2. Frame 2's propagated queries: [re-propagated object, frame-1 query 2]; a third
  // lineage that kept the same two in the other order agrees up to the slot swap.
  QueryLineage c(3, 2, 4, 2, table);
  c.begin_frame(0, true);
  c.end_frame({0, 1});
  const std::vector<int64_t> c1 = c.begin_frame(1, false);
  EXPECT_EQ(c1, b1);
  a.end_frame({3, 2});
  c.end_frame({2, 4});  // c's slot 1 (query 4) holds what a's slot 0 (query 3) holds
  const std::vector<int64_t> a2 = a.begin_frame(2, false), c2 = c.begin_frame(2, false);
  EXPECT_EQ(a2[3], c2[4]);
  EXPECT_EQ(a2[4], c2[3]);
  // A reset forgets the memory: the propagated queries are fresh empty slots.
  a.end_frame({0, 1});
  const std::vector<int64_t> a3 = a.begin_frame(3, true);
  const std::vector<int64_t> fresh = QueryLineage(3, 2, 4, 2, table).begin_frame(3, true);
  EXPECT_EQ(a3, fresh);

  expect_error([&] { a.end_frame({0}); }, {"expected 2 top-k queries"});
  expect_error([&] { a.end_frame({0, 7}); }, {"top-k query 7"});
}

// The memory rule QueryLineage assumes, checked on the vision engine's real state (tiny model, the
// tiny scene's first two frames): after a frame, memory entry e < topk holds the decoded centre of
// that frame's top-k query e (in global coordinates), and entry e >= topk holds the previous
// memory's entry e - topk.
TEST(ParityLineage, MatchesTheVisionEngineMemory) {
  auto engine = vision::VisionEngine::load(kModel, {Device::CPU, DType::F32, false});
  const vision::VisionConfig& c = engine->config();
  std::vector<std::string> cams(io::nuscenes_camera_names().begin(),
                                io::nuscenes_camera_names().begin() + c.num_cams);
  const io::Scene scene = io::read_scene(kScene, cams);
  const PreprocessConfig pcfg = PreprocessConfig::for_network(c.img_h, c.img_w);
  std::vector<float> previous;  // global reference points of the memory after the last frame
  for (int i = 0; i < 2; ++i) {
    const PreparedFrame f = prepare_frame(scene, scene.frames[size_t(i)], pcfg, false);
    ASSERT_TRUE(f.ok()) << f.error;
    const vision::VisionFrameResult r = engine->run(f.img, frame_geometry(f, i == 0));
    ASSERT_EQ(int(r.heads.topk_indexes_bbox.size()), c.topk);
    const int64_t nd = c.num_query + c.num_propagated, L = c.dec_layers;
    const float* bp = r.heads.all_bbox_preds.data<float>() + (L - 1) * nd * c.code_size;
    const Tensor mem = engine->state().memory_reference_point_bbox.contiguous();
    ASSERT_GE(mem.dim(1), c.memory_len);
    const float* m = mem.data<float>();
    for (int e = 0; e < c.topk; ++e) {
      const int q = r.heads.topk_indexes_bbox[size_t(e)];
      float global[3];
      vision::host::transform_point(f.ego_pose, bp + int64_t(q) * c.code_size, global);
      for (int k = 0; k < 3; ++k)
        EXPECT_NEAR(m[e * 3 + k], global[k], 1e-4 * (1 + std::fabs(global[k])))
            << "frame " << i << " entry " << e;
    }
    if (i == 1)
      for (int e = c.topk; e < c.memory_len; ++e)
        for (int k = 0; k < 3; ++k)
          EXPECT_NEAR(m[e * 3 + k], previous[size_t((e - c.topk) * 3 + k)],
                      1e-4 * (1 + std::fabs(previous[size_t((e - c.topk) * 3 + k)])))
              << "entry " << e << " = old entry " << e - c.topk;
    previous.assign(m, m + c.memory_len * 3);
  }
}

TEST(ParityBoxDrift, ComparesBoxesWithTheSameIdentityOnly) {
  const std::vector<Box3D> ref = {box(10, 2, 0.9f, 0), box(-5, 3, 0.8f, 1), box(20, -4, 0.7f, 8)};
  const std::vector<int64_t> ref_ids = {11, 22, 33};
  // Identical boxes in another order: no drift, all matched.
  BoxDrift d = box_drift(ref, ref_ids, {ref[2], ref[0], ref[1]}, {33, 11, 22});
  EXPECT_EQ(d.rel_error, 0.0);
  EXPECT_EQ(d.matched, 3);
  EXPECT_EQ(d.reference, 3);
  // One box moved by 0.5 m in x, one missing, one extra: measured on the two matched boxes.
  Box3D moved = ref[0];
  moved.center[0] += 0.5f;
  d = box_drift(ref, ref_ids, {moved, ref[1], box(0, 0, 0.95f, 3)}, {11, 22, 44});
  EXPECT_EQ(d.matched, 2);
  EXPECT_EQ(d.reference, 3);
  double den = 0;
  for (int i : {0, 1}) {
    const Box3D& b = ref[size_t(i)];
    for (double v :
         {double(b.center[0]), double(b.center[1]), double(b.center[2]), double(b.size_wlh[0]),
          double(b.size_wlh[1]), double(b.size_wlh[2]), std::sin(double(b.yaw)),
          std::cos(double(b.yaw)), double(b.velocity[0]), double(b.velocity[1]), double(b.score)})
      den += v * v;
  }
  EXPECT_NEAR(d.rel_error, 0.5 / std::sqrt(den), 1e-12);
  // Nothing matched: NaN (not a fake 0); no reference boxes: 0.
  EXPECT_TRUE(std::isnan(box_drift(ref, ref_ids, {ref[0]}, {99}).rel_error));
  EXPECT_EQ(box_drift({}, {}, {ref[0]}, {11}).rel_error, 0.0);
}

TEST(ParityRelativeError, MatchesTheDefinition) {
  std::mt19937_64 rng(omnirt::testing::test_seed());
  const Tensor b = omnirt::testing::random_tensor({37, 5}, rng);
  Tensor a = b.clone();
  EXPECT_EQ(relative_error(a, b), 0.0);
  a.data<float>()[7] += 0.25f;
  EXPECT_NEAR(relative_error(a, b), omnirt::testing::rel_error(a, b), 1e-12);
  a.data<float>()[3] = NAN;
  EXPECT_TRUE(std::isinf(relative_error(a, b)));
}

// fp32 engines against the fp32 reference on the CPU: exactly no drift; the table has the
// reference row and the fp32 row; random weights are announced.
TEST(ParityCli, Fp32AgainstTheReferenceOnCpuHasNoDrift) {
  const fs::path tmp = fresh_dir("omnirt_parity_cpu");
  const std::string base =
      "parity '" + kScene + "' --model '" + kModel + "' --device cpu --max-new 12";
  int rc = run_cli(base + " --json", tmp / "out.json", tmp / "err.txt");
  ASSERT_EQ(rc, 0) << slurp(tmp / "err.txt");
  const json j = read_json(tmp / "out.json");
  EXPECT_EQ(j["random_weights"], true);
  EXPECT_EQ(j["device"], "cpu");
  EXPECT_EQ(j["frames"].size(), 3u);
  ASSERT_EQ(j["rows"].size(), 1u);
  const json& row = j["rows"][0];
  EXPECT_EQ(row["vision"], "fp32");
  EXPECT_EQ(row["llm"], "fp32");
  const json& d = row["drift"];
  EXPECT_EQ(d["vision_tokens"]["max"].get<double>(), 0.0);
  EXPECT_EQ(d["llm_logits"]["max"].get<double>(), 0.0);
  EXPECT_EQ(d["boxes"]["max"].get<double>(), 0.0);
  for (const auto& f : d["boxes"]["per_frame"]) {
    EXPECT_EQ(f["matched"], f["reference"]);
    EXPECT_EQ(f["reference"], 12) << "tiny config max_boxes";
  }
  EXPECT_EQ(d["vision_tokens"]["per_frame"].size(), 3u);
  EXPECT_EQ(row["answers_identical"], 3);
  EXPECT_EQ(d["answers_identical_reference_tokens"], 3);
  for (const auto& s : d["first_token_same"]) EXPECT_EQ(s, true);
  EXPECT_EQ(row["answers"], j["reference_row"]["answers"]);
  EXPECT_EQ(row["answer_divergence"], json({-1, -1, -1}));
  EXPECT_EQ(row["answer_divergence_reference_margin"], json({nullptr, nullptr, nullptr}));
  // The tiny scene ships a ground truth: the metrics are there, equal for equal predictions.
  EXPECT_TRUE(row["metrics"]["mAP"].is_number());
  EXPECT_EQ(row["eval"], j["reference_row"]["eval"]);

  rc = run_cli(base, tmp / "out.txt", tmp / "err.txt");
  ASSERT_EQ(rc, 0) << slurp(tmp / "err.txt");
  const std::string text = slurp(tmp / "out.txt");
  for (const char* s :
       {"Vision | LLM | BBOX mAP | NDS | Planning L2 1s | Planning L2 2s | Planning L2 3s | "
        "Collision 1s",
        "FP32 reference | FP32 reference |", "FP32 engine | FP32 engine |",
        "random weights: boxes and text are meaningless", "| 0 | 0 (36/36) | 0 | 3/3 | 3/3 | 3/3"})
    EXPECT_NE(text.find(s), std::string::npos) << "missing: " << s << "\n" << text;
  fs::remove_all(tmp);
}

// The table's metrics against the existing evaluator on independent inputs: `omnirt run
// --greedy` writes the frames, the test turns them into an `omnirt eval` prediction file and
// builds a ground truth near those predictions (so mAP is neither 0 nor 1), and `omnirt eval`
// must report exactly what `omnirt parity` reports for the same frames.
TEST(ParityCli, MetricsEqualOmnirtEvalOnTheRunOutput) {
  const fs::path tmp = fresh_dir("omnirt_parity_eval");
  const int max_new = 12;
  int rc =
      run_cli("run '" + kScene + "' --model '" + kModel + "' --out '" + (tmp / "run").string() +
                  "' --device cpu --greedy --max-new " + std::to_string(max_new),
              tmp / "run_out.txt", tmp / "run_err.txt");
  ASSERT_EQ(rc, 0) << slurp(tmp / "run_out.txt") << slurp(tmp / "run_err.txt");

  const json scene_gt = read_json(kScene + "/ground_truth.json");
  json pred = {{"box_frame", "ego"}, {"frames", json::array()}};
  json gt = {{"samples", json::array()}};
  std::vector<std::string> run_answers;
  for (int i = 0; i < 3; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "frame_%03d.json", i);
    const json f = read_json(tmp / "run" / name);
    ASSERT_EQ(f["status"], "ok");
    json p = {{"sample_token", f["token"]},
              {"boxes", json::array()},
              {"lanes", json::array()},
              {"answer", f["planner"]["answer"]}};
    run_answers.push_back(f["planner"]["answer"]);
    json s = {{"token", f["token"]},
              {"ego_pose", {{"translation", {100.0 + i, -20.0, 0.5}}, {"yaw", 0.4}}},
              {"boxes", json::array()},
              {"lanes", json::array()},
              {"planning", {{"trajectory", scene_gt["frames"][i]["gt_planning"]}}}};
    int k = 0;
    for (const auto& b : f["boxes"]) {
      p["boxes"].push_back({{"detection_name", b["label"]},
                            {"detection_score", b["score"]},
                            {"translation", b["center"]},
                            {"size", b["size_wlh"]},
                            {"yaw", b["yaw"]},
                            {"velocity", b["velocity"]}});
      // Every other predicted box has a GT twin 0.3 m + 0.4 m * k away; GT is in the global
      // frame of the pose above (the evaluator moves the ego-frame predictions there).
      if (k++ % 2 == 0) {
        const double ex = b["center"][0].get<double>() + 0.3 + 0.4 * k, ey = b["center"][1];
        const double c = std::cos(0.4), sn = std::sin(0.4);
        s["boxes"].push_back({{"detection_name", b["label"]},
                              {"translation",
                               {100.0 + i + c * ex - sn * ey, -20.0 + sn * ex + c * ey,
                                0.5 + b["center"][2].get<double>()}},
                              {"size", b["size_wlh"]},
                              {"yaw", b["yaw"].get<double>() + 0.4 + 0.1},
                              {"velocity", {0.5, 0.5}}});
      }
    }
    for (const auto& l : f["lanes"]) {
      p["lanes"].push_back({{"points", l["points"]}, {"confidence", l["score"]}});
      json g = l["points"];
      for (auto& pt : g) pt[1] = pt[1].get<double>() + 0.7;
      if (s["lanes"].size() < 4) s["lanes"].push_back({{"points", g}});
    }
    pred["frames"].push_back(p);
    gt["samples"].push_back(s);
  }
  std::ofstream(tmp / "pred.json") << pred.dump(1);
  std::ofstream(tmp / "gt.json") << gt.dump(1);
  rc = run_cli("eval --gt '" + (tmp / "gt.json").string() + "' --pred '" +
                   (tmp / "pred.json").string() + "' --json '" + (tmp / "eval.json").string() + "'",
               tmp / "eval_out.txt", tmp / "eval_err.txt");
  ASSERT_EQ(rc, 0) << slurp(tmp / "eval_err.txt");
  const json ev = read_json(tmp / "eval.json");
  const double map = ev["detection"]["mean_ap"];
  EXPECT_GT(map, 0.0) << "the check needs a non-trivial mAP";
  EXPECT_LT(map, 1.0);
  EXPECT_GT(ev["lanes"]["DET_l"].get<double>(), 0.0);
  // `omnirt eval` reads the run folder itself the same way.
  rc = run_cli("eval --gt '" + (tmp / "gt.json").string() + "' --pred '" + (tmp / "run").string() +
                   "' --json '" + (tmp / "eval_dir.json").string() + "'",
               tmp / "eval_out.txt", tmp / "eval_err.txt");
  ASSERT_EQ(rc, 0) << slurp(tmp / "eval_err.txt");
  EXPECT_EQ(read_json(tmp / "eval_dir.json"), ev);

  rc = run_cli("parity '" + kScene + "' --model '" + kModel + "' --device cpu --max-new " +
                   std::to_string(max_new) + " --gt '" + (tmp / "gt.json").string() +
                   "' --json --out '" + (tmp / "parity").string() + "'",
               tmp / "parity.json", tmp / "parity_err.txt");
  ASSERT_EQ(rc, 0) << slurp(tmp / "parity_err.txt");
  const json pj = read_json(tmp / "parity.json");
  for (const json* row : {&pj["reference_row"], &pj["rows"][0]}) {
    EXPECT_EQ((*row)["answers"], json(run_answers)) << "parity's greedy answers = omnirt run's";
    EXPECT_EQ((*row)["eval"]["detection"], ev["detection"]);
    EXPECT_EQ((*row)["eval"]["planning"], ev["planning"]);
    EXPECT_EQ((*row)["eval"]["lanes"], ev["lanes"]);
    EXPECT_EQ((*row)["metrics"]["mAP"].get<double>(), map);
    EXPECT_EQ((*row)["metrics"]["NDS"], ev["detection"]["nd_score"]);
    EXPECT_EQ((*row)["metrics"]["DET_l"], ev["lanes"]["DET_l"]);
  }
  // The text table shows DET_l when the ground truth has lanes.
  rc = run_cli("parity '" + kScene + "' --model '" + kModel + "' --device cpu --max-new 4 --gt '" +
                   (tmp / "gt.json").string() + "'",
               tmp / "parity.txt", tmp / "parity_err.txt");
  ASSERT_EQ(rc, 0) << slurp(tmp / "parity_err.txt");
  EXPECT_NE(slurp(tmp / "parity.txt").find("| Lane DET_l | answers parsed"), std::string::npos)
      << slurp(tmp / "parity.txt");
  // --out: the written files are the same document and `omnirt eval` accepts the predictions.
  EXPECT_EQ(read_json(tmp / "parity" / "parity.json")["rows"], pj["rows"]);
  rc = run_cli("eval --gt '" + (tmp / "gt.json").string() + "' --pred '" +
                   (tmp / "parity" / "predictions_vision-fp32_llm-fp32.json").string() +
                   "' --json '" + (tmp / "eval2.json").string() + "'",
               tmp / "eval2_out.txt", tmp / "eval2_err.txt");
  ASSERT_EQ(rc, 0) << slurp(tmp / "eval2_err.txt");
  EXPECT_EQ(read_json(tmp / "eval2.json")["detection"], ev["detection"]);
  fs::remove_all(tmp);
}

// A precision that fails is recorded on its rows; the others still run. (Half precision on the
// CPU is refused by the engines themselves; parse_precisions normally stops it earlier.)
TEST(ParityRun, AFailingPrecisionIsRecordedAndTheRestRuns) {
  ParityOptions o;
  o.scene = kScene;
  o.model_dir = kModel;
  o.device = o.reference_device = Device::CPU;
  o.vision = {Precision{"fp32", DType::F32, false}, Precision{"fp16", DType::F16, false}};
  o.llm = {Precision{"fp32", DType::F32, false}, Precision{"bf16", DType::BF16, false}};
  o.max_new_tokens = 4;
  o.frames = 2;
  const ParityResult r = run_parity(o, stderr);
  ASSERT_EQ(r.rows.size(), 4u);
  EXPECT_EQ(r.failed_rows, 3);
  EXPECT_TRUE(r.rows[0].error.empty()) << r.rows[0].error;
  EXPECT_EQ(r.rows[0].answers.size(), 2u);
  EXPECT_EQ(r.vision_drift[0].tokens, std::vector<double>(2, 0.0));
  EXPECT_NE(r.rows[1].error.find("LLM bf16"), std::string::npos) << r.rows[1].error;
  EXPECT_NE(r.rows[2].error.find("vision fp16"), std::string::npos) << r.rows[2].error;
  EXPECT_NE(r.rows[3].error.find("vision fp16"), std::string::npos) << r.rows[3].error;
  const std::string text = format_parity(r);
  EXPECT_NE(text.find("FP16 engine | FP32 engine | failed: vision fp16"), std::string::npos)
      << text;
  const json j = parity_to_json(r);
  EXPECT_EQ(j["failed_rows"], 3);
  EXPECT_TRUE(j["rows"][1]["error"].is_string());
  EXPECT_FALSE(j["rows"][0].contains("error"));
}

TEST(ParityCli, BadInputIsAClearError) {
  const fs::path tmp = fresh_dir("omnirt_parity_bad");
  const std::string base =
      "parity '" + kScene + "' --model '" + kModel + "' --device cpu --max-new 4";
  auto expect_fail = [&](const std::string& args, const std::vector<std::string>& needles) {
    const int rc = run_cli(base + " " + args, tmp / "out.txt", tmp / "err.txt");
    const std::string err = slurp(tmp / "err.txt");
    EXPECT_EQ(rc, 1) << args << "\n" << err;
    for (const auto& n : needles)
      EXPECT_NE(err.find(n), std::string::npos) << args << "\nmissing: " << n << "\n" << err;
  };
  expect_fail("--vision fp64", {"--vision", "unknown precision 'fp64'"});
  expect_fail("--llm tf32", {"--llm", "unknown precision 'tf32'"});
  expect_fail("--vision fp16", {"--vision fp16", "CPU backend runs fp32 only"});
  expect_fail("--llm fp32,bf16", {"--llm bf16", "CPU backend runs fp32 only"});
  expect_fail("--gt /nonexistent/gt.json", {"/nonexistent/gt.json", "not found"});
  expect_fail("--frames 10", {"--frames 10", "has only 3 frames"});
  expect_fail("--frames 0", {"--frames 0", "positive"});
  // A ground truth without the third frame.
  json gt = read_json(kScene + "/ground_truth.json");
  gt["frames"].erase(2);
  std::ofstream(tmp / "gt2.json") << gt.dump();
  expect_fail("--gt '" + (tmp / "gt2.json").string() + "'", {"frame_002", "gt2.json"});
  // ... which is fine when only the first two frames are used.
  EXPECT_EQ(run_cli(base + " --frames 2 --gt '" + (tmp / "gt2.json").string() + "' --json",
                    tmp / "out.json", tmp / "err.txt"),
            0)
      << slurp(tmp / "err.txt");
  EXPECT_EQ(read_json(tmp / "out.json")["frames"].size(), 2u);
  int rc = run_cli("parity '" + kScene + "' --model /nonexistent --device cpu", tmp / "out.txt",
                   tmp / "err.txt");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(slurp(tmp / "err.txt").find("/nonexistent"), std::string::npos);
  if (!cuda_available()) {
    rc = run_cli("parity '" + kScene + "' --model '" + kModel + "' --device cuda", tmp / "out.txt",
                 tmp / "err.txt");
    EXPECT_EQ(rc, 1);
    EXPECT_NE(slurp(tmp / "err.txt").find("--device cuda: no CUDA device"), std::string::npos)
        << slurp(tmp / "err.txt");
  }
  // A frame whose image is missing: parity compares every frame, so it refuses and names it.
  const fs::path scene = tmp / "scene";
  fs::copy(kScene, scene, fs::copy_options::recursive);
  fs::remove(scene / "frames" / "001" / "CAM_FRONT_RIGHT.png");
  rc = run_cli("parity '" + scene.string() + "' --model '" + kModel + "' --device cpu",
               tmp / "out.txt", tmp / "err.txt");
  EXPECT_EQ(rc, 1);
  EXPECT_NE(slurp(tmp / "err.txt").find("CAM_FRONT_RIGHT.png"), std::string::npos)
      << slurp(tmp / "err.txt");
  fs::remove_all(tmp);
}

// On a GPU: every precision of both engines against the fp32 CUDA reference on the tiny model.
// fp32 is the reference's own configuration (expected bit-identical; allowed 1e-6 in case a
// kernel is not deterministic); TF32 and the half precisions must move the numbers (a precision
// that does not is not applied) but stay within the bounds measured for the tiny model
// (tests/vision: fp16 backbone 7.8e-3, bf16 7.2e-2 on frame 0; tests/llm_engine: fp16/bf16 logits).
TEST(ParityCuda, HalfPrecisionDriftIsNonZeroAndBounded) {
  OMNIRT_REQUIRE_CUDA_LLM(kModel);
  ParityOptions o;
  o.scene = kScene;
  o.model_dir = kModel;
  o.gt_path = kScene + "/ground_truth.json";
  o.device = o.reference_device = Device::CUDA;
  o.vision = parse_precisions("fp32,tf32,fp16,bf16", true, Device::CUDA, "--vision");
  o.llm = parse_precisions("fp32,fp16,bf16", false, Device::CUDA, "--llm");
  o.max_new_tokens = 16;
  const ParityResult r = run_parity(o, stderr);
  std::fputs(format_parity(r).c_str(), stdout);
  ASSERT_EQ(r.rows.size(), 12u);
  ASSERT_EQ(r.vision_drift.size(), 4u);
  ASSERT_EQ(r.llm_drift.size(), 3u);
  // fp32, tf32, fp16, bf16 on frame 0 (TF32 keeps fp16's 10-bit mantissa: fp16's bound).
  const double vision_hi[4] = {1e-6, 5e-2, 5e-2, 2e-1};
  for (int v = 0; v < 4; ++v) {
    const double e0 = r.vision_drift[size_t(v)].tokens[0];
    EXPECT_LE(e0, vision_hi[v]) << r.vision[size_t(v)].name;
    if (v > 0) EXPECT_GT(e0, 0.0) << r.vision[size_t(v)].name << " changed nothing";
    for (double e : r.vision_drift[size_t(v)].tokens) EXPECT_TRUE(std::isfinite(e));
    EXPECT_GT(r.vision_drift[size_t(v)].boxes[0].matched, 0);
  }
  const double llm_hi[3] = {1e-6, 5e-2, 2e-1};
  for (int l = 0; l < 3; ++l) {
    for (double e : r.llm_drift[size_t(l)].logits) {
      EXPECT_LE(e, llm_hi[l]) << r.llm[size_t(l)].name;
      if (l > 0) EXPECT_GT(e, 0.0) << r.llm[size_t(l)].name << " changed nothing";
    }
  }
  // fp32 = the reference's configuration: identical answers, unless a kernel is not
  // deterministic and the reference itself hesitated (top-1 margin < 1e-3) where they part.
  for (int i = 0; i < 3; ++i) {
    if (r.llm_drift[0].divergence[size_t(i)] >= 0)
      EXPECT_LT(r.llm_drift[0].divergence_margin[size_t(i)], 1e-3) << "frame " << i;
    if (r.rows[0].divergence[size_t(i)] >= 0)
      EXPECT_LT(r.rows[0].divergence_margin[size_t(i)], 1e-3) << "frame " << i;
  }
  // Where a half-precision answer leaves the reference's, the reference's own top-1 margin there
  // is reported (finite, >= 0).
  for (const ParityRow& row : r.rows)
    for (size_t i = 0; i < row.divergence.size(); ++i)
      if (row.divergence[i] >= 0 && !std::isnan(row.divergence_margin[i]))
        EXPECT_GE(row.divergence_margin[i], 0.0);

  // Engines on CUDA against the CPU reference: the fp32 path's target is 1e-4.
  o.reference_device = Device::CPU;
  o.vision = parse_precisions("fp32", true, Device::CUDA, "--vision");
  o.llm = parse_precisions("fp32", false, Device::CUDA, "--llm");
  const ParityResult c = run_parity(o, stderr);
  EXPECT_LE(c.vision_drift[0].tokens[0], 1e-4);
  for (double e : c.llm_drift[0].logits) EXPECT_LE(e, 1e-4);
}
