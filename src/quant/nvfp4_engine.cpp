#include "quant/nvfp4_engine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/llm_quant.h"
#include "quant/nvfp4.h"

namespace omnirt::quant {

Tensor dequantize_nvfp4_fast(const Tensor& codes_in, const Tensor& scales_in, float global_scale,
                             const std::string& what, DType out_dtype) {
  OMNIRT_CHECK(out_dtype == DType::F32 || out_dtype == DType::F16 || out_dtype == DType::BF16, what,
               ": NVFP4 dequantisation to ", dtype_name(out_dtype),
               " is not supported (F32, F16 or BF16)");
  check_nvfp4(codes_in, scales_in, what);
  const Tensor codes = codes_in.is_cuda() ? codes_in.to(Device::CPU) : codes_in.contiguous();
  const Tensor scales = scales_in.is_cuda() ? scales_in.to(Device::CPU) : scales_in.contiguous();
  const int64_t n = codes.dim(0), k = codes.dim(1) * 2, blocks = k / kNvfp4Block;
  float e2m1[16], block_scale[256];
  for (int c = 0; c < 16; ++c) e2m1[c] = e2m1_to_float(static_cast<uint8_t>(c));
  for (int s = 0; s < 256; ++s)
    block_scale[s] = e4m3_to_float(static_cast<uint8_t>(s)) * global_scale;
  Tensor w = Tensor::empty({n, k}, out_dtype);
  float* dst32 = out_dtype == DType::F32 ? w.data<float>() : nullptr;
  uint16_t* dst16 = out_dtype == DType::F32 ? nullptr : static_cast<uint16_t*>(w.raw());
  // The same rounding as Tensor::to_dtype of the float32 result.
  uint16_t (*const to16)(float) = out_dtype == DType::BF16 ? float_to_bf16 : float_to_half;
  const uint8_t* c = codes.data<uint8_t>();
  const uint8_t* s = scales.data<uint8_t>();
  auto run_rows = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t b = 0; b < blocks; ++b) {
        const float bs = block_scale[s[r * blocks + b]];
        const uint8_t* cb = c + r * (k / 2) + b * (kNvfp4Block / 2);
        float d[kNvfp4Block];
        for (int64_t j = 0; j < kNvfp4Block / 2; ++j) {
          d[2 * j] = e2m1[cb[j] & 0x0F] * bs;
          d[2 * j + 1] = e2m1[cb[j] >> 4] * bs;
        }
        const int64_t at = r * k + b * kNvfp4Block;
        if (dst32)
          std::memcpy(dst32 + at, d, sizeof d);
        else
          for (int64_t j = 0; j < kNvfp4Block; ++j) dst16[at + j] = to16(d[j]);
      }
  };
  const int64_t nthreads =
      std::clamp<int64_t>(n * k / (1 << 20), 1, std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> threads;
  for (int64_t t = 1; t < nthreads; ++t)
    threads.emplace_back(run_rows, n * t / nthreads, n * (t + 1) / nthreads);
  run_rows(0, n / nthreads);
  for (auto& t : threads) t.join();
  return w;
}

namespace {

struct Nvfp4Parts {
  Tensor codes, scales;
  float global_scale = 0.f;
};

// The three tensors of `module`, validated; false when the module has none (a dense linear).
bool read_module(const llm::TensorLookup& lookup, const std::string& module,
                 const std::string& what, Nvfp4Parts* out) {
  const Tensor q = lookup(module + ".qweight");
  const Tensor s = lookup(module + ".scales");
  const Tensor g = lookup(module + ".global_scale");
  if (!q.defined() && !s.defined() && !g.defined()) return false;
  for (const auto& [t, suffix] :
       {std::pair{&q, ".qweight"}, std::pair{&s, ".scales"}, std::pair{&g, ".global_scale"}})
    OMNIRT_CHECK(t->defined(), what, ": tensor \"", module, suffix, "\" is missing (an NVFP4 ",
                 "linear needs .qweight, .scales and .global_scale); rebuild the engine with "
                 "omnirt build");
  OMNIRT_CHECK(q.dtype() == DType::U8 && q.ndim() == 2 && q.dim(1) * 2 % kNvfp4Block == 0, what,
               ": tensor \"", module, ".qweight\": expected U8 [N, K/2] (E2M1 pairs) with K a ",
               "multiple of ", kNvfp4Block, ", got ", dtype_name(q.dtype()), " ",
               shape_str(q.shape()));
  check_nvfp4(q, s, what + ": " + module);  // names <module>.scales, expected vs actual
  OMNIRT_CHECK(g.dtype() == DType::F32 && g.numel() == 1, what, ": tensor \"", module,
               ".global_scale\": expected F32 [1], got ", dtype_name(g.dtype()), " ",
               shape_str(g.shape()));
  const Tensor gh = g.is_cuda() ? g.to(Device::CPU) : g.contiguous();
  const float gs = gh.data<float>()[0];
  OMNIRT_CHECK(std::isfinite(gs) && gs >= 0.f, what, ": tensor \"", module, ".global_scale\" is ",
               gs,
               "; an NVFP4 global scale must be finite and >= 0 "
               "(corrupt engine); rebuild the engine with omnirt build");
  *out = Nvfp4Parts{q, s, gs};
  return true;
}

}  // namespace

llm::LlamaWeights load_nvfp4_engine_weights(const llm::LlamaConfig& cfg,
                                            const llm::TensorLookup& lookup, Device device,
                                            DType dtype, const std::string& what) {
  const std::string suffix = ".weight";
  // Dense view for load_llama_weights: a quantised `<module>.weight` is its dequantisation.
  llm::TensorLookup dense = [&](const std::string& name) {
    Tensor t = lookup(name);
    if (t.defined() || name.size() <= suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      return t;
    const std::string module = name.substr(0, name.size() - suffix.size());
    Nvfp4Parts p;
    if (!read_module(lookup, module, what, &p)) return Tensor();
    // Straight in the engine dtype: no float32 copy of the model, no single-threaded conversion.
    return dequantize_nvfp4_fast(p.codes, p.scales, p.global_scale, what + ": " + module, dtype);
  };
  llm::LlamaWeights w = llm::load_llama_weights(cfg, dense, device, dtype, what);
  auto attach = [&](llm::QuantLinear& ql, const std::vector<std::string>& modules) {
    std::vector<Tensor> qs, ss;
    float global = 0.f;
    for (const std::string& m : modules) {
      Nvfp4Parts p;
      if (!read_module(lookup, m, what, &p)) {
        OMNIRT_CHECK(qs.empty(), what, ": ", m, " is not quantised but ", modules[0], " is");
        return;  // a dense linear: nothing to attach
      }
      // The fused GEMV has one global scale per matrix: linears that share their input
      // (q/k/v, gate/up) are quantised together and must record the same one.
      if (qs.empty()) global = p.global_scale;
      OMNIRT_CHECK(p.global_scale == global, what, ": tensor \"", m, ".global_scale\" (",
                   p.global_scale, ") differs from \"", modules[0], ".global_scale\" (", global,
                   ") but the two linears are fused into one matrix with one global scale "
                   "(corrupt engine); rebuild the engine with omnirt build");
      qs.push_back(p.codes);
      ss.push_back(p.scales);
    }
    ql.format = llm::QuantFormat::kNvfp4;
    ql.codes = concat_rows(qs, device);
    ql.scales = concat_rows(ss, device);
    ql.group_size = kNvfp4Block;
    ql.global_scale = global;
  };
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    llm::LlamaLayerWeights& lw = w.layers[static_cast<size_t>(l)];
    attach(lw.q_wqkv, {p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj"});
    attach(lw.q_wo, {p + "self_attn.o_proj"});
    attach(lw.q_gate_up, {p + "mlp.gate_proj", p + "mlp.up_proj"});
    attach(lw.q_down, {p + "mlp.down_proj"});
  }
  if (!cfg.tie_word_embeddings) attach(w.q_lm_head, {"lm_head"});
  w.quant_name = "nvfp4";
  return w;
}

}  // namespace omnirt::quant
