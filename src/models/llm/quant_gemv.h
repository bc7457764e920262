// Batch-1 dequantising GEMVs for weight-only quantised LLM decode: y = W x with W stored as
// INT4 (per output channel or group-wise, quant/int4.h), NVFP4 (quant/nvfp4.h) or FP8 E4M3 with
// one scale per output row (quant/fp8_weight.h), x and y in
// F16/BF16 (the engine dtype), float32 accumulation. The same fused input staging (RMSNorm,
// SwiGLU) and epilogues (residual add, RoPE + KV-cache write) as decode::gemv
// (decode_kernels.h), so the CUDA LLaMA engine swaps one call for the other per weight format.
//
// Weight layout on the GPU = the engine-folder layout, unchanged (docs/engine_format.md):
//   codes  U8 [N, K/2] row-major, element 2j in the low nibble of byte j, 2j+1 in the high one.
//   INT4   two's-complement nibbles; scales F32 [N, K/G] (G = K per channel).
//   NVFP4  E2M1 nibbles (sign in bit 3); scales U8 E4M3 [N, K/16]; one F32 global scale.
//   FP8    codes U8 [N, K], one E4M3 byte per weight; scales F32 [N] (row amax / 448).
// A lane reads 16 consecutive bytes (32 4-bit weights, 16 FP8 weights) of a row per load, so a
// warp reads 512 contiguous bytes per row per instruction. The 16-byte path needs K % 32 == 0
// (FP8: K % 16 == 0), a 16-byte aligned codes pointer and, for INT4, G % 32 == 0 (a 16-byte chunk
// never straddles two groups); other shapes take a scalar path (correct, slow).
//
// Optional AWQ input scale: x[k] is multiplied by in_scale[k] (F32 [K]) after the fused input op,
// i.e. y = dequant(W') (x * in_scale), the run-time half of quant::quantize_int4_awq.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "models/llm/decode_kernels.h"

#ifdef OMNIRT_WITH_CUDA
#include <cuda_runtime.h>

namespace omnirt::llm::decode {

enum class WeightFormat { kInt4, kNvfp4, kFp8 };
const char* weight_format_name(WeightFormat f);

struct QuantGemvArgs {
  WeightFormat format = WeightFormat::kInt4;
  DType dtype = DType::F16;       // of T inputs and T outputs: F16 or BF16
  const uint8_t* codes = nullptr; // U8 [N, K/2] (FP8: [N, K])
  const void* scales = nullptr;   // INT4: F32 [N, K/G]; NVFP4: U8 (E4M3) [N, K/16]; FP8: F32 [N]
  int64_t group_size = 0;         // INT4: G (K = per channel); ignored for NVFP4 (16) and FP8 (K)
  float global_scale = 1.f;       // NVFP4 only
  const float* in_scale = nullptr;  // optional F32 [K] (AWQ)
  int64_t n = 0, k = 0;
  GemvIn in_mode = GemvIn::kPlain;
  const void* in = nullptr;
  const float* norm_w = nullptr;  // kRmsNorm: F32 [K]
  float eps = 1e-5f;
  GemvOut out_mode = GemvOut::kStore;
  void* y = nullptr;
  RopeQkv rope;  // kRopeQkv only
  int max_blocks = 0;  // grid cap (0: the blocks resident at once); warps loop over row pairs
};

// True when the 16-byte path applies (else the scalar fallback runs).
bool quant_gemv_vectorized(const QuantGemvArgs& a);
// Bytes of W (codes + scales) the GEMV reads.
size_t quant_gemv_weight_bytes(const QuantGemvArgs& a);
void quant_gemv(const QuantGemvArgs& a, cudaStream_t stream, bool pdl);

}  // namespace omnirt::llm::decode
#endif
