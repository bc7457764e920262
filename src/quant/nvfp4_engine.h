// Loading the NVFP4 LLM weights of an `omnirt build --llm nvfp4` engine folder
// (docs/engine_format.md): every decoder linear comes as `<module>.qweight` (U8 [N, K/2], E2M1
// nibbles), `<module>.scales` (U8 [N, K/16], E4M3) and `<module>.global_scale` (F32 [1]), in the
// layout the NVFP4 GEMV reads (models/llm/quant_gemv.h), so loading only concatenates the rows
// of q/k/v and gate/up (which share one global scale) and checks them.
#pragma once

#include <string>

#include "models/llm/llama.h"

namespace omnirt::quant {

// Engine weights whose QuantLinears hold the engine's codes, block scales and global scales as
// they are (quant_name "nvfp4") and whose dense linears (used by prefill) are their
// dequantisation in `dtype`: the same weights quantize_llama_weights(w, "nvfp4") makes from the
// float32 checkpoint. Everything else is read as load_llama_weights reads it. Throws naming the
// tensor when one is missing, misshaped, of the wrong dtype, or a global scale is not finite /
// negative / differs between linears that share their input (q/k/v, gate/up).
llm::LlamaWeights load_nvfp4_engine_weights(const llm::LlamaConfig& cfg,
                                            const llm::TensorLookup& lookup, Device device,
                                            DType dtype, const std::string& what);

// dequantize_nvfp4 (quant/nvfp4.h) with lookup tables and one thread per core, written in
// `out_dtype` (F32, F16 or BF16): bit-identical to dequantize_nvfp4(...).to_dtype(out_dtype)
// (the same e2m1 * (e4m3 * global) products, the same rounding), for loading engines fast.
Tensor dequantize_nvfp4_fast(const Tensor& codes, const Tensor& scales, float global_scale,
                             const std::string& what, DType out_dtype = DType::F32);

}  // namespace omnirt::quant
