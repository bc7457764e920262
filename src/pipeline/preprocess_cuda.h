// The image pre-processing chain of preprocess.h on the GPU (CUDA builds only: preprocess.cu).
// The uint8 passes (PIL's bicubic resample, horizontal then vertical, 22-bit fixed point) use
// the CPU's integer arithmetic and tables, so they are bit-exact; crop, cv2's linear stretch and
// the normalisation are one kernel doing the CPU's float operations in the CPU's order with
// explicit rounding (no FMA contraction).
#pragma once

#include "core/dtype.h"
#include "io/image.h"
#include "pipeline/preprocess.h"

namespace omnirt::pipeline {

// preprocess_image on the GPU: `src` (host RGB8) is uploaded and [3, out_h, out_w] of `dtype`
// (F32, F16 or BF16, rounded to nearest even) is written to `dst` (device memory), on the
// current stream; returns after the stream has finished (the temporaries go back to the cache).
void preprocess_image_cuda(const PreprocessConfig& cfg, const io::Image& src, void* dst,
                           DType dtype);

// pil_resize_bicubic on the GPU, host image in and out (tests).
io::Image pil_resize_bicubic_cuda(const io::Image& src, int out_w, int out_h);

}  // namespace omnirt::pipeline
