// Helpers for the op tests: dtype round trips, poisoned CUDA outputs, element-wise comparison
// with a useful failure message, and error-message checks.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "common/test_util.h"
#include "core/error.h"
#include "core/tensor.h"

namespace omnirt::testing {

// Dtypes the CUDA kernels support; the CPU reference is float32 only.
inline const std::vector<DType>& cuda_dtypes() {
  static const std::vector<DType> kDtypes = {DType::F32, DType::F16, DType::BF16};
  return kDtypes;
}

// Tolerance of a CUDA result in `dtype` against the float32 CPU op on the same rounded inputs.
inline double cuda_tolerance(DType dtype) { return dtype == DType::F32 ? 1e-5 : 1e-2; }

// Host float32 tensor whose values are exactly representable in `dtype` (what a `dtype` tensor
// holds), so the CPU reference sees the same inputs as the CUDA kernel.
inline Tensor rounded_to(const Tensor& x, DType dtype) {
  return x.to_dtype(dtype).to_dtype(DType::F32);
}

// A host float32 tensor as a CUDA tensor of `dtype`.
inline Tensor to_cuda(const Tensor& x, DType dtype) { return x.to_dtype(dtype).to(Device::CUDA); }

// A CUDA tensor of NaNs: an element the kernel forgets to write stays NaN and fails the check.
inline Tensor poisoned_cuda(const Shape& shape, DType dtype) {
  std::vector<float> nan(static_cast<size_t>(shape_numel(shape)),
                         std::numeric_limits<float>::quiet_NaN());
  return to_cuda(Tensor::from_vector(nan, shape), dtype);
}

// A tensor that claims to live on the GPU but points at host memory: lets the device-mismatch
// checks be tested on machines without a GPU (the op must reject it before touching memory).
inline Tensor fake_cuda(const Tensor& host) {
  auto keep = std::make_shared<Tensor>(host);
  return Tensor::from_blob(keep->raw(), host.shape(), host.dtype(), Device::CUDA, keep);
}

// Element-wise comparison: |a - e| <= tol * (|e| + rms(e)) everywhere (the rms term absorbs
// cancellation near zero), plus the norm-wise rel_error <= tol. Reports the worst element.
inline void expect_close(const std::vector<float>& actual, const std::vector<float>& expected,
                         double tol, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  double sq = 0;
  for (float e : expected) sq += double(e) * e;
  const double rms = expected.empty() ? 0.0 : std::sqrt(sq / expected.size());
  size_t worst = 0, bad = 0;
  double worst_ratio = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const double err = std::fabs(double(actual[i]) - expected[i]);
    const double allowed = tol * (std::fabs(double(expected[i])) + rms) + 1e-30;
    const double ratio = std::isfinite(actual[i]) ? err / allowed : INFINITY;
    if (ratio > 1.0) ++bad;
    if (ratio > worst_ratio || (std::isnan(ratio) && !std::isnan(worst_ratio))) {
      worst_ratio = std::isnan(ratio) ? INFINITY : ratio;
      worst = i;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << expected.size()
                     << " elements out of tolerance " << tol << "; worst at flat index " << worst
                     << ": got " << actual[worst] << ", expected " << expected[worst];
  EXPECT_LE(rel_error(actual, expected), tol) << what;
}

inline void expect_close(const Tensor& actual, const Tensor& expected, double tol,
                         const std::string& what) {
  EXPECT_EQ(actual.shape(), expected.shape()) << what;
  expect_close(actual.to_float_vector(), expected.to_float_vector(), tol, what);
}

// `fn` must throw omnirt::Error whose message contains every string in `parts`.
inline void expect_error(const std::function<void()>& fn,
                         std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected omnirt::Error, nothing was thrown";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos)
          << "message \"" << msg << "\" lacks \"" << p << "\"";
  }
}

// Awkward sizes for the feature (last) dimension: 1, odd, just past a warp/vector multiple,
// vector-friendly, and larger than one block of 1024 threads can cover in one step.
inline const std::vector<int64_t>& awkward_features() {
  static const std::vector<int64_t> kSizes = {1, 3, 64, 65, 257, 768, 2048, 2049, 5000};
  return kSizes;
}
inline const std::vector<int64_t>& awkward_rows() {
  static const std::vector<int64_t> kRows = {1, 7, 33};
  return kRows;
}

inline std::string dtype_case(DType d, const Shape& s) {
  return std::string(dtype_name(d)) + shape_str(s);
}

}  // namespace omnirt::testing
