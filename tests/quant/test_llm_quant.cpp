// quantize_llama_weights: every decoder linear gets a quantised copy whose dequantisation (by the
// CPU references of quant/int4.h and quant/nvfp4.h) is exactly the new dense tensor, the weights
// stay close to the originals, byte counts, and bad formats / shapes fail naming the tensor.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "common/test_util.h"
#include "core/error.h"
#include "quant/fp8_weight.h"
#include "quant/int4.h"
#include "quant/llm_quant.h"
#include "quant/nvfp4.h"

namespace omnirt {
namespace {

llm::LlamaConfig tiny_config() {
  llm::LlamaConfig c;
  c.hidden_size = 64;
  c.intermediate_size = 160;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 32;
  c.vocab_size = 50;
  c.max_position_embeddings = 64;
  return c;
}

void expect_same(const Tensor& a, const Tensor& b, const char* what) {
  const auto va = a.to_float_vector(), vb = b.to_float_vector();
  ASSERT_EQ(va.size(), vb.size()) << what;
  for (size_t i = 0; i < va.size(); ++i) ASSERT_EQ(va[i], vb[i]) << what << " [" << i << "]";
}

TEST(LlmQuant, Int4GroupwiseReplacesDenseByItsDequantisation) {
  const auto cfg = tiny_config();
  llm::LlamaWeights w = llm::random_llama_weights(cfg, 7, Device::CPU, DType::F32);
  const llm::LlamaWeights orig = llm::random_llama_weights(cfg, 7, Device::CPU, DType::F32);
  const size_t dense_bytes = w.bytes();
  quant::quantize_llama_weights(w, "int4-g32");
  EXPECT_EQ(w.quant_name, "int4-g32");
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const auto& lw = w.layers[l];
    const auto& ow = orig.layers[l];
    for (auto [dense, q, o] : {std::tuple{&lw.wqkv, &lw.q_wqkv, &ow.wqkv},
                               std::tuple{&lw.wo, &lw.q_wo, &ow.wo},
                               std::tuple{&lw.w_gate_up, &lw.q_gate_up, &ow.w_gate_up},
                               std::tuple{&lw.w_down, &lw.q_down, &ow.w_down}}) {
      ASSERT_EQ(q->format, llm::QuantFormat::kInt4);
      EXPECT_EQ(q->group_size, 32);
      ASSERT_EQ(q->codes.shape(), (Shape{o->dim(0), o->dim(1) / 2}));
      ASSERT_EQ(q->scales.shape(), (Shape{o->dim(0), o->dim(1) / 32}));
      expect_same(*dense, quant::dequantize_int4(q->codes, q->scales), "dense == dequant");
      // Quantisation error: at most half a step (scale / 2 <= max|w| / 14) per weight.
      const auto vo = o->to_float_vector(), vd = dense->to_float_vector();
      double amax = 0;
      for (float v : vo) amax = std::max(amax, std::fabs(static_cast<double>(v)));
      for (size_t i = 0; i < vo.size(); ++i) ASSERT_LE(std::fabs(vd[i] - vo[i]), amax / 14 + 1e-7);
      EXPECT_GT(omnirt::testing::rel_error(vd, vo), 0.0);  // really quantised
    }
  }
  EXPECT_FALSE(w.q_lm_head.defined());
  expect_same(w.lm_head, orig.lm_head, "lm_head stays dense");
  EXPECT_GT(w.bytes(), dense_bytes);            // dense (dequantised) + quantised copies
  EXPECT_LT(w.decode_bytes(), dense_bytes / 3);  // F32 -> 4 bits + scales (+ dense lm_head)
  EXPECT_THROW(quant::quantize_llama_weights(w, "int4"), Error);  // already quantised
}

TEST(LlmQuant, Nvfp4AndPerChannelWithLmHead) {
  const auto cfg = tiny_config();
  for (const char* fmt : {"nvfp4", "int4"}) {
    SCOPED_TRACE(fmt);
    llm::LlamaWeights w = llm::random_llama_weights(cfg, 3, Device::CPU, DType::F32);
    quant::quantize_llama_weights(w, fmt, /*quantize_lm_head=*/true);
    ASSERT_TRUE(w.q_lm_head.defined());
    const auto& q = w.layers[1].q_down;
    if (std::string(fmt) == "nvfp4") {
      ASSERT_EQ(q.format, llm::QuantFormat::kNvfp4);
      EXPECT_EQ(q.scales.dtype(), DType::U8);
      EXPECT_GT(q.global_scale, 0.f);
      expect_same(w.layers[1].w_down, quant::dequantize_nvfp4(q.codes, q.scales, q.global_scale),
                  "nvfp4");
      expect_same(w.lm_head, quant::dequantize_nvfp4(w.q_lm_head.codes, w.q_lm_head.scales,
                                                     w.q_lm_head.global_scale),
                  "nvfp4 lm_head");
    } else {
      ASSERT_EQ(q.format, llm::QuantFormat::kInt4);
      EXPECT_EQ(q.group_size, cfg.intermediate_size);  // per channel: one group per row
      expect_same(w.layers[1].w_down, quant::dequantize_int4(q.codes, q.scales), "int4");
    }
  }
}

TEST(LlmQuant, BadFormatOrShape) {
  const auto cfg = tiny_config();
  llm::LlamaWeights w = llm::random_llama_weights(cfg, 3, Device::CPU, DType::F32);
  EXPECT_THROW(quant::quantize_llama_weights(w, "int3"), Error);
  EXPECT_THROW(quant::quantize_llama_weights(w, "int4-g7"), Error);
  try {
    quant::quantize_llama_weights(w, "int4-g128");  // K = 64 / 160 are not multiples of 128
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer "), std::string::npos) << e.what();
  }
  EXPECT_EQ(quant::parse_weight_format("fp"), llm::QuantFormat::kNone);
  int64_t g = -1;
  EXPECT_EQ(quant::parse_weight_format("int4-g128", &g), llm::QuantFormat::kInt4);
  EXPECT_EQ(g, 128);
  EXPECT_EQ(quant::parse_weight_format("fp8", &g), llm::QuantFormat::kFp8);
  EXPECT_THROW(quant::parse_weight_format("fp8-e5m2"), Error);
}

// FP8: every decoder linear gets E4M3 codes [N, K] with one F32 scale per row, the dense copy is
// exactly their dequantisation, and each weight is within half an E4M3 step of the original.
TEST(LlmQuant, Fp8RowScaledWeights) {
  const auto cfg = tiny_config();
  const llm::LlamaWeights orig = llm::random_llama_weights(cfg, 5, Device::CPU, DType::F32);
  llm::LlamaWeights w = llm::random_llama_weights(cfg, 5, Device::CPU, DType::F32);
  quant::quantize_llama_weights(w, "fp8");
  EXPECT_EQ(w.quant_name, "fp8");
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const auto& lw = w.layers[l];
    const auto& lo = orig.layers[l];
    for (auto [q, dense, src] : {std::tuple{&lw.q_wqkv, &lw.wqkv, &lo.wqkv},
                                 std::tuple{&lw.q_down, &lw.w_down, &lo.w_down}}) {
      ASSERT_EQ(q->format, llm::QuantFormat::kFp8);
      EXPECT_EQ(q->codes.dtype(), DType::U8);
      EXPECT_EQ(q->codes.shape(), dense->shape());
      EXPECT_EQ(q->scales.shape(), (Shape{dense->dim(0)}));
      EXPECT_EQ(q->group_size, dense->dim(1));
      expect_same(*dense, quant::dequantize_fp8_rows(q->codes, q->scales), "fp8");
      const std::vector<float> vd = dense->to_float_vector(), vo = src->to_float_vector();
      const int64_t k = dense->dim(1);
      for (size_t i = 0; i < vo.size(); ++i) {
        const double s = q->scales.data<float>()[i / k];
        ASSERT_LE(std::fabs(vd[i] - vo[i]),
                  std::max(std::fabs(vo[i]) * 0.0625, s * std::exp2(-10)) * (1 + 1e-6));
      }
      EXPECT_GT(omnirt::testing::rel_error(vd, vo), 0.0);  // really quantised
    }
  }
  EXPECT_LT(w.decode_bytes(), orig.decode_bytes() / 2);  // F32 -> 1 byte (+ dense lm_head)
}

}  // namespace
}  // namespace omnirt
