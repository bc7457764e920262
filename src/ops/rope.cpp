#include "ops/rope.h"

#include <cmath>

#include "core/error.h"
#include "ops/check.h"
#include "ops/cpu/rope.h"
#ifdef OMNIRT_WITH_CUDA
#include "ops/cuda/rope.h"
#endif

namespace omnirt::ops {

void rope_llama(const Tensor& x, const Tensor& positions, float theta, Tensor& out) {
  constexpr std::string_view kOp = "ops::rope_llama";
  detail::check_contiguous(x, kOp, "x");
  detail::check_compute_dtype(x, kOp, "x");
  detail::check_ndim(x, 3, kOp, "x");
  const int64_t head_dim = x.dim(2);
  OMNIRT_CHECK(head_dim % 2 == 0 && head_dim >= 2 && head_dim <= 256, kOp,
               ": x: expected [tokens, heads, head_dim] with an even head_dim <= 256, got shape ",
               shape_str(x.shape()));
  detail::check_contiguous(positions, kOp, "positions");
  detail::check_dtype(positions, DType::I32, kOp, "positions");
  detail::check_device(positions, x.device(), kOp, "positions");
  detail::check_shape(positions, {x.dim(0)}, kOp, "positions");
  OMNIRT_CHECK(std::isfinite(theta) && theta > 0.0f, kOp,
               ": theta: expected a finite value > 0, got ", theta);
  detail::check_like(out, x, kOp, "out", "x");
  detail::check_shape(out, x.shape(), kOp, "out");
  if (x.numel() == 0) return;
  if (x.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::rope_llama(x, positions, theta, out);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    cpu::rope_llama(x, positions, theta, out);
  }
}

void rope_eva2d(const Tensor& x, const Tensor& cos, const Tensor& sin, Tensor& out) {
  constexpr std::string_view kOp = "ops::rope_eva2d";
  detail::check_contiguous(x, kOp, "x");
  detail::check_compute_dtype(x, kOp, "x");
  detail::check_ndim(x, 4, kOp, "x");
  const int64_t tokens = x.dim(2), dim = x.dim(3);
  OMNIRT_CHECK(dim % 2 == 0, kOp,
               ": x: expected [batch, heads, tokens, D] with an even D, got shape ",
               shape_str(x.shape()));
  for (const auto& [table, name] : {std::pair{&cos, "cos"}, std::pair{&sin, "sin"}}) {
    detail::check_contiguous(*table, kOp, name);
    detail::check_dtype(*table, DType::F32, kOp, name);
    detail::check_device(*table, x.device(), kOp, name);
    detail::check_shape(*table, {tokens, dim}, kOp, name);
  }
  detail::check_like(out, x, kOp, "out", "x");
  detail::check_shape(out, x.shape(), kOp, "out");
  if (x.numel() == 0) return;
  if (x.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::rope_eva2d(x, cos, sin, out);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    cpu::rope_eva2d(x, cos, sin, out);
  }
}

RopeTables eva_rope_tables(int64_t ft_seq_len, int64_t pt_seq_len, int64_t dim, float theta) {
  constexpr std::string_view kOp = "ops::eva_rope_tables";
  OMNIRT_CHECK(ft_seq_len >= 1 && pt_seq_len >= 1, kOp,
               ": expected ft_seq_len >= 1 and pt_seq_len >= 1, got ", ft_seq_len, " and ",
               pt_seq_len);
  OMNIRT_CHECK(dim >= 2 && dim % 2 == 0, kOp, ": dim: expected an even value >= 2, got ", dim);
  OMNIRT_CHECK(std::isfinite(theta) && theta > 0.0f, kOp,
               ": theta: expected a finite value > 0, got ", theta);
  const std::vector<float> freqs = cpu::rope_inv_freq(dim, theta);  // dim / 2 values
  // Positions as the module computes them: torch.arange(ft) / ft * pt, in float32.
  std::vector<float> t(ft_seq_len);
  for (int64_t k = 0; k < ft_seq_len; ++k)
    t[k] =
        (static_cast<float>(k) / static_cast<float>(ft_seq_len)) * static_cast<float>(pt_seq_len);

  const int64_t width = 2 * dim;
  RopeTables tables{Tensor::empty({ft_seq_len * ft_seq_len, width}, DType::F32),
                    Tensor::empty({ft_seq_len * ft_seq_len, width}, DType::F32)};
  float* pc = tables.cos.data<float>();
  float* ps = tables.sin.data<float>();
  for (int64_t r = 0; r < ft_seq_len; ++r) {
    for (int64_t c = 0; c < ft_seq_len; ++c) {
      const int64_t row = (r * ft_seq_len + c) * width;
      for (int64_t i = 0; i < dim / 2; ++i) {
        const float angle_r = t[r] * freqs[i];   // first half: row position
        const float angle_c = t[c] * freqs[i];   // second half: column position
        for (int64_t rep = 0; rep < 2; ++rep) {  // each frequency twice (adjacent pair)
          pc[row + 2 * i + rep] = std::cos(angle_r);
          ps[row + 2 * i + rep] = std::sin(angle_r);
          pc[row + dim + 2 * i + rep] = std::cos(angle_c);
          ps[row + dim + 2 * i + rep] = std::sin(angle_c);
        }
      }
    }
  }
  return tables;
}

}  // namespace omnirt::ops
