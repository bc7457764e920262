// `omnirt bench e2e`: the whole model (vision engine + planner) over a scene, several passes, in
// the reference deployment's latency table layout (spec/reference_deployment.md: vision latency;
// LLM TTFT, TPOT, overall latency) with our p50/p90 beside its published figures.
//
// Every frame is decoded and pre-processed once before timing (that CPU work is reported on its
// own line); each pass then runs the frames in order from a fresh temporal memory, and every frame
// of every timed pass is one sample:
//   vision   = vision engine (backbone, heads, 513 tokens);
//   TTFT     = planner prompt + prefill + first token (the LLM's time to first token, as the
//              reference measures it on its LLM engine);
//   TPOT     = the later tokens' time / (new tokens - 1);
//   overall  = TTFT + the later tokens (the LLM's overall latency);
//   frame    = vision + overall (frame in -> answer complete).
// The answer length follows the model (EOS, --max-new); the reference's overall latency is for
// its answers, so compare TTFT and TPOT first. Table on stdout, JSON with --json FILE.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "apps/omnirt/bench.h"
#include "apps/omnirt/defaults.h"
#include "core/device.h"
#include "core/error.h"
#include "core/version.h"
#include "io/scene.h"
#include "pipeline/engines.h"
#include "pipeline/frame.h"
#include "pipeline/runner.h"

namespace omnirt::cli {
namespace {

using nlohmann::json;

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double idx = p / 100.0 * double(v.size() - 1);
  const size_t lo = size_t(idx);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - double(lo));
}

// The reference deployment's published latencies (ms), spec/reference_deployment.md
// ("Inference latencies": A100 with TensorRT-LLM, DRIVE AGX Thor with TensorRT-Edge-LLM).
// A negative value = no figure in that column.
struct RefColumn {
  const char* name;
  double vision, ttft, tpot, overall;
};
constexpr RefColumn kVisionRefs[] = {
    {"A100 PyTorch", 280.02, -1, -1, -1},
    {"A100 FP32 engine", 75.66, -1, -1, -1},
    {"A100 mixed-precision engine", 25.92, -1, -1, -1},
    {"Thor FP32 engine", 316.90, -1, -1, -1},
    {"Thor mixed-precision engine", 177.68, -1, -1, -1},
};
constexpr RefColumn kLlmRefs[] = {
    {"A100 PyTorch", -1, 107.82, 27.49, 2256.50},
    {"A100 FP16 engine", -1, 10.02, 2.80, 256.20},
    {"A100 FP16 act. INT4 weight", -1, 11.30, 2.52, 232.60},
    {"Thor FP16 engine", -1, 16.55, 9.04, 794.25},
    {"Thor NVFP4 engine", -1, 9.85, 4.45, 392.55},
};

struct Options {
  std::string scene, model, device, vision_dtype = "auto", vision_heads = "auto", json_out;
  bool greedy = false;
  int max_new = 320, runs = 3, warmup = 1, max_frames = -1;
  uint64_t seed = 0;
};

struct Samples {
  std::vector<double> prepare, vision, ttft, tpot, overall, frame;
  std::vector<int> new_tokens;
};

std::string cell(double v) {
  if (v < 0) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", v);
  return b;
}

// One table in the reference's layout: header row, separator, then rows; our columns first.
void print_table(const char* title, const std::vector<std::pair<std::string, std::vector<double>>>& rows,
                 const RefColumn* refs, size_t nrefs, double RefColumn::*const* fields) {
  std::printf("%-34s | omnirt p50 | omnirt p90", title);
  for (size_t i = 0; i < nrefs; ++i) std::printf(" | %s", refs[i].name);
  std::printf("\n%s|------------|------------", std::string(35, '-').c_str());
  for (size_t i = 0; i < nrefs; ++i) std::printf("|%s", std::string(std::strlen(refs[i].name) + 2, '-').c_str());
  std::printf("\n");
  for (size_t r = 0; r < rows.size(); ++r) {
    std::printf("%-34s | %10s | %10s", rows[r].first.c_str(), cell(percentile(rows[r].second, 50)).c_str(),
                cell(percentile(rows[r].second, 90)).c_str());
    for (size_t i = 0; i < nrefs; ++i)
      std::printf(" | %*s", int(std::strlen(refs[i].name)), cell(refs[i].*fields[r]).c_str());
    std::printf("\n");
  }
}

json stats(const std::vector<double>& v) {
  return {{"p50_ms", percentile(v, 50)},
          {"p90_ms", percentile(v, 90)},
          {"min_ms", v.empty() ? 0.0 : *std::min_element(v.begin(), v.end())},
          {"max_ms", v.empty() ? 0.0 : *std::max_element(v.begin(), v.end())},
          {"samples_ms", v}};
}

int run_bench(const Options& o) {
  OMNIRT_CHECK(o.runs > 0 && o.warmup >= 0, "--runs must be positive and --warmup >= 0");
  const bool cuda = o.device.empty() ? cuda_available() : o.device == "cuda";
  OMNIRT_CHECK(!cuda || cuda_available(), "--device cuda: no CUDA device (or this build has no "
               "CUDA backend)");
  pipeline::EngineOptions eo;
  eo.device = cuda ? Device::CUDA : Device::CPU;
  set_vision_precision(cuda, o.vision_dtype, o.vision_heads, eo);
  eo.greedy = o.greedy;
  eo.max_new_tokens = o.max_new;
  eo.seed = o.seed;

  std::string note;
  const std::string model = o.model.empty() ? default_model(cuda, note) : o.model;
  std::string scene_dir = o.scene.empty() ? find_sample_scene() : o.scene;
  OMNIRT_CHECK(!scene_dir.empty(), "the bundled sample scene (examples/sample_scene) was not found "
               "next to this executable: pass --scene DIR");
  const bool random = pipeline::checkpoint_has_random_weights(model);
  if (!note.empty()) std::fprintf(stderr, "%s\n", note.c_str());

  auto engines = pipeline::ModelEngines::load(model, eo);
  const io::Scene scene = io::read_scene(scene_dir, engines->camera_names());
  const auto pcfg = pipeline::preprocess_config_for(*engines);
  std::vector<pipeline::PreparedFrame> frames;
  Samples s;
  for (const auto& f : scene.frames) {
    if (o.max_frames >= 0 && int(frames.size()) >= o.max_frames) break;
    pipeline::PreparedFrame p = pipeline::prepare_frame(scene, f, pcfg, false);
    if (!p.ok()) {
      std::fprintf(stderr, "skipping %s\n", p.error.c_str());
      continue;
    }
    s.prepare.push_back(p.prepare_ms);
    frames.push_back(std::move(p));
  }
  OMNIRT_CHECK(!frames.empty(), "scene ", scene_dir, ": no usable frame");

  for (int pass = 0; pass < o.warmup + o.runs; ++pass) {
    for (size_t i = 0; i < frames.size(); ++i) {
      const pipeline::FrameOutput out = engines->run(frames[i], i == 0);
      if (pass < o.warmup) continue;
      s.vision.push_back(out.vision_ms);
      s.ttft.push_back(out.prefill_ms);
      s.tpot.push_back(out.new_tokens > 1 ? out.decode_ms / (out.new_tokens - 1) : 0.0);
      s.overall.push_back(out.prefill_ms + out.decode_ms);
      s.frame.push_back(out.vision_ms + out.prefill_ms + out.decode_ms);
      s.new_tokens.push_back(out.new_tokens);
    }
  }
  double mean_tokens = 0;
  for (int n : s.new_tokens) mean_tokens += n;
  mean_tokens /= double(s.new_tokens.size());
  const std::string gpu = cuda ? cuda_device_description() : "none";

  if (o.json_out != "-") {
    std::printf("omnirt bench e2e — scene %s (%zu frames x %d runs, +%d warm-up), model %s\n",
                scene.name.c_str(), frames.size(), o.runs, o.warmup, model.c_str());
    std::printf("  %s; GPU %s; %s, at most %d new tokens (mean %.1f)%s\n",
                engines->description().c_str(), gpu.c_str(),
                o.greedy ? "greedy" : "OmniDrive sampling (T 0.1, top-p 0.75)", o.max_new,
                mean_tokens, random ? "; random weights: boxes and text are meaningless" : "");
    std::printf("  reference: OmniDrive deploy README (A100 TensorRT-LLM, DRIVE AGX Thor "
                "TensorRT-Edge-LLM), ms\n\n");
    static constexpr double RefColumn::*kVisionField[] = {&RefColumn::vision};
    print_table("Vision", {{"Latency (ms)", s.vision}}, kVisionRefs, std::size(kVisionRefs),
                kVisionField);
    std::printf("\n");
    static constexpr double RefColumn::*kLlmFields[] = {&RefColumn::ttft, &RefColumn::tpot,
                                                        &RefColumn::overall};
    print_table("LLM", {{"Time To First Token (TTFT) (ms)", s.ttft},
                        {"Time Per Output Token (TPOT) (ms)", s.tpot},
                        {"Overall Latency (ms)", s.overall}},
                kLlmRefs, std::size(kLlmRefs), kLlmFields);
    std::printf("\n  frame (vision + LLM overall): p50 %.2f ms, p90 %.2f ms; decode + pre-process "
                "(before timing; on the GPU with cuda): p50 %.2f ms, p90 %.2f ms per frame\n",
                percentile(s.frame, 50), percentile(s.frame, 90), percentile(s.prepare, 50),
                percentile(s.prepare, 90));
  }

  if (!o.json_out.empty()) {
    json j;
    j["benchmark"] = "e2e";
    j["omnirt_version"] = omnirt::version();
    j["commit"] = omnirt::git_commit();
    j["device"] = cuda ? "cuda" : "cpu";
    j["gpu"] = gpu;
    j["model"] = model;
    j["model_description"] = engines->description();
    j["random_weights"] = random;
    j["scene"] = scene.name;
    j["scene_dir"] = scene_dir;
    j["frames"] = frames.size();
    j["runs"] = o.runs;
    j["warmup"] = o.warmup;
    j["greedy"] = o.greedy;
    j["max_new_tokens"] = o.max_new;
    j["new_tokens"] = s.new_tokens;
    j["new_tokens_mean"] = mean_tokens;
    j["vision"] = stats(s.vision);
    j["ttft"] = stats(s.ttft);
    j["tpot"] = stats(s.tpot);
    j["overall"] = stats(s.overall);
    j["frame"] = stats(s.frame);
    j["prepare"] = stats(s.prepare);
    json ref = json::object();
    for (const auto& r : kVisionRefs) ref["vision"][r.name] = {{"latency_ms", r.vision}};
    for (const auto& r : kLlmRefs)
      ref["llm"][r.name] = {{"ttft_ms", r.ttft}, {"tpot_ms", r.tpot}, {"overall_ms", r.overall}};
    j["reference"] = std::move(ref);
    j["reference_source"] = "OmniDrive deploy/README.md (spec/reference_deployment.md)";
    if (o.json_out == "-") {
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::ofstream f(o.json_out);
      OMNIRT_CHECK(f.good(), "cannot write ", o.json_out);
      f << j.dump(2) << "\n";
      OMNIRT_CHECK(f.good(), "error while writing ", o.json_out);
      std::printf("  JSON written to %s\n", o.json_out.c_str());
    }
  }
  return 0;
}

BenchCommand bench_e2e(
    "e2e", "Whole model over a scene: vision, TTFT, TPOT, overall (p50/p90) beside the reference",
    [](CLI::App& sub) {
      auto o = std::make_shared<Options>();
      sub.add_option("--scene", o->scene, "scene folder (default: the bundled examples/sample_scene)");
      sub.add_option("--model", o->model,
                     "checkpoint folder (default: the random checkpoint `omnirt run` uses)");
      sub.add_option("--device", o->device, "cpu or cuda (default: cuda when present)")
          ->check(CLI::IsMember({"cpu", "cuda"}));
      sub.add_option("--vision-dtype", o->vision_dtype, kVisionDtypeHelp)
          ->check(CLI::IsMember({"auto", "fp32", "fp16", "bf16"}));
      sub.add_option("--vision-heads", o->vision_heads, kVisionHeadsHelp)
          ->check(CLI::IsMember({"auto", "fp32", "tf32", "fp16", "bf16"}));
      sub.add_flag("--greedy", o->greedy, "argmax decoding (default: OmniDrive's sampling)");
      sub.add_option("--max-new", o->max_new, "most new tokens per answer")->check(CLI::Range(1, 2048));
      sub.add_option("--seed", o->seed, "sampling seed");
      sub.add_option("--runs", o->runs, "timed passes over the scene");
      sub.add_option("--warmup", o->warmup, "untimed passes first");
      sub.add_option("--max-frames", o->max_frames, "use only the first N usable frames");
      sub.add_option("--json", o->json_out, "write the results as JSON to FILE (- = stdout, no table)");
      return [o]() {
        try {
          return run_bench(*o);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "omnirt bench e2e: %s\n", e.what());
          return 1;
        }
      };
    });

}  // namespace
}  // namespace omnirt::cli
