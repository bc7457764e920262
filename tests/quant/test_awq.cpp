// Model-level AWQ (quant/awq.h) on the tiny checkpoint: the calibration captures the inputs the
// linears really see, and per linear the AWQ-quantised weight's output error on those inputs is
// at most plain round-to-nearest INT4's (same group size), both measured against a float64
// x W^T computed here from the checkpoint, with the weights decoded here from the stored nibbles.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "models/llm/llm_engine.h"
#include "models/llm/prompt.h"
#include "models/llm/tokenizer.h"
#include "quant/awq.h"
#include "quant/int4.h"
#include "quant/llm_quant.h"

namespace omnirt {
namespace {

const std::string kTiny = std::string(OMNIRT_TEST_DATA_DIR) + "/tiny_ckpt";

struct Tiny {
  llm::LlamaConfig cfg = llm::LlamaConfig::from_folder(kTiny);
  WeightStore store = WeightStore::open(kTiny + "/llm.safetensors");
  llm::Tokenizer tok = llm::Tokenizer::load(kTiny + "/tokenizer.model");
  llm::LlamaWeights weights() const {
    return llm::load_llama_weights(
        cfg, [&](const std::string& n) { return store.contains(n) ? store.get(n) : Tensor(); },
        Device::CPU, DType::F32, kTiny);
  }
};

// Weight [N, K] in float64 from packed nibbles (decoded here, two's complement, low nibble
// first), per-(row, group) scales and an optional per-column input scale.
std::vector<double> decode_weight(const Tensor& codes, const Tensor& scales,
                                  const Tensor& in_scale) {
  const int64_t n = codes.dim(0), k = codes.dim(1) * 2, groups = scales.dim(1), g = k / groups;
  const auto sc = scales.to_float_vector();
  const std::vector<float> is =
      in_scale.defined() ? in_scale.to_float_vector() : std::vector<float>(k, 1.f);
  std::vector<double> w(n * k);
  const uint8_t* q = codes.data<uint8_t>();
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) {
      const uint8_t byte = q[r * (k / 2) + c / 2];
      int v = c % 2 == 0 ? (byte & 0xF) : (byte >> 4);
      if (v >= 8) v -= 16;
      w[r * k + c] = v * static_cast<double>(sc[r * groups + c / g]) * is[c];
    }
  return w;
}

// sum over rows of (x W^T - x Wq^T)^2 in float64.
double output_error(const Tensor& x, const Tensor& w, const std::vector<double>& wq) {
  const int64_t m = x.dim(0), k = x.dim(1), n = w.dim(0);
  const auto xv = x.to_float_vector(), wv = w.to_float_vector();
  double total = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t r = 0; r < n; ++r) {
      double d = 0;
      for (int64_t c = 0; c < k; ++c) d += xv[i * k + c] * (wv[r * k + c] - wq[r * k + c]);
      total += d * d;
    }
  return total;
}

TEST(AwqModel, CalibrationCapturesTheInputsOfEveryLinear) {
  const Tiny t;
  const llm::LlamaWeights w = t.weights();
  const auto texts = quant::default_awq_calibration();
  ASSERT_EQ(texts.size(), 2u);
  EXPECT_NE(texts[0].prompt.find("You are driving in boston"), std::string::npos);
  EXPECT_NE(texts[0].answer.find("[PT, ("), std::string::npos);
  const quant::AwqActivations a = quant::collect_awq_activations(t.cfg, w, t.tok, texts);
  ASSERT_EQ(a.x.size(), static_cast<size_t>(t.cfg.num_hidden_layers));
  ASSERT_EQ(a.sequence_tokens.size(), 2u);
  EXPECT_EQ(a.tokens, a.sequence_tokens[0] + a.sequence_tokens[1]);
  const int64_t H = t.cfg.hidden_size, I = t.cfg.intermediate_size;
  for (const auto& layer : a.x) {
    EXPECT_EQ(layer[0].shape(), (Shape{a.tokens, H}));
    EXPECT_EQ(layer[1].shape(), (Shape{a.tokens, t.cfg.q_dim()}));
    EXPECT_EQ(layer[2].shape(), (Shape{a.tokens, H}));
    EXPECT_EQ(layer[3].shape(), (Shape{a.tokens, I}));
  }
  // Layer 0's q/k/v input is RMSNorm(embedding row) * input_layernorm, recomputed here in
  // float64 from the token ids (BOS + prompt without the image placeholder + answer).
  std::vector<int32_t> ids;
  for (const auto& s : texts) {
    llm::PromptIds p = llm::tokenizer_image_token(t.tok, s.prompt);
    ASSERT_GE(p.image_position, 0);
    p.ids.erase(p.ids.begin() + p.image_position);
    const auto ans = t.tok.encode(s.answer, false);
    p.ids.insert(p.ids.end(), ans.begin(), ans.end());
    ids.insert(ids.end(), p.ids.begin(), p.ids.end());
  }
  ASSERT_EQ(static_cast<int64_t>(ids.size()), a.tokens);
  const auto emb = t.store.get("model.embed_tokens.weight").to_float_vector();
  const auto nw = t.store.get("model.layers.0.input_layernorm.weight").to_float_vector();
  const auto got = a.x[0][0].to_float_vector();
  double max_err = 0;
  for (int64_t i = 0; i < a.tokens; ++i) {
    double ss = 0;
    for (int64_t c = 0; c < H; ++c) ss += std::pow(emb[ids[i] * H + c], 2);
    const double inv = 1.0 / std::sqrt(ss / H + t.cfg.rms_norm_eps);
    for (int64_t c = 0; c < H; ++c)
      max_err = std::max(max_err, std::fabs(got[i * H + c] - emb[ids[i] * H + c] * inv * nw[c]));
  }
  EXPECT_LT(max_err, 1e-5);
  // The hook is CPU only.
  llm::LlmEngineOptions o;
  o.device = Device::CUDA;
  o.dtype = DType::F16;
  o.linear_input_hook = [](int64_t, llm::LinearSite, const Tensor&) {};
  try {
    llm::LlmEngine e(t.cfg, llm::random_llama_weights(t.cfg, 1, Device::CPU, DType::F32), o);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("linear_input_hook"), std::string::npos) << e.what();
  }
}

TEST(AwqModel, PerLinearErrorOnCalibrationActivationsIsAtMostPlainInt4) {
  const Tiny t;
  const llm::LlamaWeights orig = t.weights();
  for (int64_t group : {int64_t{32}, int64_t{0}}) {
    SCOPED_TRACE(::testing::Message() << "group " << group);
    llm::LlamaWeights w = t.weights();
    const quant::AwqActivations acts =
        quant::collect_awq_activations(t.cfg, w, t.tok, quant::default_awq_calibration());
    const auto reports = quant::quantize_llama_weights_awq(w, acts, group, 20, "int4-awq-test");
    ASSERT_EQ(reports.size(), 4u * t.cfg.num_hidden_layers);
    EXPECT_EQ(w.quant_name, "int4-awq-test");
    double awq_total = 0, rtn_total = 0;
    int strictly_better = 0;
    for (size_t l = 0; l < w.layers.size(); ++l) {
      const auto& lw = w.layers[l];
      const auto& ow = orig.layers[l];
      const std::pair<const llm::QuantLinear*, const Tensor*> lin[4] = {
          {&lw.q_wqkv, &ow.wqkv},
          {&lw.q_wo, &ow.wo},
          {&lw.q_gate_up, &ow.w_gate_up},
          {&lw.q_down, &ow.w_down}};
      for (int s = 0; s < 4; ++s) {
        const auto [q, W] = lin[s];
        const int64_t k = W->dim(1);
        ASSERT_EQ(q->format, llm::QuantFormat::kInt4);
        ASSERT_EQ(q->group_size, group == 0 ? k : group);
        ASSERT_EQ(q->in_scale.shape(), (Shape{k}));
        const std::vector<double> awq_w = decode_weight(q->codes, q->scales, q->in_scale);
        const quant::Int4Weight rtn = quant::quantize_int4(*W, group);
        const std::vector<double> rtn_w = decode_weight(rtn.qweight, rtn.scales, Tensor());
        const double e_awq = output_error(acts.x[l][s], *W, awq_w);
        const double e_rtn = output_error(acts.x[l][s], *W, rtn_w);
        std::printf("[ awq     ] g%-3lld %-14s alpha %.2f  error AWQ %.4e  RTN %.4e  (%.3f)\n",
                    static_cast<long long>(group), reports[4 * l + s].name.c_str(),
                    reports[4 * l + s].alpha, e_awq, e_rtn, e_awq / e_rtn);
        EXPECT_GT(e_rtn, 0.0);
        // The search is exact for alpha = 0 (= RTN); its float32 GEMM error estimate may pick an
        // alpha whose float64 error is larger by rounding noise only.
        EXPECT_LE(e_awq, e_rtn * (1 + 1e-5)) << reports[4 * l + s].name;
        strictly_better += e_awq < e_rtn * (1 - 1e-3);
        awq_total += e_awq;
        rtn_total += e_rtn;
        // The engine's dense tensor is the same linear in the input's space (in_scale folded).
        const auto dense = (s == 0   ? lw.wqkv
                            : s == 1 ? lw.wo
                            : s == 2 ? lw.w_gate_up
                                     : lw.w_down)
                               .to_float_vector();
        double max_d = 0, max_w = 0;
        for (size_t i = 0; i < dense.size(); ++i) {
          max_d = std::max(max_d, std::fabs(dense[i] - awq_w[i]));
          max_w = std::max(max_w, std::fabs(awq_w[i]));
        }
        EXPECT_LE(max_d, 1e-6 * max_w) << reports[4 * l + s].name;
      }
    }
    std::printf(
        "[ awq     ] g%lld total: AWQ %.4e vs RTN %.4e (%.3f); %d of %zu linears "
        "better by > 0.1%%\n",
        static_cast<long long>(group), awq_total, rtn_total, awq_total / rtn_total, strictly_better,
        reports.size());
    EXPECT_LT(awq_total, rtn_total);
  }
}

TEST(AwqModel, AwqIsABuildTimeFormatNotALoadTimeOne) {
  try {
    quant::parse_weight_format("int4-g128-awq");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("omnirt build"), std::string::npos) << e.what();
  }
}

TEST(AwqModel, BadInScaleIsNamed) {
  EXPECT_NO_THROW(quant::check_awq_in_scale(Tensor::from_vector({1.f, 2.f}, {2}), 2, "x"));
  for (const Tensor& bad :
       {Tensor(), Tensor::from_vector({1.f, 2.f, 3.f}, {3}), Tensor::from_vector({1.f, NAN}, {2}),
        Tensor::from_vector({0.f, 1.f}, {2})}) {
    try {
      quant::check_awq_in_scale(bad, 2, "tensor \"m.in_scale\"");
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("tensor \"m.in_scale\""), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace omnirt
