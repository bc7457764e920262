// `omnirt run SCENE`: the whole model over a scene (docs/scene_format.md), per-frame JSON (and
// pictures with --viz) in the output folder. Exit code: 0 all frames ok, 2 some frames failed
// (their JSON says why), 1 the run could not start.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "apps/omnirt/command.h"
#include "apps/omnirt/defaults.h"
#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "pipeline/engines.h"
#include "pipeline/runner.h"

namespace {

namespace fs = std::filesystem;

using omnirt::cli::default_model;
using omnirt::cli::kVisionDtypeHelp;
using omnirt::cli::kVisionHeadsHelp;
using omnirt::cli::set_vision_precision;

omnirt::cli::Command run_cmd(
    "run", "Run the model over a scene folder: boxes, lanes, planner text and trajectory per frame",
    [](CLI::App& sub) {
      struct Args {
        std::string scene, model, out, device, vision_dtype = "auto", vision_heads = "auto";
        bool greedy = false, viz = false, json = false;
        int max_new = 320, max_frames = -1;
        uint64_t seed = 0;
      };
      auto a = std::make_shared<Args>();
      sub.add_option("scene", a->scene, "scene folder with scene.json (docs/scene_format.md)")
          ->required();
      sub.add_option("--model", a->model,
                     "checkpoint folder (default: a random checkpoint under ~/.cache/omnirt, "
                     "full size on a GPU, tiny on the CPU)");
      sub.add_option("--out", a->out, "output folder (default: omnirt_run_<scene name>)");
      sub.add_option("--device", a->device, "cpu or cuda (default: cuda when present)")
          ->check(CLI::IsMember({"cpu", "cuda"}));
      sub.add_option("--vision-dtype", a->vision_dtype, kVisionDtypeHelp)
          ->check(CLI::IsMember({"auto", "fp32", "fp16", "bf16"}));
      sub.add_option("--vision-heads", a->vision_heads, kVisionHeadsHelp)
          ->check(CLI::IsMember({"auto", "fp32", "tf32", "fp16", "bf16"}));
      sub.add_flag("--greedy", a->greedy, "argmax decoding (default: OmniDrive's sampling)");
      sub.add_option("--max-new", a->max_new, "most new tokens per answer")->check(CLI::Range(1, 2048));
      sub.add_option("--seed", a->seed, "sampling seed");
      sub.add_option("--max-frames", a->max_frames, "run only the first N frames");
      sub.add_flag("--viz", a->viz, "write BEV and camera pictures (PNG) per frame + contact sheet");
      sub.add_flag("--json", a->json, "print each frame's JSON on stdout (messages go to stderr)");
      return [a]() -> int {
        using namespace omnirt;
        try {
          const bool cuda = a->device.empty() ? cuda_available() : a->device == "cuda";
          OMNIRT_CHECK(!cuda || cuda_available(), "--device cuda: no CUDA device (or this build "
                       "has no CUDA backend)");
          pipeline::EngineOptions eo;
          eo.device = cuda ? Device::CUDA : Device::CPU;
          set_vision_precision(cuda, a->vision_dtype, a->vision_heads, eo);
          eo.greedy = a->greedy;
          eo.max_new_tokens = a->max_new;
          eo.seed = a->seed;

          pipeline::RunOptions ro;
          ro.scene = a->scene;
          ro.model_dir = a->model.empty() ? default_model(cuda, ro.model_note) : a->model;
          ro.random_weights = pipeline::checkpoint_has_random_weights(ro.model_dir);
          std::string scene_name = fs::path(a->scene).filename().string();
          if (scene_name.empty()) scene_name = fs::path(a->scene).parent_path().filename().string();
          ro.out_dir = a->out.empty() ? "omnirt_run_" + scene_name : a->out;
          ro.viz = a->viz;
          ro.json_stdout = a->json;
          ro.max_frames = a->max_frames;
          auto engines = pipeline::ModelEngines::load(ro.model_dir, eo);
          const auto sum = pipeline::run_scene(ro, *engines);
          return sum.failed > 0 ? 2 : 0;
        } catch (const std::exception& e) {
          std::fprintf(stderr, "omnirt run: %s\n", e.what());
          return 1;
        }
      };
    });

}  // namespace
