// Weight-only quantisation of a loaded LLaMA for the CUDA decode GEMVs (models/llm/quant_gemv.h):
// used by `omnirt bench llm --weights ...` to quantise the random TinyLlama at load, and by tests.
#pragma once

#include <string>
#include <vector>

#include "models/llm/llama.h"

namespace omnirt::quant {

// Parses a weight format: "fp" (dense, nothing to do), "int4" (per output channel),
// "int4-g<G>" (G even), "nvfp4", "fp8" (E4M3 with one F32 scale per output row,
// quant/fp8_weight.h). Throws naming the value. `group_size` gets G (0 per channel).
llm::QuantFormat parse_weight_format(const std::string& name, int64_t* group_size = nullptr);

// Quantises every decoder linear (wqkv, wo, w_gate_up, w_down; lm_head too when
// `quantize_lm_head` and it is not tied to the embeddings) of `w` to `format`: each gets a
// QuantLinear on w.device, and its dense tensor is replaced by dequant(quantised) in w.dtype, so
// prefill and decode use the same weights (the quantisation error is then the model's, not a
// prefill/decode mismatch). Quantises on the host (quant/int4.h, quant/nvfp4.h), one thread per
// core. Throws naming the tensor when a shape does not fit the format (e.g. K % G != 0).
// `source` (optional): the same model at full precision (any device / float dtype, same shapes);
// when given, its tensors are quantised instead of w's, so an F16 engine gets the very codes and
// scales an F32 engine of the same checkpoint gets (quantising an F16-rounded copy flips ~0.05%
// of the INT4 codes by a whole step: issue #8).
void quantize_llama_weights(llm::LlamaWeights& w, const std::string& format,
                            bool quantize_lm_head = false,
                            const llm::LlamaWeights* source = nullptr);

// A checkpoint's weights (`lookup`) in `dtype` on `device`, quantised to `format` from the
// checkpoint's float32 values (not from their `dtype` copy): the same codes and scales whatever
// the engine dtype, so the CUDA F16 engine's quantised decode and the CPU F32 reference compute
// with the same dequantised weights (up to the F16 rounding of the dense copy used in prefill).
// Used by LlmEngine::from_folder for LlmEngineOptions::weight_format.
llm::LlamaWeights load_quantised_llama_weights(const llm::LlamaConfig& cfg,
                                               const llm::TensorLookup& lookup, Device device,
                                               DType dtype, const std::string& format,
                                               bool quantize_lm_head, const std::string& what);

// Weights of an `omnirt build` INT4 engine folder's llm.safetensors (docs/engine_format.md):
// quantised linears come as `<module>.qweight` + `<module>.scales`, everything else dense.
// `lookup` reads the file's tensors by name. Returns engine weights whose dense linears are the
// dequantised INT4 weights (in `dtype`) with QuantLinear copies (q/k/v and gate/up codes and
// scales concatenated by rows like the dense tensors), quant_name = `precision`. Throws naming
// the tensor when one is missing or misshaped.
llm::LlamaWeights load_int4_engine_weights(const llm::LlamaConfig& cfg,
                                           const llm::TensorLookup& lookup, Device device,
                                           DType dtype, const std::string& precision,
                                           const std::string& what);

// Rows of several [N_i, C] tensors of one dtype, concatenated, on `device` (the fused q/k/v and
// gate/up codes and scales that engine folders store per module).
Tensor concat_rows(const std::vector<Tensor>& parts, Device device);

}  // namespace omnirt::quant
