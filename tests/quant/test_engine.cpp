// `omnirt build` engine folders: building the tiny checkpoint in every precision, reading the
// weights back against the checkpoint, and the manifest validation's errors.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "io/safetensors.h"
#include "quant/engine.h"
#include "quant/int4.h"

namespace omnirt {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using quant::build_engine;
using quant::BuildOptions;
using quant::load_engine_manifest;
using quant::RuntimeCaps;

const std::string kTiny = std::string(OMNIRT_TEST_DATA_DIR) + "/tiny_ckpt";
const RuntimeCaps kCpu{Device::CPU, 0};
const RuntimeCaps kSm90{Device::CUDA, 90};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    tmp_ = fs::temp_directory_path() /
           ("omnirt_engine_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }

  std::string build(const std::string& llm, const std::string& arch = "sm_90") {
    const std::string out = (tmp_ / ("engine_" + llm)).string();
    BuildOptions o;
    o.model_dir = kTiny;
    o.out_dir = out;
    o.llm_precision = llm;
    o.gpu_arch = arch;
    build_engine(o);
    return out;
  }
  json read_manifest(const std::string& dir) {
    std::ifstream in(fs::path(dir) / "manifest.json");
    return json::parse(in);
  }
  void write_manifest(const std::string& dir, const json& j) {
    std::ofstream(fs::path(dir) / "manifest.json") << j.dump(2);
  }
  fs::path tmp_;
};

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected an omnirt::Error";
  } catch (const Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "missing '" << p << "' in: " << e.what();
  }
}

TEST_F(EngineTest, FloatPrecisionsConvertEveryLlmTensorAndRecordTheManifest) {
  const SafetensorsFile src = SafetensorsFile::open(kTiny + "/llm.safetensors");
  for (auto [prec, dtype] : std::vector<std::pair<std::string, DType>>{
           {"fp32", DType::F32}, {"fp16", DType::F16}, {"bf16", DType::BF16}}) {
    SCOPED_TRACE(prec);
    const std::string dir = build(prec);
    const auto m = load_engine_manifest(dir, kSm90);
    EXPECT_EQ(m.format_version, quant::kEngineFormatVersion);
    EXPECT_EQ(m.llm_precision, prec);
    EXPECT_EQ(m.vision_precision, "fp32");
    EXPECT_EQ(m.gpu_arch, "sm_90");
    EXPECT_EQ(m.group_size, 0);
    EXPECT_TRUE(m.calibration.empty());
    EXPECT_EQ(m.source_config_hash.size(), 16u);
    EXPECT_EQ(m.source_files.at("llm.safetensors"), fs::file_size(kTiny + "/llm.safetensors"));
    EXPECT_EQ(m.files.size(), 4u);
    for (const char* f : {"config.json", "vision.safetensors", "tokenizer.model"})
      EXPECT_EQ(m.files.at(f), fs::file_size(fs::path(kTiny) / f)) << f;
    const json j = read_manifest(dir);
    EXPECT_TRUE(j.at("calibration").is_null());
    EXPECT_FALSE(j.at("built_at").get<std::string>().empty());

    const SafetensorsFile eng = SafetensorsFile::open(dir + "/llm.safetensors");
    ASSERT_EQ(eng.names(), src.names());
    // Rounding one value to fp16/bf16 has relative error <= 2^-11 / 2^-8.
    const double tol = dtype == DType::F32 ? 0.0 : dtype == DType::F16 ? 1.0 / 2048 : 1.0 / 256;
    for (const auto& n : src.names()) {
      ASSERT_EQ(eng.info(n).dtype, dtype) << n;
      const Tensor a = src.get(n), b = eng.get(n).to_dtype(DType::F32);
      ASSERT_EQ(a.shape(), b.shape()) << n;
      for (int64_t i = 0; i < a.numel(); ++i) {
        const float x = a.data<float>()[i], y = b.data<float>()[i];
        ASSERT_LE(std::fabs(x - y), tol * std::fabs(x) + 1e-7) << n << "[" << i << "]";
      }
    }
  }
}

void check_int4_engine(const std::string& dir, int64_t group_size) {
  const SafetensorsFile src = SafetensorsFile::open(kTiny + "/llm.safetensors");
  const SafetensorsFile eng = SafetensorsFile::open(dir + "/llm.safetensors");
  int quantised = 0;
  for (const auto& n : src.names()) {
    const Tensor w = src.get(n);
    const bool linear = n.find("_proj.weight") != std::string::npos;
    if (!linear) {
      // Embeddings, norms and lm_head stay in fp16.
      ASSERT_EQ(eng.info(n).dtype, DType::F16) << n;
      continue;
    }
    ASSERT_FALSE(eng.contains(n)) << n << " should be replaced by .qweight/.scales";
    const std::string module = n.substr(0, n.size() - 7);
    const Tensor q = eng.get(module + ".qweight"), s = eng.get(module + ".scales");
    const int64_t k = w.dim(1), g = group_size == 0 ? k : group_size;
    ASSERT_EQ(q.dtype(), DType::U8);
    ASSERT_EQ(q.shape(), (Shape{w.dim(0), k / 2})) << n;
    ASSERT_EQ(s.shape(), (Shape{w.dim(0), k / g})) << n;
    const Tensor d = quant::dequantize_int4(q, s, module);
    for (int64_t r = 0; r < w.dim(0); ++r)
      for (int64_t c = 0; c < k; ++c) {
        const double scale = s.data<float>()[r * (k / g) + c / g];
        const double err = std::fabs(d.data<float>()[r * k + c] - w.data<float>()[r * k + c]);
        ASSERT_GT(scale, 0.0);
        ASSERT_LE(err, scale / 2 * (1 + 1e-5)) << n << " [" << r << ", " << c << "]";
      }
    ++quantised;
  }
  EXPECT_EQ(quantised, 2 * 7);  // 2 layers x q/k/v/o/gate/up/down
}

TEST_F(EngineTest, Int4PerChannelDequantisesWithinHalfScaleOfTheCheckpoint) {
  const std::string dir = build("int4");
  const auto m = load_engine_manifest(dir, kCpu);
  EXPECT_EQ(m.llm_precision, "int4");
  EXPECT_EQ(m.group_size, 0);
  EXPECT_EQ(m.llm_other_dtype, "F16");
  check_int4_engine(dir, 0);
}

TEST_F(EngineTest, Int4GroupwiseDequantisesWithinHalfScaleOfTheCheckpoint) {
  // The tiny model's K (64 and 160) is not a multiple of 128: group 32 here.
  const std::string dir = build("int4-g32");
  const auto m = load_engine_manifest(dir, kCpu);
  EXPECT_EQ(m.group_size, 32);
  EXPECT_EQ(read_manifest(dir).at("group_size"), 32);
  check_int4_engine(dir, 32);
}

TEST_F(EngineTest, Int4G128OnTheTinyModelSaysWhichTensorDoesNotFit) {
  expect_error([&] { build("int4-g128"); },
               {"llm.safetensors: model.layers.0.", "not a multiple of the INT4 group size 128"});
  // Nothing that looks like a valid engine is left behind.
  EXPECT_FALSE(fs::exists(tmp_ / "engine_int4-g128" / "manifest.json"));
}

TEST_F(EngineTest, BadBuildOptionsGiveClearErrors) {
  expect_error([&] { build("int3"); }, {"unknown LLM precision \"int3\""});
  expect_error([&] { build("int4-g7"); }, {"unknown LLM precision \"int4-g7\""});
  expect_error([&] { build("fp16", "hopper"); }, {"unknown GPU architecture \"hopper\""});
  BuildOptions o;
  o.model_dir = (tmp_ / "nope").string();
  o.out_dir = (tmp_ / "e").string();
  expect_error([&] { build_engine(o); }, {"checkpoint folder", "nope", "does not exist"});
}

TEST_F(EngineTest, MissingManifestNamesTheFile) {
  expect_error([&] { load_engine_manifest(tmp_.string(), kCpu); },
               {(tmp_ / "manifest.json").string(), "not found", "omnirt build"});
}

TEST_F(EngineTest, TruncatedOrCorruptManifestIsReported) {
  const std::string dir = build("fp16");
  const fs::path mp = fs::path(dir) / "manifest.json";
  std::ifstream in(mp);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  std::ofstream(mp, std::ios::trunc) << text.substr(0, text.size() / 2);
  expect_error([&] { load_engine_manifest(dir, kCpu); }, {mp.string(), "corrupt manifest"});
  std::ofstream(mp, std::ios::trunc) << "[1, 2]";
  expect_error([&] { load_engine_manifest(dir, kCpu); }, {"corrupt manifest", "JSON object"});
  json j = json::parse(text);
  j.erase("gpu_arch");
  write_manifest(dir, j);
  expect_error([&] { load_engine_manifest(dir, kCpu); }, {"missing field \"gpu_arch\""});
  j = json::parse(text);
  j["files"] = "x";
  write_manifest(dir, j);
  expect_error([&] { load_engine_manifest(dir, kCpu); }, {"field \"files\" has the wrong type"});
}

TEST_F(EngineTest, UnsupportedFormatVersionIsReported) {
  const std::string dir = build("fp16");
  json j = read_manifest(dir);
  j["format_version"] = 99;
  write_manifest(dir, j);
  expect_error([&] { load_engine_manifest(dir, kCpu); },
               {"format_version 99 is not supported", "rebuild"});
}

TEST_F(EngineTest, MissingOrResizedEngineFileIsReported) {
  const std::string dir = build("fp16");
  const fs::path vision = fs::path(dir) / "vision.safetensors";
  fs::remove(vision);
  expect_error([&] { load_engine_manifest(dir, kCpu); },
               {vision.string(), "is missing", "rebuild"});
  fs::copy_file(fs::path(kTiny) / "vision.safetensors", vision);
  EXPECT_NO_THROW(load_engine_manifest(dir, kCpu));
  {
    std::ofstream f(fs::path(dir) / "tokenizer.model", std::ios::app | std::ios::binary);
    f << "x";
  }
  expect_error([&] { load_engine_manifest(dir, kCpu); },
               {"tokenizer.model has", "bytes but", "records", "rebuild"});
}

TEST_F(EngineTest, UnknownPrecisionIsReported) {
  const std::string dir = build("fp16");
  json j = read_manifest(dir);
  j["precisions"]["llm"] = "int2";
  write_manifest(dir, j);
  expect_error([&] { load_engine_manifest(dir, kCpu); }, {"unknown LLM precision \"int2\""});
  j["precisions"]["llm"] = "fp16";
  j["precisions"]["vision"] = "fp8";
  write_manifest(dir, j);
  expect_error([&] { load_engine_manifest(dir, kCpu); }, {"unknown vision precision \"fp8\""});
  j["precisions"]["vision"] = "fp32";
  j["group_size"] = 64;
  write_manifest(dir, j);
  expect_error([&] { load_engine_manifest(dir, kCpu); },
               {"group_size 64 does not match the LLM precision fp16"});
}

TEST_F(EngineTest, ArchMismatchSaysWhatToRebuild) {
  const std::string dir = build("fp16", "sm_100");
  expect_error([&] { load_engine_manifest(dir, kSm90); },
               {"built for sm_100; this GPU is sm_90", "rebuild with omnirt build", "--arch sm_90",
                "--llm fp16"});
  EXPECT_NO_THROW(load_engine_manifest(dir, RuntimeCaps{Device::CUDA, 100}));
  EXPECT_NO_THROW(load_engine_manifest(dir, kCpu));  // the CPU path runs any engine
}

TEST_F(EngineTest, Int4OnCudaIsAccepted) {  // the CUDA decode GEMVs read INT4 (quant_gemv.h)
  const std::string dir = build("int4");
  const auto m = load_engine_manifest(dir, kSm90);
  EXPECT_EQ(m.llm_precision, "int4");
}

int run_cli(const std::string& args, std::string* output) {
  const fs::path log = fs::temp_directory_path() / ("omnirt_build_cli_" + std::to_string(getpid()));
  const std::string cmd =
      std::string(OMNIRT_CLI_PATH) + " " + args + " > '" + log.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream in(log);
  output->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  fs::remove(log);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST_F(EngineTest, CliBuildsAnEngineAndReportsBadPrecision) {
  std::string out;
  const std::string dir = (tmp_ / "cli_engine").string();
  ASSERT_EQ(run_cli("build '" + kTiny + "' --out '" + dir + "' --llm int4 --arch sm_90", &out), 0)
      << out;
  EXPECT_NE(out.find("llm int4"), std::string::npos) << out;
  const auto m = load_engine_manifest(dir, kCpu);
  EXPECT_EQ(m.llm_precision, "int4");
  EXPECT_NE(run_cli("build '" + kTiny + "' --out '" + dir + "' --llm int5", &out), 0);
  EXPECT_NE(out.find("unknown LLM precision \"int5\""), std::string::npos) << out;
}

}  // namespace
}  // namespace omnirt
