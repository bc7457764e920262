// `omnirt eval` as a user runs it: synthetic GT/prediction files written here (the golden cases of
// spec/evaluation.md), the table on stdout, the JSON file, --metrics, and an error exit.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "eval_fixtures.h"

namespace omnirt::eval {
namespace {

namespace fs = std::filesystem;
using fixtures::Json;

struct CliResult {
  int code;
  std::string out;
};

CliResult run_cli(const std::string& args) {
  const std::string cmd = std::string(OMNIRT_CLI_PATH) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf;
  while (p && fgets(buf.data(), buf.size(), p)) out += buf.data();
  const int status = p ? pclose(p) : -1;
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

class CliEval : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("omnirt_cli_eval_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    write("gt.json", fixtures::golden_gt().dump(1));
    write("pred.json", fixtures::golden_pred().dump(1));
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(CliEval, TableAndJsonCarryTheGoldenNumbers) {
  const CliResult r = run_cli("eval --gt " + path("gt.json") + " --pred " + path("pred.json") + " --json " +
                    path("out.json"));
  ASSERT_EQ(r.code, 0) << r.out;
  // The table (devkit-style rounding).
  EXPECT_NE(r.out.find("mAP: 0.3787"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("NDS: 0.3482"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mATE: 0.7933"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("6 samples counted"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("DET_l: 0.4091"), std::string::npos) << r.out;
  // The JSON keeps full precision.
  std::ifstream in(path("out.json"));
  const nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_NEAR(j["detection"]["nd_score"].get<double>(), 0.34819843045505483, 1e-12);
  EXPECT_NEAR(j["detection"]["mean_ap"].get<double>(), 0.37871008230452685, 1e-12);
  EXPECT_TRUE(j["detection"]["label_tp_errors"]["traffic_cone"]["vel_err"].is_null());  // NaN
  EXPECT_NEAR(j["planning"]["plan_obj_box_col_3s"].get<double>(), 0.3333333333333333, 1e-12);
  EXPECT_NEAR(j["planning"]["l2_3s"].get<double>(), 1.8429964271215216, 1e-12);
  EXPECT_EQ(j["planning"]["samples"].get<int>(), 6);
  EXPECT_EQ(j["lanes"]["DET_l"].get<double>(), 0.40909090638160706);
}

TEST_F(CliEval, MetricsSubset) {
  const CliResult r = run_cli("eval --gt " + path("gt.json") + " --pred " + path("pred.json") +
                    " --metrics plan");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.find("nuScenes detection"), std::string::npos);
  EXPECT_EQ(r.out.find("DET_l"), std::string::npos);
  EXPECT_NE(r.out.find("L2 (m)"), std::string::npos);
  const CliResult bad = run_cli("eval --gt " + path("gt.json") + " --pred " + path("pred.json") +
                      " --metrics det,foo");
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.out.find("unknown metric 'foo'"), std::string::npos) << bad.out;
}

TEST_F(CliEval, BadPredictionFileExitsWithAClearError) {
  Json pred = fixtures::golden_pred();
  pred["results"]["ghost"] = Json::array();
  write("bad.json", pred.dump());
  const CliResult r = run_cli("eval --gt " + path("gt.json") + " --pred " + path("bad.json"));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("omnirt: error:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("'ghost'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bad.json"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace omnirt::eval
