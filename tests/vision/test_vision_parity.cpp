// Parity of the C++ vision engine with the PyTorch reference (python/omnidrive_ref) on the tiny
// checkpoint's golden fixtures: two consecutive frames, so the temporal memory path is exercised.
// The reference computes all 1800 lanes (one2one + one2many); the engine only the 300 one2one:
// matching the reference here is the numerical evidence that dropping one2many changes nothing.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <set>

#include "common/test_util.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "models/vision/vision_engine.h"

using namespace omnirt;
using namespace omnirt::vision;

namespace {

const std::string kData = OMNIRT_TEST_DATA_DIR;

// The tiny checkpoint and fixtures by default; OMNIRT_PARITY_CKPT / OMNIRT_PARITY_FIXTURES point
// the same tests at full-size ones (made on a GPU machine by python/make_fixtures.py).
std::string ckpt_dir() {
  const char* e = std::getenv("OMNIRT_PARITY_CKPT");
  return e ? e : kData + "/tiny_ckpt";
}
std::string fixture(int frame) {
  const char* e = std::getenv("OMNIRT_PARITY_FIXTURES");
  return std::string(e ? e : kData + "/fixtures") + "/frame" + std::to_string(frame) + ".safetensors";
}

host::Mat4 mat(const Tensor& t, int64_t index) {
  host::Mat4 m;
  std::vector<float> v = t.to_float_vector();
  std::memcpy(m.data(), v.data() + index * 16, 64);
  return m;
}

FrameGeometry geometry(const SafetensorsFile& f, int cams) {
  FrameGeometry g;
  Tensor l2i = f.get("inputs.lidar2img"), i2l = f.get("inputs.img2lidars");
  for (int c = 0; c < cams; ++c) {
    g.lidar2img.push_back(mat(l2i, c));
    g.img2lidars.push_back(mat(i2l, c));
  }
  g.ego_pose = mat(f.get("inputs.ego_pose"), 0);
  g.ego_pose_inv = mat(f.get("inputs.ego_pose_inv"), 0);
  g.timestamp = f.get("inputs.timestamp").data<double>()[0];
  g.command = f.get("inputs.command").to_float_vector()[0];
  std::vector<float> cb = f.get("inputs.can_bus").to_float_vector();
  std::copy(cb.begin(), cb.end(), g.can_bus.begin());
  g.is_first_frame = f.get("inputs.is_first_frame").to_float_vector()[0] != 0.f;
  return g;
}

// Relative error, printed so that parity runs show the figures, not just pass/fail.
double rel(const Tensor& ours, const Tensor& ref, const char* what = nullptr) {
  const double e = omnirt::testing::rel_error(ours, ref);
  if (what) std::printf("  %-28s rel. error %.3g\n", what, e);
  return e;
}

// Self-calibrating parity (docs/parity.md). Fixtures made by python/make_fixtures.py also hold
// the heads recomputed in float64 on the same inputs (`ref64.<name>`), so the float32
// reference's own rounding error is known. Where it is small (a well-conditioned checkpoint) our
// output is held to `tol` against the float32 reference, as issue #5 asks. Where it is not (the
// random full-size checkpoint amplifies float32 rounding), no correct float32 implementation can
// be expected closer to the reference than the reference is to exact arithmetic: our error
// against float64 may then instead be up to kIllConditionedFactor times the reference's own
// (never a stricter test than `tol`: meeting `tol` against the reference always passes).
constexpr double kWellConditioned = 1e-5;
constexpr double kIllConditionedFactor = 3.0;

struct Calibration {
  bool has_ref64 = false;
  double own = 0;  // reference f32 vs f64
  bool well_conditioned() const { return !has_ref64 || own <= kWellConditioned; }
};

Calibration calibration(const SafetensorsFile& f, const std::string& name) {
  Calibration c;
  c.has_ref64 = f.contains("ref64." + name);
  if (c.has_ref64)
    c.own = omnirt::testing::rel_error(f.get("out." + name), f.get("ref64." + name));
  return c;
}

void expect_calibrated(const Tensor& ours, const SafetensorsFile& f, const std::string& name,
                       double tol) {
  const Tensor ref32 = f.get("out." + name);
  const double e32 = omnirt::testing::rel_error(ours, ref32);
  const Calibration c = calibration(f, name);
  if (!c.has_ref64) {
    std::printf("  %-28s rel. error %.3g (no ref64 in the fixture: not calibrated)\n", name.c_str(),
                e32);
    EXPECT_LE(e32, tol) << name;
    return;
  }
  const double e64 = omnirt::testing::rel_error(ours, f.get("ref64." + name));
  std::printf("  %-28s rel. error %.3g | vs f64: ours %.3g, reference's own f32 %.3g -> %s\n",
              name.c_str(), e32, e64, c.own,
              c.well_conditioned() ? "well-conditioned: ours vs reference <= tol"
                                   : "ILL-CONDITIONED: ours vs reference <= tol or ours vs f64 "
                                     "<= 3x reference's own");
  if (c.well_conditioned()) {
    EXPECT_LE(e32, tol) << name;
  } else {
    const double bound = kIllConditionedFactor * c.own;
    EXPECT_TRUE(e32 <= tol || e64 <= bound)
        << name << ": ill-conditioned checkpoint (reference's own float32 error " << c.own
        << " > " << kWellConditioned << "); ours vs reference " << e32 << " > " << tol
        << " and ours vs float64 " << e64 << " > " << kIllConditionedFactor << "x " << c.own;
  }
}

// Tolerance for quantities derived from head outputs (memory rows, lane points) compared with the
// float32 reference: `tol` when well-conditioned, else (factor + 1) x the reference's own error
// of the source output (ours vs f32 <= ours vs f64 + f32 vs f64).
double derived_tol(const SafetensorsFile& f, const std::vector<std::string>& sources, double tol) {
  double own = 0;
  bool ill = false;
  for (const std::string& s : sources) {
    const Calibration c = calibration(f, s);
    if (!c.well_conditioned()) ill = true;
    own = std::max(own, c.own);
  }
  return ill ? std::max(tol, (kIllConditionedFactor + 1) * own) : tol;
}

// Top-k box picks that differ between us and the reference are acceptable only as ties: the
// pair's reference score must lie within kTieScore of the reference's last (300th) pick, where
// float32 rounding differences can legitimately swap the order. Returns the number of
// differences that are not ties (printed with their scores).
constexpr double kTieScore = 2e-5;

// With float64 references: kTieScore, or 3x the largest change the reference's own float32
// rounding makes to a final-layer score, whichever is larger.
double tie_score(const SafetensorsFile& f, const VisionConfig& c) {
  if (!f.contains("ref64.all_cls_scores")) return kTieScore;
  const std::vector<float> a = f.get("out.all_cls_scores").to_float_vector();
  const std::vector<float> b = f.get("ref64.all_cls_scores").to_float_vector();
  const size_t per_layer = a.size() / c.dec_layers, off = (c.dec_layers - 1) * per_layer;
  double worst = 0;
  for (size_t i = off; i < a.size(); ++i)
    worst = std::max(worst, std::fabs(1.0 / (1.0 + std::exp(-double(a[i]))) -
                                      1.0 / (1.0 + std::exp(-double(b[i])))));
  return std::max(kTieScore, kIllConditionedFactor * worst);
}

int unexplained_box_differences(const std::set<std::pair<int, int>>& ours,
                                const std::set<std::pair<int, int>>& ref, const SafetensorsFile& f,
                                const VisionConfig& c) {
  if (ours == ref) return 0;
  const double tie_tol = tie_score(f, c);
  const std::vector<float> scores = f.get("out.boxes.scores").to_float_vector();
  const float last = *std::min_element(scores.begin(), scores.end());
  const std::vector<float> cls = f.get("out.all_cls_scores").to_float_vector();
  const int64_t nd = c.num_query + c.num_propagated;
  const float* final_layer = cls.data() + (c.dec_layers - 1) * nd * c.num_classes;
  int unexplained = 0, ties = 0;
  auto report = [&](const std::pair<int, int>& qb, const char* side) {
    const float s = 1.f / (1.f + std::exp(-final_layer[qb.first * c.num_classes + qb.second]));
    const bool tie = std::fabs(s - last) <= tie_tol;
    (tie ? ties : unexplained)++;
    std::printf("  box (query %d, label %d) only in %s: reference score %.8f, last pick %.8f%s\n",
                qb.first, qb.second, side, s, last, tie ? " (tie)" : "");
  };
  for (const auto& qb : ours)
    if (!ref.count(qb)) report(qb, "ours");
  for (const auto& qb : ref)
    if (!ours.count(qb)) report(qb, "reference");
  std::printf("  top-k boxes: %d tie swaps (score within %.2g of the last pick), %d unexplained "
              "differences\n", ties, tie_tol, unexplained);
  return unexplained;
}

// Memory rows carry where they came from (a query of this or an earlier frame); ties can put the
// same entries in another order. Rows are matched by their reference point (3 or 33 values, in
// the global frame: distinct per origin). Returns, for each reference row, our matching row (-1:
// none within 1e-3 relative).
std::vector<int64_t> match_rows(const std::vector<float>& op, const std::vector<float>& rp,
                                int64_t rows, const std::string& what) {
  OMNIRT_CHECK(rp.size() == op.size() && rows > 0 && rp.size() % size_t(rows) == 0, what, ": ",
               op.size(), " values, the reference has ", rp.size(), " (", rows, " rows)");
  const int64_t width = static_cast<int64_t>(rp.size()) / rows;
  std::vector<int64_t> match(rows, -1);
  for (int64_t r = 0; r < rows; ++r) {
    double best = INFINITY, norm = 0;
    for (int64_t j = 0; j < width; ++j) norm += double(rp[r * width + j]) * rp[r * width + j];
    for (int64_t o = 0; o < rows; ++o) {
      double d = 0;
      for (int64_t j = 0; j < width && d < best; ++j) {
        const double diff = double(op[o * width + j]) - rp[r * width + j];
        d += diff * diff;
      }
      if (d < best) best = d, match[r] = o;
    }
    if (std::sqrt(best) > 1e-3 * (1.0 + std::sqrt(norm))) match[r] = -1;
  }
  return match;
}

std::vector<int64_t> match_memory_rows(const std::map<std::string, Tensor>& ours,
                                       const SafetensorsFile& f, const std::string& kind) {
  const std::string key = "memory_reference_point_" + kind;
  const Tensor ref_pts = f.get("state_out." + key);
  return match_rows(ours.at(key).to_float_vector(), ref_pts.to_float_vector(), ref_pts.dim(1),
                    key);
}

// Then every per-row tensor is compared on matched rows. At most 1% of the rows may stay
// unmatched (tie swaps at the top-k boundary). Returns the row match (see match_memory_rows).
// forward declaration: the end-to-end criterion (below) for the memory rows of check_frames.
void expect_memory_conditioned(const std::map<std::string, Tensor>& ours, const SafetensorsFile& f,
                               const std::string& field, const std::string& kind,
                               const std::vector<int64_t>& match, double tol);

std::vector<int64_t> expect_memory_matches(const std::map<std::string, Tensor>& ours,
                                           const SafetensorsFile& f, const std::string& kind,
                                           double tol, bool end_to_end = false) {
  const std::vector<int64_t> match = match_memory_rows(ours, f, kind);
  const int64_t rows = static_cast<int64_t>(match.size());
  const int unmatched = static_cast<int>(std::count(match.begin(), match.end(), int64_t(-1)));
  std::printf("  %-28s %d of %lld rows unmatched\n", ("memory rows (" + kind + ")").c_str(),
              unmatched, static_cast<long long>(rows));
  EXPECT_LE(unmatched, rows / 100) << kind << " memory: rows without a counterpart";
  for (const std::string field : {"memory_embedding_", "memory_reference_point_",
                                  "memory_timestamp_", "memory_egopose_"}) {
    const std::string name = field + kind;
    if (end_to_end && f.contains("e2e64.state_out." + name)) {
      expect_memory_conditioned(ours, f, field, kind, match, tol);
      continue;
    }
    const std::vector<float> ref_v = f.get("state_out." + name).to_float_vector();
    const std::vector<float> our_v = ours.at(name).to_float_vector();
    const int64_t w = static_cast<int64_t>(ref_v.size()) / rows;
    std::vector<float> a, b;
    for (int64_t r = 0; r < rows; ++r) {
      if (match[r] < 0) continue;
      a.insert(a.end(), our_v.begin() + match[r] * w, our_v.begin() + (match[r] + 1) * w);
      b.insert(b.end(), ref_v.begin() + r * w, ref_v.begin() + (r + 1) * w);
    }
    const double e = omnirt::testing::rel_error(a, b);
    std::printf("  %-28s rel. error %.3g (matched rows)\n", name.c_str(), e);
    EXPECT_LE(e, tol) << name;
  }
  return match;
}

// The next frame's propagated queries are the first `propagated` rows of the memory the previous
// frame left (spec §3.6). When near-tie scores ordered that memory's top-k differently from the
// reference's, our propagated query j is not the reference's propagated query j: its output rows
// sit elsewhere. PropagatedAlignment maps each reference propagated slot to ours through the
// previous frame's memory-row match (match_memory_rows: reference row -> our row).
struct PropagatedAlignment {
  std::vector<int64_t> ours_for_ref;  // [propagated]: our slot for each reference slot
  std::vector<int64_t> ref_for_ours;  // the inverse; -1 where no reference slot maps to ours
  int permuted = 0;                   // reference slots taken from another of our slots
  int unmatched = 0;                  // reference slots without a counterpart among ours (kept)
};

PropagatedAlignment align_propagated(const std::vector<int64_t>& memory_match, int64_t propagated) {
  OMNIRT_CHECK(static_cast<int64_t>(memory_match.size()) >= propagated,
               "align_propagated: memory match has ", memory_match.size(), " rows, fewer than ",
               propagated, " propagated queries");
  PropagatedAlignment a;
  a.ours_for_ref.assign(propagated, -1);
  a.ref_for_ours.assign(propagated, -1);
  for (int64_t j = 0; j < propagated; ++j) {
    const int64_t o = memory_match[j];
    // A reference slot whose row we hold outside our first `propagated` rows (or not at all), or
    // one already claimed, has no counterpart among our propagated queries.
    if (o < 0 || o >= propagated || a.ref_for_ours[o] >= 0) {
      ++a.unmatched;
      continue;
    }
    a.ours_for_ref[j] = o;
    a.ref_for_ours[o] = j;
    if (o != j) ++a.permuted;
  }
  // Unmatched slots compare by position (where that position is not taken by a match); a real
  // difference then shows up as an error instead of being hidden.
  for (int64_t j = 0; j < propagated; ++j)
    if (a.ours_for_ref[j] < 0 && a.ref_for_ours[j] < 0)
      a.ours_for_ref[j] = j, a.ref_for_ours[j] = j;
  for (int64_t j = 0; j < propagated; ++j)  // the rest: any free slot of ours, in order
    if (a.ours_for_ref[j] < 0)
      for (int64_t o = 0; o < propagated; ++o)
        if (a.ref_for_ours[o] < 0) {
          a.ours_for_ref[j] = o, a.ref_for_ours[o] = j;
          break;
        }
  return a;
}

// values [layers, queries, width] (our output); the rows first_propagated + j of each layer put
// where the reference has them: result row first_propagated + j = ours first_propagated +
// ours_for_ref[j]. Other rows unchanged.
std::vector<float> reorder_propagated_rows(const std::vector<float>& values, int64_t layers,
                                           int64_t queries, int64_t first_propagated,
                                           const PropagatedAlignment& a) {
  const int64_t p = static_cast<int64_t>(a.ours_for_ref.size());
  OMNIRT_CHECK(layers > 0 && queries >= first_propagated + p &&
                   values.size() % size_t(layers * queries) == 0,
               "reorder_propagated_rows: ", values.size(), " values for ", layers, " x ", queries,
               " rows");
  const int64_t width = static_cast<int64_t>(values.size()) / (layers * queries);
  std::vector<float> out = values;
  for (int64_t l = 0; l < layers; ++l)
    for (int64_t j = 0; j < p; ++j) {
      const float* src =
          values.data() + ((l * queries) + first_propagated + a.ours_for_ref[j]) * width;
      std::copy(src, src + width, out.data() + ((l * queries) + first_propagated + j) * width);
    }
  return out;
}

// ---- Conditioning-aware end-to-end and half-precision criteria (issue #5, docs/parity.md) ----
//
// End to end (backbone + heads, float32), a random full-size checkpoint amplifies float32
// rounding: the backbone's ~1e-5..1e-4 rounding grows through the heads (the fixture's `gain.*`),
// so a fixed 1e-4 tolerance against the float32 reference cannot tell our error from the model's
// conditioning. Fixtures from python/make_fixtures.py also hold the same two frames run end to end
// in float64 (`e2e64.*`, memory carried in float64), so the reference's own float32 error
// `own = |out - e2e64| / |e2e64|` is known. An output passes when
//   ours vs the float32 reference <= tol           (the fixed criterion: always sufficient), or
//   ours vs float64 <= kEndToEndFactor x own       (we are about as exact as the reference).
// kEndToEndFactor = 2: two correct float32 implementations that differ only in summation order
// (GEMM tiling, fused kernels) make independent rounding errors of the same size, so ours vs
// float64 ~ own (the heads-only comparison measures ours/own = 0.2..1.03 at full size, log
// 0520); 2 leaves room for an implementation that rounds somewhat more often, not for a bug.
// Why it can still fail: `own` comes from the fixture (the reference, float32 and float64), never
// from the code under test, and ours vs float64 >= |perturbation| - own for any perturbation of
// our output; a perturbation larger than (kEndToEndFactor + 1) x own and than tol fails both
// branches (VisionParityCriterion.* check this on the fixtures).
constexpr double kEndToEndFactor = 2.0;

// Half precision: ours vs the float32 reference <= max(spec tolerance, kHalfFactor x the
// reference's own drift at that precision), the latter measured by the PyTorch reference run in
// fp16 / bf16 on the same frame (`half.<mode>.*`, python/omnidrive_ref/reduced.py).
// kHalfFactor = 2: the same argument as above, one rounding step of ~2^-11 (fp16) or 2^-8 (bf16)
// per stored activation instead of 2^-24; implementations differ in which intermediate values
// they keep in float32 (norm statistics, softmax, GEMM accumulators), which moves the drift by a
// small factor, not by an order of magnitude.
constexpr double kHalfFactor = 2.0;

// The end-to-end decision. own <= 0 or NaN never widens anything beyond tol.
bool fp32_parity_ok(double ours_vs_ref32, double tol, double ours_vs_f64, double own) {
  return ours_vs_ref32 <= tol || ours_vs_f64 <= kEndToEndFactor * own;
}

// The half-precision bound; reference_drift < 0 = unknown (older fixtures): the spec tolerance.
double half_parity_bound(double spec_tol, double reference_drift) {
  if (!(reference_drift >= 0)) return spec_tol;
  return std::max(spec_tol, kHalfFactor * reference_drift);
}

std::vector<double> as_doubles(const Tensor& t) {
  if (t.dtype() == DType::F64) {
    const double* p = t.data<double>();
    return std::vector<double>(p, p + t.numel());
  }
  const std::vector<float> v = t.to_float_vector();
  return std::vector<double>(v.begin(), v.end());
}

// rel_error of test_util in float64 throughout (the float64 references are not rounded to
// float32 first); infinity when `a` has a non-finite value or the sizes differ.
template <class A, class B>
double rel64(const std::vector<A>& a, const std::vector<B>& b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(double(a[i]))) return INFINITY;
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

struct E2eFigures {
  double e32 = 0;       // ours vs the float32 reference
  bool has64 = false;   // the fixture has the float64 end-to-end run for this output
  double e64 = 0;       // ours vs float64
  double own = 0;       // the float32 reference vs float64
};

void expect_e2e(const std::string& name, const E2eFigures& c, double tol) {
  if (!c.has64) {
    std::printf("  %-28s rel. error %.3g (no e2e64 in the fixture: fixed tolerance only)\n",
                name.c_str(), c.e32);
    EXPECT_LE(c.e32, tol) << name;
    return;
  }
  const bool ok = fp32_parity_ok(c.e32, tol, c.e64, c.own);
  std::printf("  %-28s rel. error %.3g | vs f64 end to end: ours %.3g, reference's own f32 %.3g "
              "(ratio %.2f) -> %s\n",
              name.c_str(), c.e32, c.e64, c.own, c.own > 0 ? c.e64 / c.own : INFINITY,
              c.e32 <= tol ? "ours vs reference <= tol"
              : ok         ? "conditioning: ours vs f64 <= 2x reference's own"
                           : "FAILS both");
  EXPECT_TRUE(ok) << name << ": ours vs float32 reference " << c.e32 << " > tol " << tol
                  << " and ours vs float64 " << c.e64 << " > " << kEndToEndFactor
                  << " x the reference's own float32 error " << c.own;
}

// Rows `match[r]` of a (w values each) against rows r of b, where matched.
template <class B>
std::pair<std::vector<double>, std::vector<double>> matched(const std::vector<float>& a,
                                                            const std::vector<B>& b,
                                                            const std::vector<int64_t>& match) {
  const size_t w = b.size() / match.size();
  std::pair<std::vector<double>, std::vector<double>> out;
  for (size_t r = 0; r < match.size(); ++r) {
    if (match[r] < 0) continue;
    out.first.insert(out.first.end(), a.begin() + match[r] * w, a.begin() + (match[r] + 1) * w);
    out.second.insert(out.second.end(), b.begin() + r * w, b.begin() + (r + 1) * w);
  }
  return out;
}

std::vector<float> to_floats(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}

int count_unmatched(const std::vector<int64_t>& match) {
  return static_cast<int>(std::count(match.begin(), match.end(), int64_t(-1)));
}

// A memory field end to end: ours vs the float32 reference on rows matched by reference point
// (`match`, as before), and ours vs float64 / the float32 reference vs float64 on rows matched to
// the float64 run's rows (its top-k may order near-ties differently too). More than 1% of rows
// without a counterpart in the float64 run: the conditioning branch is not used.
void expect_memory_conditioned(const std::map<std::string, Tensor>& ours, const SafetensorsFile& f,
                               const std::string& field, const std::string& kind,
                               const std::vector<int64_t>& match, double tol) {
  const std::string name = field + kind, pts = "memory_reference_point_" + kind;
  const std::vector<float> our_v = ours.at(name).to_float_vector();
  const std::vector<float> ref_v = f.get("state_out." + name).to_float_vector();
  const std::vector<double> r64 = as_doubles(f.get("e2e64.state_out." + name));
  const int64_t rows = static_cast<int64_t>(match.size());
  E2eFigures c;
  const auto ours_ref = matched(our_v, ref_v, match);
  c.e32 = rel64(ours_ref.first, ours_ref.second);
  const std::vector<float> p64 = to_floats(as_doubles(f.get("e2e64.state_out." + pts)));
  const std::vector<int64_t> ours_to_64 =
      match_rows(ours.at(pts).to_float_vector(), p64, rows, pts + " (ours vs e2e64)");
  const std::vector<int64_t> ref_to_64 =
      match_rows(f.get("state_out." + pts).to_float_vector(), p64, rows, pts + " (ref vs e2e64)");
  const int u_ours = count_unmatched(ours_to_64), u_ref = count_unmatched(ref_to_64);
  c.has64 = u_ours <= rows / 100 && u_ref <= rows / 100;
  if (!c.has64) {
    std::printf("  %-28s rows unmatched in the float64 run: ours %d, reference %d of %lld: "
                "conditioning not used\n", name.c_str(), u_ours, u_ref,
                static_cast<long long>(rows));
  } else {
    const auto o64 = matched(our_v, r64, ours_to_64), f64 = matched(ref_v, r64, ref_to_64);
    c.e64 = rel64(o64.first, o64.second);
    c.own = rel64(f64.first, f64.second);
  }
  expect_e2e(name + " (matched)", c, tol);
}

void check_frames(Device device, double tol) {
  auto engine = VisionEngine::load(ckpt_dir(), {device, DType::F32, false});
  const VisionConfig& c = engine->config();
  // Box-memory row matches after the previous frame (match_rows: for each row of the second,
  // the matching row of the first): ours -> float32 reference, ours -> float64 run, float32
  // reference -> float64 run.
  std::vector<int64_t> previous_bbox_match, previous_ours_to_64, previous_ref_to_64;
  for (int frame = 0; frame < 2; ++frame) {
    SCOPED_TRACE("frame " + std::to_string(frame));
    std::printf("%s frame %d:\n", device_name(device).c_str(), frame);
    auto f = SafetensorsFile::open(fixture(frame));
    // The float64 end-to-end run (make_fixtures `e2e64.*`); absent in older fixtures.
    const bool has_e2e = f.contains("e2e64.vision_tokens") &&
                         f.contains("e2e64.state_out.memory_reference_point_bbox");
    if (!has_e2e)
      std::printf("  no e2e64.* in the fixture (older make_fixtures): the conditioning-aware "
                  "branch is skipped, fixed tolerances only\n");
    Tensor img = f.get("inputs.img").reshape({c.num_cams, 3, c.img_h, c.img_w});
    VisionFrameResult r = engine->run(img, geometry(f, c.num_cams));
    // One output: ours in the float32 reference's row order, ours and the float32 reference in
    // the float64 run's row order (all the same unless propagated rows were permuted).
    auto compare = [&](const std::string& key, const std::vector<float>& ours_for_32,
                       const std::vector<float>& ours_for_64, const std::vector<float>& ref_for_64,
                       double fixed_tol) {
      E2eFigures fig;
      fig.e32 = rel64(ours_for_32, f.get("out." + key).to_float_vector());
      fig.has64 = has_e2e && f.contains("e2e64." + key);
      if (fig.has64) {
        const std::vector<double> r64 = as_doubles(f.get("e2e64." + key));
        fig.e64 = rel64(ours_for_64, r64);
        fig.own = rel64(ref_for_64, r64);
      }
      expect_e2e(key, fig, fixed_tol);
      return fig.e32;
    };
    auto same_order = [&](const std::string& key, const Tensor& ours, double fixed_tol) {
      const std::vector<float> v = ours.to_float_vector();
      return compare(key, v, v, f.get("out." + key).to_float_vector(), fixed_tol);
    };
    // backbone: reference [1, N, C, h, w], ours [N, h, w, C]
    Tensor ours_bb = r.backbone.to(Device::CPU).permute({0, 3, 1, 2}).contiguous();
    const double e_backbone = same_order("backbone_feats", ours_bb, tol);
    EXPECT_LE(rel(r.heads.pos_embed, f.get("out.pos_embed"), "pos_embed"), std::max(tol, 1e-4)) << "pos_embed";
    // Without e2e64 (older fixtures): the heads end to end see our backbone's rounding (~tol)
    // amplified by the heads' condition, which the heads-only float64 (`ref64.*`) cannot
    // calibrate. They are held to tol unless the checkpoint is so ill-conditioned that 3x the
    // reference's own heads-only float32 error of some output exceeds tol: then the outputs are
    // printed (finiteness asserted), and the heads are held on the reference's own inputs by
    // *HeadsOnReferenceInputs instead. With e2e64 every output is held by expect_e2e.
    bool heads_asserted = true;
    double worst_own = 0;
    if (!has_e2e)
      for (const char* name : {"all_cls_scores", "all_bbox_preds", "all_lane_cls_one2one",
                               "all_lane_preds_one2one", "vision_tokens"}) {
        const Calibration cal = calibration(f, name);
        worst_own = std::max(worst_own, cal.own);
        heads_asserted = heads_asserted && kIllConditionedFactor * cal.own <= tol;
      }
    if (!heads_asserted)
      std::printf("  ill-conditioned checkpoint (reference's own f32 error up to %.3g, 3x that > "
                  "tol %.0e): head outputs end to end printed, only their finiteness asserted\n",
                  worst_own, tol);
    auto state = engine->state().as_map();
    // What the heads inherit from our backbone's error: the reference heads' measured gain on a
    // perturbation of their input (`gain.<name>`, make_fixtures) times that error. Printed only:
    // it explains an end-to-end figure, it does not excuse one.
    if (f.contains("gain.vision_tokens")) {
      std::printf("  expected from the backbone error %.3g x the heads' input gain:", e_backbone);
      for (const char* name : {"all_cls_scores", "all_bbox_preds", "vision_tokens"})
        std::printf(" %s %.2g", name, f.get(std::string("gain.") + name).data<double>()[0] * e_backbone);
      std::printf("\n");
    }
    const double heads_tol = heads_asserted ? tol : 1e30;  // else: finite (rel_error: inf if not)
    // From frame 1 on, the propagated queries (rows num_query.. of the box outputs) are the
    // previous frame's memory top-k, which near-tie scores may have ordered differently from the
    // reference: compare them through the memory-row lineage, not by position. The same holds
    // between the float32 reference and the float64 run, and between us and the float64 run.
    const int64_t nd = c.num_query + c.num_propagated;
    const PropagatedAlignment none = align_propagated(std::vector<int64_t>(), 0);
    PropagatedAlignment lineage = none, lineage_ours_64 = none, lineage_ref_64 = none;
    const bool aligned = !previous_bbox_match.empty() && !geometry(f, c.num_cams).is_first_frame;
    bool box_rows_64 = true;  // the float64 run's propagated rows have counterparts
    if (aligned) {
      lineage = align_propagated(previous_bbox_match, c.num_propagated);
      std::printf(
          "  propagated queries: %d of %d rows permuted (previous frame's memory top-k "
          "order), %d without a counterpart (compared by position)\n",
          lineage.permuted, c.num_propagated, lineage.unmatched);
      EXPECT_LE(lineage.unmatched, c.num_propagated / 100)
          << "propagated queries without a counterpart";
      if (has_e2e && previous_ours_to_64.empty()) {
        box_rows_64 = false;  // the previous fixture had no float64 run: no float64 lineage
      } else if (has_e2e) {
        lineage_ours_64 = align_propagated(previous_ours_to_64, c.num_propagated);
        lineage_ref_64 = align_propagated(previous_ref_to_64, c.num_propagated);
        std::printf("  vs the float64 run: ours %d permuted / %d unmatched, the float32 reference "
                    "%d / %d\n", lineage_ours_64.permuted, lineage_ours_64.unmatched,
                    lineage_ref_64.permuted, lineage_ref_64.unmatched);
        box_rows_64 = lineage_ours_64.unmatched <= c.num_propagated / 100 &&
                      lineage_ref_64.unmatched <= c.num_propagated / 100;
      }
    }
    auto in_order = [&](const std::vector<float>& v, const PropagatedAlignment& a) {
      return aligned ? reorder_propagated_rows(v, c.dec_layers, nd, c.num_query, a) : v;
    };
    for (const char* key : {"all_cls_scores", "all_bbox_preds"}) {
      const Tensor& ours = std::string(key) == "all_cls_scores" ? r.heads.all_cls_scores
                                                                : r.heads.all_bbox_preds;
      const std::vector<float> v = ours.to_float_vector();
      const std::vector<float> ref = f.get(std::string("out.") + key).to_float_vector();
      if (aligned && has_e2e && !box_rows_64) {
        std::printf("  %s: propagated rows without a counterpart in the float64 run: "
                    "conditioning not used\n", key);
        EXPECT_LE(rel64(in_order(v, lineage), ref), heads_tol) << key;
        continue;
      }
      compare(key, in_order(v, lineage), in_order(v, lineage_ours_64),
              in_order(ref, lineage_ref_64), heads_tol);
    }
    same_order("all_lane_cls_one2one", r.heads.all_lane_cls_one2one, heads_tol);
    same_order("all_lane_preds_one2one", r.heads.all_lane_preds_one2one, heads_tol);
    same_order("vision_tokens", r.heads.vision_tokens, heads_tol);
    if (heads_asserted) {
      // Same top-k boxes (compared as (query, label) sets; ties may reorder).
      std::vector<float> q_ref = f.get("out.boxes.query").to_float_vector();
      std::vector<float> l_ref = f.get("out.boxes.labels").to_float_vector();
      std::set<std::pair<int, int>> ref_set, our_set;
      for (size_t i = 0; i < q_ref.size(); ++i) ref_set.insert({int(q_ref[i]), int(l_ref[i])});
      for (size_t i = 0; i < r.heads.boxes.query.size(); ++i) {
        int q = r.heads.boxes.query[i];  // ours -> the reference's query index (lineage)
        if (aligned && q >= c.num_query)
          q = c.num_query + int(lineage.ref_for_ours[q - c.num_query]);
        our_set.insert({q, r.heads.boxes.labels[i]});
      }
      const int swapped = unexplained_box_differences(our_set, ref_set, f, c);
      EXPECT_EQ(swapped, 0) << "top-k boxes differ beyond score ties";
      same_order("lanes.points", r.heads.lanes.points, tol);
      // The memory after the frame, rows matched by origin (Appendix C: ties may reorder them).
      expect_memory_matches(state, f, "bbox", std::max(tol, 1e-5), has_e2e);
      expect_memory_matches(state, f, "map", std::max(tol, 1e-5), has_e2e);
    }
    for (const char* name : {"memory_canbus_bbox", "sample_time_bbox", "sample_time_map"})
      EXPECT_LE(rel(state.at(name), f.get(std::string("state_out.") + name), name),
                std::max(tol, 1e-5))
          << name;
    previous_bbox_match = match_memory_rows(state, f, "bbox");
    if (has_e2e) {
      const std::string pts = "memory_reference_point_bbox";
      const Tensor p64 = f.get("e2e64.state_out." + pts);
      const std::vector<float> p64f = to_floats(as_doubles(p64));
      previous_ours_to_64 = match_rows(state.at(pts).to_float_vector(), p64f, p64.dim(1), pts);
      previous_ref_to_64 =
          match_rows(f.get("state_out." + pts).to_float_vector(), p64f, p64.dim(1), pts);
    } else {
      previous_ours_to_64.clear();
      previous_ref_to_64.clear();
    }
  }
}

// The heads alone, fed the reference's backbone features and the reference's incoming memory:
// each output held to the reference on the reference's own inputs, calibrated by the fixture's
// float64 heads (expect_calibrated). End to end, an ill-conditioned checkpoint's decoders
// amplify the backbone's float32 rounding; this separates the heads' own error from that.
void check_heads_on_reference_inputs(Device device, double tol) {
  const VisionConfig c = VisionConfig::from_file(ckpt_dir() + "/config.json");
  auto file = std::make_shared<SafetensorsFile>(
      SafetensorsFile::open(ckpt_dir() + "/vision.safetensors"));
  WeightGetter get = [file](const std::string& name) { return file->get(name); };
  PetrHeads heads(c, get, device, false, DType::F32);
  for (int frame = 0; frame < 2; ++frame) {
    SCOPED_TRACE("frame " + std::to_string(frame));
    std::printf("%s heads on reference inputs, frame %d:\n", device_name(device).c_str(), frame);
    auto f = SafetensorsFile::open(fixture(frame));
    const FrameGeometry geo = geometry(f, c.num_cams);
    VisionState state;
    if (!geo.is_first_frame) {
      std::map<std::string, Tensor> in;
      for (const std::string& name : f.names())
        if (name.rfind("state_in.", 0) == 0) in[name.substr(9)] = f.get(name);
      state = VisionState::from_map(in, c, "fixture state_in");
    }
    // reference [1, N, C, h, w] -> ours [N, h, w, C]
    Tensor bb = f.get("out.backbone_feats")
                    .reshape({c.num_cams, c.embed_dim, c.grid_h(), c.grid_w()})
                    .permute({0, 2, 3, 1})
                    .contiguous();
    HeadsOutput out = heads.forward(device == Device::CPU ? bb : bb.to(device), geo, state);
    // Per decoder layer (class scores of each layer): rounding grows smoothly layer by layer on
    // an ill-conditioned checkpoint (~x3 per layer at full size); a jump at one layer is a bug.
    {
      const std::vector<float> ours = out.all_cls_scores.to_float_vector();
      const std::vector<float> ref = f.get("out.all_cls_scores").to_float_vector();
      const size_t per_layer = ours.size() / c.dec_layers;
      std::printf("  all_cls_scores per layer    ");
      for (int l = 0; l < c.dec_layers; ++l) {
        const std::vector<float> a(ours.begin() + l * per_layer, ours.begin() + (l + 1) * per_layer);
        const std::vector<float> b(ref.begin() + l * per_layer, ref.begin() + (l + 1) * per_layer);
        std::printf(" %.2g", omnirt::testing::rel_error(a, b));
      }
      std::printf("\n");
      if (f.contains("ref64.all_cls_scores")) {
        const std::vector<float> r64 = f.get("ref64.all_cls_scores").to_float_vector();
        std::printf("  reference's own f32 vs f64  ");
        for (int l = 0; l < c.dec_layers; ++l) {
          const std::vector<float> a(ref.begin() + l * per_layer, ref.begin() + (l + 1) * per_layer);
          const std::vector<float> b(r64.begin() + l * per_layer, r64.begin() + (l + 1) * per_layer);
          std::printf(" %.2g", omnirt::testing::rel_error(a, b));
        }
        std::printf("\n");
      }
    }
    expect_calibrated(out.pos_embed, f, "pos_embed", tol);
    expect_calibrated(out.all_cls_scores, f, "all_cls_scores", tol);
    expect_calibrated(out.all_bbox_preds, f, "all_bbox_preds", tol);
    expect_calibrated(out.all_lane_cls_one2one, f, "all_lane_cls_one2one", tol);
    expect_calibrated(out.all_lane_preds_one2one, f, "all_lane_preds_one2one", tol);
    expect_calibrated(out.vision_tokens, f, "vision_tokens", tol);
    std::set<std::pair<int, int>> ref_set, our_set;
    const std::vector<float> q_ref = f.get("out.boxes.query").to_float_vector();
    const std::vector<float> l_ref = f.get("out.boxes.labels").to_float_vector();
    for (size_t i = 0; i < q_ref.size(); ++i) ref_set.insert({int(q_ref[i]), int(l_ref[i])});
    for (size_t i = 0; i < out.boxes.query.size(); ++i)
      our_set.insert({out.boxes.query[i], out.boxes.labels[i]});
    EXPECT_EQ(unexplained_box_differences(our_set, ref_set, f, c), 0);
    const auto st = state.as_map();
    expect_memory_matches(st, f, "bbox",
                          derived_tol(f, {"box_outs_dec", "all_bbox_preds"}, std::max(tol, 1e-5)));
    expect_memory_matches(st, f, "map",
                          derived_tol(f, {"lane_outs_dec", "all_lane_preds_one2one"},
                                      std::max(tol, 1e-5)));
  }
}

}  // namespace

// The lineage mapping of the end-to-end frame >= 1 comparison, on a synthetic case: it must undo
// a permutation of the propagated rows and nothing else, and must not hide a row that differs.
TEST(VisionParityLineage, UndoesAPermutationOfPropagatedRows) {
  const int64_t layers = 2, nq = 3, p = 4, width = 2, queries = nq + p;
  // Reference row values: layer * 100 + query * 10 + column.
  std::vector<float> ref(layers * queries * width);
  for (int64_t l = 0; l < layers; ++l)
    for (int64_t q = 0; q < queries; ++q)
      for (int64_t k = 0; k < width; ++k)
        ref[(l * queries + q) * width + k] = float(l * 100 + q * 10 + k);
  // Our previous memory put the reference's rows 0,1,2,3 at 1,0,2,3 (a swapped near-tie pair);
  // memory rows beyond p (the older memory) match in place.
  const std::vector<int64_t> memory_match = {1, 0, 2, 3, 4, 5};
  const PropagatedAlignment a = align_propagated(memory_match, p);
  EXPECT_EQ(a.permuted, 2);
  EXPECT_EQ(a.unmatched, 0);
  EXPECT_EQ(a.ours_for_ref, (std::vector<int64_t>{1, 0, 2, 3}));
  EXPECT_EQ(a.ref_for_ours, (std::vector<int64_t>{1, 0, 2, 3}));
  // Our outputs: the reference's with propagated slots 0 and 1 swapped.
  std::vector<float> ours = ref;
  for (int64_t l = 0; l < layers; ++l)
    for (int64_t k = 0; k < width; ++k)
      std::swap(ours[(l * queries + nq + 0) * width + k], ours[(l * queries + nq + 1) * width + k]);
  ASSERT_NE(ours, ref);
  EXPECT_EQ(reorder_propagated_rows(ours, layers, queries, nq, a), ref);
  // A real difference in a propagated row survives the reordering.
  ours[(1 * queries + nq + 2) * width + 1] += 1.f;
  EXPECT_NE(reorder_propagated_rows(ours, layers, queries, nq, a), ref);
  // Identity lineage: nothing moves.
  const PropagatedAlignment id = align_propagated({0, 1, 2, 3}, p);
  EXPECT_EQ(id.permuted, 0);
  EXPECT_EQ(reorder_propagated_rows(ref, layers, queries, nq, id), ref);
}

TEST(VisionParityLineage, RowsWithoutCounterpartAreCountedAndComparedByPosition) {
  // Reference slot 1 came from our older memory (row 5, outside the propagated rows) and
  // reference slot 3 has no match at all: both unmatched; slot 3 keeps its position, slot 1
  // takes our only free slot (1), so each of ours is used once.
  const PropagatedAlignment a = align_propagated({0, 5, 2, -1}, 4);
  EXPECT_EQ(a.unmatched, 2);
  EXPECT_EQ(a.permuted, 0);
  EXPECT_EQ(a.ours_for_ref, (std::vector<int64_t>{0, 1, 2, 3}));
  // Two reference slots claiming the same row of ours: the second is unmatched, not duplicated.
  const PropagatedAlignment dup = align_propagated({2, 2, 0, 1}, 4);
  EXPECT_EQ(dup.unmatched, 1);
  std::vector<int64_t> sorted = dup.ours_for_ref;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int64_t>{0, 1, 2, 3}));  // still a permutation
  EXPECT_THROW(align_propagated({0, 1}, 3), omnirt::Error);
  EXPECT_THROW(reorder_propagated_rows(std::vector<float>(5), 1, 2, 1, align_propagated({0}, 1)),
               omnirt::Error);
}

// The decision functions of the conditioning-aware criteria (kEndToEndFactor, kHalfFactor).
TEST(VisionParityCriterion, EndToEndDecision) {
  const double tol = 1e-4;
  EXPECT_TRUE(fp32_parity_ok(9e-5, tol, 1.0, 0.0));       // within tol: enough on its own
  EXPECT_TRUE(fp32_parity_ok(2.5e-4, tol, 3e-4, 2e-4));   // ill-conditioned, as exact as the ref.
  EXPECT_TRUE(fp32_parity_ok(2.5e-4, tol, 4e-4, 2e-4));   // exactly 2x
  EXPECT_FALSE(fp32_parity_ok(2.5e-4, tol, 4.1e-4, 2e-4));
  EXPECT_FALSE(fp32_parity_ok(2e-4, tol, 1e-7, 0.0));     // well-conditioned: tol decides
  EXPECT_FALSE(fp32_parity_ok(INFINITY, tol, INFINITY, 1e-3));  // non-finite output
  EXPECT_FALSE(fp32_parity_ok(2e-4, tol, 1e-5, NAN));     // unknown own error widens nothing
}

TEST(VisionParityCriterion, HalfBound) {
  EXPECT_DOUBLE_EQ(half_parity_bound(1e-2, 1.8e-3), 1e-2);  // the spec tolerance is a floor
  EXPECT_DOUBLE_EQ(half_parity_bound(1e-2, 0.06), 0.12);    // else 2x the reference's drift
  EXPECT_DOUBLE_EQ(half_parity_bound(1e-2, -1), 1e-2);      // unknown drift: spec only
  EXPECT_DOUBLE_EQ(half_parity_bound(1e-2, NAN), 1e-2);
  EXPECT_FALSE(0.125 <= half_parity_bound(1e-2, 0.05));
}

// On the fixtures themselves (tiny in CI, full size with OMNIRT_PARITY_FIXTURES): the float32
// reference's own outputs pass; the same outputs perturbed by Gaussian noise of relative size
// 10 x max(tol, (kEndToEndFactor + 1) x own) fail both branches, and a perturbation of half the
// reference's own error passes (the criterion accepts float32-sized differences, not more).
TEST(VisionParityCriterion, PerturbedOutputsFailOnTheFixtures) {
  const double tol = 1e-4;
  std::mt19937 rng(1234);
  std::normal_distribution<double> normal;
  for (int frame = 0; frame < 2; ++frame) {
    auto f = SafetensorsFile::open(fixture(frame));
    if (!f.contains("e2e64.vision_tokens"))
      GTEST_SKIP() << "fixture " << fixture(frame) << " has no e2e64.* (made by an older "
                   << "python/make_fixtures.py): regenerate it to test the criterion";
    for (const char* key : {"backbone_feats", "all_cls_scores", "vision_tokens",
                            "all_lane_preds_one2one"}) {
      SCOPED_TRACE(std::string(key) + ", frame " + std::to_string(frame));
      const std::vector<float> ref = f.get(std::string("out.") + key).to_float_vector();
      const std::vector<double> r64 = as_doubles(f.get(std::string("e2e64.") + key));
      const double own = rel64(ref, r64);
      auto perturbed = [&](double relative) {
        std::vector<double> noise(ref.size());
        double nn = 0, rn = 0;
        for (size_t i = 0; i < ref.size(); ++i) {
          noise[i] = normal(rng);
          nn += noise[i] * noise[i];
          rn += double(ref[i]) * ref[i];
        }
        const double scale = relative * std::sqrt(rn / nn);
        std::vector<float> out(ref.size());
        for (size_t i = 0; i < ref.size(); ++i) out[i] = float(ref[i] + scale * noise[i]);
        return out;
      };
      EXPECT_TRUE(fp32_parity_ok(rel64(ref, ref), tol, rel64(ref, r64), own));
      const std::vector<float> bad = perturbed(10 * std::max(tol, (kEndToEndFactor + 1) * own));
      EXPECT_FALSE(fp32_parity_ok(rel64(bad, ref), tol, rel64(bad, r64), own))
          << "own " << own << ", perturbed vs f64 " << rel64(bad, r64);
      const std::vector<float> close = perturbed(0.5 * own);
      EXPECT_TRUE(fp32_parity_ok(rel64(close, ref), tol, rel64(close, r64), own))
          << "own " << own << ", perturbed vs f64 " << rel64(close, r64);
    }
  }
}

TEST(VisionParity, CpuHeadsOnReferenceInputs) { check_heads_on_reference_inputs(Device::CPU, 1e-4); }

TEST(VisionParity, CudaFp32HeadsOnReferenceInputs) {
  OMNIRT_REQUIRE_CUDA();
  check_heads_on_reference_inputs(Device::CUDA, 1e-4);
}

TEST(VisionParity, CpuMatchesReferenceTwoFrames) { check_frames(Device::CPU, 1e-4); }

TEST(VisionParity, CudaFp32MatchesReferenceTwoFrames) {
  OMNIRT_REQUIRE_CUDA();
  check_frames(Device::CUDA, 1e-4);
}

TEST(VisionEngine, BadInputsAreClearErrors) {
  auto engine = VisionEngine::load(kData + "/tiny_ckpt", {Device::CPU, DType::F32, false});
  const VisionConfig& c = engine->config();
  auto f = SafetensorsFile::open(kData + "/fixtures/frame0.safetensors");
  Tensor img = f.get("inputs.img").reshape({c.num_cams, 3, c.img_h, c.img_w}).clone();
  FrameGeometry g = geometry(f, c.num_cams);
  auto expect_error = [&](const Tensor& im, const FrameGeometry& geo, const std::string& needle) {
    try {
      engine->run(im, geo);
      ADD_FAILURE() << "expected an error mentioning '" << needle << "'";
    } catch (const omnirt::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  // wrong number of cameras
  expect_error(img.slice(0, 0, c.num_cams - 1).contiguous(), g, "camera images");
  // NaN pixel
  Tensor bad = img.clone();
  bad.data<float>()[bad.numel() - 5] = NAN;
  expect_error(bad, g, "non-finite");
  // a missing camera matrix
  FrameGeometry g2 = g;
  g2.lidar2img.pop_back();
  expect_error(img, g2, "lidar2img");
  // a non-invertible camera matrix
  FrameGeometry g3 = g;
  g3.img2lidars.clear();
  g3.lidar2img[1] = host::Mat4{};
  expect_error(img, g3, "camera 1");
  // time going backwards
  engine->run(img, g);
  FrameGeometry g4 = g;
  g4.is_first_frame = false;
  g4.timestamp = g.timestamp - 0.5;
  expect_error(img, g4, "backwards");
}

TEST(VisionEngine, MemoryResetsAfterTwoSecondGap) {
  auto engine = VisionEngine::load(kData + "/tiny_ckpt", {Device::CPU, DType::F32, false});
  const VisionConfig& c = engine->config();
  auto f0 = SafetensorsFile::open(kData + "/fixtures/frame0.safetensors");
  auto f1 = SafetensorsFile::open(kData + "/fixtures/frame1.safetensors");
  Tensor img0 = f0.get("inputs.img").reshape({c.num_cams, 3, c.img_h, c.img_w});
  Tensor img1 = f1.get("inputs.img").reshape({c.num_cams, 3, c.img_h, c.img_w});
  FrameGeometry g0 = geometry(f0, c.num_cams), g1 = geometry(f1, c.num_cams);
  EXPECT_TRUE(engine->run(img0, g0).heads.memory_reset);  // first frame
  EXPECT_FALSE(engine->run(img1, g1).heads.memory_reset);  // 0.5 s later: kept
  FrameGeometry late = g1;
  late.timestamp = g1.timestamp + 2.0;  // exactly 2 s: |dt| < 2 fails -> reset
  EXPECT_TRUE(engine->run(img1, late).heads.memory_reset);
  FrameGeometry soon = late;
  soon.timestamp = late.timestamp + 1.99;
  EXPECT_FALSE(engine->run(img1, soon).heads.memory_reset);
}

// ours vs the float32 reference for a half-precision engine, held to half_parity_bound: the spec
// tolerance, or kHalfFactor x the PyTorch reference's own drift in the same mode
// (`half.<mode>.<key>`, make_fixtures), whichever is larger. Older fixtures: spec tolerance only.
void expect_half(const Tensor& ours, const SafetensorsFile& f, const std::string& mode,
                 const std::string& key, double spec_tol) {
  const Tensor ref = f.get("out." + key);
  const double e = rel(ours, ref);
  const std::string drift_key = "half." + mode + "." + key;
  double drift = -1;
  if (f.contains(drift_key)) drift = omnirt::testing::rel_error(f.get(drift_key), ref);
  const double bound = half_parity_bound(spec_tol, drift);
  if (drift < 0)
    std::printf("  %-28s rel. error %.3g vs spec tolerance %.3g (no %s in the fixture: the "
                "reference's own drift is unknown, spec tolerance only)\n",
                key.c_str(), e, spec_tol, drift_key.c_str());
  else
    std::printf("  %-28s rel. error %.3g | reference's own %s drift %.3g (ratio %.2f) -> bound "
                "max(spec %.3g, %.0fx drift) = %.3g\n",
                key.c_str(), e, mode.c_str(), drift, drift > 0 ? e / drift : INFINITY, spec_tol,
                kHalfFactor, bound);
  EXPECT_LE(e, bound) << mode << " " << key << ": ours vs float32 reference " << e
                      << ", the reference's own drift in this mode " << drift
                      << " (negative: unknown), spec tolerance " << spec_tol;
}

std::string half_mode(const char* kind, DType dt) {
  return std::string(kind) + (dt == DType::F16 ? "_f16" : "_bf16");
}

// fp16 / bf16 backbone (heads in float32, the reference deployment's "mixed" engine), first
// frame: the 513 vision tokens against the float32 reference. Spec tolerances, measured on the
// H200 with the tiny checkpoint: fp16 7.8e-3 (tolerance 1e-2), bf16 7.2e-2 (1e-1, bf16's 8-bit
// mantissa on a deliberately sharp random model); on a larger or worse-conditioned checkpoint the
// bound grows with the PyTorch reference's own drift in the same mode (expect_half). Random
// full-size checkpoint (seed 0), frame 0, tokens, H200 (log 0550): ours fp16 0.125, bf16 0.48;
// the PyTorch reference's own drift fp16 0.149, bf16 0.484: the random model's conditioning, not
// the engine. Later frames
// are not compared here: the memory's top-k selection turns small drifts into different
// selected entries, which is a discrete effect, not an error of the engine.
TEST(VisionParity, CudaHalfBackboneTokensWithinTolerance) {
  OMNIRT_REQUIRE_CUDA();
  for (DType dt : {DType::F16, DType::BF16}) {
    auto engine = VisionEngine::load(ckpt_dir(), {Device::CUDA, dt, false});
    const VisionConfig& c = engine->config();
    auto f = SafetensorsFile::open(fixture(0));
    Tensor img = f.get("inputs.img").reshape({c.num_cams, 3, c.img_h, c.img_w});
    VisionFrameResult r = engine->run(img, geometry(f, c.num_cams));
    std::printf("%s backbone, frame 0:\n", std::string(dtype_name(dt)).c_str());
    expect_half(r.heads.vision_tokens, f, half_mode("backbone", dt), "vision_tokens",
                dt == DType::F16 ? 1e-2 : 1e-1);
  }
}

// Full half precision (backbone and heads in fp16/bf16), first frame, against the float32
// reference: the 513 tokens and the class scores (expect_half), and the position embedding
// (host geometry in float32, only its MLP in half: spec tolerance).
TEST(VisionParity, CudaFullHalfTokensWithinTolerance) {
  OMNIRT_REQUIRE_CUDA();
  for (DType dt : {DType::F16, DType::BF16}) {
    VisionEngineOptions opt{Device::CUDA, dt, false};
    opt.heads_dtype = dt;
    auto engine = VisionEngine::load(ckpt_dir(), opt);
    const VisionConfig& c = engine->config();
    auto f = SafetensorsFile::open(fixture(0));
    Tensor img = f.get("inputs.img").reshape({c.num_cams, 3, c.img_h, c.img_w});
    VisionFrameResult r = engine->run(img, geometry(f, c.num_cams));
    EXPECT_EQ(r.heads.vision_tokens.dtype(), DType::F32);
    const std::string name(dtype_name(dt));
    std::printf("full %s, frame 0:\n", name.c_str());
    const double half_tol = dt == DType::F16 ? 2e-2 : 1.5e-1;
    expect_half(r.heads.vision_tokens, f, half_mode("full", dt), "vision_tokens", half_tol);
    expect_half(r.heads.all_cls_scores, f, half_mode("full", dt), "all_cls_scores", half_tol);
    EXPECT_LE(rel(r.heads.pos_embed, f.get("out.pos_embed"), "pos_embed"), half_tol) << name;
  }
}
