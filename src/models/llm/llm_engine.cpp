#include "models/llm/llm_engine.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/error.h"
#include "core/log.h"
#include "models/llm/llm_engine_impl.h"
#include "quant/llm_quant.h"

namespace omnirt::llm {

const char* linear_site_name(LinearSite site) {
  switch (site) {
    case LinearSite::kQkv:
      return "qkv";
    case LinearSite::kO:
      return "o";
    case LinearSite::kGateUp:
      return "gate_up";
    case LinearSite::kDown:
      return "down";
  }
  return "?";
}

LlmEngine::LlmEngine(const LlamaConfig& config, LlamaWeights weights,
                     const LlmEngineOptions& options)
    : config_(config), options_(options) {
  OMNIRT_CHECK(options.device == Device::CPU || !options.linear_input_hook,
               "LLM engine: linear_input_hook (AWQ calibration) is supported by the CPU engine "
               "only");
  config_.validate("LLM config");
  max_context_ = options.max_context > 0 ? options.max_context : config.max_position_embeddings;
  OMNIRT_CHECK(max_context_ <= config.max_position_embeddings, "LLM engine: max_context ",
               max_context_, " exceeds the model's max_position_embeddings ",
               config.max_position_embeddings);
  OMNIRT_CHECK(options_.max_prefill_chunk > 0, "LLM engine: max_prefill_chunk must be positive");
  options_.max_prefill_chunk = std::min(options_.max_prefill_chunk, max_context_);
  OMNIRT_CHECK(weights.device == options.device, "LLM engine: weights are on ",
               device_name(weights.device), " but the engine runs on ",
               device_name(options.device));
  OMNIRT_CHECK(weights.dtype == options.dtype, "LLM engine: weights are ",
               dtype_name(weights.dtype), " but the engine dtype is ", dtype_name(options.dtype));
  if (!options.weight_format.empty() && options.weight_format != "fp") {
    OMNIRT_CHECK(weights.quant_name.empty(), "LLM engine: weight_format ", options.weight_format,
                 " asked for, but the weights are already quantised (", weights.quant_name, ")");
    quant::quantize_llama_weights(weights, options.weight_format, options.quantize_lm_head);
  }
  weight_bytes_ = weights.bytes();
  decode_weight_bytes_ = weights.decode_bytes();
  weight_format_ = weights.quant_name;
  if (options.device == Device::CPU) {
    OMNIRT_CHECK(options.dtype == DType::F32, "the CPU LLM engine supports F32 only, got ",
                 dtype_name(options.dtype));
    impl_ = detail::make_cpu_llama(config_, std::move(weights), options_, max_context_);
  } else {
    impl_ = detail::make_cuda_llama(config_, std::move(weights), options_, max_context_);
  }
}

LlmEngine::~LlmEngine() = default;

void LlmEngine::reset() {
  impl_->reset();
  position_ = 0;
}

size_t LlmEngine::kv_cache_bytes() const { return impl_->kv_cache_bytes(); }
size_t LlmEngine::workspace_bytes() const { return impl_->workspace_bytes(); }

Tensor LlmEngine::prefill(const Tensor& embeddings) { return run_prefill(embeddings, false); }

Tensor LlmEngine::prefill_all_logits(const Tensor& embeddings) {
  OMNIRT_CHECK(options_.all_logits,
               "prefill_all_logits needs an engine built with LlmEngineOptions::all_logits");
  return run_prefill(embeddings, true);
}

void detail::check_finite_embeddings(const float* e, int64_t count, int64_t hidden) {
  // A branch-free scan (it vectorises; a prompt is ~1.2 M floats and this runs inside TTFT): a
  // float is inf/NaN iff its exponent bits are all ones. Only when the scan finds one is the
  // first offender located for the message.
  uint32_t bad = 0;
  for (int64_t i = 0; i < count; ++i) {
    uint32_t u;
    std::memcpy(&u, e + i, sizeof u);
    bad |= static_cast<uint32_t>((u & 0x7f800000u) == 0x7f800000u);
  }
  if (bad) {
    for (int64_t i = 0; i < count; ++i)
      OMNIRT_CHECK(std::isfinite(e[i]), "prefill: input embedding row ", i / hidden, ", column ",
                   i % hidden, " is not finite (", e[i], ")");
  }
}

Tensor LlmEngine::run_prefill(const Tensor& embeddings, bool all_logits) {
  const int64_t H = config_.hidden_size;
  OMNIRT_CHECK(embeddings.defined(), "prefill: the input embeddings are missing");
  OMNIRT_CHECK(embeddings.ndim() == 2 && embeddings.dim(1) == H,
               "prefill: input embeddings must be [L, ", H, "], got ", embeddings.describe());
  OMNIRT_CHECK(embeddings.dtype() == DType::F32, "prefill: input embeddings must be F32, got ",
               embeddings.describe());
  const int64_t L = embeddings.dim(0);
  OMNIRT_CHECK(L > 0, "prefill: no input embeddings (L = 0)");
  OMNIRT_CHECK(position_ + L <= max_context_, "prefill: ", L, " embeddings after ", position_,
               " cached positions need ", position_ + L, " positions, but the context holds ",
               max_context_);
  // All checks on the host, before any GPU work: a device input is brought over first.
  Tensor host = embeddings.device() == Device::CPU ? embeddings.contiguous()
                                                   : embeddings.to(Device::CPU);
  // (A backend that checks while it uploads does so for a single-chunk prompt: its forward()
  // throws before changing any state. Chunked prompts are checked here, before the first chunk.)
  if (!(L <= options_.max_prefill_chunk && impl_->checks_finite_input()))
    detail::check_finite_embeddings(host.data<float>(), host.numel(), H);

  Tensor all;
  if (all_logits) all = Tensor::empty({L, config_.vocab_size}, DType::F32);
  Tensor last;
  const int64_t chunk = options_.max_prefill_chunk;
  for (int64_t start = 0; start < L; start += chunk) {
    const int64_t n = std::min(chunk, L - start);
    Tensor part = host.slice(0, start, start + n);
    last = impl_->forward(part, position_, all_logits);
    position_ += n;
    if (all_logits) {
      Tensor h = last.device() == Device::CPU ? last : last.to(Device::CPU);
      std::memcpy(all.data<float>() + start * config_.vocab_size, h.raw(), h.nbytes());
    }
  }
  return all_logits ? all : last;
}

Tensor LlmEngine::decode(int32_t token) {
  OMNIRT_CHECK(token >= 0 && token < config_.vocab_size, "decode: token id ", token,
               " is outside the vocabulary [0, ", config_.vocab_size, ")");
  OMNIRT_CHECK(position_ < max_context_, "decode: the context is full (", max_context_,
               " positions)");
  Tensor logits = impl_->decode(token, position_);
  ++position_;
  return logits;
}

void LlmEngine::set_sampler(DeviceSampler sampler) { impl_->set_sampler(std::move(sampler)); }
void LlmEngine::sample_first() {
  OMNIRT_CHECK(position_ > 0, "sample_first: nothing has been prefilled");
  impl_->sample_last();
}
void LlmEngine::decode_next() {
  OMNIRT_CHECK(position_ < max_context_, "decode: the context is full (", max_context_,
               " positions)");
  impl_->decode_next(position_);
  ++position_;
}
int32_t LlmEngine::read_token() { return impl_->read_token(); }

Tensor LlmEngine::embed_tokens(const std::vector<int32_t>& ids) const {
  const int64_t H = config_.hidden_size;
  Tensor out = Tensor::empty({static_cast<int64_t>(ids.size()), H}, DType::F32);
  const Tensor& table = impl_->embed_table();
  for (size_t i = 0; i < ids.size(); ++i) {
    OMNIRT_CHECK(ids[i] >= 0 && ids[i] < config_.vocab_size, "embed_tokens: token id ", ids[i],
                 " at index ", i, " is outside the vocabulary [0, ", config_.vocab_size, ")");
    std::vector<float> row = table.slice(0, ids[i], ids[i] + 1).to_float_vector();
    std::memcpy(out.data<float>() + i * H, row.data(), H * sizeof(float));
  }
  return out;
}

Tensor LlmEngine::build_prompt_embeddings(const std::vector<int32_t>& ids,
                                          const Tensor& vision) const {
  const int64_t H = config_.hidden_size;
  const int64_t placeholders = std::count(ids.begin(), ids.end(), kImageTokenIndex);
  const int64_t R = vision.defined() ? vision.dim(0) : 0;
  OMNIRT_CHECK(placeholders <= 1, "build_prompt_embeddings: ", placeholders,
               " image placeholders (", kImageTokenIndex, ") in the prompt; expected at most one");
  if (placeholders == 0)
    OMNIRT_CHECK(R == 0, "build_prompt_embeddings: ", R,
                 " vision rows given but the prompt has no image placeholder");
  if (vision.defined()) {
    OMNIRT_CHECK(vision.ndim() == 2 && vision.dim(1) == H && vision.dtype() == DType::F32,
                 "build_prompt_embeddings: vision embeddings must be F32 [R, ", H, "], got ",
                 vision.describe());
  }
  const int64_t L = static_cast<int64_t>(ids.size()) - placeholders + R;
  OMNIRT_CHECK(L <= max_context_, "prompt too long: ", ids.size() - placeholders,
               " text tokens + ", R, " vision embeddings = ", L,
               " positions, but the LLM context holds ", max_context_);
  Tensor out = Tensor::empty({L, H}, DType::F32);
  float* dst = out.data<float>();
  std::vector<int32_t> text;
  for (int32_t id : ids) {
    if (id == kImageTokenIndex) {
      if (R > 0) {
        std::vector<float> v = vision.to_float_vector();
        std::memcpy(dst, v.data(), v.size() * sizeof(float));
        dst += R * H;
      }
      continue;
    }
    Tensor row = embed_tokens({id});
    std::memcpy(dst, row.raw(), H * sizeof(float));
    dst += H;
  }
  return out;
}

void check_tokenizer_vocab(const Tokenizer& tokenizer, const LlamaConfig& config) {
  if (tokenizer.vocab_size() > config.vocab_size)
    tokenizer.expect_vocab(static_cast<int>(config.vocab_size));
  if (tokenizer.vocab_size() < config.vocab_size)
    LOG_WARN(tokenizer.source(), " has ", tokenizer.vocab_size(), " pieces, fewer than the LLM's ",
             "vocab_size ", config.vocab_size, ": generated ids past the tokenizer decode to nothing");
}

int32_t argmax_host(const Tensor& logits) {
  std::vector<float> v = logits.to_float_vector();
  OMNIRT_CHECK(!v.empty(), "argmax of empty logits");
  int32_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = static_cast<int32_t>(i);
  return best;
}

#ifndef OMNIRT_WITH_CUDA
namespace detail {
std::unique_ptr<LlamaImpl> make_cuda_llama(const LlamaConfig&, LlamaWeights, const LlmEngineOptions&,
                                           int64_t) {
  OMNIRT_FAIL("the CUDA LLM engine was requested but omnirt was built without CUDA");
}
}  // namespace detail
#endif

}  // namespace omnirt::llm
