// `omnirt bench e2e` on the CPU with the tiny checkpoint over the tiny scene: the reference
// deployment's table layout with its published figures, and JSON whose statistics are positive,
// finite and consistent (p90 >= p50, one sample per frame and run). No timing assertions.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "pipeline/engines.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// stdout (and stderr unless `args` redirects it) of `omnirt ARGS`.
std::string run_capture(const std::string& args, int* rc) {
  const bool own_stderr = args.find("2>") != std::string::npos;
  const std::string cmd = std::string(OMNIRT_CLI_PATH) + " " + args + (own_stderr ? "" : " 2>&1");
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  const int status = p ? pclose(p) : -1;
  *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

}  // namespace

TEST(BenchE2e, TinyCheckpointTableAndJson) {
  const std::string data = OMNIRT_TEST_DATA_DIR;
  const fs::path js = fs::temp_directory_path() / ("omnirt_bench_e2e_" + std::to_string(::getpid()) + ".json");
  int rc = -1;
  const std::string out = run_capture("bench e2e --scene '" + data + "/tiny_scene' --model '" + data +
                                          "/tiny_ckpt' --device cpu --greedy --max-new 6 --runs 2 "
                                          "--warmup 1 --json '" + js.string() + "'",
                                      &rc);
  ASSERT_EQ(rc, 0) << out;
  // The reference's rows and a few of its published figures, beside our p50/p90 columns.
  for (const char* s : {"Vision ", "| omnirt p50 | omnirt p90 |", "Latency (ms)", "280.02", "25.92",
                        "177.68", "Time To First Token (TTFT) (ms)", "10.02", "Time Per Output Token (TPOT) (ms)",
                        "2.80", "Overall Latency (ms)", "256.20", "794.25", "tiny_scene (3 frames x 2 runs",
                        "random weights"})
    EXPECT_NE(out.find(s), std::string::npos) << "\"" << s << "\" missing in:\n" << out;

  std::ifstream in(js);
  const json j = json::parse(in);
  fs::remove(js);
  EXPECT_EQ(j["benchmark"], "e2e");
  EXPECT_EQ(j["device"], "cpu");
  EXPECT_EQ(j["frames"], 3);
  EXPECT_EQ(j["runs"], 2);
  for (const char* k : {"vision", "ttft", "tpot", "overall", "frame"}) {
    SCOPED_TRACE(k);
    const json& st = j[k];
    ASSERT_EQ(st["samples_ms"].size(), 6u) << "3 frames x 2 runs";
    for (const auto& v : st["samples_ms"]) {
      EXPECT_TRUE(std::isfinite(v.get<double>()));
      EXPECT_GT(v.get<double>(), 0);
    }
    EXPECT_GT(st["p50_ms"].get<double>(), 0);
    EXPECT_GE(st["p90_ms"].get<double>(), st["p50_ms"].get<double>());
    EXPECT_GE(st["max_ms"].get<double>(), st["p90_ms"].get<double>());
    EXPECT_LE(st["min_ms"].get<double>(), st["p50_ms"].get<double>());
  }
  EXPECT_EQ(j["prepare"]["samples_ms"].size(), 3u);
  // Per sample: overall = TTFT + (n - 1) * TPOT, frame = vision + overall.
  for (size_t i = 0; i < 6; ++i) {
    const double ttft = j["ttft"]["samples_ms"][i], tpot = j["tpot"]["samples_ms"][i];
    const double overall = j["overall"]["samples_ms"][i], vision = j["vision"]["samples_ms"][i];
    const int n = j["new_tokens"][i];
    EXPECT_EQ(n, 6) << "greedy, --max-new 6: the tiny random model never emits EOS that early";
    EXPECT_NEAR(overall, ttft + (n - 1) * tpot, 1e-9 * overall);
    EXPECT_NEAR(j["frame"]["samples_ms"][i].get<double>(), vision + overall, 1e-9 * overall);
  }
  EXPECT_EQ(j["reference"]["vision"]["A100 mixed-precision engine"]["latency_ms"], 25.92);
  EXPECT_EQ(j["reference"]["llm"]["A100 FP16 engine"]["tpot_ms"], 2.80);

  // --json -: JSON alone on stdout.
  const std::string only = run_capture("bench e2e --scene '" + data + "/tiny_scene' --model '" + data +
                                           "/tiny_ckpt' --device cpu --greedy --max-new 2 --runs 1 "
                                           "--warmup 0 --max-frames 1 --json - 2>/dev/null",
                                       &rc);
  ASSERT_EQ(rc, 0) << only;
  const json j2 = json::parse(only);
  EXPECT_EQ(j2["frames"], 1);
  EXPECT_EQ(j2["vision"]["samples_ms"].size(), 1u);

  // A bad scene is a clear error, exit code 1.
  const std::string bad = run_capture("bench e2e --scene /nonexistent/scene --model '" + data +
                                          "/tiny_ckpt' --device cpu",
                                      &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(bad.find("/nonexistent/scene"), std::string::npos) << bad;
}
