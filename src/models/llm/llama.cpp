#include "models/llm/llama.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "models/llm/llama_cuda.h"

namespace omnirt::llm {

void LlamaConfig::validate(const std::string& what) const {
  auto positive = [&](int64_t v, const char* field) {
    OMNIRT_CHECK(v > 0, what, ": field \"", field, "\" must be positive, got ", v);
  };
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(num_key_value_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  positive(vocab_size, "vocab_size");
  positive(max_position_embeddings, "max_position_embeddings");
  OMNIRT_CHECK(num_attention_heads % num_key_value_heads == 0, what,
               ": num_attention_heads (", num_attention_heads,
               ") must be a multiple of num_key_value_heads (", num_key_value_heads, ")");
  OMNIRT_CHECK(head_dim % 2 == 0, what, ": head_dim must be even for RoPE, got ", head_dim);
  OMNIRT_CHECK(rms_norm_eps > 0 && std::isfinite(rms_norm_eps), what,
               ": rms_norm_eps must be positive, got ", rms_norm_eps);
  OMNIRT_CHECK(rope_theta > 0 && std::isfinite(rope_theta), what,
               ": rope_theta must be positive, got ", rope_theta);
}

static int64_t get_int(const nlohmann::json& j, const char* field, const std::string& what,
                       std::optional<int64_t> fallback = std::nullopt) {
  if (!j.contains(field) || j[field].is_null()) {
    OMNIRT_CHECK(fallback.has_value(), what, ": missing required field \"", field, "\"");
    return *fallback;
  }
  OMNIRT_CHECK(j[field].is_number_integer(), what, ": field \"", field,
               "\" must be an integer, got ", j[field].dump());
  return j[field].get<int64_t>();
}

static double get_double(const nlohmann::json& j, const char* field, const std::string& what,
                         double fallback) {
  if (!j.contains(field) || j[field].is_null()) return fallback;
  OMNIRT_CHECK(j[field].is_number(), what, ": field \"", field, "\" must be a number, got ",
               j[field].dump());
  return j[field].get<double>();
}

// Our checkpoint's "llm" section (python/omnidrive_ref/checkpoint.py) spells three HF fields
// shorter; both spellings are accepted (HF's wins when both are present).
static const char* field_alias(const nlohmann::json& j, const char* hf, const char* ours) {
  return j.contains(hf) || !j.contains(ours) ? hf : ours;
}

LlamaConfig LlamaConfig::from_json(const nlohmann::json& j, const std::string& what) {
  OMNIRT_CHECK(j.is_object(), what, ": expected a JSON object");
  LlamaConfig c;
  c.hidden_size = get_int(j, "hidden_size", what);
  c.intermediate_size = get_int(j, "intermediate_size", what);
  c.num_hidden_layers = get_int(j, field_alias(j, "num_hidden_layers", "num_layers"), what);
  c.num_attention_heads = get_int(j, field_alias(j, "num_attention_heads", "num_heads"), what);
  c.num_key_value_heads = get_int(j, field_alias(j, "num_key_value_heads", "num_kv_heads"), what,
                                  c.num_attention_heads);
  c.vocab_size = get_int(j, "vocab_size", what);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", what, 2048);
  OMNIRT_CHECK(c.num_attention_heads > 0, what, ": num_attention_heads must be positive, got ",
               c.num_attention_heads);
  c.head_dim = get_int(j, "head_dim", what, c.hidden_size / c.num_attention_heads);
  if (!j.contains("head_dim"))
    OMNIRT_CHECK(c.hidden_size % c.num_attention_heads == 0, what, ": hidden_size (",
                 c.hidden_size, ") is not a multiple of num_attention_heads (",
                 c.num_attention_heads, ")");
  c.rms_norm_eps = get_double(j, "rms_norm_eps", what, 1e-6);
  c.rope_theta = get_double(j, "rope_theta", what, 10000.0);
  if (j.contains("tie_word_embeddings") && !j["tie_word_embeddings"].is_null()) {
    OMNIRT_CHECK(j["tie_word_embeddings"].is_boolean(), what,
                 ": field \"tie_word_embeddings\" must be a boolean");
    c.tie_word_embeddings = j["tie_word_embeddings"].get<bool>();
  }
  if (j.contains("rope_scaling"))
    OMNIRT_CHECK(j["rope_scaling"].is_null(), what,
                 ": rope_scaling is not supported (expected null, got ", j["rope_scaling"].dump(),
                 ")");
  if (j.contains("rope_convention"))
    OMNIRT_CHECK(j["rope_convention"] == "half_split", what,
                 ": rope_convention must be \"half_split\" (HF rotate_half), got ",
                 j["rope_convention"].dump());
  if (j.contains("hidden_act"))
    OMNIRT_CHECK(j["hidden_act"] == "silu", what, ": hidden_act must be \"silu\", got ",
                 j["hidden_act"].dump());
  if (j.contains("attention_bias"))
    OMNIRT_CHECK(!j["attention_bias"].is_boolean() || !j["attention_bias"].get<bool>(), what,
                 ": attention_bias=true is not supported");
  c.validate(what);
  return c;
}

LlamaConfig LlamaConfig::from_folder(const std::string& dir) {
  const std::string path = dir + "/config.json";
  std::ifstream f(path);
  OMNIRT_CHECK(f.good(), "cannot open ", path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    OMNIRT_FAIL(path, ": invalid JSON: ", e.what());
  }
  OMNIRT_CHECK(j.is_object(), path, ": expected a JSON object");
  if (j.contains("llm")) return from_json(j["llm"], path + " [llm]");
  return from_json(j, path);
}

LlamaConfig LlamaConfig::tinyllama() {
  LlamaConfig c;
  c.hidden_size = 2048;
  c.intermediate_size = 5632;
  c.num_hidden_layers = 22;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 4;
  c.head_dim = 64;
  c.vocab_size = 32000;
  c.max_position_embeddings = 2048;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = false;
  return c;
}

std::string LlamaConfig::describe() const {
  std::ostringstream os;
  os << "LLaMA: " << num_hidden_layers << " layers, hidden " << hidden_size << ", heads "
     << num_attention_heads << " (kv " << num_key_value_heads << ", head_dim " << head_dim
     << "), mlp " << intermediate_size << ", vocab " << vocab_size << ", max positions "
     << max_position_embeddings << (tie_word_embeddings ? ", tied embeddings" : "");
  return os.str();
}

std::vector<ExpectedTensor> expected_llama_tensors(const LlamaConfig& c) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  std::vector<ExpectedTensor> out;
  out.push_back({"model.embed_tokens.weight", {V, H}});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    out.push_back({p + "input_layernorm.weight", {H}});
    out.push_back({p + "self_attn.q_proj.weight", {c.q_dim(), H}});
    out.push_back({p + "self_attn.k_proj.weight", {c.kv_dim(), H}});
    out.push_back({p + "self_attn.v_proj.weight", {c.kv_dim(), H}});
    out.push_back({p + "self_attn.o_proj.weight", {H, c.q_dim()}});
    out.push_back({p + "post_attention_layernorm.weight", {H}});
    out.push_back({p + "mlp.gate_proj.weight", {I, H}});
    out.push_back({p + "mlp.up_proj.weight", {I, H}});
    out.push_back({p + "mlp.down_proj.weight", {H, I}});
  }
  out.push_back({"model.norm.weight", {H}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {V, H}});
  return out;
}

size_t LlamaWeights::bytes() const {
  size_t b = embed.nbytes() + final_norm.nbytes();
  for (const auto& l : layers)
    b += l.attn_norm.nbytes() + l.wqkv.nbytes() + l.wo.nbytes() + l.mlp_norm.nbytes() +
         l.w_gate_up.nbytes() + l.w_down.nbytes();
  if (lm_head.defined() && lm_head.raw() != embed.raw()) b += lm_head.nbytes();
  for (const auto& l : layers)
    b += l.q_wqkv.bytes() + l.q_wo.bytes() + l.q_gate_up.bytes() + l.q_down.bytes();
  return b + q_lm_head.bytes();
}

size_t LlamaWeights::decode_bytes() const {
  auto lin = [](const Tensor& dense, const QuantLinear& q) {
    return q.defined() ? q.bytes() : dense.nbytes();
  };
  size_t b = final_norm.nbytes() + lin(lm_head, q_lm_head);
  for (const auto& l : layers)
    b += l.attn_norm.nbytes() + l.mlp_norm.nbytes() + lin(l.wqkv, l.q_wqkv) + lin(l.wo, l.q_wo) +
         lin(l.w_gate_up, l.q_gate_up) + lin(l.w_down, l.q_down);
  return b;
}

namespace {

// Concatenates host tensors along dim 0, converting to `dtype`, then moves the result to
// `device`. The conversion happens on the host, one tensor at a time, so a full fp16 checkpoint
// never needs a float32 copy of itself.
Tensor concat_rows_to(const std::vector<Tensor>& parts, DType dtype, Device device) {
  int64_t rows = 0;
  for (const auto& p : parts) rows += p.dim(0);
  Shape shape = parts[0].shape();
  shape[0] = rows;
  Tensor host = Tensor::empty(shape, dtype, Device::CPU);
  char* dst = static_cast<char*>(host.raw());
  for (const auto& p : parts) {
    Tensor src = p.device() == Device::CPU ? p.contiguous() : p.to(Device::CPU);
    Tensor conv = src.dtype() == dtype ? src : src.to_dtype(dtype);
    std::memcpy(dst, conv.raw(), conv.nbytes());
    dst += conv.nbytes();
  }
  return device == Device::CPU ? host : host.to(device);
}

}  // namespace

LlamaWeights load_llama_weights(const LlamaConfig& cfg, const TensorLookup& lookup, Device device,
                                DType dtype, const std::string& what) {
  cfg.validate(what);
  OMNIRT_CHECK(dtype == DType::F32 || dtype == DType::F16 || dtype == DType::BF16,
               "LLM engine dtype must be F32, F16 or BF16, got ", dtype_name(dtype));
  // 1. Validate every tensor before converting or allocating anything.
  std::map<std::string, Tensor> t;
  for (const auto& e : expected_llama_tensors(cfg)) {
    Tensor x = lookup(e.name);
    OMNIRT_CHECK(x.defined(), what, ": missing tensor \"", e.name, "\" (expected shape ",
                 shape_str(e.shape), ")");
    OMNIRT_CHECK(x.shape() == e.shape, what, ": tensor \"", e.name, "\" has shape ",
                 shape_str(x.shape()), ", expected ", shape_str(e.shape));
    OMNIRT_CHECK(dtype_is_float(x.dtype()) && !dtype_is_packed(x.dtype()) &&
                     x.dtype() != DType::F8E4M3,
                 what, ": tensor \"", e.name, "\" has dtype ", dtype_name(x.dtype()),
                 ", expected F32, F16 or BF16");
    t[e.name] = x;
  }
  // 2. Convert and upload.
  LlamaWeights w;
  w.device = device;
  w.dtype = dtype;
  w.embed = concat_rows_to({t["model.embed_tokens.weight"]}, dtype, device);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LlamaLayerWeights lw;
    lw.attn_norm = concat_rows_to({t[p + "input_layernorm.weight"]}, DType::F32, device);
    lw.wqkv = concat_rows_to({t[p + "self_attn.q_proj.weight"], t[p + "self_attn.k_proj.weight"],
                              t[p + "self_attn.v_proj.weight"]},
                             dtype, device);
    lw.wo = concat_rows_to({t[p + "self_attn.o_proj.weight"]}, dtype, device);
    lw.mlp_norm = concat_rows_to({t[p + "post_attention_layernorm.weight"]}, DType::F32, device);
    lw.w_gate_up =
        concat_rows_to({t[p + "mlp.gate_proj.weight"], t[p + "mlp.up_proj.weight"]}, dtype, device);
    lw.w_down = concat_rows_to({t[p + "mlp.down_proj.weight"]}, dtype, device);
    w.layers.push_back(std::move(lw));
  }
  w.final_norm = concat_rows_to({t["model.norm.weight"]}, DType::F32, device);
  w.lm_head = cfg.tie_word_embeddings ? w.embed : concat_rows_to({t["lm_head.weight"]}, dtype, device);
  return w;
}

namespace {

// Fills `t` (contiguous, F32/F16/BF16) with offset + scale * hash_uniform(seed, i).
void fill_random(Tensor& t, uint64_t seed, float scale, float offset) {
  if (t.device() == Device::CUDA) {
#ifdef OMNIRT_WITH_CUDA
    cuda_fill_hash_uniform(t.raw(), t.dtype(), t.numel(), seed, scale, offset);
    return;
#else
    OMNIRT_FAIL("random CUDA weights requested but omnirt was built without CUDA");
#endif
  }
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) {
    const float v = offset + scale * hash_uniform(seed, static_cast<uint64_t>(i));
    switch (t.dtype()) {
      case DType::F32:
        t.data<float>()[i] = v;
        break;
      case DType::F16:
        t.data<uint16_t>()[i] = float_to_half(v);
        break;
      case DType::BF16:
        t.data<uint16_t>()[i] = float_to_bf16(v);
        break;
      default:
        OMNIRT_FAIL("fill_random: unsupported dtype ", dtype_name(t.dtype()));
    }
  }
}

}  // namespace

LlamaWeights random_llama_weights(const LlamaConfig& cfg, uint64_t seed, Device device, DType dtype,
                                  float weight_scale) {
  cfg.validate("random LLaMA config");
  const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
  uint64_t stream = seed * 1000003ull;
  auto linear = [&](const Shape& s) {
    Tensor x = Tensor::empty(s, dtype, device);
    fill_random(x, stream++, weight_scale * std::sqrt(3.0f / static_cast<float>(s[1])), 0.f);
    return x;
  };
  auto norm = [&]() {
    Tensor x = Tensor::empty({H}, DType::F32, device);
    fill_random(x, stream++, 0.1f, 1.0f);
    return x;
  };
  LlamaWeights w;
  w.device = device;
  w.dtype = dtype;
  w.embed = Tensor::empty({V, H}, dtype, device);
  fill_random(w.embed, stream++, 1.0f, 0.f);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    LlamaLayerWeights lw;
    lw.attn_norm = norm();
    lw.wqkv = linear({cfg.qkv_dim(), H});
    lw.wo = linear({H, cfg.q_dim()});
    lw.mlp_norm = norm();
    lw.w_gate_up = linear({2 * I, H});
    lw.w_down = linear({H, I});
    w.layers.push_back(std::move(lw));
  }
  w.final_norm = norm();
  w.lm_head = cfg.tie_word_embeddings ? w.embed : linear({V, H});
  if (device == Device::CUDA) device_synchronize();
  return w;
}

void llama_rope_tables(const LlamaConfig& cfg, int64_t max_pos, Tensor& cos, Tensor& sin) {
  const int64_t half = cfg.head_dim / 2;
  cos = Tensor::empty({max_pos, half}, DType::F32);
  sin = Tensor::empty({max_pos, half}, DType::F32);
  for (int64_t i = 0; i < half; ++i) {
    // torch: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), evaluated in float32.
    const float expo = static_cast<float>(2 * i) / static_cast<float>(cfg.head_dim);
    const float inv_freq =
        1.0f / static_cast<float>(std::pow(static_cast<double>(static_cast<float>(cfg.rope_theta)),
                                           static_cast<double>(expo)));
    for (int64_t p = 0; p < max_pos; ++p) {
      const float angle = static_cast<float>(p) * inv_freq;
      cos.data<float>()[p * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sin.data<float>()[p * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
}

}  // namespace omnirt::llm
