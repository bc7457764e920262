// Bit-exact ports of the few numpy routines the reference metrics are built on.
//
// The nuScenes devkit, OmniDrive and OpenLane-V2 evaluators are numpy code; their published numbers
// depend on numpy's summation order (pairwise), on np.interp's treatment of repeated abscissae and
// on np.linspace's arithmetic. These helpers copy numpy 1.24's algorithms so the C++ metrics agree
// to the last bit where the inputs are the same (see docs/eval_format.md, spec/evaluation.md §1.9).
#pragma once

#include <cstddef>
#include <vector>

namespace omnirt::eval::np {

// np.sum / np.add.reduce of a contiguous float64 array: numpy's pairwise summation (a plain loop
// below 8 values, 8 interleaved accumulators for blocks of up to 128, halving above).
double sum(const double* a, size_t n);
inline double sum(const std::vector<double>& a) { return sum(a.data(), a.size()); }

// np.mean = np.sum / n (NaN for an empty array, as numpy returns with a warning).
double mean(const double* a, size_t n);
inline double mean(const std::vector<double>& a) { return mean(a.data(), a.size()); }

// np.nanmean: NaNs are replaced by 0 for the sum and not counted; NaN if every value is NaN.
double nanmean(const std::vector<double>& a);

// np.linspace(start, stop, num) with endpoint=True.
std::vector<double> linspace(double start, double stop, size_t num);

// np.interp(x, xp, fp, left, right) for ascending xp (numpy 1.24 compiled loop, including its
// choice of precomputed reciprocal slopes when len(xp) <= len(x)). `left`/`right` default to
// fp.front()/fp.back() when not given (pass nullptr).
std::vector<double> interp(const std::vector<double>& x, const std::vector<double>& xp,
                           const std::vector<double>& fp, const double* left = nullptr,
                           const double* right = nullptr);

// Python/numpy floor modulo for floats: the result has the sign of the divisor.
double floor_mod(double a, double b);

// Python's round() on a double to an integer (round half to even).
long long round_half_even(double v);

}  // namespace omnirt::eval::np
