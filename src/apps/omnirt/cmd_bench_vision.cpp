// `omnirt bench vision`: latency of the vision engine (backbone + heads + memory, one frame),
// p50/p90 over many runs, as a table and JSON.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/version.h"
#include "apps/omnirt/bench.h"
#include "apps/omnirt/command.h"
#include "core/device.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/stage_timer.h"
#include "io/scene.h"
#include "models/vision/vision_engine.h"
#include "pipeline/frame.h"
#include "pipeline/preprocess.h"

namespace {

using namespace omnirt;
using namespace omnirt::vision;

struct Args {
  std::string model;
  std::string device = "cuda";
  std::string dtype = "fp32";
  std::string heads_dtype = "fp32";
  bool tf32 = false;
  int runs = 20, warmup = 3;
  std::string json;
  bool stages = false;
  bool no_heads_graph = false;
  bool heads_concurrent = false;
  // --dtype fp8: where the activation scales come from (one of the first two, else the
  // benchmark's own synthetic frames), and where to save them.
  std::string fp8_calibration, fp8_calibrate_scene, save_fp8_calibration;
  int fp8_calibration_frames = 4;
  bool fp8_compare = false;
};

// ||a - b|| / ||b|| of two tensors of any float dtype and device.
double rel_diff(const Tensor& a, const Tensor& b) {
  const std::vector<float> x = a.to(Device::CPU).to_float_vector();
  const std::vector<float> y = b.to(Device::CPU).to_float_vector();
  OMNIRT_CHECK(x.size() == y.size(), "rel_diff: sizes differ");
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = double(x[i]) - y[i];
    num += d * d;
    den += double(y[i]) * y[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

// Up to `max_frames` frames of a scene folder, pre-processed as `omnirt run` does (the first
// num_cams nuScenes cameras, resized/cropped to the network input).
std::vector<Tensor> scene_frames(const std::string& dir, const VisionConfig& c, int max_frames) {
  const auto& all = io::nuscenes_camera_names();
  OMNIRT_CHECK(c.num_cams >= 1 && c.num_cams <= int(all.size()), "num_cams ", c.num_cams);
  const io::Scene scene = io::read_scene(dir, {all.begin(), all.begin() + c.num_cams});
  const auto pcfg = pipeline::PreprocessConfig::for_network(c.img_h, c.img_w);
  std::vector<Tensor> frames;
  for (const auto& f : scene.frames) {
    if (int(frames.size()) >= max_frames) break;
    pipeline::PreparedFrame p = pipeline::prepare_frame(scene, f, pcfg, false);
    if (!p.ok()) {
      std::fprintf(stderr, "FP8 calibration: skipping %s\n", p.error.c_str());
      continue;
    }
    frames.push_back(p.img);
  }
  OMNIRT_CHECK(!frames.empty(), "scene ", dir, ": no usable frame for the FP8 calibration");
  return frames;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = p * (v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

// A plausible frame: ring of cameras 1.5 m up looking outwards, fixed random images.
FrameGeometry synthetic_geometry(const VisionConfig& c, int frame) {
  FrameGeometry g;
  for (int cam = 0; cam < c.num_cams; ++cam) {
    const float yaw = 2.f * 3.14159265f * cam / c.num_cams;
    // camera axes: z forward (along yaw), x right, y down
    const float fx = 0.4f * 1266.f, fy = 0.8f * 1266.f, cx = c.img_w / 2.f, cy = c.img_h / 2.f;
    const float cz = std::cos(yaw), sz = std::sin(yaw);
    host::Mat4 ego2cam{sz, -cz, 0, 0, 0, 0, -1, 1.5f, cz, sz, 0, 0, 0, 0, 0, 1};
    host::Mat4 k{fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    g.lidar2img.push_back(host::matmul4(k, ego2cam));
  }
  g.ego_pose = host::identity4();
  g.ego_pose[3] = 2.f * frame;  // moving forward 2 m per frame
  g.ego_pose_inv = host::inverse4(g.ego_pose, "ego_pose");
  g.timestamp = 0.5 * frame;
  g.is_first_frame = frame == 0;
  return g;
}

// The --stages breakdown as a table, and as JSON into `out`: one object per stage, then one
// named "frame" (GPU span, host queue time, host wall time).
void print_stages(const StageTimer& t, nlohmann::json& out) {
  const bool gpu = t.gpu_timed();
  std::printf("\nstage breakdown (%zu frames; %s, nothing synchronised between stages)\n",
              t.frame_wall_ms().size(), gpu ? "a CUDA event at each mark" : "host clock only");
  std::printf("| stage | GPU p50 ms | GPU p90 ms | host p50 ms | GPU work items |\n");
  std::printf("| --- | --- | --- | --- | --- |\n");
  double gpu_sum = 0, host_sum = 0, items_sum = 0;
  for (const StageTimer::Stage& s : t.stages()) {
    const double g50 = gpu ? percentile(s.gpu_ms, 0.5) : 0, g90 = gpu ? percentile(s.gpu_ms, 0.9) : 0;
    const double h50 = percentile(s.host_ms, 0.5), items = percentile(s.work_items, 0.5);
    gpu_sum += g50;
    host_sum += h50;
    items_sum += items;
    if (gpu)
      std::printf("| %s | %.3f | %.3f | %.3f | %.0f |\n", s.name.c_str(), g50, g90, h50, items);
    else
      std::printf("| %s | - | - | %.3f | %.0f |\n", s.name.c_str(), h50, items);
    nlohmann::json js = {{"stage", s.name}, {"host_p50_ms", h50}, {"work_items_p50", items}};
    if (gpu) js["gpu_p50_ms"] = g50, js["gpu_p90_ms"] = g90;
    out.push_back(js);
  }
  if (gpu)
    std::printf("| sum of the p50s | %.3f | | %.3f | %.0f |\n", gpu_sum, host_sum, items_sum);
  else
    std::printf("| sum of the p50s | - | | %.3f | %.0f |\n", host_sum, items_sum);
  const double wall = percentile(t.frame_wall_ms(), 0.5), queue = percentile(t.frame_host_queue_ms(), 0.5);
  std::printf("\nframe (p50 ms): host wall time %.3f (synchronised at the end), host time to the last "
              "mark %.3f", wall, queue);
  nlohmann::json frame = {{"stage", "frame"}, {"host_wall_p50_ms", wall}, {"host_queue_p50_ms", queue},
                          {"work_items_p50", items_sum}};
  if (gpu) {
    const double span = percentile(t.frame_gpu_ms(), 0.5);
    std::printf(", GPU span %.3f", span);
    frame["gpu_span_p50_ms"] = span;
  }
  std::printf("\n(a GPU span close to the host time means the GPU waits for the host: launch-bound)\n");
  out.push_back(frame);
}

omnirt::cli::BenchCommand bench_vision_cmd(
    "vision", "Vision engine latency, one frame: backbone + heads + memory (p50/p90)",
    [](CLI::App& app) {
      auto a = std::make_shared<Args>();
      app.add_option("--model", a->model, "checkpoint folder (config.json + vision.safetensors)")
          ->required();
      app.add_option("--device", a->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
      app.add_option("--dtype", a->dtype,
                     "backbone precision: fp32, fp16, bf16, or fp8 (E4M3 GEMMs with calibrated "
                     "per-tensor scales, the rest fp16)")
          ->check(CLI::IsMember({"fp32", "fp16", "bf16", "fp8"}));
      app.add_option("--fp8-calibration", a->fp8_calibration,
                     "--dtype fp8: activation scales from this file (written by "
                     "--save-fp8-calibration)");
      app.add_option("--fp8-calibrate-scene", a->fp8_calibrate_scene,
                     "--dtype fp8: calibrate on the first --fp8-calibration-frames frames of this "
                     "scene folder (pre-processed as in `omnirt run`). Without this and "
                     "--fp8-calibration: calibrate on this benchmark's synthetic frame");
      app.add_option("--fp8-calibration-frames", a->fp8_calibration_frames,
                     "frames for --fp8-calibrate-scene")
          ->check(CLI::Range(1, 100000));
      app.add_option("--save-fp8-calibration", a->save_fp8_calibration,
                     "--dtype fp8: write the activation scales used to this JSON file");
      app.add_flag("--fp8-compare", a->fp8_compare,
                   "--dtype fp8: after the timed runs, run the benchmark's first frame through "
                   "this FP8 engine and an fp16 (CUDA) / fp32 (CPU) backbone engine, both fresh, "
                   "and print the relative difference of the backbone output and the 513 tokens");
      app.add_option("--heads-dtype", a->heads_dtype,
                     "heads precision: fp32 (with a half backbone: the reference's mixed mode), "
                     "fp16, bf16")
          ->check(CLI::IsMember({"fp32", "fp16", "bf16"}));
      app.add_flag("--tf32", a->tf32, "let fp32 GEMMs use TF32");
      app.add_flag("--no-heads-graph", a->no_heads_graph,
                   "run the heads' device work eagerly every frame instead of replaying CUDA "
                   "graphs (for comparison)");
      app.add_flag("--heads-concurrent", a->heads_concurrent,
                   "experimental: replay the box and lane decoders' CUDA graphs concurrently on "
                   "two streams");
      app.add_option("--runs", a->runs, "timed runs")->check(CLI::Range(1, 100000));
      app.add_option("--warmup", a->warmup, "untimed runs first")->check(CLI::Range(0, 1000));
      app.add_option("--json", a->json, "write the results as JSON to this file");
      app.add_flag("--stages", a->stages,
                   "after the timed runs, run --runs more frames with stage marks (CUDA events, "
                   "no synchronisation between stages) and print each stage's GPU time, host "
                   "time and GPU work items, and the frame's GPU span vs host time");
      return [a]() {
        VisionEngineOptions opt;
        opt.device = a->device == "cuda" ? Device::CUDA : Device::CPU;
        opt.backbone_dtype = a->dtype == "fp16"   ? DType::F16
                             : a->dtype == "bf16" ? DType::BF16
                             : a->dtype == "fp8"  ? DType::F8E4M3
                                                  : DType::F32;
        const bool fp8 = opt.backbone_dtype == DType::F8E4M3;
        OMNIRT_CHECK(fp8 || (a->fp8_calibration.empty() && a->fp8_calibrate_scene.empty() &&
                             a->save_fp8_calibration.empty() && !a->fp8_compare),
                     "the --fp8-* options need --dtype fp8");
        OMNIRT_CHECK(a->fp8_calibration.empty() || a->fp8_calibrate_scene.empty(),
                     "give --fp8-calibration FILE or --fp8-calibrate-scene DIR, not both");
        opt.tf32 = a->tf32;
        opt.heads_dtype = a->heads_dtype == "fp16"   ? DType::F16
                          : a->heads_dtype == "bf16" ? DType::BF16
                                                     : DType::F32;
        opt.heads_cuda_graphs = !a->no_heads_graph;
        opt.heads_concurrent_decoders = a->heads_concurrent;
        const VisionConfig c =
            VisionConfig::from_file((std::filesystem::path(a->model) / "config.json").string());
        std::mt19937 rng(1234);
        std::normal_distribution<float> nd(0.f, 1.f);
        Tensor img_host = Tensor::empty({c.num_cams, 3, c.img_h, c.img_w}, DType::F32);
        for (int64_t i = 0; i < img_host.numel(); ++i) img_host.data<float>()[i] = nd(rng);
        std::string fp8_source;
        if (fp8) {
          if (!a->fp8_calibration.empty()) {
            opt.fp8_calibration = Fp8Calibration::load(a->fp8_calibration);
          } else if (!a->fp8_calibrate_scene.empty()) {
            opt.fp8_calibration = VisionEngine::calibrate_fp8(
                a->model, scene_frames(a->fp8_calibrate_scene, c, a->fp8_calibration_frames),
                opt.device, "scene " + a->fp8_calibrate_scene);
          } else {
            opt.fp8_calibration = VisionEngine::calibrate_fp8(
                a->model, {img_host}, opt.device, "omnirt bench vision's synthetic N(0,1) frame");
          }
          fp8_source = opt.fp8_calibration->source + " (" +
                       std::to_string(opt.fp8_calibration->frames) + " frames)";
          std::printf("FP8 calibration: %s\n", fp8_source.c_str());
          if (!a->save_fp8_calibration.empty()) {
            opt.fp8_calibration->save(a->save_fp8_calibration);
            std::printf("FP8 calibration saved to %s\n", a->save_fp8_calibration.c_str());
          }
        }
        auto engine = VisionEngine::load(a->model, opt);
        if (fp8)
          std::printf("FP8 backbone: %d linear layers in FP8 E4M3\n",
                      engine->backbone().fp8_layers());
        Tensor img = engine->input_dtype() == DType::F32
                         ? img_host
                         : img_host.to_dtype(engine->input_dtype());
        if (opt.device == Device::CUDA) img = img.to(Device::CUDA);
        std::vector<double> ms;
        ProgressBar bar("bench vision", a->warmup + a->runs);
        for (int i = 0; i < a->warmup + a->runs; ++i) {
          device_synchronize();
          auto t0 = std::chrono::steady_clock::now();
          auto r = engine->run(img, synthetic_geometry(c, i));
          (void)r;
          device_synchronize();
          auto t1 = std::chrono::steady_clock::now();
          if (i >= a->warmup) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
          bar.advance();
        }
        bar.finish();
        StageTimer stage_timer;
        if (a->stages) {
          // Separate runs, so that the marks (an event record each) do not touch the timed ones.
          stage_timer.activate();
          for (int i = 0; i < a->runs; ++i) {
            stage_timer.start();
            (void)engine->run(img, synthetic_geometry(c, a->warmup + a->runs + i));
            stage_timer.finish();
          }
          stage_timer.deactivate();
        }
        double fp8_backbone_diff = -1, fp8_tokens_diff = -1;
        std::string fp8_ref_name;
        if (a->fp8_compare) {
          VisionEngineOptions ref_opt = opt;
          ref_opt.backbone_dtype = opt.device == Device::CUDA ? DType::F16 : DType::F32;
          ref_opt.fp8_calibration.reset();
          fp8_ref_name = opt.device == Device::CUDA ? "fp16" : "fp32";
          auto ref = VisionEngine::load(a->model, ref_opt);
          Tensor ref_img = ref->input_dtype() == DType::F32 ? img_host
                                                             : img_host.to_dtype(ref->input_dtype());
          if (opt.device == Device::CUDA) ref_img = ref_img.to(Device::CUDA);
          auto fresh = VisionEngine::load(a->model, opt);  // same options and calibration
          VisionFrameResult r8 = fresh->run(img, synthetic_geometry(c, 0));
          VisionFrameResult rr = ref->run(ref_img, synthetic_geometry(c, 0));
          fp8_backbone_diff = rel_diff(r8.backbone, rr.backbone);
          fp8_tokens_diff = rel_diff(r8.heads.vision_tokens, rr.heads.vision_tokens);
        }
        const double p50 = percentile(ms, 0.5), p90 = percentile(ms, 0.9);
        const std::string gpu = opt.device == Device::CUDA ? cuda_device_description() : "cpu";
        std::printf("vision engine  device %s  backbone %s%s  heads %s  cameras %d x %dx%d\n",
                    gpu.c_str(), a->dtype.c_str(), a->tf32 ? " (tf32)" : "",
                    a->heads_dtype.c_str(), c.num_cams, c.img_h, c.img_w);
        if (opt.device == Device::CUDA)
          std::printf("heads CUDA graphs: %s%s (%zu nodes, %lld of %d frames replayed)\n",
                      engine->heads_graph_nodes() > 0 ? "on" : "off",
                      a->heads_concurrent ? ", box and lane concurrent" : "",
                      engine->heads_graph_nodes(),
                      static_cast<long long>(engine->heads_graph_replays()),
                      a->warmup + a->runs * (a->stages ? 2 : 1));
        std::printf("| metric | p50 ms | p90 ms | runs |\n| --- | --- | --- | --- |\n");
        std::printf("| vision frame (host wall clock, synchronised) | %.3f | %.3f | %d |\n", p50, p90,
                    a->runs);
        if (a->fp8_compare)
          std::printf("FP8 vs %s backbone, frame 0 (fresh engines): backbone output rel. diff %.3g, "
                      "vision tokens rel. diff %.3g\n",
                      fp8_ref_name.c_str(), fp8_backbone_diff, fp8_tokens_diff);
        nlohmann::json stages_json = nlohmann::json::array();
        if (a->stages) print_stages(stage_timer, stages_json);
        if (!a->json.empty()) {
          nlohmann::json j = {{"what", "vision_frame"}, {"device", gpu},        {"dtype", a->dtype}, {"heads_dtype", a->heads_dtype},
                              {"tf32", a->tf32},        {"p50_ms", p50},        {"p90_ms", p90},
                              {"runs", a->runs},        {"commit", omnirt::git_commit()}, {"samples_ms", ms}};
          if (a->stages) j["stages"] = stages_json;
          if (fp8) j["fp8_calibration"] = fp8_source;
          if (a->fp8_compare) {
            j["fp8_compare_reference"] = fp8_ref_name;
            j["fp8_backbone_rel_diff"] = fp8_backbone_diff;
            j["fp8_tokens_rel_diff"] = fp8_tokens_diff;
          }
          j["heads_cuda_graph_nodes"] = engine->heads_graph_nodes();
          j["heads_cuda_graph_replays"] = engine->heads_graph_replays();
          j["heads_concurrent_decoders"] = a->heads_concurrent;
          std::ofstream(a->json) << j.dump(2) << "\n";
        }
        return 0;
      };
    });

}  // namespace
