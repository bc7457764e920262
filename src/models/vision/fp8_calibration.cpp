#include "models/vision/fp8_calibration.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"

namespace omnirt::vision {

namespace {
constexpr const char* kFormat = "omnirt-fp8-calibration";
constexpr int kVersion = 1;
}  // namespace

std::vector<std::string> Fp8Calibration::gemm_inputs(const VisionConfig& cfg) {
  std::vector<std::string> names{"patch_embed"};
  for (int i = 0; i < cfg.depth; ++i)
    for (const char* g : {"qkv", "proj", "w12", "w3"})
      names.push_back("blocks." + std::to_string(i) + "." + g);
  return names;
}

float Fp8Calibration::amax(const std::string& name) const {
  auto it = input_amax.find(name);
  OMNIRT_CHECK(it != input_amax.end(), "FP8 calibration (", source, "): no amax for GEMM input '",
               name, "'");
  return it->second;
}

void Fp8Calibration::check_matches(const VisionConfig& cfg, const std::string& what) const {
  OMNIRT_CHECK(embed_dim == cfg.embed_dim && depth == cfg.depth, what, ": the FP8 calibration (",
               source, ") was made for a backbone with embed_dim ", embed_dim, " and depth ", depth,
               ", this one has ", cfg.embed_dim, " and ", cfg.depth);
  OMNIRT_CHECK(frames > 0, what, ": the FP8 calibration (", source, ") saw no frames");
  for (const std::string& name : gemm_inputs(cfg)) {
    const float a = amax(name);
    OMNIRT_CHECK(std::isfinite(a) && a >= 0.f, what, ": the FP8 calibration (", source,
                 ") has amax ", a, " for '", name, "' (must be finite; NaN/inf in a frame?)");
  }
}

void Fp8Calibration::save(const std::string& path) const {
  nlohmann::json j;
  j["format"] = kFormat;
  j["version"] = kVersion;
  j["frames"] = frames;
  j["source"] = source;
  j["embed_dim"] = embed_dim;
  j["depth"] = depth;
  j["note"] = "max |input| of each FP8 GEMM of the EVA backbone; scale = amax / 448";
  j["input_amax"] = input_amax;
  std::ofstream out(path);
  OMNIRT_CHECK(out, "cannot write the FP8 calibration to ", path);
  out << j.dump(2) << "\n";
  OMNIRT_CHECK(out.good(), "writing the FP8 calibration to ", path, " failed");
}

Fp8Calibration Fp8Calibration::load(const std::string& path) {
  std::ifstream in(path);
  OMNIRT_CHECK(in, "cannot open the FP8 calibration file ", path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    OMNIRT_FAIL(path, ": not valid JSON: ", e.what());
  }
  OMNIRT_CHECK(j.is_object() && j.value("format", "") == kFormat, path,
               ": not an FP8 calibration file (\"format\" must be \"", kFormat, "\")");
  OMNIRT_CHECK(j.value("version", 0) == kVersion, path, ": FP8 calibration version ",
               j.value("version", 0), ", this build reads version ", kVersion);
  Fp8Calibration c;
  try {
    c.frames = j.at("frames").get<int>();
    c.source = j.value("source", path);
    c.embed_dim = j.at("embed_dim").get<int>();
    c.depth = j.at("depth").get<int>();
    for (const auto& [name, v] : j.at("input_amax").items()) {
      OMNIRT_CHECK(v.is_number(), path, ": input_amax.", name, " must be a number, got ", v.dump());
      c.input_amax[name] = v.get<float>();
    }
  } catch (const nlohmann::json::exception& e) {
    OMNIRT_FAIL(path, ": bad FP8 calibration field: ", e.what());
  }
  return c;
}

}  // namespace omnirt::vision
