// `omnirt run`: a scene through the model, frame by frame, in order. The next frame is decoded
// and pre-processed on a worker thread while the engines run the current one; each frame's
// JSON (and pictures with viz) is written atomically as soon as the frame is done, so an
// interrupted run keeps every finished frame intact.
#pragma once

#include <cstdio>
#include <string>

#include "pipeline/engines.h"

namespace omnirt::pipeline {

inline constexpr const char* kRandomWeightsWarning =
    "random weights: boxes and text are meaningless";

struct RunOptions {
  std::string scene;      // folder with scene.json
  std::string model_dir;  // checkpoint folder (recorded in the outputs)
  std::string out_dir;    // created if missing
  bool viz = false;
  bool json_stdout = false;  // one JSON line per frame on stdout (human lines go to stderr)
  bool random_weights = false;
  std::string model_note;  // extra line for the console and summary (e.g. default model choice)
  int max_frames = -1;     // -1: all
};

struct RunSummary {
  int frames = 0, ok = 0, failed = 0;
};

// Reads the checkpoint's config.json and says whether it holds random weights (the exporter's
// "source": {"random": ...} or "llm_weights": "random").
bool checkpoint_has_random_weights(const std::string& model_dir);

// Writes `text` to `path` via a temporary file + rename (readers never see a partial file).
void write_text_atomic(const std::string& path, const std::string& text);

RunSummary run_scene(const RunOptions& opt, ModelEngines& engines);

}  // namespace omnirt::pipeline
