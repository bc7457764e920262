// `omnirt build --llm int4-g<G>-awq` engine folders on the tiny checkpoint: what the manifest
// records about the calibration, the stored tensors (codes, scales, in_scale per linear, shared
// by linears that share an input), and the clear errors for a missing or corrupt in_scale.
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
#include "models/llm/llm_engine.h"
#include "quant/engine.h"

namespace omnirt {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const std::string kTiny = std::string(OMNIRT_TEST_DATA_DIR) + "/tiny_ckpt";

class AwqEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    tmp_ = fs::temp_directory_path() /
           ("omnirt_awq_engine_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }

  std::string build(const std::string& llm) {
    const std::string out = (tmp_ / ("engine_" + llm)).string();
    quant::BuildOptions o;
    o.model_dir = kTiny;
    o.out_dir = out;
    o.llm_precision = llm;
    o.gpu_arch = "sm_90";
    quant::build_engine(o);
    return out;
  }
  static json read_manifest(const std::string& dir) {
    std::ifstream in(fs::path(dir) / "manifest.json");
    return json::parse(in);
  }
  static void write_manifest(const std::string& dir, const json& j) {
    std::ofstream(fs::path(dir) / "manifest.json") << j.dump(2);
  }
  // Rewrites the engine's llm.safetensors through `edit` (name, tensor) -> keep?, and updates the
  // manifest's recorded size so that only the tensor itself is wrong.
  static void edit_llm_file(const std::string& dir,
                            const std::function<bool(const std::string&, Tensor&)>& edit) {
    const std::string path = dir + "/llm.safetensors";
    std::vector<std::pair<std::string, Tensor>> tensors;
    {
      const SafetensorsFile f = SafetensorsFile::open(path);
      for (const auto& n : f.names()) {
        Tensor t = f.get(n).clone();
        if (edit(n, t)) tensors.emplace_back(n, t);
      }
    }
    write_safetensors(path + ".new", tensors);
    fs::rename(path + ".new", path);
    json m = read_manifest(dir);
    m["files"]["llm.safetensors"] = fs::file_size(path);
    write_manifest(dir, m);
  }
  static void expect_load_error(const std::string& dir, const std::vector<std::string>& parts) {
    llm::LlmEngineOptions o;
    o.device = Device::CPU;
    o.dtype = DType::F32;
    o.max_context = 64;
    try {
      llm::LlmEngine::from_folder(dir, o);
      ADD_FAILURE() << "expected an omnirt::Error";
    } catch (const Error& e) {
      for (const auto& p : parts)
        EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
            << "missing '" << p << "' in: " << e.what();
    }
  }
  fs::path tmp_;
};

TEST_F(AwqEngineTest, BuildRecordsTheCalibrationAndStoresSharedInScales) {
  const std::string dir = build("int4-g32-awq");
  const auto m = quant::load_engine_manifest(dir, {Device::CPU, 0});
  EXPECT_EQ(m.llm_precision, "int4-g32-awq");
  EXPECT_EQ(m.group_size, 32);
  EXPECT_EQ(m.llm_other_dtype, "F16");
  const json c = read_manifest(dir).at("calibration");
  ASSERT_TRUE(c.is_object()) << c.dump();
  EXPECT_EQ(c.at("method"), "awq");
  EXPECT_NE(c.at("source").get<std::string>().find("text-only"), std::string::npos);
  EXPECT_EQ(c.at("alpha_grid").at("steps"), 20);
  EXPECT_EQ(c.at("group_size"), 32);
  ASSERT_EQ(c.at("sequences").size(), 2u);
  EXPECT_NE(c["sequences"][0].at("prompt").get<std::string>().find("boston"), std::string::npos);
  EXPECT_NE(c["sequences"][1].at("prompt").get<std::string>().find("singapore"), std::string::npos);
  EXPECT_EQ(c.at("tokens").get<int64_t>(), c["sequences"][0].at("tokens").get<int64_t>() +
                                               c["sequences"][1].at("tokens").get<int64_t>());
  EXPECT_GT(c.at("tokens").get<int64_t>(), 50);
  EXPECT_EQ(c.at("linears").size(), 8u);  // 2 layers x (qkv, o, gate_up, down)
  EXPECT_LE(c.at("error_vs_plain_int4_total").get<double>(), 1.0);

  const SafetensorsFile src = SafetensorsFile::open(kTiny + "/llm.safetensors");
  const SafetensorsFile eng = SafetensorsFile::open(dir + "/llm.safetensors");
  int linears = 0;
  for (const auto& n : src.names()) {
    if (n.find("_proj.weight") == std::string::npos) continue;
    ++linears;
    ASSERT_FALSE(eng.contains(n)) << n;
    const std::string module = n.substr(0, n.size() - 7);
    const Tensor w = src.get(n), q = eng.get(module + ".qweight"), s = eng.get(module + ".scales"),
                 is = eng.get(module + ".in_scale");
    const int64_t N = w.dim(0), K = w.dim(1);
    ASSERT_EQ(is.dtype(), DType::F32) << module;
    ASSERT_EQ(is.shape(), (Shape{K})) << module;
    ASSERT_EQ(s.shape(), (Shape{N, K / 32})) << module;
    // W ~ dequant(Q) diag(in_scale): in the scaled space the error is <= half a step, so here
    // |w - code * scale * in_scale| <= scale / 2 * in_scale (+ float rounding).
    const uint8_t* qp = q.data<uint8_t>();
    for (int64_t r = 0; r < N; ++r)
      for (int64_t k = 0; k < K; ++k) {
        const uint8_t byte = qp[r * (K / 2) + k / 2];
        int code = k % 2 == 0 ? (byte & 0xF) : (byte >> 4);
        if (code >= 8) code -= 16;
        const double sc = s.data<float>()[r * (K / 32) + k / 32], in = is.data<float>()[k];
        const double wv = w.data<float>()[r * K + k];
        ASSERT_LE(std::fabs(wv - code * sc * in), 0.5 * sc * in * (1 + 1e-5) + 1e-7)
            << module << " [" << r << ", " << k << "]";
      }
  }
  EXPECT_EQ(linears, 14);
  // Linears that share their input share the in_scale.
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    const auto qs = eng.get(p + "self_attn.q_proj.in_scale").to_float_vector();
    EXPECT_EQ(qs, eng.get(p + "self_attn.k_proj.in_scale").to_float_vector());
    EXPECT_EQ(qs, eng.get(p + "self_attn.v_proj.in_scale").to_float_vector());
    EXPECT_EQ(eng.get(p + "mlp.gate_proj.in_scale").to_float_vector(),
              eng.get(p + "mlp.up_proj.in_scale").to_float_vector());
    // Not all ones: the activations did move the scales.
    double spread = 0;
    for (float v : qs) spread = std::max(spread, std::fabs(double{v} - qs[0]) / qs[0]);
    EXPECT_GT(spread, 1e-3) << p;
  }
}

TEST_F(AwqEngineTest, MissingOrCorruptInScaleNamesTheTensor) {
  const std::string base = build("int4-g32-awq");
  auto copy = [&](const std::string& name) {
    const fs::path d = tmp_ / name;
    fs::create_directories(d);
    for (const auto& f : fs::directory_iterator(base))
      fs::copy_file(f.path(), d / f.path().filename());
    return d.string();
  };
  const std::string k1 = "model.layers.1.self_attn.k_proj.in_scale";
  const std::string down0 = "model.layers.0.mlp.down_proj.in_scale";
  const std::string up1 = "model.layers.1.mlp.up_proj.in_scale";
  {
    const std::string d = copy("missing");
    edit_llm_file(d, [&](const std::string& n, Tensor&) { return n != k1; });
    expect_load_error(d, {"\"" + k1 + "\"", "missing"});
  }
  {
    const std::string d = copy("nan");
    edit_llm_file(d, [&](const std::string& n, Tensor& t) {
      if (n == down0) t.data<float>()[7] = NAN;
      return true;
    });
    expect_load_error(d, {"\"" + down0 + "\"", "at [7]"});
  }
  {
    const std::string d = copy("zero");
    edit_llm_file(d, [&](const std::string& n, Tensor& t) {
      if (n == down0) t.data<float>()[3] = 0.f;
      return true;
    });
    expect_load_error(d, {"\"" + down0 + "\"", "at [3]"});
  }
  {
    const std::string d = copy("shape");
    edit_llm_file(d, [&](const std::string& n, Tensor& t) {
      if (n == k1) t = t.slice(0, 0, 10).clone();
      return true;
    });
    expect_load_error(d, {"\"" + k1 + "\"", "F32 [64]"});
  }
  {
    const std::string d = copy("not_shared");
    edit_llm_file(d, [&](const std::string& n, Tensor& t) {
      if (n == up1) t.data<float>()[0] *= 1.5f;
      return true;
    });
    expect_load_error(d, {"\"" + up1 + "\"", "share"});
  }
  {
    // An in_scale in a plain INT4 engine is not silently ignored.
    const std::string d = copy("plain");
    json m = read_manifest(d);
    m["precisions"]["llm"] = "int4-g32";
    m["calibration"] = nullptr;
    write_manifest(d, m);
    expect_load_error(d, {"in_scale", "not AWQ"});
  }
  {
    const std::string d = copy("no_calibration");
    json m = read_manifest(d);
    m["calibration"] = nullptr;
    write_manifest(d, m);
    expect_load_error(d, {"manifest.json", "calibration"});
  }
  // The untouched engine loads.
  llm::LlmEngineOptions o;
  o.max_context = 64;
  EXPECT_EQ(llm::LlmEngine::from_folder(base, o)->weight_format(), "int4-g32-awq");
}

int run_cli(const std::string& args, std::string* output) {
  const fs::path log = fs::temp_directory_path() / ("omnirt_awq_cli_" + std::to_string(getpid()));
  const std::string cmd =
      std::string(OMNIRT_CLI_PATH) + " " + args + " > '" + log.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream in(log);
  output->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  fs::remove(log);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST_F(AwqEngineTest, CliBuildsAnAwqEngine) {
  std::string out;
  const std::string dir = (tmp_ / "cli").string();
  ASSERT_EQ(
      run_cli("build '" + kTiny + "' --out '" + dir + "' --llm int4-awq --awq-grid 5 --arch sm_90",
              &out),
      0)
      << out;
  EXPECT_NE(out.find("llm int4-awq"), std::string::npos) << out;
  EXPECT_NE(out.find("calibration: awq on"), std::string::npos) << out;
  const json c = read_manifest(dir).at("calibration");
  EXPECT_EQ(c.at("alpha_grid").at("steps"), 5);
  EXPECT_TRUE(c.at("group_size").is_null());
  EXPECT_NE(run_cli("build '" + kTiny + "' --out '" + dir + "' --llm fp16-awq", &out), 0);
  EXPECT_NE(out.find("unknown LLM precision \"fp16-awq\""), std::string::npos) << out;
}

}  // namespace
}  // namespace omnirt
