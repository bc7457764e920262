// embedding: CPU against a loop written here, CUDA bit-exact against CPU; out-of-range ids.
#include <gtest/gtest.h>

#include "ops/embedding.h"
#include "ops_test_util.h"

using namespace omnirt;
using namespace omnirt::testing;

namespace {
Tensor make_ids(const std::vector<int32_t>& v) {
  Tensor t = Tensor::empty({static_cast<int64_t>(v.size())}, DType::I32);
  for (size_t i = 0; i < v.size(); ++i) t.data<int32_t>()[i] = v[i];
  return t;
}
std::vector<int32_t> random_ids(int64_t n, int32_t vocab, std::mt19937_64& rng) {
  std::uniform_int_distribution<int32_t> d(0, vocab - 1);
  std::vector<int32_t> v(n);
  for (auto& id : v) id = d(rng);
  if (n >= 2) {
    v[0] = 0;  // the table's first and last rows
    v[1] = vocab - 1;
  }
  return v;
}
}  // namespace

TEST(EmbeddingCpu, GathersRows) {
  std::mt19937_64 rng(test_seed());
  for (int64_t dim : {1, 3, 64, 2049}) {
    const int32_t vocab = 101;
    Tensor table = random_tensor({vocab, dim}, rng);
    const std::vector<int32_t> ids = random_ids(37, vocab, rng);
    Tensor out = Tensor::empty({37, dim}, DType::F32);
    ops::embedding(table, make_ids(ids), out);
    for (int64_t n = 0; n < 37; ++n)
      for (int64_t d = 0; d < dim; ++d)
        ASSERT_EQ(out.data<float>()[n * dim + d], table.data<float>()[ids[n] * dim + d]);
  }
}

TEST(EmbeddingArgs, OutOfRangeIdsAndBadArgumentsAreClearErrors) {
  std::mt19937_64 rng(test_seed());
  Tensor table = random_tensor({10, 4}, rng);
  Tensor out = Tensor::empty({3, 4}, DType::F32);
  expect_error(
      [&] {
        ops::embedding(table, make_ids({1, 10, 2}), out);
      },
      {"ops::embedding", "ids[1] = 10", "10 rows"});
  expect_error(
      [&] {
        ops::embedding(table, make_ids({1, 2, -1}), out);
      },
      {"ops::embedding", "ids[2] = -1"});
  Tensor ids64 = Tensor::zeros({3}, DType::I64);
  expect_error([&] { ops::embedding(table, ids64, out); }, {"ops::embedding", "ids", "I32", "I64"});
  Tensor out_bad = Tensor::empty({3, 5}, DType::F32);
  expect_error(
      [&] {
        ops::embedding(table, make_ids({1, 2, 3}), out_bad);
      },
      {"ops::embedding", "out", "[3, 4]", "[3, 5]"});
  Tensor ids_gpu = fake_cuda(make_ids({1, 2, 3}));
  expect_error([&] { ops::embedding(table, ids_gpu, out); }, {"ops::embedding", "ids", "device"});
  Tensor table1d = random_tensor({10}, rng);
  expect_error(
      [&] {
        ops::embedding(table1d, make_ids({1, 2, 3}), out);
      },
      {"ops::embedding", "table", "2-D"});
}

TEST(EmbeddingCuda, MatchesCpuAllDtypesAndRejectsBadIds) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (DType dt : cuda_dtypes()) {
    for (int64_t dim : {1, 3, 64, 65, 2048, 2049}) {
      for (int64_t n : {1, 7, 577}) {
        const int32_t vocab = 1000;
        Tensor table = rounded_to(random_tensor({vocab, dim}, rng), dt);
        Tensor ids = make_ids(random_ids(n, vocab, rng));
        Tensor expected = Tensor::empty({n, dim}, DType::F32);
        ops::embedding(table, ids, expected);
        Tensor out = poisoned_cuda({n, dim}, dt);
        ops::embedding(to_cuda(table, dt), ids.to(Device::CUDA), out);
        // A gather is exact.
        EXPECT_EQ(out.to_float_vector(), expected.to_float_vector()) << dtype_case(dt, {n, dim});
      }
    }
  }
  Tensor table = to_cuda(random_tensor({10, 8}, rng), DType::F16);
  Tensor out = poisoned_cuda({2, 8}, DType::F16);
  expect_error(
      [&] {
        ops::embedding(table, make_ids({3, 10}).to(Device::CUDA), out);
      },
      {"ops::embedding", "ids[1] = 10"});
}
