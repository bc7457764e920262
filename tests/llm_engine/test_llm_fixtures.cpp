// Parity with the PyTorch reference (python/make_fixtures.py): the tiny checkpoint in
// tests/data/tiny_ckpt and the LLM fixtures of both frames in tests/data/fixtures.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "models/llm/llm_engine.h"

namespace omnirt::llm {
namespace {

using omnirt::testing::rel_error;

const std::string kData = OMNIRT_TEST_DATA_DIR;

std::vector<int32_t> ids_of(const Tensor& t) {
  std::vector<int32_t> out;
  for (float v : t.to_float_vector()) out.push_back(static_cast<int32_t>(v));
  return out;
}

class LlmFixture : public ::testing::TestWithParam<const char*> {};

TEST_P(LlmFixture, TeacherForcedLogitsSpliceAndGreedyIds) {
  LlmEngineOptions opt;
  opt.all_logits = true;
  auto eng = LlmEngine::from_folder(kData + "/tiny_ckpt", opt);
  const auto& cfg = eng->config();
  const SafetensorsFile f = SafetensorsFile::open(kData + "/fixtures/" + GetParam());
  const Tensor emb3 = f.get("llm.inputs_embeds");
  const int64_t P = emb3.dim(1), H = cfg.hidden_size;
  ASSERT_EQ(emb3.shape(), (Shape{1, P, H}));
  const Tensor emb = emb3.reshape({P, H});

  // 1. The splice: text rows from the engine's embedding table + the vision rows at -200.
  const std::vector<int32_t> prompt = ids_of(f.get("llm.prompt_ids"));
  const int64_t k = static_cast<int64_t>(f.get("llm.image_token_pos").to_float_vector()[0]);
  const int64_t R = P - (static_cast<int64_t>(prompt.size()) - 1);
  ASSERT_EQ(prompt[k], kImageTokenIndex);
  const Tensor vision = emb.slice(0, k, k + R).contiguous();
  EXPECT_EQ(eng->build_prompt_embeddings(prompt, vision).to_float_vector(), emb.to_float_vector());

  // 2. Teacher-forced logits of prompt ‖ answer.
  const std::vector<int32_t> answer = ids_of(f.get("llm.answer_ids"));
  const Tensor ans = eng->embed_tokens(answer);
  Tensor seq = Tensor::empty({P + ans.dim(0), H}, DType::F32);
  seq.slice(0, 0, P).copy_from(emb);
  seq.slice(0, P, P + ans.dim(0)).copy_from(ans);
  const Tensor tf = f.get("llm.tf_logits");
  const int64_t first = static_cast<int64_t>(f.get("llm.tf_logits_first_row").to_float_vector()[0]);
  Tensor all = eng->prefill_all_logits(seq);
  ASSERT_EQ(tf.dim(1), cfg.vocab_size);
  EXPECT_LE(rel_error(all.slice(0, first, first + tf.dim(0)).contiguous(), tf), 1e-4);

  // 3. Greedy decoding with the KV cache (in-graph argmax sampler), stopping at EOS 2.
  eng->reset();
  EXPECT_LE(rel_error(eng->prefill(emb), f.get("llm.greedy_first_logits")), 1e-4);
  const std::vector<int32_t> want = ids_of(f.get("llm.greedy_ids"));
  std::vector<int32_t> got;
  eng->sample_first();
  while (got.size() < want.size()) {
    got.push_back(eng->read_token());
    if (got.back() == 2) break;
    eng->decode_next();
  }
  EXPECT_EQ(got, want);
}

INSTANTIATE_TEST_SUITE_P(Frames, LlmFixture,
                         ::testing::Values("frame0.safetensors", "frame1.safetensors"));

TEST(LlmFixtureErrors, CheckpointFolderMissingTensorNamesIt) {
  // from_folder on a folder whose llm.safetensors lacks a tensor: error names the tensor.
  const std::string dir = ::testing::TempDir() + "/omnirt_llm_missing";
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(kData + "/tiny_ckpt/config.json", dir + "/config.json",
                             std::filesystem::copy_options::overwrite_existing);
  const WeightStore src = WeightStore::open(kData + "/tiny_ckpt/llm.safetensors");
  std::vector<std::pair<std::string, Tensor>> kept;
  for (const auto& n : src.names())
    if (n != "model.layers.1.self_attn.v_proj.weight") kept.emplace_back(n, src.get(n));
  write_safetensors(dir + "/llm.safetensors", kept);
  try {
    LlmEngine::from_folder(dir, {});
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.1.self_attn.v_proj.weight"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace omnirt::llm

namespace omnirt::llm {
namespace {

std::string run_cli(const std::string& args, int* status) {
  const std::string cmd = std::string(OMNIRT_CLI_PATH) + " " + args + " 2>&1";
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  *status = p ? pclose(p) : -1;
  return out;
}

TEST(LlmCli, GenerateGreedyOnTinyCheckpointMatchesEngine) {
  const std::string dir = kData + "/tiny_ckpt";
  int status = 0;
  const std::string out = run_cli("generate --model " + dir +
                                      " --prompt \"You are driving in boston.\" --device cpu"
                                      " --max-new 6 --greedy",
                                  &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_NE(out.find("generated"), std::string::npos) << out;
  // Bad input: an unknown dtype and a prompt that cannot fit the context are clear errors.
  const std::string bad = run_cli("generate --model " + dir +
                                      " --prompt hi --device cpu --dtype fp8", &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(bad.find("--dtype"), std::string::npos) << bad;
  const std::string longer = run_cli("generate --model " + dir +
                                         " --prompt hi --device cpu --max-context 8 --max-new 20",
                                     &status);
  EXPECT_NE(status, 0);
  EXPECT_NE(longer.find("context"), std::string::npos) << longer;
}

TEST(LlmCli, BenchLlmOnTinyCheckpointWritesJson) {
  const std::string json = ::testing::TempDir() + "/omnirt_bench_llm.json";
  int status = 0;
  const std::string out = run_cli("bench llm --model " + kData +
                                      "/tiny_ckpt --device cpu --dtype fp32 --prompt-len 20"
                                      " --new-tokens 4 --runs 2 --warmup 1 --json " + json,
                                  &status);
  ASSERT_EQ(status, 0) << out;
  EXPECT_NE(out.find("TTFT"), std::string::npos) << out;
  EXPECT_TRUE(std::filesystem::exists(json));
}

}  // namespace
}  // namespace omnirt::llm
