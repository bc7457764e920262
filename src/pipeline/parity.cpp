#include "pipeline/parity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "core/version.h"
#include "eval/dataset.h"
#include "io/scene.h"
#include "models/llm/generation_control.h"
#include "models/llm/llm_engine.h"
#include "models/llm/prompt.h"
#include "models/llm/tokenizer.h"
#include "models/vision/vision_engine.h"
#include "pipeline/frame.h"
#include "pipeline/runner.h"
#include "pipeline/vision_outputs.h"

namespace omnirt::pipeline {

using nlohmann::json;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

// ---- precisions -------------------------------------------------------------------------------

std::vector<Precision> parse_precisions(const std::string& list, bool vision, Device device,
                                        const std::string& option) {
  const char* expected = vision ? "fp32, tf32, fp16, bf16" : "fp32, fp16, bf16";
  std::vector<Precision> out;
  std::set<std::string> seen;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    Precision p;
    p.name = item;
    if (item == "fp32") {
      p.dtype = DType::F32;
    } else if (item == "tf32" && vision) {
      p.dtype = DType::F32;
      p.tf32 = true;
    } else if (item == "fp16") {
      p.dtype = DType::F16;
    } else if (item == "bf16") {
      p.dtype = DType::BF16;
    } else {
      OMNIRT_FAIL(option, ": unknown precision '", item, "' (expected ", expected, ")");
    }
    OMNIRT_CHECK(device == Device::CUDA || item == "fp32", option, " ", item,
                 ": the CPU backend runs fp32 only (use --device cuda for ", item, ")");
    OMNIRT_CHECK(seen.insert(item).second, option, ": '", item, "' given twice");
    out.push_back(p);
  }
  OMNIRT_CHECK(!out.empty(), option, ": no precision given (expected a comma-separated subset of ",
               expected, ")");
  return out;
}

// ---- lineage ----------------------------------------------------------------------------------

namespace {
enum LineageKind { kDetectionQuery = 0, kPropagatedQuery = 1, kEmptyMemory = 2 };
}

int64_t LineageTable::intern(int kind, int frame, int64_t what) {
  const auto key = std::make_tuple(kind, frame, what);
  auto it = ids_.find(key);
  if (it != ids_.end()) return it->second;
  const int64_t id = static_cast<int64_t>(ids_.size());
  ids_.emplace(key, id);
  return id;
}

QueryLineage::QueryLineage(int num_query, int num_propagated, int memory_len, int topk,
                           LineageTable& table)
    : nq_(num_query), np_(num_propagated), ml_(memory_len), topk_(topk), table_(table) {
  OMNIRT_CHECK(np_ <= ml_ && topk_ <= ml_ && nq_ > 0, "query lineage: inconsistent sizes (",
               num_query, " queries, ", num_propagated, " propagated, memory ", memory_len,
               ", top-k ", topk, ")");
}

const std::vector<int64_t>& QueryLineage::begin_frame(int frame, bool memory_reset) {
  frame_ = frame;
  if (memory_reset || memory_.empty()) {
    memory_.resize(size_t(ml_));
    for (int e = 0; e < ml_; ++e) memory_[size_t(e)] = table_.intern(kEmptyMemory, frame, e);
  }
  queries_.resize(size_t(nq_ + np_));
  for (int q = 0; q < nq_; ++q) queries_[size_t(q)] = table_.intern(kDetectionQuery, frame, q);
  for (int e = 0; e < np_; ++e)
    queries_[size_t(nq_ + e)] = table_.intern(kPropagatedQuery, frame, memory_[size_t(e)]);
  return queries_;
}

void QueryLineage::end_frame(const std::vector<int>& topk_queries) {
  OMNIRT_CHECK(frame_ >= 0, "query lineage: end_frame before begin_frame");
  OMNIRT_CHECK(int(topk_queries.size()) == topk_, "query lineage: expected ", topk_,
               " top-k queries, got ", topk_queries.size());
  std::vector<int64_t> next(static_cast<size_t>(ml_));
  for (int e = 0; e < ml_; ++e) {
    if (e < topk_) {
      const int q = topk_queries[size_t(e)];
      OMNIRT_CHECK(q >= 0 && q < nq_ + np_, "query lineage: top-k query ", q, " outside 0..",
                   nq_ + np_ - 1);
      next[size_t(e)] = queries_[size_t(q)];
    } else {
      next[size_t(e)] = memory_[size_t(e - topk_)];
    }
  }
  memory_ = std::move(next);
}

// ---- drift ------------------------------------------------------------------------------------

BoxDrift box_drift(const std::vector<Box3D>& ref, const std::vector<int64_t>& ref_ids,
                   const std::vector<Box3D>& run, const std::vector<int64_t>& run_ids) {
  OMNIRT_CHECK(ref.size() == ref_ids.size() && run.size() == run_ids.size(),
               "box_drift: one identity per box expected");
  std::unordered_map<int64_t, size_t> index;
  for (size_t j = 0; j < run.size(); ++j) index.emplace(run_ids[j], j);
  auto values = [](const Box3D& b) {
    return std::array<double, 11>{b.center[0],
                                  b.center[1],
                                  b.center[2],
                                  b.size_wlh[0],
                                  b.size_wlh[1],
                                  b.size_wlh[2],
                                  std::sin(double(b.yaw)),
                                  std::cos(double(b.yaw)),
                                  b.velocity[0],
                                  b.velocity[1],
                                  b.score};
  };
  BoxDrift d;
  d.reference = int(ref.size());
  double num = 0, den = 0;
  bool finite = true;
  for (size_t i = 0; i < ref.size(); ++i) {
    auto it = index.find(ref_ids[i]);
    if (it == index.end()) continue;
    ++d.matched;
    const auto a = values(run[it->second]), b = values(ref[i]);
    for (size_t k = 0; k < a.size(); ++k) {
      if (!std::isfinite(a[k])) finite = false;
      num += (a[k] - b[k]) * (a[k] - b[k]);
      den += b[k] * b[k];
    }
  }
  if (d.matched == 0)
    d.rel_error = d.reference == 0 ? 0.0 : kNaN;
  else
    d.rel_error = finite ? std::sqrt(num) / std::max(std::sqrt(den), 1e-30) : INFINITY;
  return d;
}

double relative_error(const Tensor& a, const Tensor& b) {
  OMNIRT_CHECK(a.shape() == b.shape(), "relative_error: shapes differ (", a.numel(), " vs ",
               b.numel(), " values)");
  const std::vector<float> x = a.to_float_vector(), y = b.to_float_vector();
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) return INFINITY;
    const double d = double(x[i]) - double(y[i]);
    num += d * d;
    den += double(y[i]) * double(y[i]);
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

// ---- running ----------------------------------------------------------------------------------

namespace {

struct VisionRun {
  std::vector<std::vector<Box3D>> boxes;
  std::vector<std::vector<int64_t>> box_ids;
  std::vector<std::vector<Lane>> lanes;
  std::vector<Tensor> tokens;  // host F32 [R, hidden]
};

VisionRun run_vision(vision::VisionEngine& engine, const std::vector<PreparedFrame>& frames,
                     LineageTable& table) {
  const vision::VisionConfig& c = engine.config();
  engine.reset();
  QueryLineage lineage(c.num_query, c.num_propagated, c.memory_len, c.topk, table);
  VisionRun out;
  for (size_t i = 0; i < frames.size(); ++i) {
    const PreparedFrame& f = frames[i];
    vision::VisionFrameResult r = engine.run(f.img, frame_geometry(f, i == 0));
    const std::vector<int64_t>& qid = lineage.begin_frame(int(i), r.heads.memory_reset);
    std::vector<Box3D> boxes = boxes_from_heads(r.heads);
    std::vector<int64_t> ids;
    for (const Box3D& b : boxes) {
      OMNIRT_CHECK(b.query >= 0 && size_t(b.query) < qid.size(), "frame ", f.index, ": box query ",
                   b.query, " outside 0..", qid.size() - 1);
      ids.push_back(box_identity(qid[size_t(b.query)], b.label));
    }
    lineage.end_frame(r.heads.topk_indexes_bbox);
    out.boxes.push_back(std::move(boxes));
    out.box_ids.push_back(std::move(ids));
    out.lanes.push_back(lanes_from_heads(r.heads));
    out.tokens.push_back(vision_tokens_f32(r.heads).to(Device::CPU).clone());
  }
  return out;
}

struct Generation {
  std::vector<int32_t> ids;
  std::vector<float> margins;  // per generated token: top-1 minus top-2 logit
  std::string answer, stop_reason;
  Tensor first_logits;  // host F32 [V]
};

// top-1 minus top-2 logit (host F32 [V]): how firmly greedy decoding chose `best`.
float top1_margin(const Tensor& logits, int32_t best) {
  const float* v = logits.data<float>();
  float second = -INFINITY;
  for (int64_t i = 0; i < logits.numel(); ++i)
    if (i != best) second = std::max(second, v[i]);
  return v[best] - second;
}

// Greedy decoding (argmax, lowest id on ties) with the stop rules and text handling of the
// pipeline (engines.cpp): EOS or max_new_tokens; ids past a smaller tokenizer decode to nothing.
Generation generate_greedy(llm::LlmEngine& engine, const llm::Tokenizer& tok,
                           const std::vector<int32_t>& prompt_ids, const Tensor& vision_tokens,
                           int max_new_tokens) {
  Generation g;
  const Tensor emb = engine.build_prompt_embeddings(prompt_ids, vision_tokens);
  engine.reset();
  g.first_logits = engine.prefill(emb).to(Device::CPU).clone();
  llm::StopConfig stop;
  stop.eos_id = tok.eos_id();
  stop.max_new_tokens = max_new_tokens;
  llm::GenerationControl control(stop);
  llm::StreamingDetokenizer detok(tok);
  Tensor logits = g.first_logits;
  while (true) {
    const int32_t id = llm::argmax_host(logits);
    g.ids.push_back(id);
    g.margins.push_back(top1_margin(logits, id));
    const bool decodable = id != stop.eos_id && id >= 0 && id < tok.vocab_size();
    const std::string piece = decodable ? detok.push(id) : std::string();
    if (control.on_token(id, piece) != llm::StopReason::kNone) break;
    logits = engine.decode(id).to(Device::CPU);
  }
  g.stop_reason = llm::stop_reason_name(control.reason());
  g.answer = control.answer() + (control.reason() == llm::StopReason::kEos ? detok.finish() : "");
  return g;
}

// The reference's top-1 margin where an answer first differs from it (NaN: identical, or the
// reference ended there).
double margin_at(const Generation& ref, int divergence) {
  if (divergence < 0 || size_t(divergence) >= ref.margins.size()) return kNaN;
  return ref.margins[size_t(divergence)];
}

int first_divergence(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i)
    if (a[i] != b[i]) return int(i);
  return a.size() == b.size() ? -1 : int(n);
}

json floats(const float* v, int n) {
  json a = json::array();
  for (int i = 0; i < n; ++i) a.push_back(v[i]);
  return a;
}

// The evaluator's "frames" layout (docs/eval_format.md) with ego-frame boxes, so the predictions
// go through the same loader as `omnirt eval --pred`.
json predictions_json(const std::vector<std::string>& tokens, const VisionRun& v,
                      const std::vector<std::string>& answers) {
  json frames = json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    json boxes = json::array();
    for (const Box3D& b : v.boxes[i])
      boxes.push_back({{"detection_name", detection_class_names().at(size_t(b.label))},
                       {"detection_score", b.score},
                       {"translation", floats(b.center.data(), 3)},
                       {"size", floats(b.size_wlh.data(), 3)},
                       {"yaw", b.yaw},
                       {"velocity", floats(b.velocity.data(), 2)}});
    json lanes = json::array();
    for (const Lane& l : v.lanes[i]) {
      json pts = json::array();
      for (const auto& p : l.points) pts.push_back(floats(p.data(), 3));
      lanes.push_back({{"points", std::move(pts)}, {"confidence", l.score}});
    }
    frames.push_back({{"sample_token", tokens[i]},
                      {"boxes", std::move(boxes)},
                      {"lanes", std::move(lanes)},
                      {"answer", answers[i]}});
  }
  return {{"box_frame", "ego"}, {"frames", std::move(frames)}};
}

// Model text can hold invalid UTF-8 (random weights): replaced, as `omnirt run` writes it.
std::string dump(const json& j, int indent = -1) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

void evaluate_row(ParityRow& row, const std::vector<std::string>& tokens, const VisionRun& v,
                  const eval::GroundTruth* gt, bool filter_boxes, const std::string& label) {
  row.predictions = predictions_json(tokens, v, row.answers);
  for (const std::string& a : row.answers)
    if (eval::parse_planning_trajectory(a)) ++row.trajectories_parsed;
  if (!gt) return;
  const eval::Predictions pred = eval::parse_predictions(dump(row.predictions), label, *gt);
  eval::EvalOptions eo;
  eo.detection = true;
  eo.planning = !gt->planning.empty();
  eo.lanes = !gt->lanes.empty();
  eo.filter_boxes = filter_boxes;
  row.report = eval::run_evaluation(*gt, pred, eo);
}

}  // namespace

ParityResult run_parity(const ParityOptions& opt, std::FILE* log) {
  const auto t_start = std::chrono::steady_clock::now();
  OMNIRT_CHECK(!opt.vision.empty() && !opt.llm.empty(), "parity: no precisions to compare");
  OMNIRT_CHECK(opt.max_new_tokens >= 1, "parity: max_new_tokens must be >= 1");
  ParityResult res;
  res.scene = opt.scene;
  res.model = opt.model_dir;
  res.gt_path = opt.gt_path;
  res.device = omnirt::device_name(opt.device);
  res.reference_device = omnirt::device_name(opt.reference_device);
  res.vision = opt.vision;
  res.llm = opt.llm;
  res.random_weights = opt.random_weights;
  res.max_new_tokens = opt.max_new_tokens;

  // The reference vision engine first: its config gives the cameras and the input size.
  auto ref_vision =
      vision::VisionEngine::load(opt.model_dir, {opt.reference_device, DType::F32, /*tf32=*/false});
  const vision::VisionConfig& vc = ref_vision->config();
  OMNIRT_CHECK(vc.num_cams >= 1 && vc.num_cams <= int(io::nuscenes_camera_names().size()),
               opt.model_dir, ": config num_cams ", vc.num_cams, " outside 1..6");
  const std::vector<std::string> cameras(io::nuscenes_camera_names().begin(),
                                         io::nuscenes_camera_names().begin() + vc.num_cams);
  const io::Scene scene = io::read_scene(opt.scene, cameras);
  const int total = int(scene.frames.size());
  OMNIRT_CHECK(opt.frames != 0 && opt.frames >= -1, "--frames ", opt.frames,
               ": expected a positive number of frames");
  OMNIRT_CHECK(opt.frames <= total, "--frames ", opt.frames, ": the scene ", scene.dir,
               " has only ", total, " frame", total == 1 ? "" : "s");
  const int n = opt.frames > 0 ? opt.frames : total;
  const PreprocessConfig pcfg = PreprocessConfig::for_network(vc.img_h, vc.img_w);
  std::vector<PreparedFrame> frames;
  for (int i = 0; i < n; ++i) {
    PreparedFrame f = prepare_frame(scene, scene.frames[size_t(i)], pcfg, false);
    OMNIRT_CHECK(f.ok(), "parity needs every frame: ", f.error);
    res.tokens.push_back(f.token);
    frames.push_back(std::move(f));
  }

  std::optional<eval::GroundTruth> gt;
  if (!opt.gt_path.empty())
    gt = eval::subset_ground_truth(eval::load_ground_truth(opt.gt_path), res.tokens);

  std::fprintf(log, "parity: scene %s, %d of %d frames, model %s%s\n", scene.name.c_str(), n, total,
               opt.model_dir.c_str(), opt.random_weights ? " (random weights)" : "");

  // ---- vision: the reference, then each precision, every frame in order (memory carried) ----
  LineageTable lineage;
  auto t0 = std::chrono::steady_clock::now();
  const VisionRun ref_v = run_vision(*ref_vision, frames, lineage);
  ref_vision.reset();
  std::fprintf(log, "vision fp32 reference (%s): %d frames, %.1f s\n", res.reference_device.c_str(),
               n, seconds_since(t0));
  std::vector<VisionRun> runs;
  // A precision that fails (load, run) is recorded on its rows and the others go on: one bad
  // mode should not cost the whole table. The reference must succeed.
  for (const Precision& p : opt.vision) {
    t0 = std::chrono::steady_clock::now();
    VisionDrift d;
    try {
      auto engine = vision::VisionEngine::load(opt.model_dir, {opt.device, p.dtype, p.tf32});
      runs.push_back(run_vision(*engine, frames, lineage));
      for (int i = 0; i < n; ++i) {
        d.tokens.push_back(relative_error(runs.back().tokens[size_t(i)], ref_v.tokens[size_t(i)]));
        d.boxes.push_back(box_drift(ref_v.boxes[size_t(i)], ref_v.box_ids[size_t(i)],
                                    runs.back().boxes[size_t(i)], runs.back().box_ids[size_t(i)]));
      }
      std::fprintf(log, "vision %s (%s): %d frames, %.1f s\n", p.name.c_str(), res.device.c_str(),
                   n, seconds_since(t0));
    } catch (const std::exception& e) {
      if (runs.size() < res.vision_drift.size() + 1) runs.emplace_back();
      d = VisionDrift();
      d.error = "vision " + p.name + ": " + e.what();
      std::fprintf(log, "%s\n", d.error.c_str());
    }
    res.vision_drift.push_back(std::move(d));
  }

  // ---- LLM: the reference, then each precision; every frame with the reference tokens
  // (isolated LLM drift) and with each vision precision's tokens (the table's pairs) ----
  const llm::Tokenizer tok = llm::Tokenizer::load(opt.model_dir + "/tokenizer.model");
  std::vector<std::vector<int32_t>> prompts;
  int64_t longest = 0;
  for (const PreparedFrame& f : frames) {
    prompts.push_back(llm::build_planning_prompt(tok, f.location).ids);
    longest =
        std::max<int64_t>(longest, int64_t(prompts.back().size()) - 1 + ref_v.tokens[0].dim(0));
  }
  auto load_llm = [&](Device device, DType dtype) {
    llm::LlmEngineOptions lo;
    lo.device = device;
    lo.dtype = dtype;
    lo.max_context = longest + opt.max_new_tokens + 1;
    auto e = llm::LlmEngine::from_folder(opt.model_dir, lo);
    llm::check_tokenizer_vocab(tok, e->config());
    return e;
  };
  t0 = std::chrono::steady_clock::now();
  std::vector<Generation> ref_gen;
  {
    auto engine = load_llm(opt.reference_device, DType::F32);
    for (int i = 0; i < n; ++i)
      ref_gen.push_back(generate_greedy(*engine, tok, prompts[size_t(i)], ref_v.tokens[size_t(i)],
                                        opt.max_new_tokens));
  }
  std::fprintf(log, "LLM fp32 reference (%s): %d answers, %.1f s\n", res.reference_device.c_str(),
               n, seconds_since(t0));
  res.reference.vision = res.reference.llm = -1;
  for (const Generation& g : ref_gen) {
    res.reference.answers.push_back(g.answer);
    res.reference.divergence.push_back(-1);
    res.reference.divergence_margin.push_back(kNaN);
  }
  evaluate_row(res.reference, res.tokens, ref_v, gt ? &*gt : nullptr, opt.filter_boxes,
               "parity reference");

  const size_t nv = opt.vision.size(), nl = opt.llm.size();
  res.rows.resize(nv * nl);
  for (size_t l = 0; l < nl; ++l) {
    const Precision& p = opt.llm[l];
    t0 = std::chrono::steady_clock::now();
    std::unique_ptr<llm::LlmEngine> engine;
    LlmDrift d;
    try {
      engine = load_llm(opt.device, p.dtype);
      for (int i = 0; i < n; ++i) {
        const Generation g = generate_greedy(*engine, tok, prompts[size_t(i)],
                                             ref_v.tokens[size_t(i)], opt.max_new_tokens);
        const Generation& r = ref_gen[size_t(i)];
        d.logits.push_back(relative_error(g.first_logits, r.first_logits));
        d.first_token_same.push_back(llm::argmax_host(g.first_logits) ==
                                     llm::argmax_host(r.first_logits));
        d.divergence.push_back(first_divergence(g.ids, r.ids));
        d.divergence_margin.push_back(margin_at(r, d.divergence.back()));
      }
    } catch (const std::exception& e) {
      d = LlmDrift();
      d.error = "LLM " + p.name + ": " + e.what();
      std::fprintf(log, "%s\n", d.error.c_str());
    }
    res.llm_drift.push_back(d);
    for (size_t v = 0; v < nv; ++v) {
      ParityRow& row = res.rows[v * nl + l];
      row.vision = int(v);
      row.llm = int(l);
      if (!res.vision_drift[v].error.empty() || !d.error.empty()) {
        row.error = !res.vision_drift[v].error.empty() ? res.vision_drift[v].error : d.error;
        continue;
      }
      try {
        for (int i = 0; i < n; ++i) {
          const Generation g = generate_greedy(*engine, tok, prompts[size_t(i)],
                                               runs[v].tokens[size_t(i)], opt.max_new_tokens);
          row.answers.push_back(g.answer);
          row.divergence.push_back(first_divergence(g.ids, ref_gen[size_t(i)].ids));
          row.divergence_margin.push_back(margin_at(ref_gen[size_t(i)], row.divergence.back()));
        }
        evaluate_row(row, res.tokens, runs[v], gt ? &*gt : nullptr, opt.filter_boxes,
                     "parity " + opt.vision[v].name + "/" + p.name);
      } catch (const std::exception& e) {
        row = ParityRow();
        row.vision = int(v);
        row.llm = int(l);
        row.error = "vision " + opt.vision[v].name + " + LLM " + p.name + ": " + e.what();
        std::fprintf(log, "%s\n", row.error.c_str());
      }
    }
    if (d.error.empty())
      std::fprintf(log, "LLM %s (%s): %zu answers, %.1f s\n", p.name.c_str(), res.device.c_str(),
                   size_t(n) * (nv + 1), seconds_since(t0));
  }

  for (const ParityRow& row : res.rows)
    if (!row.error.empty()) res.failed_rows++;
  if (opt.random_weights)
    res.notes.push_back(std::string(kRandomWeightsWarning) +
                        ": mAP, NDS, L2 and collision measure nothing here; the drift columns "
                        "are still meaningful");
  if (!gt)
    res.notes.push_back(
        "no ground truth: task metrics not computed (give --gt FILE, or put "
        "ground_truth.json in the scene folder)");
  else if (gt->planning.empty())
    res.notes.push_back("the ground truth has no planning targets: L2 and collision not computed");
  res.wall_s = seconds_since(t_start);
  return res;
}

// ---- output -----------------------------------------------------------------------------------

namespace {

std::string fmt(const char* f, double v) {
  if (std::isnan(v)) return "n/a";
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

std::string engine_name(const Precision* p) {
  if (!p) return "FP32 reference";
  std::string up = p->name;
  for (char& c : up) c = char(std::toupper(static_cast<unsigned char>(c)));
  return up + " engine";
}

double max_finite_or_nan(const std::vector<double>& v) {
  double m = kNaN;
  for (double x : v)
    if (!std::isnan(x)) m = std::isnan(m) ? x : std::max(m, x);
  return m;
}

int count_identical(const std::vector<int>& divergence) {
  return int(std::count(divergence.begin(), divergence.end(), -1));
}

json num(double v) { return std::isnan(v) ? json(nullptr) : json(v); }

json nums(const std::vector<double>& v) {
  json a = json::array();
  for (double x : v) a.push_back(num(x));
  return a;
}

// "k/n", plus the smallest reference top-1 margin at a divergence when some answers differ: a
// divergence where the reference itself hesitated (a margin within the logit drift) is expected.
std::string identical_cell(const std::vector<int>& divergence, const std::vector<double>& margin) {
  const int n = int(divergence.size());
  std::string s = std::to_string(count_identical(divergence)) + "/" + std::to_string(n);
  double m = kNaN;
  for (double x : margin)
    if (!std::isnan(x)) m = std::isnan(m) ? x : std::min(m, x);
  if (!std::isnan(m)) s += " (ref. margin " + fmt("%.2g", m) + ")";
  return s;
}

json row_metrics(const ParityRow& row) {
  json m = json::object();
  if (!row.report) return m;
  const auto& r = *row.report;
  if (r.detection) {
    m["mAP"] = num(r.detection->mean_ap);
    m["NDS"] = num(r.detection->nd_score);
  }
  if (r.planning) {
    m["l2"] = {num(r.planning->l2[0]), num(r.planning->l2[1]), num(r.planning->l2[2])};
    m["collision"] = {num(r.planning->collision[0]), num(r.planning->collision[1]),
                      num(r.planning->collision[2])};
    m["boundary"] = {num(r.planning->boundary[0]), num(r.planning->boundary[1]),
                     num(r.planning->boundary[2])};
    m["planning_samples"] = r.planning->samples;
  }
  if (r.lanes) m["DET_l"] = num(r.lanes->det_l);
  return m;
}

}  // namespace

std::string format_parity(const ParityResult& r) {
  std::ostringstream os;
  const int n = int(r.tokens.size());
  os << "omnirt parity: " << r.scene << ", " << n << " frame" << (n == 1 ? "" : "s") << ", model "
     << r.model << "\n";
  os << "engines on " << r.device << "; reference: fp32 engines (TF32 off) on "
     << r.reference_device << "; greedy decoding, at most " << r.max_new_tokens << " new tokens\n";
  if (r.random_weights)
    os << "WARNING: " << kRandomWeightsWarning
       << ": mAP, NDS, L2 and collision measure nothing here\n";
  os << "\n";

  // Accuracy table, the reference deployment's layout (Vision | LLM | BBOX mAP | L2 1/2/3 s)
  // plus NDS and the collision rate.
  // DET_l (lanes) only when the ground truth has lanes.
  const bool lanes = r.reference.report && r.reference.report->lanes;
  os << "Vision | LLM | BBOX mAP | NDS | Planning L2 1s | Planning L2 2s | Planning L2 3s | "
        "Collision 1s | Collision 2s | Collision 3s | "
     << (lanes ? "Lane DET_l | " : "") << "answers parsed\n";
  os << "--- | --- | --- | --- | --- | --- | --- | --- | --- | --- | " << (lanes ? "--- | " : "")
     << "---\n";
  auto acc_row = [&](const ParityRow& row) {
    const Precision* v = row.vision >= 0 ? &r.vision[size_t(row.vision)] : nullptr;
    const Precision* l = row.llm >= 0 ? &r.llm[size_t(row.llm)] : nullptr;
    os << engine_name(v) << " | " << engine_name(l) << " | ";
    if (!row.error.empty()) {
      os << "failed: " << row.error << "\n";
      return;
    }
    const bool det = row.report && row.report->detection;
    const bool plan = row.report && row.report->planning;
    os << (det ? fmt("%.3f", row.report->detection->mean_ap) : "n/a") << " | "
       << (det ? fmt("%.3f", row.report->detection->nd_score) : "n/a");
    for (int h = 0; h < 3; ++h)
      os << " | " << (plan ? fmt("%.3f", row.report->planning->l2[h]) : "n/a");
    for (int h = 0; h < 3; ++h)
      os << " | " << (plan ? fmt("%.4f", row.report->planning->collision[h]) : "n/a");
    if (lanes) os << " | " << (row.report->lanes ? fmt("%.3f", row.report->lanes->det_l) : "n/a");
    os << " | " << row.trajectories_parsed << "/" << n << "\n";
  };
  acc_row(r.reference);
  for (const ParityRow& row : r.rows) acc_row(row);

  // Drift table.
  os << "\nDrift against the reference, ||x - ref|| / ||ref||, worst frame. Vision tokens and "
        "boxes depend on the vision precision only; LLM logits, first token and answers (ref. "
        "tokens) feed the REFERENCE vision tokens to the LLM, so they depend on the LLM precision "
        "only; answers (end to end) run the pair.\n";
  os << "Vision | LLM | vision tokens | boxes (matched) | LLM logits | first token = ref | "
        "answers = ref (ref. tokens) | answers = ref (end to end)\n";
  os << "--- | --- | --- | --- | --- | --- | --- | ---\n";
  for (const ParityRow& row : r.rows) {
    const VisionDrift& vd = r.vision_drift[size_t(row.vision)];
    const LlmDrift& ld = r.llm_drift[size_t(row.llm)];
    if (!row.error.empty()) {
      os << engine_name(&r.vision[size_t(row.vision)]) << " | "
         << engine_name(&r.llm[size_t(row.llm)]) << " | failed: " << row.error << "\n";
      continue;
    }
    int matched = 0, total = 0;
    std::vector<double> box_err;
    for (const BoxDrift& b : vd.boxes) {
      matched += b.matched;
      total += b.reference;
      box_err.push_back(b.rel_error);
    }
    os << engine_name(&r.vision[size_t(row.vision)]) << " | "
       << engine_name(&r.llm[size_t(row.llm)]) << " | " << fmt("%.3g", max_finite_or_nan(vd.tokens))
       << " | " << fmt("%.3g", max_finite_or_nan(box_err)) << " (" << matched << "/" << total
       << ") | " << fmt("%.3g", max_finite_or_nan(ld.logits)) << " | "
       << std::count(ld.first_token_same.begin(), ld.first_token_same.end(), true) << "/" << n
       << " | " << identical_cell(ld.divergence, ld.divergence_margin) << " | "
       << identical_cell(row.divergence, row.divergence_margin) << "\n";
  }
  os << "\n";
  if (r.reference.report)
    for (const auto& note : r.reference.report->notes) os << "note (evaluator): " << note << "\n";
  for (const auto& note : r.notes) os << "note: " << note << "\n";
  return os.str();
}

json parity_to_json(const ParityResult& r) {
  json j;
  j["omnirt_version"] = omnirt::version();
  j["commit"] = omnirt::git_commit();
  j["scene"] = r.scene;
  j["model"] = r.model;
  j["ground_truth"] = r.gt_path.empty() ? json(nullptr) : json(r.gt_path);
  j["frames"] = r.tokens;
  j["device"] = r.device;
  j["reference_device"] = r.reference_device;
  j["reference"] = "fp32 engines, TF32 off";
  j["decoding"] = "greedy";
  j["max_new_tokens"] = r.max_new_tokens;
  j["random_weights"] = r.random_weights;
  if (r.random_weights) j["warning"] = kRandomWeightsWarning;
  auto row_json = [&](const ParityRow& row) {
    json o;
    o["vision"] = row.vision >= 0 ? r.vision[size_t(row.vision)].name : "reference";
    o["llm"] = row.llm >= 0 ? r.llm[size_t(row.llm)].name : "reference";
    if (!row.error.empty()) {
      o["error"] = row.error;
      return o;
    }
    o["metrics"] = row_metrics(row);
    o["eval"] = row.report ? eval::report_to_json(*row.report) : json(nullptr);
    o["answers"] = row.answers;
    o["answers_parsed"] = row.trajectories_parsed;
    o["answer_divergence"] = row.divergence;
    o["answer_divergence_reference_margin"] = nums(row.divergence_margin);
    o["answers_identical"] = count_identical(row.divergence);
    if (row.vision >= 0) {
      const VisionDrift& vd = r.vision_drift[size_t(row.vision)];
      const LlmDrift& ld = r.llm_drift[size_t(row.llm)];
      json boxes = json::array();
      for (const BoxDrift& b : vd.boxes)
        boxes.push_back(
            {{"rel_error", num(b.rel_error)}, {"matched", b.matched}, {"reference", b.reference}});
      std::vector<double> box_err;
      for (const BoxDrift& b : vd.boxes) box_err.push_back(b.rel_error);
      json tokens_pf = json::array(), logits_pf = json::array();
      for (double e : vd.tokens) tokens_pf.push_back(num(e));
      for (double e : ld.logits) logits_pf.push_back(num(e));
      o["drift"] = {
          {"vision_tokens", {{"max", num(max_finite_or_nan(vd.tokens))}, {"per_frame", tokens_pf}}},
          {"boxes", {{"max", num(max_finite_or_nan(box_err))}, {"per_frame", boxes}}},
          {"llm_logits", {{"max", num(max_finite_or_nan(ld.logits))}, {"per_frame", logits_pf}}},
          {"first_token_same", ld.first_token_same},
          {"answer_divergence_reference_tokens", ld.divergence},
          {"answer_divergence_reference_tokens_margin", nums(ld.divergence_margin)},
          {"answers_identical_reference_tokens", count_identical(ld.divergence)}};
    }
    return o;
  };
  j["reference_row"] = row_json(r.reference);
  json rows = json::array();
  for (const ParityRow& row : r.rows) rows.push_back(row_json(row));
  j["rows"] = std::move(rows);
  j["notes"] = r.notes;
  j["failed_rows"] = r.failed_rows;
  j["wall_s"] = r.wall_s;
  return j;
}

}  // namespace omnirt::pipeline
