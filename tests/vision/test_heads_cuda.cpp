// CUDA kernels of the PETR heads against their host versions.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <random>
#include <tuple>

#include "common/test_util.h"
#include "core/error.h"
#include "models/vision/host_math.h"
#ifdef OMNIRT_WITH_CUDA
#include "models/vision/heads_cuda.h"
#endif

namespace omnirt {
namespace {

using vision::host::Mat4;
using testing::test_seed;

// Plausible cameras (a ring looking outwards, random focal lengths and small rotations), so
// that the frustum points cover the inside, the edges and the outside of the position range.
std::vector<Mat4> random_img2lidars(const vision::VisionConfig& c, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> f(300.f, 900.f), jitter(-0.1f, 0.1f);
  std::vector<Mat4> out;
  for (int cam = 0; cam < c.num_cams; ++cam) {
    const float yaw = 2.f * 3.14159265f * cam / c.num_cams + jitter(rng);
    const float cz = std::cos(yaw), sz = std::sin(yaw);
    Mat4 ego2cam{sz, -cz, jitter(rng), 0.3f * jitter(rng), jitter(rng), jitter(rng), -1, 1.5f,
                 cz, sz, jitter(rng), 0.5f * jitter(rng), 0, 0, 0, 1};
    Mat4 k{f(rng), 0, c.img_w / 2.f, 0, 0, f(rng), c.img_h / 2.f, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    out.push_back(vision::host::inverse4(vision::host::matmul4(k, ego2cam), "test camera"));
  }
  return out;
}

TEST(HeadsCuda, PositionEmbeddingInputMatchesHost) {
  OMNIRT_REQUIRE_CUDA();
#ifdef OMNIRT_WITH_CUDA
  std::mt19937_64 rng(test_seed());
  vision::VisionConfig c;  // full-size defaults: 6 cameras, 40x40 patches, 64 depth bins
  std::vector<float> coords_d(c.depth_num);
  for (int k = 0; k < c.depth_num; ++k) coords_d[k] = 1.f + 60.f * k / c.depth_num + 0.01f * k;
  const auto cams = random_img2lidars(c, rng);
  Tensor want = vision::host::position_embedding_input(c, coords_d, cams);
  Tensor got = Tensor::empty(want.shape(), DType::F32, Device::CUDA);
  vision::cuda::position_embedding_input(c, coords_d, cams, got);
  const auto g = got.to_float_vector(), w = want.to_float_vector();
  // Some values must be clamped (outside the range) and some inside, or the test is weak.
  int clamped = 0, inside = 0;
  double max_abs = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    ASSERT_TRUE(std::isfinite(g[i])) << i;
    max_abs = std::max(max_abs, std::fabs(double(g[i]) - w[i]));
    (std::fabs(w[i]) > 11.5f ? clamped : inside)++;
  }
  EXPECT_GT(clamped, 0);
  EXPECT_GT(inside, int(w.size() / 4));
  EXPECT_LT(max_abs, 1e-5);  // same operation order; only logf's last bit may differ
  EXPECT_LT(testing::rel_error(got, want), 1e-6);
#endif
}

}  // namespace
}  // namespace omnirt

namespace omnirt {
namespace {

// The temporal encodings kernel against host::nerf_pe / host::pos2posemb1d, for box memory (one
// reference point per entry, tiled) and lane memory (n_control points per entry), in F32 and F16.
TEST(HeadsCuda, TemporalEncodingsMatchHost) {
  OMNIRT_REQUIRE_CUDA();
#ifdef OMNIRT_WITH_CUDA
  std::mt19937_64 rng(test_seed());
  std::uniform_real_distribution<float> unit(0.f, 1.f), pose_v(-3.f, 3.f);
  std::uniform_real_distribution<double> dt(-2.5, 0.0);
  const int n_control = 11, entries = 37, feats = 256;
  const std::vector<float> dim_t = vision::host::posemb_dim_t(feats);
  for (int per_entry : {3, 3 * n_control}) {
    std::vector<float> ref(entries * per_entry), pose(entries * 16);
    std::vector<double> ts(entries);
    for (float& v : ref) v = unit(rng);
    for (float& v : pose) v = pose_v(rng);
    for (double& v : ts) v = dt(rng);
    // Host expectations.
    const int pts = 3 * n_control;
    std::vector<float> nerf_want(entries * 12 * pts), ego_want(entries * 12 * 13),
        tpe_want(entries * feats), tiled(pts);
    for (int e = 0; e < entries; ++e) {
      for (int i = 0; i < pts; ++i) tiled[i] = per_entry == 3 ? ref[e * 3 + i % 3] : ref[e * pts + i];
      vision::host::nerf_pe(tiled.data(), pts, &nerf_want[e * 12 * pts]);
      float motion[13];
      motion[0] = static_cast<float>(ts[e]);
      for (int i = 0; i < 12; ++i) motion[1 + i] = pose[e * 16 + i];
      vision::host::nerf_pe(motion, 13, &ego_want[e * 12 * 13]);
      vision::host::pos2posemb1d(ts[e], feats, &tpe_want[e * feats]);
    }
    Tensor ts_t = Tensor::empty({entries}, DType::F64);
    std::copy(ts.begin(), ts.end(), ts_t.data<double>());
    const Tensor ref_d = Tensor::from_vector(ref, {int64_t(ref.size())}).to(Device::CUDA);
    const Tensor pose_d = Tensor::from_vector(pose, {entries, 16}).to(Device::CUDA);
    const Tensor ts_d = ts_t.to(Device::CUDA);
    for (DType dt_out : {DType::F32, DType::F16}) {
      SCOPED_TRACE(std::string(dtype_name(dt_out)) + " per_entry " + std::to_string(per_entry));
      Tensor nerf = Tensor::empty({entries, 12 * pts}, dt_out, Device::CUDA);
      Tensor ego = Tensor::empty({entries, 12 * 13}, dt_out, Device::CUDA);
      Tensor tpe = Tensor::empty({entries, feats}, dt_out, Device::CUDA);
      vision::cuda::temporal_encodings(ref_d, per_entry, n_control, ts_d, pose_d, dim_t, nerf,
                                       ego, tpe);
      const double tol = dt_out == DType::F32 ? 1e-6 : 1e-3;
      EXPECT_LT(testing::rel_error(nerf.to_float_vector(), nerf_want), tol);
      EXPECT_LT(testing::rel_error(ego.to_float_vector(), ego_want), tol);
      EXPECT_LT(testing::rel_error(tpe.to_float_vector(), tpe_want), tol);
    }
  }
  // A wrong-sized input is a clear error.
  Tensor small = Tensor::empty({5}, DType::F32, Device::CUDA);
  Tensor ts1 = Tensor::empty({4}, DType::F64, Device::CUDA);
  Tensor out = Tensor::empty({4, 12 * 33}, DType::F32, Device::CUDA);
  EXPECT_THROW(vision::cuda::temporal_encodings(small, 3, 11, ts1, small, dim_t, out, out, out),
               Error);
#endif
}

}  // namespace
}  // namespace omnirt

namespace omnirt {
namespace {

// The branch-outputs kernel against host::regression_to_ego (on the same dtype-rounded inputs),
// box-like and lane-like, F32/F16/BF16, writing into views of one buffer as the heads do.
TEST(HeadsCuda, BranchOutputsMatchHost) {
  OMNIRT_REQUIRE_CUDA();
#ifdef OMNIRT_WITH_CUDA
  std::mt19937_64 rng(test_seed());
  std::uniform_real_distribution<float> unit(0.02f, 0.98f);
  const std::array<float, 6> pc{-51.2f, -40.f, -5.f, 51.2f, 60.f, 3.f};
  for (const auto [cols, ref_cols, classes] : {std::tuple{10, 3, 10}, std::tuple{33, 33, 1}}) {
    const int64_t queries = 37, layers = 3, rows = layers * queries;
    std::vector<float> ref(queries * ref_cols);
    for (float& v : ref) v = vision::host::inverse_sigmoid(unit(rng));
    const Tensor ref_d = Tensor::from_vector(ref, {queries, ref_cols}).to(Device::CUDA);
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " cols " + std::to_string(cols));
      const Tensor cls_h = testing::random_tensor({rows, classes}, rng, -8.f, 8.f).to_dtype(dt);
      const Tensor reg_h = testing::random_tensor({rows, cols}, rng, -6.f, 6.f).to_dtype(dt);
      const std::vector<float> cls_f = cls_h.to_float_vector(), reg_f = reg_h.to_float_vector();
      std::vector<float> want(rows * cols);
      vision::host::regression_to_ego(reg_f.data(), rows, cols, ref.data(), queries, ref_cols,
                                      pc, want.data());
      // Outputs at odd offsets inside one buffer, with guard values around them.
      const int64_t n_cls = rows * classes, n_reg = rows * cols, off = 5;
      Tensor buf = Tensor::from_vector(std::vector<float>(off + n_cls + n_reg + off, -7.f),
                                       {off + n_cls + n_reg + off})
                       .to(Device::CUDA);
      Tensor cls_out = buf.slice(0, off, off + n_cls).reshape({rows, classes});
      Tensor reg_out = buf.slice(0, off + n_cls, off + n_cls + n_reg).reshape({rows, cols});
      vision::cuda::branch_outputs(cls_h.to(Device::CUDA), reg_h.to(Device::CUDA), ref_d,
                                   ref_cols, pc, cls_out, reg_out);
      const std::vector<float> all = buf.to_float_vector();
      for (int64_t i = 0; i < off; ++i) {
        EXPECT_EQ(all[i], -7.f);
        EXPECT_EQ(all[off + n_cls + n_reg + i], -7.f);
      }
      for (int64_t i = 0; i < n_cls; ++i) ASSERT_EQ(all[off + i], cls_f[i]) << i;
      double max_err = 0;
      for (int64_t i = 0; i < n_reg; ++i) {
        ASSERT_TRUE(std::isfinite(all[off + n_cls + i])) << i;
        max_err = std::max(max_err, double(std::fabs(all[off + n_cls + i] - want[i])));
      }
      EXPECT_LT(max_err, 2e-5);  // expf vs the host's exp: an ulp or two on values up to ~60
    }
  }
  // Mismatched reference rows are a clear error.
  Tensor reg = Tensor::zeros({10, 10}, DType::F32, Device::CUDA);
  Tensor cls = Tensor::zeros({10, 1}, DType::F32, Device::CUDA);
  Tensor bad_ref = Tensor::zeros({3, 3}, DType::F32, Device::CUDA);
  Tensor co = Tensor::empty({10, 1}, DType::F32, Device::CUDA);
  Tensor ro = Tensor::empty({10, 10}, DType::F32, Device::CUDA);
  EXPECT_THROW(vision::cuda::branch_outputs(cls, reg, bad_ref, 3, pc, co, ro), Error);
#endif
}

}  // namespace
}  // namespace omnirt

namespace omnirt {
namespace {

// Row gather + widening against the host rows, F32/F16/BF16, repeated and unordered indices,
// more than one 512-index chunk, into a view with guard rows around it.
TEST(HeadsCuda, GatherRowsMatchesHost) {
  OMNIRT_REQUIRE_CUDA();
#ifdef OMNIRT_WITH_CUDA
  std::mt19937_64 rng(test_seed());
  const int64_t rows = 901, cols = 70;
  std::uniform_int_distribution<int> pick(0, rows - 1);
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dt));
    const Tensor src_h = testing::random_tensor({rows, cols}, rng, -3.f, 3.f).to_dtype(dt);
    const std::vector<float> src_f = src_h.to_float_vector();
    for (int k : {1, 300, 1031}) {
      std::vector<int> ids(k);
      for (int& i : ids) i = pick(rng);
      if (k > 2) ids[1] = ids[0];  // a repeat
      Tensor buf = Tensor::from_vector(std::vector<float>((k + 2) * cols, -9.f), {k + 2, cols})
                       .to(Device::CUDA);
      Tensor out = buf.slice(0, 1, k + 1);
      vision::cuda::gather_rows_f32(src_h.to(Device::CUDA), ids, out);
      const std::vector<float> got = buf.to_float_vector();
      for (int64_t j = 0; j < cols; ++j) {
        EXPECT_EQ(got[j], -9.f);
        EXPECT_EQ(got[(k + 1) * cols + j], -9.f);
      }
      for (int i = 0; i < k; ++i)
        for (int64_t j = 0; j < cols; ++j)
          ASSERT_EQ(got[(i + 1) * cols + j], src_f[ids[i] * cols + j]) << "row " << i;
    }
  }
  Tensor src = Tensor::zeros({4, 3}, DType::F32, Device::CUDA);
  Tensor out = Tensor::empty({1, 3}, DType::F32, Device::CUDA);
  EXPECT_THROW(vision::cuda::gather_rows_f32(src, {4}, out), Error);   // out of range
  EXPECT_THROW(vision::cuda::gather_rows_f32(src, {-1}, out), Error);
#endif
}

// The asynchronous download returns what the device held when start() was queued (later
// device writes do not leak in), grows its staging buffer, and survives an uncollected copy.
TEST(HeadsCuda, AsyncDownloadReturnsTheQueuedValues) {
  OMNIRT_REQUIRE_CUDA();
#ifdef OMNIRT_WITH_CUDA
  std::mt19937_64 rng(test_seed());
  vision::cuda::AsyncDownload copy;
  for (int64_t n : {17, 100003, 5}) {
    const Tensor want = testing::random_tensor({n}, rng);
    Tensor dev = want.to(Device::CUDA);
    copy.start(dev);
    // Overwrite the device tensor after the copy was queued (stream order: the copy sees the
    // old values).
    dev.copy_from(testing::random_tensor({n}, rng).to(Device::CUDA));
    const Tensor got = copy.wait();
    ASSERT_EQ(got.device(), Device::CPU);
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_EQ(got.to_float_vector(), want.to_float_vector());
  }
  // A copy never collected is dropped by the next start().
  copy.start(testing::random_tensor({9}, rng).to(Device::CUDA));
  const Tensor half = testing::random_tensor({3, 4}, rng).to_dtype(DType::F16);
  copy.start(half.to(Device::CUDA));
  const Tensor got = copy.wait();
  EXPECT_EQ(got.dtype(), DType::F16);
  EXPECT_EQ(got.to_float_vector(), half.to_float_vector());
  EXPECT_THROW(copy.wait(), Error);  // nothing queued
#endif
}

}  // namespace
}  // namespace omnirt
