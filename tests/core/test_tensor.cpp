#include <gtest/gtest.h>

#include "common/test_util.h"
#include "core/error.h"
#include "core/tensor.h"

using namespace omnirt;

TEST(Tensor, ViewsShareStorageAndIndexCorrectly) {
  std::mt19937_64 rng(omnirt::testing::test_seed());
  Tensor t = omnirt::testing::random_tensor({2, 3, 5}, rng);
  Tensor p = t.permute({2, 0, 1});
  EXPECT_FALSE(p.is_contiguous());
  Tensor c = p.contiguous();
  for (int a = 0; a < 5; ++a)
    for (int b = 0; b < 2; ++b)
      for (int d = 0; d < 3; ++d)
        EXPECT_EQ(c.data<float>()[(a * 2 + b) * 3 + d], t.data<float>()[(b * 3 + d) * 5 + a]);
  Tensor s = t.slice(1, 1, 3).select(2, 4).contiguous();
  ASSERT_EQ(s.shape(), (Shape{2, 2}));
  EXPECT_EQ(s.data<float>()[3], t.data<float>()[(1 * 3 + 2) * 5 + 4]);
}

TEST(Tensor, BadReshapeAndSliceAreClearErrors) {
  Tensor t = Tensor::zeros({4, 6}, DType::F32);
  EXPECT_THROW(t.reshape({5, 5}), Error);
  EXPECT_THROW(t.slice(0, 2, 9), Error);
  EXPECT_EQ(t.reshape({-1, 3}).shape(), (Shape{8, 3}));
  try {
    expect_shape(t, {4, 7}, "weight blocks.0.attn.proj");
    FAIL();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("blocks.0.attn.proj"), std::string::npos);
    EXPECT_NE(m.find("[4, 7]"), std::string::npos);
  }
}

TEST(DType, HalfAndBf16RoundTripNearest) {
  std::mt19937_64 rng(omnirt::testing::test_seed());
  std::uniform_real_distribution<float> d(-1000.f, 1000.f);
  for (int i = 0; i < 10000; ++i) {
    float x = d(rng);
    float h = half_to_float(float_to_half(x));
    EXPECT_LE(std::fabs(h - x), std::fabs(x) * (1.0f / 2048) + 1e-7f);
    float b = bf16_to_float(float_to_bf16(x));
    EXPECT_LE(std::fabs(b - x), std::fabs(x) * (1.0f / 256) + 1e-7f);
  }
  EXPECT_EQ(float_to_half(65504.f), 0x7bff);
  EXPECT_EQ(float_to_half(1e6f), 0x7c00);
  EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24));
}

TEST(DType, Fp8AndFp4Codes) {
  EXPECT_EQ(fp8e4m3_to_float(0x7e), 448.f);
  EXPECT_EQ(float_to_fp8e4m3(1000.f), 0x7e);
  EXPECT_EQ(fp8e4m3_to_float(float_to_fp8e4m3(0.3f)), 0.3125f);
  EXPECT_EQ(fp4e2m1_to_float(float_to_fp4e2m1(2.6f)), 3.0f);
  EXPECT_EQ(fp4e2m1_to_float(float_to_fp4e2m1(-5.1f)), -6.0f);
  EXPECT_EQ(dtype_nbytes(DType::I4, 7), 4u);
}

TEST(Arena, HandsOutAlignedBlocksAndReportsExhaustion) {
  Arena a(Device::CPU, 4096);
  Tensor x = a.alloc({10}, DType::F32);
  Tensor y = a.alloc({10}, DType::F32);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(y.raw()) % 256, 0u);
  EXPECT_NE(x.raw(), y.raw());
  EXPECT_THROW(a.alloc({4096}, DType::F32), Error);
  a.reset();
  EXPECT_EQ(a.used(), 0u);
}

TEST(Cuda, RoundTripCopy) {
  OMNIRT_REQUIRE_CUDA();
  std::mt19937_64 rng(omnirt::testing::test_seed());
  Tensor t = omnirt::testing::random_tensor({3, 17}, rng);
  Tensor g = t.to(Device::CUDA);
  EXPECT_TRUE(g.is_cuda());
  Tensor back = g.to(Device::CPU);
  EXPECT_EQ(back.to_float_vector(), t.to_float_vector());
}
