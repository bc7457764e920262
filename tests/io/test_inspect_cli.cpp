// `omnirt inspect` run as a user would: the real binary, good and broken files, exit codes,
// stdout and stderr.
#include <sys/wait.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "common/test_util.h"
#include "io/safetensors.h"
#include "io/st_test_util.h"

namespace omnirt {
namespace {

using testing::make_safetensors_bytes;
using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;

struct CliResult {
  int exit_code = -1;
  std::string out, err;
};

CliResult run_cli(const std::string& args, const TempDir& dir) {
  const std::string err_file = dir.file("stderr.txt");
  const std::string cmd =
      std::string("'") + OMNIRT_CLI_PATH + "' " + args + " 2>'" + err_file + "'";
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    ADD_FAILURE() << "popen failed for " << cmd;
    return r;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = read_bytes(err_file);
  return r;
}

std::string shell_quote(const std::string& s) { return "'" + s + "'"; }

class InspectCli : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937_64 rng(testing::test_seed());
    good_ = dir_.file("model.safetensors");
    write_safetensors(
        good_,
        {{"blocks.0.attn.qkv.weight", testing::random_tensor({6, 4}, rng)},
         {"blocks.0.attn.qkv.bias", testing::random_tensor({6}, rng).to_dtype(DType::F16)},
         {"lm_head.weight", testing::random_tensor({3, 5}, rng).to_dtype(DType::BF16)}},
        {{"omnirt.precision", "fp16"}});
  }
  TempDir dir_;
  std::string good_;
};

TEST_F(InspectCli, GoodFileTable) {
  CliResult r = run_cli("inspect " + shell_quote(good_), dir_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("blocks.0.attn.qkv.weight"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("F32"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[6, 4]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("lm_head.weight"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("BF16"), std::string::npos) << r.out;
  // 24 + 6 + 15 params; 96 + 12 + 30 bytes.
  EXPECT_NE(r.out.find("total: 3 tensors, 45 params, 138 bytes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("omnirt.precision: fp16"), std::string::npos) << r.out;
}

TEST_F(InspectCli, GoodFileJson) {
  CliResult r = run_cli("inspect --json " + shell_quote(good_), dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["tensors"].size(), 3u);
  EXPECT_EQ(j["tensors"][0]["name"], "blocks.0.attn.qkv.bias");
  EXPECT_EQ(j["tensors"][0]["dtype"], "F16");
  EXPECT_EQ(j["tensors"][0]["shape"], nlohmann::json::array({6}));
  EXPECT_EQ(j["tensors"][0]["bytes"], 12);
  EXPECT_EQ(j["total"]["params"], 45);
  EXPECT_EQ(j["total"]["bytes"], 138);
  EXPECT_EQ(j["files"][0]["metadata"]["omnirt.precision"], "fp16");
}

TEST_F(InspectCli, Folder) {
  std::mt19937_64 rng(testing::test_seed());
  write_safetensors(dir_.file("extra.safetensors"),
                    {{"vision.patch", testing::random_tensor({2, 2}, rng)}});
  CliResult r = run_cli("inspect " + shell_quote(dir_.path().string()), dir_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("vision.patch"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("lm_head.weight"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("total: 4 tensors"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("in 2 files"), std::string::npos) << r.out;
}

TEST_F(InspectCli, TruncatedFileFails) {
  std::string bytes = read_bytes(good_);
  const std::string bad = dir_.file("truncated.safetensors");
  write_bytes(bad, bytes.substr(0, bytes.size() - 10));
  CliResult r = run_cli("inspect " + shell_quote(bad), dir_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("truncated.safetensors"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;
  // Cut inside the 8-byte length too.
  write_bytes(bad, bytes.substr(0, 5));
  r = run_cli("inspect " + shell_quote(bad), dir_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("truncated"), std::string::npos) << r.err;
}

TEST_F(InspectCli, BadHeaderFails) {
  const std::string bad = dir_.file("badjson.safetensors");
  write_bytes(bad, make_safetensors_bytes(R"({"w": {"dtype": "F32", )", 8));
  CliResult r = run_cli("inspect " + shell_quote(bad), dir_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("badjson.safetensors"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not valid JSON"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST_F(InspectCli, OffsetsOutOfRangeFails) {
  const std::string bad = dir_.file("offsets.safetensors");
  write_bytes(bad, make_safetensors_bytes(
                       R"({"enc.w":{"dtype":"F32","shape":[10],"data_offsets":[0,40]}})", 16));
  CliResult r = run_cli("inspect " + shell_quote(bad), dir_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("tensor 'enc.w'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("data_offsets [0, 40]"), std::string::npos) << r.err;
}

TEST_F(InspectCli, UnknownDtypeFails) {
  const std::string bad = dir_.file("dtype.safetensors");
  write_bytes(bad, make_safetensors_bytes(
                       R"({"head.w":{"dtype":"Q7","shape":[2],"data_offsets":[0,2]}})", 2));
  CliResult r = run_cli("inspect " + shell_quote(bad), dir_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("unknown dtype 'Q7'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("head.w"), std::string::npos) << r.err;
}

TEST_F(InspectCli, MissingPathFails) {
  CliResult r = run_cli("inspect " + shell_quote(dir_.file("nothing.safetensors")), dir_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("nothing.safetensors"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace omnirt
