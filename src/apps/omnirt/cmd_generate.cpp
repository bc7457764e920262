// `omnirt generate`: text in, streamed text out, with the LLM engine alone (no vision). Works on a
// Hugging Face LLaMA folder (config.json + *.safetensors + tokenizer.model) or an omnirt
// checkpoint folder (config.json with an "llm" section + llm.safetensors + tokenizer.model).
#include <chrono>
#include <cstdio>
#include <span>

#include "apps/omnirt/command.h"
#include "core/device.h"
#include "core/error.h"
#include "core/log.h"
#include "models/llm/generation_control.h"
#include "models/llm/llm_engine.h"
#include "models/llm/prompt.h"
#include "models/llm/sampler.h"
#include "models/llm/tokenizer.h"

#ifdef OMNIRT_WITH_CUDA
#include "core/cuda_check.h"
#endif

namespace omnirt::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string model;
  std::string prompt;
  std::string tmpl = "none";
  int max_new = 128;
  bool greedy = false;
  float temperature = 1.0f;
  float top_p = 1.0f;
  int top_k = 0;
  float repetition_penalty = 1.0f;
  uint64_t seed = 0;
  std::string device;
  std::string dtype;
  int64_t max_context = 0;
};

DType parse_dtype(const std::string& s) {
  if (s == "fp16" || s == "f16" || s == "float16") return DType::F16;
  if (s == "bf16" || s == "bfloat16") return DType::BF16;
  if (s == "fp32" || s == "f32" || s == "float32") return DType::F32;
  OMNIRT_FAIL("--dtype must be fp16, bf16 or fp32, got \"", s, "\"");
}

int run_generate(const Options& o, bool sampling_flags_given) {
  using namespace omnirt::llm;
  llm::LlmEngineOptions eo;
  const std::string dev = o.device.empty() ? (cuda_available() ? "cuda" : "cpu") : o.device;
  OMNIRT_CHECK(dev == "cpu" || dev == "cuda", "--device must be cpu or cuda, got \"", dev, "\"");
  eo.device = dev == "cuda" ? Device::CUDA : Device::CPU;
  eo.dtype = o.dtype.empty() ? (eo.device == Device::CUDA ? DType::F16 : DType::F32)
                             : parse_dtype(o.dtype);
  OMNIRT_CHECK(!(o.greedy && sampling_flags_given),
               "--greedy cannot be combined with --temperature/--top-p/--top-k");

  const LlamaConfig cfg = LlamaConfig::from_folder(o.model);
  Tokenizer tok = Tokenizer::load(o.model + "/tokenizer.model");
  check_tokenizer_vocab(tok, cfg);
  eo.max_context = o.max_context > 0 ? o.max_context : cfg.max_position_embeddings;

  OMNIRT_CHECK(o.tmpl == "none" || o.tmpl == "vicuna", "--template must be none or vicuna, got \"",
               o.tmpl, "\"");
  const PromptIds ids = o.tmpl == "vicuna" ? tokenizer_image_token(tok, vicuna_v1_prompt(o.prompt))
                                           : build_text_prompt(tok, o.prompt);
  OMNIRT_CHECK(ids.image_position < 0,
               "the prompt contains <image>, but `omnirt generate` runs the LLM without vision");
  check_context_budget(ids.num_text_tokens(), 0, o.max_new, static_cast<int>(eo.max_context));

  SamplingConfig sc = o.greedy || !sampling_flags_given ? SamplingConfig::greedy() : SamplingConfig{};
  if (!o.greedy && sampling_flags_given) {
    sc.do_sample = true;
    sc.temperature = o.temperature;
    sc.top_p = o.top_p;
    sc.top_k = o.top_k;
  }
  sc.repetition_penalty = o.repetition_penalty;
  sc.seed = o.seed;
  sc.max_new_tokens = o.max_new;
  sc.validate();

  const auto t_load = Clock::now();
  auto engine = LlmEngine::from_folder(o.model, eo);
  LOG_INFO(cfg.describe(), " on ", device_name(eo.device), " ", dtype_name(eo.dtype), ", loaded in ",
           std::chrono::duration<double, std::milli>(Clock::now() - t_load).count(), " ms; ",
           sc.describe());

  // The sampler runs on the engine's device, inside the decode step.
  std::vector<int32_t> history = ids.ids;
  std::unique_ptr<Sampler> cpu_sampler;
#ifdef OMNIRT_WITH_CUDA
  std::unique_ptr<CudaSampler> gpu_sampler;
#endif
  if (eo.device == Device::CPU) {
    cpu_sampler = std::make_unique<Sampler>(sc);
    cpu_sampler->reset(history);
    engine->set_sampler([s = cpu_sampler.get()](const Tensor& logits, Tensor& out) {
      out.data<int32_t>()[0] =
          s->sample(std::span<const float>(logits.data<float>(), static_cast<size_t>(logits.numel())));
    });
  } else {
#ifdef OMNIRT_WITH_CUDA
    gpu_sampler = std::make_unique<CudaSampler>(static_cast<int>(cfg.vocab_size), sc);
    gpu_sampler->reset(history);
    engine->set_sampler([s = gpu_sampler.get()](const Tensor& logits, Tensor& out) {
      cudaStream_t stream = cuda::current_stream();
      s->sample(logits, stream);
      OMNIRT_CUDA_CHECK(cudaMemcpyAsync(out.raw(), s->token_device(), sizeof(int32_t),
                                        cudaMemcpyDeviceToDevice, stream));
    });
#endif
  }

  StopConfig stop;
  stop.eos_id = tok.eos_id();
  stop.max_new_tokens = o.max_new;
  GenerationControl control(stop);
  StreamingDetokenizer detok(tok);

  const auto t0 = Clock::now();
  engine->prefill(engine->build_prompt_embeddings(ids.ids, Tensor()));
  engine->sample_first();
  double ttft_ms = 0;
  const auto t_first = Clock::now();
  while (true) {
    const int32_t t = engine->read_token();
    if (control.num_generated() == 0) ttft_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    OMNIRT_CHECK(t >= 0 && t < cfg.vocab_size, "the sampler returned token ", t,
                 " (non-finite logits?)");
    const std::string text = detok.push(t);
    std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
    if (control.on_token(t, text) != StopReason::kNone) break;
    engine->decode_next();
  }
  std::fputs(detok.finish().c_str(), stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);  // the answer before the stats line on stderr
  const double decode_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_first).count();
  const int n = control.num_generated();
  std::fprintf(stderr,
               "[%d prompt tokens, %d generated, stop: %s; TTFT %.2f ms, %.3f ms/token after the "
               "first]\n",
               ids.num_text_tokens(), n, stop_reason_name(control.reason()), ttft_ms,
               n > 1 ? decode_ms / (n - 1) : 0.0);
  return 0;
}

Command generate_cmd("generate", "Generate text with the LLM alone (streams the answer)",
                     [](CLI::App& sub) {
                       auto o = std::make_shared<Options>();
                       sub.add_option("--model", o->model,
                                      "HF LLaMA folder or omnirt checkpoint folder")
                           ->required();
                       sub.add_option("--prompt", o->prompt, "the prompt text")->required();
                       sub.add_option("--template", o->tmpl,
                                      "none (BOS + text) | vicuna (OmniDrive's conv_vicuna_v1)");
                       sub.add_option("--max-new", o->max_new, "most tokens to generate");
                       auto* g = sub.add_flag("--greedy", o->greedy, "argmax decoding (default)");
                       auto* t = sub.add_option("--temperature", o->temperature, "sampling temperature");
                       auto* p = sub.add_option("--top-p", o->top_p, "nucleus sampling mass");
                       auto* k = sub.add_option("--top-k", o->top_k, "keep the k most likely tokens");
                       sub.add_option("--repetition-penalty", o->repetition_penalty,
                                      "HF repetition penalty (1 = off)");
                       sub.add_option("--seed", o->seed, "sampling seed");
                       sub.add_option("--device", o->device, "cpu | cuda (default: cuda if present)");
                       sub.add_option("--dtype", o->dtype, "fp16 | bf16 | fp32 (default fp16 on cuda)");
                       sub.add_option("--max-context", o->max_context,
                                      "KV-cache length (default: max_position_embeddings)");
                       (void)g;
                       return [o, t, p, k]() {
                         const bool sampling = t->count() + p->count() + k->count() > 0;
                         return run_generate(*o, sampling);
                       };
                     });

}  // namespace
}  // namespace omnirt::cli
