#include "ops/embedding.h"

#include <vector>

#include "core/error.h"
#include "ops/check.h"
#include "ops/cpu/embedding.h"
#ifdef OMNIRT_WITH_CUDA
#include "ops/cuda/embedding.h"
#endif

namespace omnirt::ops {

void embedding(const Tensor& table, const Tensor& ids, Tensor& out) {
  constexpr std::string_view kOp = "ops::embedding";
  detail::check_contiguous(table, kOp, "table");
  detail::check_compute_dtype(table, kOp, "table");
  detail::check_ndim(table, 2, kOp, "table");
  detail::check_contiguous(ids, kOp, "ids");
  detail::check_dtype(ids, DType::I32, kOp, "ids");
  detail::check_ndim(ids, 1, kOp, "ids");
  detail::check_device(ids, table.device(), kOp, "ids");
  const int64_t vocab = table.dim(0), n = ids.dim(0);
  detail::check_like(out, table, kOp, "out", "table");
  detail::check_shape(out, {n, table.dim(1)}, kOp, "out");
  if (out.numel() == 0) return;

  // Validate every id on the host before any row is read. For CUDA ids this costs one small
  // copy + sync; a device-side flag would need the same sync to report the error.
  std::vector<int32_t> host_ids(static_cast<size_t>(n));
  device_copy(host_ids.data(), Device::CPU, ids.raw(), ids.device(), n * sizeof(int32_t));
  for (int64_t i = 0; i < n; ++i)
    OMNIRT_CHECK(host_ids[i] >= 0 && host_ids[i] < vocab, kOp, ": ids[", i, "] = ", host_ids[i],
                 " is out of range for a table of ", vocab, " rows (valid ids: 0..", vocab - 1,
                 ")");

  if (table.is_cuda()) {
#ifdef OMNIRT_WITH_CUDA
    cuda::embedding(table, ids, out);
#else
    detail::fail_no_cuda(kOp);
#endif
  } else {
    cpu::embedding(table, ids, out);
  }
}

}  // namespace omnirt::ops
