// `omnirt parity SCENE --model DIR`: the engines at chosen precisions against the float32
// reference over a scene's frames: the reference deployment's accuracy table (vision x LLM
// precision -> mAP, NDS, L2, collision) and the drift of each stage (docs/parity.md).
// Exit code: 0 done, 2 some rows failed (their rows say why), 1 bad input or the reference
// failed.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "apps/omnirt/command.h"
#include "core/device.h"
#include "core/error.h"
#include "pipeline/parity.h"
#include "pipeline/runner.h"

namespace {

namespace fs = std::filesystem;

omnirt::cli::Command parity_cmd(
    "parity",
    "Engines at chosen precisions vs the fp32 reference: accuracy table (mAP, L2, collision) and "
    "per-stage drift",
    [](CLI::App& sub) {
      struct Args {
        std::string scene, model, device, ref_device, vision, llm, gt, out;
        int frames = -1, max_new = 320;
        bool json = false, no_filter = false;
      };
      auto a = std::make_shared<Args>();
      sub.add_option("scene", a->scene, "scene folder with scene.json (docs/scene_format.md)")
          ->required();
      sub.add_option("--model", a->model, "checkpoint folder (docs/checkpoint_format.md)")
          ->required();
      sub.add_option("--device", a->device,
                     "cpu or cuda: where the engines run (default: cuda "
                     "when present)")
          ->check(CLI::IsMember({"cpu", "cuda"}));
      sub.add_option("--reference-device", a->ref_device,
                     "cpu or cuda: where the fp32 reference runs (default: --device)")
          ->check(CLI::IsMember({"cpu", "cuda"}));
      sub.add_option("--vision", a->vision,
                     "vision precisions, comma-separated subset of fp32,tf32,fp16,bf16 "
                     "(default: all four on cuda, fp32 on cpu)");
      sub.add_option("--llm", a->llm,
                     "LLM precisions, comma-separated subset of fp32,fp16,bf16 (default: all "
                     "three on cuda, fp32 on cpu)");
      sub.add_option("--frames", a->frames, "use the first N frames (default: all)");
      sub.add_option("--gt", a->gt,
                     "ground truth (scene ground_truth.json or `omnirt eval` layout; default: "
                     "SCENE/ground_truth.json when present)");
      sub.add_option("--max-new", a->max_new, "most new tokens per answer")
          ->check(CLI::Range(1, 2048))
          ->capture_default_str();
      sub.add_flag("--no-filter", a->no_filter,
                   "detection: skip the devkit's class-range / num_pts / bike-rack filter");
      sub.add_flag("--json", a->json, "print the results as JSON on stdout (progress on stderr)");
      sub.add_option("--out", a->out,
                     "also write parity.json and each row's predictions (`omnirt eval --pred` "
                     "layout) to this folder");
      return [a]() -> int {
        using namespace omnirt;
        try {
          const bool cuda = a->device.empty() ? cuda_available() : a->device == "cuda";
          OMNIRT_CHECK(!cuda || cuda_available(),
                       "--device cuda: no CUDA device (or this build has no CUDA backend)");
          const bool ref_cuda = a->ref_device.empty() ? cuda : a->ref_device == "cuda";
          OMNIRT_CHECK(!ref_cuda || cuda_available(),
                       "--reference-device cuda: no CUDA device (or this build has no CUDA "
                       "backend)");
          pipeline::ParityOptions po;
          po.scene = a->scene;
          po.model_dir = a->model;
          po.device = cuda ? Device::CUDA : Device::CPU;
          po.reference_device = ref_cuda ? Device::CUDA : Device::CPU;
          po.vision = pipeline::parse_precisions(
              a->vision.empty() ? (cuda ? "fp32,tf32,fp16,bf16" : "fp32") : a->vision, true,
              po.device, "--vision");
          po.llm = pipeline::parse_precisions(
              a->llm.empty() ? (cuda ? "fp32,fp16,bf16" : "fp32") : a->llm, false, po.device,
              "--llm");
          OMNIRT_CHECK(a->frames == -1 || a->frames >= 1, "--frames ", a->frames,
                       ": expected a positive number of frames");
          po.frames = a->frames;
          po.max_new_tokens = a->max_new;
          po.filter_boxes = !a->no_filter;
          std::error_code ec;
          OMNIRT_CHECK(fs::is_regular_file(fs::path(a->model) / "config.json", ec), "--model ",
                       a->model, ": no config.json there (expected a checkpoint folder)");
          if (!a->gt.empty()) {
            OMNIRT_CHECK(fs::is_regular_file(a->gt, ec), "--gt ", a->gt,
                         ": ground-truth file not found");
            po.gt_path = a->gt;
          } else {
            const fs::path dir = fs::is_directory(a->scene, ec) ? fs::path(a->scene)
                                                                : fs::path(a->scene).parent_path();
            if (fs::is_regular_file(dir / "ground_truth.json", ec))
              po.gt_path = (dir / "ground_truth.json").string();
          }
          po.random_weights = pipeline::checkpoint_has_random_weights(a->model);

          const pipeline::ParityResult r = pipeline::run_parity(po, stderr);
          const nlohmann::json j = pipeline::parity_to_json(r);
          const auto dump = [](const nlohmann::json& v, int indent) {
            return v.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
          };
          if (!a->out.empty()) {
            fs::create_directories(a->out);
            pipeline::write_text_atomic((fs::path(a->out) / "parity.json").string(),
                                        dump(j, 1) + "\n");
            auto write_pred = [&](const pipeline::ParityRow& row) {
              const std::string v =
                  row.vision >= 0 ? r.vision[size_t(row.vision)].name : "reference";
              const std::string l = row.llm >= 0 ? r.llm[size_t(row.llm)].name : "reference";
              const std::string name = row.vision >= 0
                                           ? "predictions_vision-" + v + "_llm-" + l + ".json"
                                           : "predictions_reference.json";
              pipeline::write_text_atomic((fs::path(a->out) / name).string(),
                                          dump(row.predictions, 1) + "\n");
            };
            write_pred(r.reference);
            for (const auto& row : r.rows) write_pred(row);
          }
          if (a->json) {
            std::printf("%s\n", dump(j, 1).c_str());
          } else {
            std::fputs(pipeline::format_parity(r).c_str(), stdout);
          }
          std::fflush(stdout);
          if (r.failed_rows > 0)
            std::fprintf(stderr, "omnirt parity: %d of %zu rows failed (their rows say why)\n",
                         r.failed_rows, r.rows.size());
          return r.failed_rows > 0 ? 2 : 0;
        } catch (const std::exception& e) {
          std::fprintf(stderr, "omnirt parity: %s\n", e.what());
          return 1;
        }
      };
    });

}  // namespace
