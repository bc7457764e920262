#include "quant/llm_quant.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "quant/awq.h"
#include "quant/engine.h"
#include "quant/fp8_weight.h"
#include "quant/int4.h"
#include "quant/nvfp4.h"

namespace omnirt::quant {

llm::QuantFormat parse_weight_format(const std::string& name, int64_t* group_size) {
  if (group_size) *group_size = 0;
  if (name == "fp" || name.empty()) return llm::QuantFormat::kNone;
  if (name == "nvfp4") return llm::QuantFormat::kNvfp4;
  if (name == "fp8") return llm::QuantFormat::kFp8;
  OMNIRT_CHECK(name.rfind("int4", 0) == 0, "unknown weight format \"", name,
               "\": expected fp, int4, int4-g<G> (G even, e.g. int4-g128), nvfp4 or fp8");
  bool awq = false;
  parse_llm_precision(name, group_size, &awq);  // int4 / int4-g<G>[-awq], throws otherwise
  OMNIRT_CHECK(!awq, "weight format \"", name,
               "\": AWQ needs calibration activations, so it is not done at load; build an "
               "engine folder with omnirt build CKPT --out DIR --llm ",
               name, " and load that");
  return llm::QuantFormat::kInt4;
}

namespace {
struct Item {
  std::string name;
  Tensor* dense = nullptr;
  llm::QuantLinear* q = nullptr;
  const Tensor* src = nullptr;  // the tensor quantised (dense, or its full-precision source)
  Tensor host;                  // in
  Tensor codes, scales, deq;    // out (host)
  float global_scale = 1.f;
  int64_t group = 0;
};
}  // namespace

void quantize_llama_weights(llm::LlamaWeights& w, const std::string& format, bool quantize_lm_head,
                            const llm::LlamaWeights* source) {
  int64_t group = 0;
  const llm::QuantFormat fmt = parse_weight_format(format, &group);
  if (fmt == llm::QuantFormat::kNone) return;
  OMNIRT_CHECK(w.quant_name.empty(), "quantize_llama_weights: the weights are already quantised (",
               w.quant_name, ")");
  if (source) {
    OMNIRT_CHECK(source->layers.size() == w.layers.size(), "quantize_llama_weights: the source ",
                 "weights have ", source->layers.size(), " layers, the engine weights ",
                 w.layers.size());
    OMNIRT_CHECK(source->quant_name.empty(),
                 "quantize_llama_weights: the source weights are already quantised (",
                 source->quant_name, ")");
  }
  std::vector<Item> items;
  // Quantises `src` when there is a source (full precision), else the dense tensor itself.
  auto add = [&](std::string name, Tensor* dense, llm::QuantLinear* q, const Tensor& src) {
    Item it;
    it.name = std::move(name);
    it.dense = dense;
    it.q = q;
    it.src = source ? &src : dense;
    items.push_back(std::move(it));
  };
  for (size_t l = 0; l < w.layers.size(); ++l) {
    auto& lw = w.layers[l];
    const llm::LlamaLayerWeights& sl = source ? source->layers[l] : lw;
    const std::string p = "layer " + std::to_string(l) + " ";
    add(p + "wqkv", &lw.wqkv, &lw.q_wqkv, sl.wqkv);
    add(p + "wo", &lw.wo, &lw.q_wo, sl.wo);
    add(p + "w_gate_up", &lw.w_gate_up, &lw.q_gate_up, sl.w_gate_up);
    add(p + "w_down", &lw.w_down, &lw.q_down, sl.w_down);
  }
  if (quantize_lm_head) {
    if (w.lm_head.raw() == w.embed.raw())
      LOG_WARN("lm_head is tied to the embeddings: kept dense");
    else
      add("lm_head", &w.lm_head, &w.q_lm_head, source ? source->lm_head : w.lm_head);
  }
  // 1. Bring every weight to the host as F32 (on the calling thread: device copies stay
  //    single-threaded).
  for (Item& it : items) {
    OMNIRT_CHECK(it.src->shape() == it.dense->shape(), "quantize_llama_weights: ", it.name,
                 ": source shape ", shape_str(it.src->shape()), " differs from the engine's ",
                 shape_str(it.dense->shape()));
    it.host = it.src->device() == Device::CPU ? it.src->contiguous() : it.src->to(Device::CPU);
    if (it.host.dtype() != DType::F32) it.host = it.host.to_dtype(DType::F32);
  }
  // 2. Quantise + dequantise on all cores (host-only work).
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  auto worker = [&] {
    for (size_t i = next++; i < items.size() && !failed; i = next++) {
      Item& it = items[i];
      try {
        if (fmt == llm::QuantFormat::kInt4) {
          Int4Weight q = quantize_int4(it.host, group, it.name);
          it.deq = dequantize_int4(q.qweight, q.scales, it.name);
          it.codes = std::move(q.qweight);
          it.scales = std::move(q.scales);
          it.group = q.group_size;
        } else if (fmt == llm::QuantFormat::kFp8) {
          Fp8Weight q = quantize_fp8_rows(it.host, it.name);
          it.deq = dequantize_fp8_rows(q.codes, q.scales, it.name);
          it.codes = std::move(q.codes);
          it.scales = std::move(q.scales);
          it.group = it.host.dim(1);  // one scale per row
        } else {
          Nvfp4Weight q = quantize_nvfp4(it.host, it.name);
          it.deq = dequantize_nvfp4(q.codes, q.scales, q.global_scale, it.name);
          it.codes = std::move(q.codes);
          it.scales = std::move(q.scales);
          it.global_scale = q.global_scale;
          it.group = kNvfp4Block;
        }
        it.deq = it.deq.to_dtype(w.dtype);
        it.host = Tensor();
      } catch (...) {
        if (!failed.exchange(true)) error = std::current_exception();
      }
    }
  };
  const size_t nthreads = std::max<size_t>(
      1, std::min<size_t>(items.size(), std::max(1u, std::thread::hardware_concurrency())));
  std::vector<std::thread> threads;
  for (size_t t = 1; t < nthreads; ++t) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
  // 3. Upload: quantised copies, and the dense tensors replaced by the dequantised weights.
  for (Item& it : items) {
    it.q->format = fmt;
    it.q->group_size = it.group;
    it.q->global_scale = it.global_scale;
    it.q->codes = w.device == Device::CPU ? it.codes : it.codes.to(w.device);
    it.q->scales = w.device == Device::CPU ? it.scales : it.scales.to(w.device);
    *it.dense = w.device == Device::CPU ? it.deq : it.deq.to(w.device);
  }
  w.quant_name = format + (quantize_lm_head && w.q_lm_head.defined() ? "+lm_head" : "");
}

llm::LlamaWeights load_quantised_llama_weights(const llm::LlamaConfig& cfg,
                                               const llm::TensorLookup& lookup, Device device,
                                               DType dtype, const std::string& format,
                                               bool quantize_lm_head, const std::string& what) {
  llm::LlamaWeights w = llm::load_llama_weights(cfg, lookup, device, dtype, what);
  if (parse_weight_format(format) == llm::QuantFormat::kNone) return w;
  if (device == Device::CPU && dtype == DType::F32) {
    quantize_llama_weights(w, format, quantize_lm_head);
  } else {
    // A float32 host copy to quantise from (freed on return).
    const llm::LlamaWeights f32 =
        llm::load_llama_weights(cfg, lookup, Device::CPU, DType::F32, what);
    quantize_llama_weights(w, format, quantize_lm_head, &f32);
  }
  return w;
}

Tensor concat_rows(const std::vector<Tensor>& parts, Device device) {
  int64_t rows = 0;
  for (const Tensor& p : parts) rows += p.dim(0);
  Tensor host = Tensor::empty({rows, parts[0].dim(1)}, parts[0].dtype());
  char* dst = static_cast<char*>(host.raw());
  for (const Tensor& p : parts) {
    const Tensor c = p.device() == Device::CPU ? p.contiguous() : p.to(Device::CPU);
    std::memcpy(dst, c.raw(), c.nbytes());
    dst += c.nbytes();
  }
  return device == Device::CPU ? host : host.to(device);
}

llm::LlamaWeights load_int4_engine_weights(const llm::LlamaConfig& cfg,
                                           const llm::TensorLookup& lookup, Device device,
                                           DType dtype, const std::string& precision,
                                           const std::string& what) {
  int64_t group = 0;
  bool awq = false;
  parse_llm_precision(precision, &group, &awq);
  OMNIRT_CHECK(precision.rfind("int4", 0) == 0, what,
               ": load_int4_engine_weights needs an int4 / int4-g<G>[-awq] engine, got ",
               precision);
  // Dense view for load_llama_weights: a quantised `<module>.weight` is its dequantisation
  // (AWQ: with its input scale folded into the columns, quant/awq.h).
  auto qpair = [&](const std::string& module, Tensor* q, Tensor* s, Tensor* in_scale) {
    *q = lookup(module + ".qweight");
    *s = lookup(module + ".scales");
    *in_scale = lookup(module + ".in_scale");
    if (!q->defined() && !s->defined()) {
      OMNIRT_CHECK(!in_scale->defined(), what, ": tensor \"", module,
                   ".in_scale\" belongs to no quantised weight (no ", module, ".qweight)");
      return false;
    }
    OMNIRT_CHECK(q->defined() && s->defined(), what, ": ", module, " has ",
                 q->defined() ? ".qweight but no .scales" : ".scales but no .qweight");
    const int64_t g = int4_group_size(*q, *s, what + ": " + module);
    const int64_t k = q->dim(1) * 2;
    OMNIRT_CHECK(g == (group == 0 ? k : group), what, ": ", module, " has group size ", g,
                 " but the engine precision is ", precision);
    if (awq)
      check_awq_in_scale(*in_scale, k, what + ": tensor \"" + module + ".in_scale\"");
    else
      OMNIRT_CHECK(!in_scale->defined(), what, ": tensor \"", module,
                   ".in_scale\" is an AWQ input scale but the engine precision ", precision,
                   " is not AWQ (corrupt engine); rebuild the engine with omnirt build");
    return true;
  };
  const std::string suffix = ".weight";
  llm::TensorLookup dense = [&](const std::string& name) {
    Tensor t = lookup(name);
    if (t.defined() || name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      return t;
    Tensor q, s, is;
    const std::string module = name.substr(0, name.size() - suffix.size());
    if (!qpair(module, &q, &s, &is)) return Tensor();
    return awq ? dequantize_int4_awq(q, s, is, what + ": " + module)
               : dequantize_int4(q, s, what + ": " + module);
  };
  llm::LlamaWeights w = llm::load_llama_weights(cfg, dense, device, dtype, what);
  auto attach = [&](llm::QuantLinear& ql, const std::vector<std::string>& modules) {
    std::vector<Tensor> qs, ss;
    Tensor in_scale;
    for (const std::string& m : modules) {
      Tensor q, s, is;
      if (!qpair(m, &q, &s, &is)) {
        OMNIRT_CHECK(qs.empty(), what, ": ", m, " is not quantised but ", modules[0], " is");
        return;  // a dense linear (e.g. kept in F16): nothing to attach
      }
      qs.push_back(q);
      ss.push_back(s.dtype() == DType::F32 ? s : s.to_dtype(DType::F32));
      // The fused GEMV multiplies one input by one in_scale: linears that share their input
      // (q/k/v, gate/up) must share it too.
      if (awq && !in_scale.defined()) {
        in_scale = is.contiguous();
      } else if (awq) {
        const Tensor c = is.contiguous();
        OMNIRT_CHECK(std::memcmp(c.raw(), in_scale.raw(), c.nbytes()) == 0, what, ": tensor \"", m,
                     ".in_scale\" differs from \"", modules[0],
                     ".in_scale\" but the two linears share their input, so they must share "
                     "the AWQ input scale (corrupt engine); rebuild the engine with omnirt build");
      }
    }
    if (awq) ql.in_scale = device == Device::CPU ? in_scale.clone() : in_scale.to(device);
    ql.format = llm::QuantFormat::kInt4;
    ql.codes = concat_rows(qs, device);
    ql.scales = concat_rows(ss, device);
    ql.group_size = group == 0 ? qs[0].dim(1) * 2 : group;
  };
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    llm::LlamaLayerWeights& lw = w.layers[l];
    attach(lw.q_wqkv, {p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj"});
    attach(lw.q_wo, {p + "self_attn.o_proj"});
    attach(lw.q_gate_up, {p + "mlp.gate_proj", p + "mlp.up_proj"});
    attach(lw.q_down, {p + "mlp.down_proj"});
  }
  if (!cfg.tie_word_embeddings) attach(w.q_lm_head, {"lm_head"});
  w.quant_name = precision;
  return w;
}

}  // namespace omnirt::quant
