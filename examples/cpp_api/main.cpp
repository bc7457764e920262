// Runs a scene folder through a model with the OmniDrive-RT library and prints each frame's
// result: the boxes, lanes, planner answer and trajectory, and the timings.
//
//   omnirt_example MODEL_DIR SCENE_DIR [--cpu] [--greedy] [--max-new N] [--max-frames N]
//
// The first frame also goes in a second time with its camera images decoded by the caller (RGB
// buffers instead of file paths), to show that input form; it starts a new scene (reset()).
#include <omnirt/omnirt.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

void print_result(const omnirt::FrameResult& r) {
  std::printf("frame %d (%s): %zu boxes, %zu lanes%s\n", r.index, r.token.c_str(),
              r.boxes.size(), r.lanes.size(), r.memory_reset ? " [memory reset]" : "");
  for (size_t i = 0; i < r.boxes.size() && i < 3; ++i) {
    const omnirt::Box& b = r.boxes[i];
    std::printf("  box %-12s score %.3f  centre (%.2f, %.2f, %.2f) m  size %.2f x %.2f x %.2f m\n",
                b.label_name.c_str(), b.score, b.center[0], b.center[1], b.center[2],
                b.size_wlh[0], b.size_wlh[1], b.size_wlh[2]);
  }
  std::printf("  answer (%d tokens, stop: %s): %.120s%s\n", r.new_tokens, r.stop_reason.c_str(),
              r.answer.c_str(), r.answer.size() > 120 ? "..." : "");
  if (r.trajectory.empty()) {
    std::printf("  trajectory: none (%s)\n", r.trajectory_error.c_str());
  } else {
    std::printf("  trajectory:");
    for (const auto& w : r.trajectory) std::printf(" (%.2f, %.2f)", w[0], w[1]);
    std::printf("\n");
  }
  const omnirt::Timings& t = r.timings;
  std::printf("  timings: prepare %.1f ms, vision %.1f ms, TTFT %.1f ms, TPOT %.2f ms, total %.1f ms\n",
              t.prepare_ms, t.vision_ms, t.ttft_ms, t.tpot_ms, t.total_ms);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR SCENE_DIR [--cpu] [--greedy] [--max-new N] "
                 "[--max-frames N]\n", argv[0]);
    return 1;
  }
  omnirt::ModelOptions opt;
  int max_frames = -1;
  for (int i = 3; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--cpu")) opt.device = omnirt::Backend::kCpu;
    else if (!std::strcmp(argv[i], "--greedy")) opt.greedy = true;
    else if (!std::strcmp(argv[i], "--max-new") && i + 1 < argc) opt.max_new_tokens = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--max-frames") && i + 1 < argc) max_frames = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 1;
    }
  }
  try {
    omnirt::Model model(argv[1], opt);
    std::printf("omnirt %s: %s%s\n", omnirt::version(), model.description().c_str(),
                model.random_weights() ? " (random weights: boxes and text are meaningless)" : "");
    const omnirt::Scene scene = omnirt::load_scene(argv[2], model.camera_names());
    std::printf("scene %s: %zu usable frames\n", scene.name.c_str(), scene.frames.size());
    for (const std::string& e : scene.errors) std::printf("skipped: %s\n", e.c_str());
    int done = 0;
    for (const omnirt::Frame& f : scene.frames) {
      if (max_frames >= 0 && done >= max_frames) break;
      print_result(model.run(f));
      ++done;
    }
    if (scene.frames.empty()) return 2;

    // The same first frame from RGB buffers (a real caller has them from its camera driver;
    // here decode_image fills them from the files).
    omnirt::Frame f = scene.frames[0];
    for (omnirt::CameraInput& cam : f.cameras) omnirt::decode_image(cam);
    std::printf("first frame again, from RGB buffers (new scene):\n");
    model.reset();
    print_result(model.run(f));
    return 0;
  } catch (const omnirt::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
