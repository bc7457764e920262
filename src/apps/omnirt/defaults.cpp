#include "apps/omnirt/defaults.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "core/error.h"

namespace omnirt::cli {

namespace fs = std::filesystem;

namespace {
// The first of `rels` found under the executable's folder or one of its parents.
std::string find_near_executable(std::initializer_list<const char*> rels) {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  for (int up = 0; up < 4 && !p.empty(); ++up) {
    p = p.parent_path();
    for (const char* rel : rels)
      if (fs::exists(p / rel, ec)) return (p / rel).string();
  }
  return "";
}
}  // namespace

std::string find_exporter() {
  if (const char* env = std::getenv("OMNIRT_PYTHON_DIR")) return std::string(env) + "/omnidrive_export.py";
  return find_near_executable(
      {"python/omnidrive_export.py", "share/omnirt/python/omnidrive_export.py"});
}

std::string find_sample_scene() {
  const std::string json = find_near_executable({"examples/sample_scene/scene.json"});
  return json.empty() ? "" : fs::path(json).parent_path().string();
}

std::string default_model(bool cuda, std::string& note) {
  const char* home = std::getenv("HOME");
  const std::string size = cuda ? "full" : "tiny";
  const fs::path dir = fs::path(home ? home : ".") / ".cache/omnirt/models" / ("random-" + size);
  note = "no --model given: using the default random-" + size + " checkpoint " + dir.string() +
         (cuda ? "" : " (tiny model on the CPU: the full-size model is too slow there; pass "
                      "--model DIR for another)");
  std::error_code ec;
  if (fs::is_regular_file(dir / "config.json", ec)) return dir.string();
  const std::string exporter = find_exporter();
  OMNIRT_CHECK(!exporter.empty(), "default model ", dir.string(),
               " does not exist and python/omnidrive_export.py was not found to create it (set "
               "OMNIRT_PYTHON_DIR or pass --model DIR)");
  fs::create_directories(dir.parent_path());
  const std::string cmd = "python3 '" + exporter + "' --random " + size + " --seed 0 --out '" +
                          dir.string() + "'";
  std::fprintf(stderr, "creating the default model (once): %s\n", cmd.c_str());
  OMNIRT_CHECK(std::system(cmd.c_str()) == 0 && fs::is_regular_file(dir / "config.json", ec),
               "creating the default model failed: ", cmd,
               " (the Python dependencies come from scripts/setup.sh)");
  return dir.string();
}

}  // namespace omnirt::cli
