// permute: CPU against an index loop written here, CUDA bit-exact against CPU on random shapes
// and permutations of rank 0..6 and several element sizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "ops/permute.h"
#include "ops_test_util.h"

using namespace omnirt;
using namespace omnirt::testing;

namespace {
// Host tensor of `dtype` with distinct bytes per element (a float pattern for float types).
Tensor pattern_tensor(const Shape& shape, DType dtype, std::mt19937_64& rng) {
  if (dtype_is_float(dtype)) return random_tensor(shape, rng).to_dtype(dtype);
  Tensor t = Tensor::empty(shape, dtype);
  auto* p = static_cast<uint8_t*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<uint8_t>(rng());
  return t;
}

// out[i0..] = x[i_{inv}...]: for every input index, write to the permuted output position.
std::vector<uint8_t> permute_naive(const Tensor& x, const std::vector<int>& dims) {
  const int nd = x.ndim();
  const size_t elem = dtype_nbytes(x.dtype(), 1);
  Shape out_shape(nd);
  for (int i = 0; i < nd; ++i) out_shape[i] = x.shape()[dims[i]];
  const Shape out_strides = contiguous_strides(out_shape);
  std::vector<uint8_t> out(x.nbytes());
  std::vector<int64_t> in_index(nd, 0);
  for (int64_t flat = 0; flat < x.numel(); ++flat) {
    int64_t rest = flat;
    for (int d = nd - 1; d >= 0; --d) {
      in_index[d] = rest % x.shape()[d];
      rest /= x.shape()[d];
    }
    int64_t o = 0;
    for (int i = 0; i < nd; ++i) o += in_index[dims[i]] * out_strides[i];
    std::memcpy(out.data() + o * elem, static_cast<const uint8_t*>(x.raw()) + flat * elem, elem);
  }
  return out;
}

std::vector<uint8_t> bytes_of(const Tensor& t) {
  Tensor h = t.to(Device::CPU);
  const auto* p = static_cast<const uint8_t*>(h.raw());
  return std::vector<uint8_t>(p, p + h.nbytes());
}

Shape permuted(const Shape& s, const std::vector<int>& dims) {
  Shape o(s.size());
  for (size_t i = 0; i < s.size(); ++i) o[i] = s[dims[i]];
  return o;
}

struct Case {
  Shape shape;
  std::vector<int> dims;
};

// The model's permutes plus random ones: rank 1..6, sizes 1..7 with some wide inner dims.
std::vector<Case> cases(std::mt19937_64& rng) {
  std::vector<Case> c = {
      {{2, 5, 3, 4, 64}, {2, 0, 3, 1, 4}},  // qkv [B, N, 3, H, D] -> [3, B, H, N, D]
      {{6, 40, 40, 768}, {0, 3, 1, 2}},     // NHWC -> NCHW
      {{3, 7, 5}, {2, 1, 0}},
      {{4, 1, 6}, {1, 2, 0}},
      {{5}, {0}},
      {{}, {}},
      {{2, 3, 1, 4, 1, 5}, {5, 3, 1, 0, 4, 2}},
      {{9, 33}, {1, 0}},
  };
  std::uniform_int_distribution<int> rank_d(1, 6), size_d(1, 7), wide_d(0, 3);
  for (int k = 0; k < 40; ++k) {
    const int nd = rank_d(rng);
    Case cs;
    for (int i = 0; i < nd; ++i) cs.shape.push_back(size_d(rng));
    if (wide_d(rng) == 0) cs.shape.back() = 16 * size_d(rng);  // a run worth vectorising
    cs.dims.resize(nd);
    std::iota(cs.dims.begin(), cs.dims.end(), 0);
    std::shuffle(cs.dims.begin(), cs.dims.end(), rng);
    c.push_back(cs);
  }
  return c;
}
}  // namespace

TEST(PermuteCpu, MatchesIndexLoop) {
  std::mt19937_64 rng(test_seed());
  for (const Case& c : cases(rng)) {
    for (DType dt : {DType::F32, DType::F16, DType::U8, DType::I64}) {
      Tensor x = pattern_tensor(c.shape, dt, rng);
      Tensor out = Tensor::empty(permuted(c.shape, c.dims), dt);
      ops::permute(x, c.dims, out);
      EXPECT_EQ(bytes_of(out), permute_naive(x, c.dims)) << dtype_case(dt, c.shape);
    }
  }
  // Negative dims count from the back.
  Tensor x = random_tensor({2, 3, 4}, rng);
  Tensor a = Tensor::empty({4, 2, 3}, DType::F32), b = Tensor::empty({4, 2, 3}, DType::F32);
  ops::permute(x, {2, 0, 1}, a);
  ops::permute(x, {-1, 0, -2}, b);
  EXPECT_EQ(bytes_of(a), bytes_of(b));
}

TEST(PermuteArgs, BadArgumentsAreClearErrors) {
  std::mt19937_64 rng(test_seed());
  Tensor x = random_tensor({2, 3, 4}, rng);
  Tensor out = Tensor::empty({4, 2, 3}, DType::F32);
  expect_error([&] { ops::permute(x, {2, 0}, out); }, {"ops::permute", "dims", "3 entries"});
  expect_error([&] { ops::permute(x, {2, 0, 0}, out); }, {"ops::permute", "dims", "permutation"});
  expect_error([&] { ops::permute(x, {3, 0, 1}, out); }, {"ops::permute", "dims"});
  Tensor out_bad = Tensor::empty({4, 3, 2}, DType::F32);
  expect_error(
      [&] {
        ops::permute(x, {2, 0, 1}, out_bad);
      },
      {"ops::permute", "out", "[4, 2, 3]", "[4, 3, 2]"});
  expect_error([&] { ops::permute(x, {0, 1, 2}, x); }, {"ops::permute", "overlap"});
  Tensor x7 = Tensor::zeros({1, 1, 1, 1, 1, 1, 2}, DType::F32);
  Tensor out7 = Tensor::zeros({1, 1, 1, 1, 1, 1, 2}, DType::F32);
  expect_error(
      [&] {
        ops::permute(x7, {0, 1, 2, 3, 4, 5, 6}, out7);
      },
      {"ops::permute", "at most 6"});
  Tensor out_gpu = fake_cuda(Tensor::empty({4, 2, 3}, DType::F32));
  expect_error([&] { ops::permute(x, {2, 0, 1}, out_gpu); }, {"ops::permute", "out", "device"});
}

TEST(PermuteCuda, BitExactAgainstCpu) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(test_seed());
  for (const Case& c : cases(rng)) {
    for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::U8, DType::I64}) {
      Tensor x = pattern_tensor(c.shape, dt, rng);
      const Shape os = permuted(c.shape, c.dims);
      Tensor expected = Tensor::empty(os, dt);
      ops::permute(x, c.dims, expected);
      Tensor out = Tensor::empty(os, dt, Device::CUDA);
      device_memset(Device::CUDA, out.raw(), 0xff, out.nbytes());  // poison
      ops::permute(x.to(Device::CUDA), c.dims, out);
      EXPECT_EQ(bytes_of(out), bytes_of(expected)) << dtype_case(dt, c.shape);
    }
  }
}
