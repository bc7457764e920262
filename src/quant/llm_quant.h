// Weight-only quantisation of a loaded LLaMA for the CUDA decode GEMVs (models/llm/quant_gemv.h):
// used by `omnirt bench llm --weights ...` to quantise the random TinyLlama at load, and by tests.
#pragma once

#include <string>

#include "models/llm/llama.h"

namespace omnirt::quant {

// Parses a weight format: "fp" (dense, nothing to do), "int4" (per output channel),
// "int4-g<G>" (G even), "nvfp4". Throws naming the value. `group_size` gets G (0 per channel).
llm::QuantFormat parse_weight_format(const std::string& name, int64_t* group_size = nullptr);

// Quantises every decoder linear (wqkv, wo, w_gate_up, w_down; lm_head too when
// `quantize_lm_head` and it is not tied to the embeddings) of `w` to `format`: each gets a
// QuantLinear on w.device, and its dense tensor is replaced by dequant(quantised) in w.dtype, so
// prefill and decode use the same weights (the quantisation error is then the model's, not a
// prefill/decode mismatch). Quantises on the host (quant/int4.h, quant/nvfp4.h), one thread per
// core. Throws naming the tensor when a shape does not fit the format (e.g. K % G != 0).
void quantize_llama_weights(llm::LlamaWeights& w, const std::string& format,
                            bool quantize_lm_head = false);

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

}  // namespace omnirt::quant
