// AWQ-style INT4 for the whole LLM (issue #8): calibration activations from the float32 CPU
// engine, then one activation-aware scale search (quant/int4.h quantize_int4_awq) per group of
// linears that share an input. Used by `omnirt build --llm int4-g128-awq` (quant/engine.h).
//
// Calibration: the CPU engine (float32, LlmEngineOptions::linear_input_hook) runs teacher-forced
// over the calibration sequences (Vicuna-v1 planning prompt + a planning answer), and the rows
// that every decoder linear multiplies are kept: per layer the q/k/v input (RMSNormed hidden
// state, shared by the three, so they get one scale vector), the o_proj input, the gate/up input
// (shared) and the down_proj input. TEXT ONLY: the <image> placeholder is dropped, no vision
// tokens are spliced in (they need the vision engine on real camera frames, which a checkpoint
// build does not have); the manifest says so.
//
// Result per linear (fused layout of llama.h: wqkv, wo, w_gate_up, w_down): INT4 codes and
// scales of Q(W diag(s)) and in_scale = 1 / s (F32 [K]); at run time y = dequant(Q) (x * in_scale).
// The dense tensor of the engine holds the same linear in the input's own space,
// dequant(Q) diag(in_scale), so the CPU engine and the CUDA prefill GEMMs apply in_scale through
// their weights and the CUDA decode GEMVs apply it to x (quant_gemv.h): the same function.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "models/llm/llama.h"
#include "models/llm/tokenizer.h"

namespace omnirt::quant {

// One teacher-forced calibration sequence: a prompt (may contain the "<image>" tag, which is
// dropped) and the answer that follows it.
struct AwqCalibText {
  std::string prompt;
  std::string answer;
};
// The default set: the Vicuna-v1 planning prompt (models/llm/prompt.h) for "boston" and for
// "singapore", each followed by a planning answer (a straight and a left-curving trajectory in
// OmniDrive's answer format).
std::vector<AwqCalibText> default_awq_calibration();

// Inputs of every decoder linear on the calibration sequences.
struct AwqActivations {
  // x[layer][site] (site = llm::LinearSite as an index: qkv, o, gate_up, down): F32 [M, K], host.
  std::vector<std::array<Tensor, 4>> x;
  int64_t tokens = 0;                    // M: positions over all sequences
  std::vector<int64_t> sequence_tokens;  // per sequence
  std::vector<AwqCalibText> texts;
};

// Runs the float32 CPU engine over each sequence (tokenised with `tokenizer`, BOS + prompt with
// the image placeholder dropped + answer) and captures the linears' inputs. `weights`: dense CPU
// F32 (shared with the engine, not modified). Throws when a sequence does not fit the context.
AwqActivations collect_awq_activations(const llm::LlamaConfig& cfg,
                                       const llm::LlamaWeights& weights,
                                       const llm::Tokenizer& tokenizer,
                                       const std::vector<AwqCalibText>& texts);

struct AwqLinearReport {
  std::string name;  // "layer 3 w_gate_up"
  float alpha = 0;
  double calib_error = 0, plain_error = 0;  // output squared error on the calibration rows
};

// AWQ-quantises every decoder linear of `w` (dense CPU F32, not yet quantised) with the
// activations of `acts` (which must come from the same weights): codes, scales and in_scale
// in each QuantLinear, dense tensors replaced by dequant(Q) diag(in_scale) (see above).
// `group_size` 0 = per output channel. w.quant_name = `precision_name`. Returns one report per
// linear. lm_head stays dense.
std::vector<AwqLinearReport> quantize_llama_weights_awq(llm::LlamaWeights& w,
                                                        const AwqActivations& acts,
                                                        int64_t group_size, int grid,
                                                        const std::string& precision_name);

// dequant(codes, scales) with column k multiplied by in_scale[k]: the linear's weight in the
// input's own space (F32 [N, K], host). Throws naming `what` on a bad in_scale.
Tensor dequantize_int4_awq(const Tensor& codes, const Tensor& scales, const Tensor& in_scale,
                           const std::string& what);

// Checks an AWQ input scale for a linear with K input columns: defined, F32, shape [K], every
// value finite and > 0. Throws naming `what` (the tensor) and what was expected.
void check_awq_in_scale(const Tensor& in_scale, int64_t k, const std::string& what);

}  // namespace omnirt::quant
