#include "quant/awq.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/log.h"
#include "models/llm/llm_engine.h"
#include "models/llm/prompt.h"
#include "models/llm/trajectory.h"
#include "quant/int4.h"

namespace omnirt::quant {

std::vector<AwqCalibText> default_awq_calibration() {
  // Two plausible 3 s plans (metres forward, metres left at 0.5 s steps): keep straight at
  // ~8.7 m/s, and a gentle left curve while slowing down.
  const std::vector<llm::Waypoint> straight = {{4.35, 0.0},    {8.72, -0.05},  {13.10, -0.12},
                                               {17.51, -0.21}, {21.93, -0.33}, {26.37, -0.47}};
  const std::vector<llm::Waypoint> left = {{3.91, 0.08},  {7.62, 0.46},  {11.03, 1.17},
                                           {14.08, 2.21}, {16.77, 3.43}, {19.02, 4.91}};
  return {{llm::planning_prompt("boston"), llm::format_planning_answer(straight)},
          {llm::planning_prompt("singapore"), llm::format_planning_answer(left)}};
}

AwqActivations collect_awq_activations(const llm::LlamaConfig& cfg,
                                       const llm::LlamaWeights& weights,
                                       const llm::Tokenizer& tokenizer,
                                       const std::vector<AwqCalibText>& texts) {
  OMNIRT_CHECK(
      weights.device == Device::CPU && weights.dtype == DType::F32 && weights.quant_name.empty(),
      "AWQ calibration runs the float32 CPU engine on dense weights; got ",
      dtype_name(weights.dtype), " on ", device_name(weights.device),
      weights.quant_name.empty() ? "" : " quantised to " + weights.quant_name);
  OMNIRT_CHECK(!texts.empty(), "AWQ calibration: no calibration sequences");
  const size_t layers = static_cast<size_t>(cfg.num_hidden_layers);
  // Rows per (layer, site), appended as the engine runs.
  std::vector<std::array<std::vector<float>, 4>> rows(layers);
  std::array<int64_t, 4> width{};
  AwqActivations out;
  out.texts = texts;

  llm::LlmEngineOptions o;
  o.device = Device::CPU;
  o.dtype = DType::F32;
  o.linear_input_hook = [&](int64_t layer, llm::LinearSite site, const Tensor& x) {
    const auto s = static_cast<size_t>(site);
    const Tensor c = x.contiguous();
    width[s] = c.dim(1);
    std::vector<float>& dst = rows[static_cast<size_t>(layer)][s];
    dst.insert(dst.end(), c.data<float>(), c.data<float>() + c.numel());
  };
  // Shares the weights' storage; the engine only reads them.
  llm::LlmEngine engine(cfg, weights, o);
  for (const AwqCalibText& t : texts) {
    llm::PromptIds p = llm::tokenizer_image_token(tokenizer, t.prompt);
    const std::vector<int32_t> answer = tokenizer.encode(t.answer, /*add_bos=*/false);
    p.ids.insert(p.ids.end(), answer.begin(), answer.end());
    // Text only: build_prompt_embeddings drops the placeholder when no vision rows are given.
    const Tensor emb = engine.build_prompt_embeddings(p.ids, Tensor());
    engine.reset();
    engine.prefill(emb);
    out.sequence_tokens.push_back(emb.dim(0));
    out.tokens += emb.dim(0);
  }
  out.x.resize(layers);
  for (size_t l = 0; l < layers; ++l)
    for (size_t s = 0; s < 4; ++s) {
      const int64_t k = width[s];
      OMNIRT_CHECK(k > 0 && static_cast<int64_t>(rows[l][s].size()) == out.tokens * k,
                   "AWQ calibration: layer ", l, " ",
                   llm::linear_site_name(static_cast<llm::LinearSite>(s)), " captured ",
                   rows[l][s].size(), " values, expected ", out.tokens, " rows of ", k);
      out.x[l][s] = Tensor::from_vector(rows[l][s], {out.tokens, k});
      std::vector<float>().swap(rows[l][s]);
    }
  return out;
}

void check_awq_in_scale(const Tensor& in_scale, int64_t k, const std::string& what) {
  OMNIRT_CHECK(in_scale.defined(), what, ": missing (an AWQ engine needs an F32 [", k,
               "] input scale for each quantised linear); rebuild the engine with omnirt build");
  OMNIRT_CHECK(in_scale.dtype() == DType::F32 && in_scale.ndim() == 1 && in_scale.dim(0) == k, what,
               ": expected an F32 [", k, "] AWQ input scale, got ", dtype_name(in_scale.dtype()),
               " ", shape_str(in_scale.shape()), "; rebuild the engine with omnirt build");
  const Tensor c = in_scale.is_cuda() ? in_scale.to(Device::CPU) : in_scale.contiguous();
  const float* v = c.data<float>();
  for (int64_t i = 0; i < k; ++i)
    OMNIRT_CHECK(std::isfinite(v[i]) && v[i] > 0.f, what, ": value ", v[i], " at [", i,
                 "] is not a finite positive AWQ input scale (corrupt engine); rebuild the "
                 "engine with omnirt build");
}

Tensor dequantize_int4_awq(const Tensor& codes, const Tensor& scales, const Tensor& in_scale,
                           const std::string& what) {
  Tensor w = dequantize_int4(codes, scales, what);
  const int64_t n = w.dim(0), k = w.dim(1);
  check_awq_in_scale(in_scale, k, what + ".in_scale");
  const Tensor s = in_scale.is_cuda() ? in_scale.to(Device::CPU) : in_scale.contiguous();
  float* p = w.data<float>();
  const float* sp = s.data<float>();
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) p[r * k + c] *= sp[c];
  return w;
}

std::vector<AwqLinearReport> quantize_llama_weights_awq(llm::LlamaWeights& w,
                                                        const AwqActivations& acts,
                                                        int64_t group_size, int grid,
                                                        const std::string& precision_name) {
  OMNIRT_CHECK(w.device == Device::CPU && w.dtype == DType::F32 && w.quant_name.empty(),
               "quantize_llama_weights_awq: needs dense float32 CPU weights");
  OMNIRT_CHECK(acts.x.size() == w.layers.size(), "quantize_llama_weights_awq: activations of ",
               acts.x.size(), " layers for a model of ", w.layers.size());
  std::vector<AwqLinearReport> reports;
  for (size_t l = 0; l < w.layers.size(); ++l) {
    llm::LlamaLayerWeights& lw = w.layers[l];
    const std::pair<Tensor*, llm::QuantLinear*> linears[4] = {{&lw.wqkv, &lw.q_wqkv},
                                                              {&lw.wo, &lw.q_wo},
                                                              {&lw.w_gate_up, &lw.q_gate_up},
                                                              {&lw.w_down, &lw.q_down}};
    for (size_t s = 0; s < 4; ++s) {
      auto [dense, q] = linears[s];
      const std::string name = "layer " + std::to_string(l) + " " +
                               llm::linear_site_name(static_cast<llm::LinearSite>(s));
      AwqInt4Weight a = quantize_int4_awq(*dense, acts.x[l][s], group_size, grid, name);
      q->format = llm::QuantFormat::kInt4;
      q->group_size = a.weight.group_size;
      q->codes = a.weight.qweight;
      q->scales = a.weight.scales;
      q->in_scale = a.input_scale;
      *dense = dequantize_int4_awq(q->codes, q->scales, q->in_scale, name);
      reports.push_back({name, a.alpha, a.calib_error, a.plain_error});
    }
    LOG_DEBUG("AWQ: layer ", l, " of ", w.layers.size(), " quantised");
  }
  w.quant_name = precision_name;
  return reports;
}

}  // namespace omnirt::quant
