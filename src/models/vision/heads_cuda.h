// CUDA kernels of the PETR heads' per-frame work that used to run on the host.
// Each has a host twin in petr_heads.cpp / host_math.cpp that the tests compare it with.
#pragma once

#include <vector>

#include "core/tensor.h"
#include "models/vision/host_math.h"
#include "models/vision/vision_config.h"

namespace omnirt::vision::cuda {

// PetrHeads::position_embedding_input on the GPU: the inverse-sigmoid of the normalised
// frustum points of every (camera, patch, depth bin), F32 [num_cams * gh * gw, 3 * depth_num]
// written into `out` (device, contiguous). Arithmetic in the host version's order, without
// fused multiply-adds, so the two agree to the last bit or two of logf.
void position_embedding_input(const VisionConfig& cfg, const std::vector<float>& coords_d,
                              const std::vector<host::Mat4>& img2lidars, Tensor& out);

}  // namespace omnirt::vision::cuda
