#include "ops/cpu/embedding.h"

#include <cstring>

namespace omnirt::ops::cpu {

void embedding(const Tensor& table, const Tensor& ids, Tensor& out) {
  const int64_t dim = table.dim(1);
  const int32_t* id = ids.data<int32_t>();
  for (int64_t n = 0; n < ids.dim(0); ++n)
    std::memcpy(out.data<float>() + n * dim, table.data<float>() + id[n] * dim,
                dim * sizeof(float));
}

}  // namespace omnirt::ops::cpu
