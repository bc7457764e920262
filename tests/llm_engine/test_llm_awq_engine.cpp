// AWQ engine folders (`omnirt build --llm int4-g32-awq`, quant/awq.h) in the LLM engine, tiny
// checkpoint, teacher-forced (prompt prefill, then a fixed token sequence decoded one by one):
// - round trip: the folder's engine computes exactly what AWQ-quantising the checkpoint in memory
//   computes (same codes, scales, in_scale; the folder's F16 embeddings / norms / lm_head are
//   reproduced by rounding the in-memory copies to F16);
// - accuracy: logits of AWQ vs plain RTN INT4 (same group size), both against the float32 engine,
//   on a held-out planning sequence and on random embeddings (printed; see the bounds below);
// - CUDA (OMNIRT_REQUIRE_CUDA): the F16 engine of the folder (decode GEMVs apply in_scale to x,
//   prefill GEMMs use the folded dense weights) against the CPU engine of the same folder.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "io/safetensors.h"
#include "models/llm/llm_engine.h"
#include "models/llm/prompt.h"
#include "models/llm/tokenizer.h"
#include "models/llm/trajectory.h"
#include "quant/awq.h"
#include "quant/engine.h"
#include "quant/int4.h"
#include "quant/llm_quant.h"

namespace omnirt::llm {
namespace {

using omnirt::testing::rel_error;

const std::string kTiny = std::string(OMNIRT_TEST_DATA_DIR) + "/tiny_ckpt";
const std::vector<int32_t> kForced = {5, 17, 300, 3, 250, 42, 1, 77};

std::vector<float> teacher_forced(LlmEngine& e, const Tensor& prompt) {
  e.reset();
  std::vector<float> out = e.prefill_all_logits(prompt).to_float_vector();
  for (int32_t t : kForced) {
    const std::vector<float> lg = e.decode(t).to(Device::CPU).to_float_vector();
    out.insert(out.end(), lg.begin(), lg.end());
  }
  return out;
}
std::vector<float> decode_part(const std::vector<float>& all, int64_t prompt_len, int64_t vocab) {
  return std::vector<float>(all.begin() + prompt_len * vocab, all.end());
}

LlmEngineOptions opts(Device dev, DType dt) {
  LlmEngineOptions o;
  o.device = dev;
  o.dtype = dt;
  o.all_logits = true;
  o.max_context = 256;
  return o;
}

struct Tiny {
  LlamaConfig cfg = LlamaConfig::from_folder(kTiny);
  WeightStore store = WeightStore::open(kTiny + "/llm.safetensors");
  Tokenizer tok = Tokenizer::load(kTiny + "/tokenizer.model");
  LlamaWeights weights() const {
    return load_llama_weights(
        cfg, [&](const std::string& n) { return store.contains(n) ? store.get(n) : Tensor(); },
        Device::CPU, DType::F32, kTiny);
  }
  // AWQ in memory, exactly as omnirt build does it.
  LlamaWeights awq(int64_t group) const {
    LlamaWeights w = weights();
    const quant::AwqActivations a =
        quant::collect_awq_activations(cfg, w, tok, quant::default_awq_calibration());
    quant::quantize_llama_weights_awq(w, a, group, 20, "int4-g" + std::to_string(group) + "-awq");
    return w;
  }
};

std::string build_awq_engine(const std::string& name) {
  const std::string out = (std::filesystem::temp_directory_path() /
                           ("omnirt_awq_llm_" + name + "_" + std::to_string(getpid())))
                              .string();
  quant::BuildOptions b;
  b.model_dir = kTiny;
  b.out_dir = out;
  b.llm_precision = "int4-g32-awq";
  b.gpu_arch = cuda_available() ? "sm_" + std::to_string(cuda_compute_capability()) : "sm_90";
  quant::build_engine(b);
  return out;
}

// A planning sequence that is not in the calibration set: another location, a right turn.
Tensor held_out_planning(const LlmEngine& e, const Tokenizer& tok) {
  PromptIds p = build_planning_prompt(tok, "las vegas");
  const std::vector<Waypoint> right = {{3.2, -0.1},  {6.1, -0.6},  {8.7, -1.5},
                                       {10.9, -2.8}, {12.6, -4.4}, {13.8, -6.2}};
  const auto ans = tok.encode(format_planning_answer(right), false);
  p.ids.insert(p.ids.end(), ans.begin(), ans.end());
  return e.build_prompt_embeddings(p.ids, Tensor());
}

Tensor f16_rounded(const Tensor& t) { return t.to_dtype(DType::F16).to_dtype(DType::F32); }

TEST(LlmAwqEngine, EngineFolderComputesExactlyWhatQuantisingInMemoryDoes) {
  const Tiny t;
  const std::string dir = build_awq_engine("roundtrip");
  auto folder = LlmEngine::from_folder(dir, opts(Device::CPU, DType::F32));
  EXPECT_EQ(folder->weight_format(), "int4-g32-awq");

  LlamaWeights mem = t.awq(32);
  // The folder keeps embeddings, norms and lm_head in F16 (llm_other_dtype).
  mem.embed = f16_rounded(mem.embed);
  mem.lm_head = f16_rounded(mem.lm_head);
  mem.final_norm = f16_rounded(mem.final_norm);
  for (auto& l : mem.layers) {
    l.attn_norm = f16_rounded(l.attn_norm);
    l.mlp_norm = f16_rounded(l.mlp_norm);
  }
  // Codes, scales and in_scale as loaded from the folder (fused q/k/v and gate/up rows).
  const WeightStore es = WeightStore::open(dir + "/llm.safetensors");
  const LlamaWeights ew = quant::load_int4_engine_weights(
      t.cfg, [&](const std::string& n) { return es.contains(n) ? es.get(n) : Tensor(); },
      Device::CPU, DType::F32, "int4-g32-awq", dir);
  for (size_t l = 0; l < ew.layers.size(); ++l) {
    const auto& a = ew.layers[l];
    const auto& b = mem.layers[l];
    for (auto [x, y] : {std::pair{&a.q_wqkv, &b.q_wqkv}, std::pair{&a.q_wo, &b.q_wo},
                        std::pair{&a.q_gate_up, &b.q_gate_up}, std::pair{&a.q_down, &b.q_down}}) {
      ASSERT_EQ(x->codes.shape(), y->codes.shape());
      EXPECT_EQ(std::memcmp(x->codes.raw(), y->codes.raw(), x->codes.nbytes()), 0) << l;
      EXPECT_EQ(x->scales.to_float_vector(), y->scales.to_float_vector()) << l;
      ASSERT_TRUE(x->in_scale.defined());
      EXPECT_EQ(x->in_scale.to_float_vector(), y->in_scale.to_float_vector()) << l;
    }
    EXPECT_EQ(a.wqkv.to_float_vector(), b.wqkv.to_float_vector()) << l;
    EXPECT_EQ(a.w_down.to_float_vector(), b.w_down.to_float_vector()) << l;
  }
  LlmEngine in_memory(t.cfg, std::move(mem), opts(Device::CPU, DType::F32));
  const Tensor prompt = held_out_planning(in_memory, t.tok);
  const auto a = teacher_forced(*folder, prompt), b = teacher_forced(in_memory, prompt);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(a, b) << "rel. error " << rel_error(a, b);
  std::filesystem::remove_all(dir);
}

// Teacher-forced logits against the float32 engine, AWQ g32 vs plain RTN g32, on the first
// calibration sequence (in sample), a held-out planning sequence, and random embeddings.
// Observed on the tiny checkpoint (random weights; per linear AWQ lowers the calibration output
// error by only ~2% in total, see AwqModel.PerLinearErrorOnCalibrationActivationsIsAtMostPlainInt4,
// because random weights and activations have no salient channels for it to protect): the two
// are COMPARABLE, neither consistently better. Measured (deterministic seeds), all positions /
// decode steps: calibration sequence AWQ 0.1691 / 0.1430 vs RTN 0.1601 / 0.1371; held-out
// planning 0.1625 / 0.1318 vs 0.1551 / 0.1397; random embeddings 0.2134 / 0.1794 vs 0.2086 /
// 0.1750. So the assertion is "within 10% of RTN" (and quantised,
// and under the 0.35 bound of the plain INT4 tests), not "better". Whether AWQ helps the real
// TinyLlama (whose activations do have outlier channels) is for a full-size measurement.
TEST(LlmAwqEngine, AwqLogitsAreComparableToRtn) {
  const Tiny t;
  LlmEngine dense(t.cfg, t.weights(), opts(Device::CPU, DType::F32));
  LlmEngine awq(t.cfg, t.awq(32), opts(Device::CPU, DType::F32));
  LlmEngineOptions ro = opts(Device::CPU, DType::F32);
  ro.weight_format = "int4-g32";
  LlmEngine rtn(t.cfg, t.weights(), ro);
  std::mt19937_64 rng(omnirt::testing::test_seed());
  const quant::AwqCalibText c0 = quant::default_awq_calibration()[0];
  PromptIds p0 = tokenizer_image_token(t.tok, c0.prompt);
  const auto a0 = t.tok.encode(c0.answer, false);
  p0.ids.insert(p0.ids.end(), a0.begin(), a0.end());
  const Tensor in_sample = dense.build_prompt_embeddings(p0.ids, Tensor());
  const Tensor planning = held_out_planning(dense, t.tok);
  const Tensor random = omnirt::testing::random_tensor({20, t.cfg.hidden_size}, rng);
  const int64_t V = t.cfg.vocab_size;
  for (const auto& [name, prompt] :
       {std::pair{"calib[0]", in_sample}, std::pair{"planning", planning},
        std::pair{"random", random}}) {
    const auto ref = teacher_forced(dense, prompt);
    const auto qa = teacher_forced(awq, prompt), qr = teacher_forced(rtn, prompt);
    const int64_t L = prompt.dim(0);
    const double ea = rel_error(qa, ref), er = rel_error(qr, ref);
    const double ea_dec = rel_error(decode_part(qa, L, V), decode_part(ref, L, V));
    const double er_dec = rel_error(decode_part(qr, L, V), decode_part(ref, L, V));
    std::printf(
        "[ awq     ] %-8s (%3lld tokens) logits rel. error vs float32: AWQ g32 %.4f "
        "(decode %.4f), RTN g32 %.4f (decode %.4f)\n",
        name, static_cast<long long>(L), ea, ea_dec, er, er_dec);
    EXPECT_GT(ea, 1e-4) << name << ": not quantised";
    EXPECT_LE(ea, 1.1 * er) << name;
    EXPECT_LE(ea_dec, 1.1 * er_dec) << name;
    EXPECT_LE(ea, 0.35) << name;
  }
}

TEST(LlmAwqEngine, CudaEngineOfTheFolderMatchesItsCpuEngine) {
  OMNIRT_REQUIRE_CUDA_LLM(kTiny);
  const Tiny t;
  const std::string dir = build_awq_engine("cuda");
  auto cpu = LlmEngine::from_folder(dir, opts(Device::CPU, DType::F32));
  auto gpu = LlmEngine::from_folder(dir, opts(Device::CUDA, DType::F16));
  EXPECT_EQ(gpu->weight_format(), "int4-g32-awq");
  std::mt19937_64 rng(omnirt::testing::test_seed());
  const int64_t V = t.cfg.vocab_size;
  const Tensor planning = held_out_planning(*cpu, t.tok);
  const Tensor random = omnirt::testing::random_tensor({12, t.cfg.hidden_size}, rng);
  // Yardstick: the dense fp16 CUDA engine's drift from the dense CPU engine on the same prompts.
  auto cd = LlmEngine::from_folder(kTiny, opts(Device::CPU, DType::F32));
  auto gd = LlmEngine::from_folder(kTiny, opts(Device::CUDA, DType::F16));
  // What the test would see if the CUDA decode ignored in_scale: the CPU engine with the
  // in_scale left out of its dense weights (dequant(Q) instead of dequant(Q) diag(in_scale)).
  LlamaWeights no_scale = t.awq(32);
  for (auto& l : no_scale.layers)
    for (auto [d, q] : {std::pair{&l.wqkv, &l.q_wqkv}, std::pair{&l.wo, &l.q_wo},
                        std::pair{&l.w_gate_up, &l.q_gate_up}, std::pair{&l.w_down, &l.q_down}})
      *d = quant::dequantize_int4(q->codes, q->scales);
  LlmEngine wrong(t.cfg, std::move(no_scale), opts(Device::CPU, DType::F32));
  for (const auto& [name, prompt] :
       {std::pair{"planning", planning}, std::pair{"random", random}}) {
    const int64_t L = prompt.dim(0);
    const auto c = teacher_forced(*cpu, prompt), g = teacher_forced(*gpu, prompt);
    const double fp16 = rel_error(decode_part(teacher_forced(*gd, prompt), L, V),
                                  decode_part(teacher_forced(*cd, prompt), L, V));
    const double e_dec = rel_error(decode_part(g, L, V), decode_part(c, L, V));
    const double e_pre = rel_error(std::vector<float>(g.begin(), g.begin() + L * V),
                                   std::vector<float>(c.begin(), c.begin() + L * V));
    const double e_wrong =
        rel_error(decode_part(teacher_forced(wrong, prompt), L, V), decode_part(c, L, V));
    std::printf(
        "[ awq     ] %s: int4-g32-awq folder CUDA vs CPU: decode %.2e, prefill %.2e "
        "(dense fp16 decode drift %.2e; in_scale ignored would be %.2e)\n",
        name, e_dec, e_pre, fp16, e_wrong);
    const double tol = std::max(1e-2, 2 * fp16);
    EXPECT_LE(e_dec, tol) << name;
    EXPECT_LE(e_pre, tol) << name;
    EXPECT_GT(e_wrong, 5 * tol) << name << ": this test could not tell a missing in_scale";
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace omnirt::llm
