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

const char* const kVisionDtypeHelp =
    "vision backbone precision: fp32, fp16, bf16 (default fp16 on cuda, fp32 on cpu)";
const char* const kVisionHeadsHelp =
    "vision heads precision: fp32 (exact), tf32 (fp32 with TF32 GEMMs and attention), fp16 or "
    "bf16 (cuda); default tf32 on cuda under a half backbone (the reference deployment's mixed "
    "engine), else fp32";

void set_vision_precision(bool cuda, const std::string& backbone, const std::string& heads,
                          pipeline::EngineOptions& eo) {
  const std::string vd = backbone == "auto" ? (cuda ? "fp16" : "fp32") : backbone;
  eo.vision_dtype = vd == "fp16" ? DType::F16 : vd == "bf16" ? DType::BF16 : DType::F32;
  OMNIRT_CHECK(cuda || eo.vision_dtype == DType::F32, "--vision-dtype ", vd,
               ": the CPU backend runs fp32 only");
  const bool half_backbone = eo.vision_dtype != DType::F32;
  const std::string vh = heads == "auto" ? (cuda && half_backbone ? "tf32" : "fp32") : heads;
  eo.vision_heads_dtype = vh == "fp16" ? DType::F16 : vh == "bf16" ? DType::BF16 : DType::F32;
  OMNIRT_CHECK(cuda || (vh == "fp32"), "--vision-heads ", vh, ": the CPU backend runs fp32 only");
  eo.vision_tf32 = vh == "tf32";
}

}  // namespace omnirt::cli
