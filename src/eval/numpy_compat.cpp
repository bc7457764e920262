#include "eval/numpy_compat.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace omnirt::eval::np {
namespace {

// numpy/core/src/umath/loops_utils.h.src: DOUBLE_pairwise_sum.
double pairwise_sum(const double* a, size_t n) {
  constexpr size_t kBlock = 128;
  if (n < 8) {
    double res = 0.;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= kBlock) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

}  // namespace

double sum(const double* a, size_t n) {
  // np.add has identity 0: the output starts at 0 and the pairwise sum of all n values is added.
  return 0.0 + pairwise_sum(a, n);
}

double mean(const double* a, size_t n) {
  if (n == 0) return std::numeric_limits<double>::quiet_NaN();
  return sum(a, n) / static_cast<double>(n);
}

double nanmean(const std::vector<double>& a) {
  std::vector<double> filled(a.size());
  size_t count = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const bool nan = std::isnan(a[i]);
    filled[i] = nan ? 0.0 : a[i];
    count += nan ? 0 : 1;
  }
  if (count == 0) return std::numeric_limits<double>::quiet_NaN();
  return sum(filled) / static_cast<double>(count);
}

std::vector<double> linspace(double start, double stop, size_t num) {
  std::vector<double> y(num);
  if (num == 0) return y;
  if (num == 1) {
    y[0] = start;
    return y;
  }
  const double div = static_cast<double>(num - 1);
  const double delta = stop - start;
  const double step = delta / div;
  for (size_t i = 0; i < num; ++i) {
    if (step == 0)
      y[i] = static_cast<double>(i) / div * delta + start;
    else
      y[i] = static_cast<double>(i) * step + start;
  }
  y[num - 1] = stop;
  return y;
}

namespace {
// numpy's binary_search_with_guess reduced to its contract: -1 if key < xp[0], len if
// key > xp[len-1], otherwise the last j with xp[j] <= key.
long long search(double key, const std::vector<double>& xp) {
  const long long len = static_cast<long long>(xp.size());
  if (key > xp[len - 1]) return len;
  if (key < xp[0]) return -1;
  long long lo = 0, hi = len;  // first index with xp[i] > key lies in [lo, hi]
  while (lo < hi) {
    const long long mid = lo + (hi - lo) / 2;
    if (xp[mid] <= key)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo - 1;
}
}  // namespace

std::vector<double> interp(const std::vector<double>& x, const std::vector<double>& xp,
                           const std::vector<double>& fp, const double* left,
                           const double* right) {
  OMNIRT_CHECK(!xp.empty(), "interp: xp must not be empty");
  OMNIRT_CHECK(xp.size() == fp.size(), "interp: xp and fp must have the same length, got ",
               xp.size(), " and ", fp.size());
  const size_t lenxp = xp.size();
  const double lval = left ? *left : fp.front();
  const double rval = right ? *right : fp.back();
  std::vector<double> res(x.size());
  if (lenxp == 1) {
    for (size_t i = 0; i < x.size(); ++i) {
      const double v = x[i];
      res[i] = v < xp[0] ? lval : (v > xp[0] ? rval : fp[0]);
      if (std::isnan(v)) res[i] = v;
    }
    return res;
  }
  // numpy precomputes slopes as dy * (1/dx) only when there are fewer of them than queries;
  // otherwise it divides on the fly. The two differ in the last bit, so both are kept.
  const bool precompute = lenxp <= x.size();
  std::vector<double> slopes;
  if (precompute) {
    slopes.resize(lenxp - 1);
    for (size_t i = 0; i + 1 < lenxp; ++i) {
      const double inv_dx = 1.0 / (xp[i + 1] - xp[i]);
      slopes[i] = (fp[i + 1] - fp[i]) * inv_dx;
    }
  }
  for (size_t i = 0; i < x.size(); ++i) {
    const double v = x[i];
    if (std::isnan(v)) {
      res[i] = v;
      continue;
    }
    const long long j = search(v, xp);
    if (j == -1) {
      res[i] = lval;
    } else if (j == static_cast<long long>(lenxp)) {
      res[i] = rval;
    } else if (j == static_cast<long long>(lenxp) - 1) {
      res[i] = fp[j];
    } else if (xp[j] == v) {
      res[i] = fp[j];
    } else {
      const double slope =
          precompute ? slopes[j] : (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
      res[i] = slope * (v - xp[j]) + fp[j];
      if (std::isnan(res[i])) {
        res[i] = slope * (v - xp[j + 1]) + fp[j + 1];
        if (std::isnan(res[i]) && fp[j] == fp[j + 1]) res[i] = fp[j];
      }
    }
  }
  return res;
}

double floor_mod(double a, double b) {
  double mod = std::fmod(a, b);
  if (mod != 0.0) {
    if ((b < 0) != (mod < 0)) mod += b;
  } else {
    mod = std::copysign(0.0, b);
  }
  return mod;
}

long long round_half_even(double v) { return static_cast<long long>(std::nearbyint(v)); }

}  // namespace omnirt::eval::np
