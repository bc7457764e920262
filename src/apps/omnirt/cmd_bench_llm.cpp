// `omnirt bench llm`: the seed's LLM latency table — TTFT (prefill of the prompt embeddings +
// the first token), TPOT, overall — as p50/p90 over runs, with tokens/s, peak GPU memory and the
// fraction of the weight-reading floor reached. Table on stdout, JSON with --json.
//
// Timing: host wall clock around work that ends in a synchronisation, after warm-up runs.
//   TTFT    = prefill(L embeddings, host -> device copy included) + in-graph greedy sampling +
//             reading the first token back;
//   TPOT    = per later token: one decode step (graph replay) + reading the token back — what a
//             streaming caller sees;
//   TPOT-pipelined = the same steps replayed back to back with one sync at the end (the GPU
//             time per token without the per-token host round trip);
//   overall = TTFT + (new_tokens - 1) streamed decode steps.
// Greedy decoding, EOS ignored: every run generates exactly --new-tokens tokens.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <fstream>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/version.h"
#include "apps/omnirt/bench.h"
#include "core/device.h"
#include "core/error.h"
#include "core/log.h"
#include "models/llm/llm_engine.h"

#ifdef OMNIRT_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace omnirt::cli {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double idx = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(idx);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - static_cast<double>(lo));
}

DType parse_dtype(const std::string& s) {
  if (s == "fp16" || s == "f16" || s == "float16") return DType::F16;
  if (s == "bf16" || s == "bfloat16") return DType::BF16;
  if (s == "fp32" || s == "f32" || s == "float32") return DType::F32;
  OMNIRT_FAIL("--dtype must be fp16, bf16 or fp32, got \"", s, "\"");
}

struct Options {
  std::string model;
  bool random_tinyllama = false;
  int64_t prompt_len = 577;
  int new_tokens = 86;
  std::string dtype = "fp16";
  std::string device = "cuda";
  int runs = 20;
  int warmup = 3;
  uint64_t seed = 1;
  bool no_graph = false;
  bool no_pdl = false;
  std::string json_out;
  std::string weights = "fp";
  bool quant_lm_head = false;
};

int run_bench(const Options& o) {
  OMNIRT_CHECK(o.random_tinyllama != !o.model.empty(),
               "give exactly one of --model DIR or --random-tinyllama");
  OMNIRT_CHECK(o.prompt_len > 0 && o.new_tokens > 0 && o.runs > 0 && o.warmup >= 0,
               "--prompt-len, --new-tokens and --runs must be positive");
  llm::LlmEngineOptions eo;
  eo.device = o.device == "cuda" ? Device::CUDA : Device::CPU;
  OMNIRT_CHECK(o.device == "cuda" || o.device == "cpu", "--device must be cpu or cuda, got \"",
               o.device, "\"");
  eo.dtype = parse_dtype(o.dtype);
  eo.cuda_graph = !o.no_graph;
  eo.weight_format = o.weights;
  eo.quantize_lm_head = o.quant_lm_head;
  // The CUDA engine reads OMNIRT_LLM_PDL when it is built (programmatic dependent launch
  // between its decode kernels).
  if (o.no_pdl) setenv("OMNIRT_LLM_PDL", "0", 1);
  const char* pdl_env = std::getenv("OMNIRT_LLM_PDL");
  const bool pdl = !(pdl_env && std::string(pdl_env) == "0");

  const auto t_load = Clock::now();
  std::unique_ptr<llm::LlmEngine> engine;
  llm::LlamaConfig cfg;
  if (o.random_tinyllama) {
    cfg = llm::LlamaConfig::tinyllama();
    eo.max_context = std::min<int64_t>(cfg.max_position_embeddings,
                                       std::max<int64_t>(1024, o.prompt_len + o.new_tokens));
    LOG_INFO("building random TinyLlama-1.1B weights (seed ", o.seed, ", ", dtype_name(eo.dtype),
             ", ", device_name(eo.device), ")");
    llm::LlamaWeights w = llm::random_llama_weights(cfg, o.seed, eo.device, eo.dtype);
    engine = std::make_unique<llm::LlmEngine>(cfg, std::move(w), eo);
  } else {
    cfg = llm::LlamaConfig::from_folder(o.model);
    eo.max_context = std::min<int64_t>(cfg.max_position_embeddings,
                                       std::max<int64_t>(1024, o.prompt_len + o.new_tokens));
    engine = llm::LlmEngine::from_folder(o.model, eo);
  }
  const double load_ms = ms_since(t_load);
  // Bytes of LLM weight files the load read (0 for random weights): an omnirt checkpoint or engine
  // folder's llm.safetensors, else (a Hugging Face folder) every *.safetensors in it.
  uint64_t load_bytes = 0;
  if (!o.random_tinyllama) {
    namespace fs = std::filesystem;
    const fs::path llm_file = fs::path(o.model) / "llm.safetensors";
    if (fs::exists(llm_file)) {
      load_bytes = fs::file_size(llm_file);
    } else {
      for (const auto& e : fs::directory_iterator(o.model))
        if (e.is_regular_file() && e.path().extension() == ".safetensors")
          load_bytes += e.file_size();
    }
  }
  const double load_ms_per_gb = load_bytes > 0 ? load_ms / (load_bytes / 1e9) : 0.0;
  OMNIRT_CHECK(o.prompt_len + o.new_tokens <= engine->max_context(), "--prompt-len ",
               o.prompt_len, " + --new-tokens ", o.new_tokens, " exceed the context of ",
               engine->max_context());

  // Prompt embeddings: rows of the embedding table (like a real prompt's text rows), cycled.
  std::vector<int32_t> ids(static_cast<size_t>(o.prompt_len));
  for (int64_t i = 0; i < o.prompt_len; ++i)
    ids[i] = static_cast<int32_t>((i * 7919 + 13) % cfg.vocab_size);
  Tensor emb = engine->embed_tokens(ids);

  std::vector<double> ttft, tpot, tpot_pipe, overall;
  std::vector<int32_t> first_answer;
  for (int r = 0; r < o.warmup + o.runs; ++r) {
    engine->reset();
    const auto t0 = Clock::now();
    engine->prefill(emb);
    engine->sample_first();
    std::vector<int32_t> answer = {engine->read_token()};
    const double t_first = ms_since(t0);
    const auto t1 = Clock::now();
    for (int i = 1; i < o.new_tokens; ++i) {
      engine->decode_next();
      answer.push_back(engine->read_token());
    }
    const double t_dec = ms_since(t1);
    const double total = ms_since(t0);
    // The same number of steps again without the per-token read (GPU-bound replay).
    double pipe = 0;
    if (o.new_tokens > 1 && engine->position() + o.new_tokens - 1 <= engine->max_context()) {
      const auto t2 = Clock::now();
      for (int i = 1; i < o.new_tokens; ++i) engine->decode_next();
      engine->read_token();
      pipe = ms_since(t2) / (o.new_tokens - 1);
    }
    if (r < o.warmup) continue;
    if (first_answer.empty()) first_answer = answer;
    OMNIRT_CHECK(answer == first_answer, "run ", r - o.warmup,
                 " generated different tokens than run 0: greedy decoding must be deterministic");
    ttft.push_back(t_first);
    tpot.push_back(o.new_tokens > 1 ? t_dec / (o.new_tokens - 1) : 0.0);
    tpot_pipe.push_back(pipe);
    overall.push_back(total);
  }

  // Bytes a decode step must read: every linear weight once, the embedding row, the KV cache
  // up to the mean length. The floor uses the H200's measured 4.22 TB/s copy bandwidth.
  // (decode_weight_bytes: quantised copies instead of their dense tensors, no embedding table.)
  const double step_bytes = static_cast<double>(engine->decode_weight_bytes()) +
                            static_cast<double>(cfg.num_hidden_layers * 2 * cfg.kv_dim() *
                                                dtype_nbytes(eo.dtype, 1)) *
                                (o.prompt_len + o.new_tokens / 2.0);
  const double floor_ms = step_bytes / 4.22e12 * 1e3;
  // Linear-layer parameters (from the config: the weight bytes include quantised copies).
  const double linear_params =
      static_cast<double>(cfg.num_hidden_layers) * cfg.hidden_size *
          (cfg.qkv_dim() + cfg.q_dim() + 3.0 * cfg.intermediate_size) +
      static_cast<double>(cfg.vocab_size) * cfg.hidden_size;
  const double prefill_flops = 2.0 * linear_params * o.prompt_len;
  const std::string wfmt = engine->weight_format().empty() ? "dense" : engine->weight_format();

  size_t peak = 0;
  std::string gpu = "none";
  if (eo.device == Device::CUDA) {
    peak = cuda_peak_bytes();
    gpu = cuda_device_description();
  }
  auto row = [](const char* name, const std::vector<double>& v) {
    std::printf("  %-22s p50 %9.3f ms   p90 %9.3f ms\n", name, percentile(v, 50), percentile(v, 90));
  };
  std::printf("omnirt bench llm — %s\n", cfg.describe().c_str());
  std::printf("  device %s (%s), dtype %s, weights %s, CUDA graph %s, PDL %s, prompt %lld "
              "embeddings, %d new tokens, %d runs (+%d warm-up), load %.0f ms\n",
              device_name(eo.device).c_str(), gpu.c_str(), std::string(dtype_name(eo.dtype)).c_str(),
              wfmt.c_str(),
              eo.device == Device::CPU ? "n/a" : eo.cuda_graph ? "on" : "off",
              eo.device == Device::CPU ? "n/a" : pdl ? "on" : "off",
              static_cast<long long>(o.prompt_len), o.new_tokens, o.runs, o.warmup, load_ms);
  if (load_bytes > 0)
    std::printf("  load %.1f ms for %.1f MB of LLM weight files: %.0f ms per GB\n", load_ms,
                load_bytes / 1e6, load_ms_per_gb);
  row("TTFT", ttft);
  row("TPOT (streamed)", tpot);
  row("TPOT (pipelined)", tpot_pipe);
  row("overall", overall);
  const double tps = o.new_tokens / (percentile(overall, 50) / 1e3);
  std::printf("  tokens/s %.1f; decode floor %.3f ms/token (%.2f GB/step at 4.22 TB/s): "
              "pipelined TPOT at %.0f%% of the floor\n",
              tps, floor_ms, step_bytes / 1e9, 100.0 * floor_ms / std::max(1e-9, percentile(tpot_pipe, 50)));
  std::printf("  weights %.1f MB, KV cache %.1f MB, workspace %.1f MB, peak GPU memory (omnirt "
              "allocations) %.1f MB\n",
              engine->weight_bytes() / 1e6, engine->kv_cache_bytes() / 1e6,
              engine->workspace_bytes() / 1e6, peak / 1e6);

  if (!o.json_out.empty()) {
    nlohmann::json j;
    auto stats = [](const std::vector<double>& v) {
      return nlohmann::json{{"p50_ms", percentile(v, 50)}, {"p90_ms", percentile(v, 90)},
                            {"min_ms", v.empty() ? 0 : *std::min_element(v.begin(), v.end())},
                            {"runs_ms", v}};
    };
    j["benchmark"] = "llm";
    j["commit"] = omnirt::git_commit();
    j["gpu"] = gpu;
    j["device"] = device_name(eo.device);
    j["dtype"] = std::string(dtype_name(eo.dtype));
    j["weights"] = wfmt;
    j["cuda_graph"] = eo.cuda_graph;
    j["pdl"] = eo.device == Device::CUDA && pdl;
    j["model"] = o.random_tinyllama ? "random-tinyllama" : o.model;
    j["config"] = cfg.describe();
    j["prompt_len"] = o.prompt_len;
    j["new_tokens"] = o.new_tokens;
    j["runs"] = o.runs;
    j["warmup"] = o.warmup;
    j["ttft"] = stats(ttft);
    j["tpot"] = stats(tpot);
    j["tpot_pipelined"] = stats(tpot_pipe);
    j["overall"] = stats(overall);
    j["load_ms"] = load_ms;
    j["load_bytes"] = load_bytes;
    j["load_ms_per_gb"] = load_ms_per_gb;
    j["tokens_per_s"] = tps;
    j["decode_floor_ms"] = floor_ms;
    j["decode_bytes_per_step"] = step_bytes;
    j["prefill_flops"] = prefill_flops;
    j["weight_bytes"] = engine->weight_bytes();
    j["decode_weight_bytes"] = engine->decode_weight_bytes();
    j["kv_cache_bytes"] = engine->kv_cache_bytes();
    j["workspace_bytes"] = engine->workspace_bytes();
    j["peak_gpu_bytes"] = peak;
    j["answer_ids"] = first_answer;
    std::ofstream f(o.json_out);
    OMNIRT_CHECK(f.good(), "cannot write ", o.json_out);
    f << j.dump(2) << "\n";
    std::printf("  JSON written to %s\n", o.json_out.c_str());
  }
  return 0;
}

BenchCommand bench_llm("llm", "TinyLlama planner latency: TTFT, TPOT, overall (p50/p90)",
                       [](CLI::App& sub) {
                         auto o = std::make_shared<Options>();
                         sub.add_option("--model", o->model,
                                        "checkpoint folder (HF LLaMA or omnirt checkpoint)");
                         sub.add_flag("--random-tinyllama", o->random_tinyllama,
                                      "full-size TinyLlama-1.1B shapes, seeded random weights "
                                      "built in memory (no file needed)");
                         sub.add_option("--prompt-len", o->prompt_len,
                                        "prompt embeddings (577 = OmniDrive planning prompt)");
                         sub.add_option("--new-tokens", o->new_tokens,
                                        "tokens generated per run (86 = a planning answer)");
                         sub.add_option("--dtype", o->dtype, "fp16 | bf16 | fp32");
                         sub.add_option("--device", o->device, "cuda | cpu");
                         sub.add_option("--runs", o->runs, "timed runs");
                         sub.add_option("--warmup", o->warmup, "untimed warm-up runs");
                         sub.add_option("--seed", o->seed, "seed of the random weights");
                         sub.add_flag("--no-graph", o->no_graph,
                                      "launch the decode step's kernels one by one");
                         sub.add_flag("--no-pdl", o->no_pdl,
                                      "CUDA: no programmatic dependent launch between the "
                                      "decode kernels (same as OMNIRT_LLM_PDL=0)");
                         sub.add_option("--json", o->json_out, "write the results as JSON here");
                         sub.add_option("--weights", o->weights,
                                        "fp | int4 | int4-g<G> (e.g. int4-g128) | nvfp4 | fp8: "
                                        "weight-only quantisation of the decoder linears at load "
                                        "(decode reads 4-bit / FP8 E4M3 weights; prefill uses "
                                        "the dequantised fp16 copies)");
                         sub.add_flag("--quant-lm-head", o->quant_lm_head,
                                      "with --weights: quantise lm_head too");
                         return [o]() { return run_bench(*o); };
                       });

}  // namespace
}  // namespace omnirt::cli
