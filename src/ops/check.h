// Argument checking shared by the op dispatchers (src/ops/<family>.cpp).
//
// Every op validates its arguments before touching memory and throws omnirt::Error with a
// message of the form "<op>: <argument>: expected <what>, got <what>", e.g.
//   "ops::layernorm: weight: expected shape [768], got [767]".
// The backends (ops::cpu, ops::cuda) assume validated arguments and do no checking of their own.
#pragma once

#include <string_view>

#include "core/tensor.h"

namespace omnirt::ops::detail {

// `t` must be a defined tensor.
void check_defined(const Tensor& t, std::string_view op, std::string_view arg);
// `t` must be defined and contiguous (all ops read and write dense memory).
void check_contiguous(const Tensor& t, std::string_view op, std::string_view arg);
void check_shape(const Tensor& t, const Shape& expected, std::string_view op, std::string_view arg);
void check_ndim(const Tensor& t, int expected, std::string_view op, std::string_view arg);
void check_dtype(const Tensor& t, DType expected, std::string_view op, std::string_view arg);
void check_device(const Tensor& t, Device expected, std::string_view op, std::string_view arg);

// A float tensor the backend of its device computes on: CPU float32 only (the reference),
// CUDA float32, float16 and bfloat16.
void check_compute_dtype(const Tensor& t, std::string_view op, std::string_view arg);

// The common case for a second operand or an output: defined, contiguous, and the same dtype
// and device as `ref` (named `ref_arg` in the message).
void check_like(const Tensor& t, const Tensor& ref, std::string_view op, std::string_view arg,
                std::string_view ref_arg);

// Rows of a [..., features] tensor: the product of all leading dimensions.
inline int64_t rows_of(const Tensor& t) { return t.ndim() == 0 ? 1 : t.numel() / t.dim(-1); }

[[noreturn]] void fail_no_cuda(std::string_view op);

}  // namespace omnirt::ops::detail
