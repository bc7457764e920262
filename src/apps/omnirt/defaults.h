// Defaults shared by `omnirt run` and `omnirt bench e2e`: the default random checkpoint and the
// bundled sample scene, both found relative to the omnirt executable.
#pragma once

#include <string>

namespace omnirt::cli {

// python/omnidrive_export.py next to this build (or $OMNIRT_PYTHON_DIR), "" when not found.
std::string find_exporter();
// examples/sample_scene next to this build (walking up from the executable), "" when not found.
std::string find_sample_scene();
// The default model: random full-size on a GPU, random tiny on the CPU (the full model takes
// minutes per frame there), under ~/.cache/omnirt/models; created on first use with the Python
// exporter. `note` says which one was chosen, for the console and the outputs.
std::string default_model(bool cuda, std::string& note);

}  // namespace omnirt::cli
