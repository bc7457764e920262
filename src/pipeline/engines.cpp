// Adapter between the pipeline and the engines (vision: models/vision, planner: models/llm).
#include "pipeline/engines.h"

#include <chrono>
#include <cmath>
#include <cstdlib>

#include "core/error.h"

#include "io/safetensors.h"
#include "models/llm/generation_control.h"
#include "models/llm/llm_engine.h"
#include "models/llm/prompt.h"
#include "models/llm/sampler.h"
#include "models/llm/tokenizer.h"
#include "models/llm/trajectory.h"
#include "models/vision/vision_engine.h"
#include "pipeline/vision_outputs.h"
#ifdef OMNIRT_WITH_CUDA
#include "core/cuda_check.h"
#endif

namespace omnirt::pipeline {

const std::vector<std::string>& detection_class_names() {
  static const std::vector<std::string> names = {
      "car",     "truck",      "construction_vehicle", "bus",        "trailer",
      "barrier", "motorcycle", "bicycle",              "pedestrian", "traffic_cone"};
  return names;
}

PreprocessConfig preprocess_config_for(const ModelEngines& engines) {
  PreprocessConfig cfg = PreprocessConfig::for_network(engines.input_h(), engines.input_w());
  cfg.cuda = engines.device() == Device::CUDA && std::getenv("OMNIRT_CPU_PREPROCESS") == nullptr;
  cfg.cuda_dtype = engines.vision_dtype();
  return cfg;
}

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

class Engines final : public ModelEngines {
 public:
  Engines(const std::string& dir, const EngineOptions& opt) : opt_(opt) {
    vision::VisionEngineOptions vo;
    vo.device = opt.device;
    vo.backbone_dtype = opt.vision_dtype;
    vo.heads_dtype = opt.vision_heads_dtype;
    vo.tf32 = opt.vision_tf32;
    vision_ = vision::VisionEngine::load(dir, vo);
    llm::LlmEngineOptions lo;
    lo.device = opt.device;
    lo.dtype = opt.device == Device::CUDA ? opt.llm_dtype : DType::F32;
    lo.max_context = 1024;  // prompt (~577) + 320 new tokens
    // LLM: config.json's "llm" section + llm.safetensors (HF LLaMA names).
    const llm::LlamaConfig lc = llm::LlamaConfig::from_folder(dir);
    auto file = std::make_shared<SafetensorsFile>(SafetensorsFile::open(dir + "/llm.safetensors"));
    llm::LlamaWeights w = llm::load_llama_weights(
        lc, [file](const std::string& name) { return file->get(name); }, lo.device, lo.dtype,
        dir + "/llm.safetensors");
    llm_ = std::make_unique<llm::LlmEngine>(lc, std::move(w), lo);
    tokenizer_ = std::make_unique<llm::Tokenizer>(llm::Tokenizer::load(dir + "/tokenizer.model"));
    llm::check_tokenizer_vocab(*tokenizer_, llm_->config());

    // The sampler runs where the logits are: on CUDA inside the decode step (captured in the
    // engine's CUDA graph, no per-token logits copy; the host reads back one int per token), on
    // the CPU on the host logits. Both draw the same token for the same logits, seed and step
    // (models/llm/sampler.h).
    sampling_ = opt.greedy ? llm::SamplingConfig::greedy()
                           : llm::SamplingConfig::omnidrive_planning(opt.seed);
    sampling_.max_new_tokens = opt.max_new_tokens;
    sampling_.validate();
    if (opt.device == Device::CUDA) {
#ifdef OMNIRT_WITH_CUDA
      gpu_sampler_ = std::make_unique<llm::CudaSampler>(int(lc.vocab_size), sampling_);
      llm_->set_sampler([s = gpu_sampler_.get()](const Tensor& logits, Tensor& token_out) {
        cudaStream_t stream = cuda::current_stream();
        s->sample(logits, stream);
        OMNIRT_CUDA_CHECK(cudaMemcpyAsync(token_out.raw(), s->token_device(), sizeof(int32_t),
                                          cudaMemcpyDeviceToDevice, stream));
      });
#else
      OMNIRT_FAIL("device cuda: this build has no CUDA backend");
#endif
    } else {
      cpu_sampler_ = std::make_unique<llm::Sampler>(sampling_);
      llm_->set_sampler([s = cpu_sampler_.get()](const Tensor& logits, Tensor& token_out) {
        const Tensor host = logits.contiguous();
        token_out.data<int32_t>()[0] =
            s->sample(std::span<const float>(host.data<float>(), size_t(host.numel())));
      });
    }
  }

  std::vector<std::string> camera_names() const override {
    const int n = vision_->config().num_cams;
    const auto& all = io::nuscenes_camera_names();
    OMNIRT_CHECK(n >= 1 && n <= int(all.size()), "model config: num_cams ", n, " outside 1..6");
    return {all.begin(), all.begin() + n};
  }
  int input_h() const override { return vision_->config().img_h; }
  int input_w() const override { return vision_->config().img_w; }
  std::string description() const override {
    const auto& vc = vision_->config();
    return std::to_string(vc.num_cams) + " cameras " + std::to_string(vc.img_w) + "x" +
           std::to_string(vc.img_h) + ", vision " + std::string(dtype_name(opt_.vision_dtype)) +
           " backbone + " +
           (opt_.vision_heads_dtype == DType::F32 && opt_.vision_tf32
                ? std::string("TF32")
                : std::string(dtype_name(opt_.vision_heads_dtype))) +
           " heads, LLM " + std::to_string(llm_->config().num_hidden_layers) + " layers hidden " +
           std::to_string(llm_->config().hidden_size) + ", device " +
           (opt_.device == Device::CUDA ? "cuda" : "cpu");
  }

  Device device() const override { return opt_.device; }
  DType vision_dtype() const override { return opt_.vision_dtype; }

  FrameOutput run(const PreparedFrame& f, bool first_frame) override {
    FrameOutput out;
    auto t0 = std::chrono::steady_clock::now();
    vision::VisionFrameResult vr = vision_->run(f.img, frame_geometry(f, first_frame));
    out.memory_reset = vr.heads.memory_reset;
    out.boxes = boxes_from_heads(vr.heads);
    out.lanes = lanes_from_heads(vr.heads);
    const Tensor tokens = vision_tokens_f32(vr.heads);  // F32 [R, hidden] for the splice
    out.vision_ms = ms_since(t0);

    plan_into(out, tokens, f.location, f.index);
    return out;
  }

  FrameOutput plan(const Tensor& vision_tokens, const std::string& location,
                   int frame_index) override {
    FrameOutput out;
    plan_into(out, vision_tokens, location, frame_index);
    return out;
  }

 private:
  void plan_into(FrameOutput& out, const Tensor& tokens, const std::string& location,
                 int frame_index) {
    // prefill_ms = the LLM's TTFT (prompt, prefill, first token sampled), decode_ms the tokens
    // after the first, as the reference deployment's TTFT / TPOT.
    auto t0 = std::chrono::steady_clock::now();
    const llm::PromptIds prompt = llm::build_planning_prompt(*tokenizer_, location);
    const Tensor emb = llm_->build_prompt_embeddings(prompt.ids, tokens);
    out.prompt_tokens = int(emb.shape()[0]);
    // Per-frame random stream (reproducible whatever ran before): RNG step = index << 20.
    const uint64_t step = uint64_t(frame_index) << 20;
    if (cpu_sampler_) cpu_sampler_->reset({}, step);
#ifdef OMNIRT_WITH_CUDA
    if (gpu_sampler_) gpu_sampler_->reset({}, step);
#endif
    llm_->reset();
    llm_->prefill(emb);
    llm_->sample_first();

    llm::StopConfig stop;
    stop.eos_id = tokenizer_->eos_id();
    stop.max_new_tokens = opt_.max_new_tokens;
    llm::GenerationControl control(stop);
    llm::StreamingDetokenizer detok(*tokenizer_);
    const int64_t vocab = llm_->config().vocab_size;
    while (true) {
      const int32_t tok = llm_->read_token();  // waits for the step; one int32 from the device
      OMNIRT_CHECK(tok >= 0 && tok < vocab, "planner: the sampler returned token ", tok,
                   " (outside [0, ", vocab, "): non-finite logits?)");
      if (control.num_generated() == 0) {
        out.prefill_ms = ms_since(t0);
        t0 = std::chrono::steady_clock::now();
      }
      // The next step is queued before the host handles this token (detokenising, the stop
      // checks), so that the host work overlaps the GPU's step instead of adding to it: the step
      // reads the token from its device slot, not from the host. When this token ends the answer
      // (EOS, a stop string) that one step is wasted; the next frame resets the engine. When it
      // certainly ends it (the token budget) or the context is full, nothing is queued early.
      const bool queue_early = control.num_generated() + 1 < stop.max_new_tokens &&
                               llm_->position() < llm_->max_context();
      if (queue_early) llm_->decode_next();  // appends the token, samples the next into the slot
      // Ids past a smaller tokenizer (random checkpoints pair a 512-piece test tokenizer with a
      // 32000-row LLM) decode to nothing, as the load-time warning says.
      const bool decodable = tok != stop.eos_id && tok < tokenizer_->vocab_size();
      const std::string piece = decodable ? detok.push(tok) : std::string();
      if (control.on_token(tok, piece) != llm::StopReason::kNone) break;
      if (!queue_early) llm_->decode_next();  // (a full context is reported here, as before)
    }
    out.new_tokens = control.num_generated();
    out.stop_reason = llm::stop_reason_name(control.reason());
    out.answer = control.answer() + (control.reason() == llm::StopReason::kEos ? detok.finish() : "");
    out.decode_ms = ms_since(t0);
    try {
      for (const auto& w : llm::parse_trajectory_strict(out.answer))
        out.trajectory.push_back({w.x, w.y});
    } catch (const std::exception& e) {
      out.trajectory_error = e.what();
    }
  }

  EngineOptions opt_;
  std::unique_ptr<vision::VisionEngine> vision_;
  std::unique_ptr<llm::LlmEngine> llm_;
  std::unique_ptr<llm::Tokenizer> tokenizer_;
  llm::SamplingConfig sampling_;
  std::unique_ptr<llm::Sampler> cpu_sampler_;
#ifdef OMNIRT_WITH_CUDA
  std::unique_ptr<llm::CudaSampler> gpu_sampler_;
#endif
};

}  // namespace

std::unique_ptr<ModelEngines> ModelEngines::load(const std::string& dir, const EngineOptions& opt) {
  return std::make_unique<Engines>(dir, opt);
}


}  // namespace omnirt::pipeline
