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
std::vector<int64_t> match_memory_rows(const std::map<std::string, Tensor>& ours,
                                       const SafetensorsFile& f, const std::string& kind) {
  const std::string key = "memory_reference_point_" + kind;
  const Tensor ref_pts = f.get("state_out." + key);
  const int64_t rows = ref_pts.dim(1), width = ref_pts.numel() / rows;
  const std::vector<float> rp = ref_pts.to_float_vector(), op = ours.at(key).to_float_vector();
  OMNIRT_CHECK(rp.size() == op.size(), key, ": ", op.size(), " values, the reference has ",
               rp.size());
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

// Then every per-row tensor is compared on matched rows. At most 1% of the rows may stay
// unmatched (tie swaps at the top-k boundary). Returns the row match (see match_memory_rows).
std::vector<int64_t> expect_memory_matches(const std::map<std::string, Tensor>& ours,
                                           const SafetensorsFile& f, const std::string& kind,
                                           double tol) {
  const std::vector<int64_t> match = match_memory_rows(ours, f, kind);
  const int64_t rows = static_cast<int64_t>(match.size());
  const int unmatched = static_cast<int>(std::count(match.begin(), match.end(), int64_t(-1)));
  std::printf("  %-28s %d of %lld rows unmatched\n", ("memory rows (" + kind + ")").c_str(),
              unmatched, static_cast<long long>(rows));
  EXPECT_LE(unmatched, rows / 100) << kind << " memory: rows without a counterpart";
  for (const std::string field : {"memory_embedding_", "memory_reference_point_",
                                  "memory_timestamp_", "memory_egopose_"}) {
    const std::string name = field + kind;
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

void check_frames(Device device, double tol) {
  auto engine = VisionEngine::load(ckpt_dir(), {device, DType::F32, false});
  const VisionConfig& c = engine->config();
  // Our box-memory row for each of the reference's, after the previous frame (match_memory_rows).
  std::vector<int64_t> previous_bbox_match;
  for (int frame = 0; frame < 2; ++frame) {
    SCOPED_TRACE("frame " + std::to_string(frame));
    std::printf("%s frame %d:\n", device_name(device).c_str(), frame);
    auto f = SafetensorsFile::open(fixture(frame));
    Tensor img = f.get("inputs.img").reshape({c.num_cams, 3, c.img_h, c.img_w});
    VisionFrameResult r = engine->run(img, geometry(f, c.num_cams));
    // backbone: reference [1, N, C, h, w], ours [N, h, w, C]
    Tensor ours_bb = r.backbone.to(Device::CPU).permute({0, 3, 1, 2}).contiguous();
    const double e_backbone = rel(ours_bb, f.get("out.backbone_feats"), "backbone_feats");
    EXPECT_LE(e_backbone, tol) << "backbone";
    EXPECT_LE(rel(r.heads.pos_embed, f.get("out.pos_embed"), "pos_embed"), std::max(tol, 1e-4)) << "pos_embed";
    // The heads end to end see our backbone's rounding (~tol) amplified by the heads' condition,
    // which the fixture's float64 heads (same inputs as the reference's) cannot calibrate. They
    // are held to tol unless the checkpoint is so ill-conditioned that 3x the reference's own
    // float32 error of some output exceeds tol: then tol is below what any float32
    // implementation can promise, the outputs are printed (finiteness asserted), and the heads
    // are held on the reference's own inputs by *HeadsOnReferenceInputs instead.
    bool heads_asserted = true;
    double worst_own = 0;
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
    // reference: compare them through the memory-row lineage, not by position.
    const int64_t nd = c.num_query + c.num_propagated;
    PropagatedAlignment lineage = align_propagated(std::vector<int64_t>(), 0);
    const bool aligned = !previous_bbox_match.empty() && !geometry(f, c.num_cams).is_first_frame;
    if (aligned) {
      lineage = align_propagated(previous_bbox_match, c.num_propagated);
      std::printf(
          "  propagated queries: %d of %d rows permuted (previous frame's memory top-k "
          "order), %d without a counterpart (compared by position)\n",
          lineage.permuted, c.num_propagated, lineage.unmatched);
      EXPECT_LE(lineage.unmatched, c.num_propagated / 100)
          << "propagated queries without a counterpart";
    }
    auto box_rows = [&](const Tensor& t) {
      std::vector<float> v = t.to_float_vector();
      return aligned ? reorder_propagated_rows(v, c.dec_layers, nd, c.num_query, lineage) : v;
    };
    auto rel_v = [](const std::vector<float>& ours, const Tensor& ref, const char* what) {
      const double e = omnirt::testing::rel_error(ours, ref.to_float_vector());
      std::printf("  %-28s rel. error %.3g\n", what, e);
      return e;
    };
    EXPECT_LE(
        rel_v(box_rows(r.heads.all_cls_scores), f.get("out.all_cls_scores"), "all_cls_scores"),
        heads_tol);
    EXPECT_LE(
        rel_v(box_rows(r.heads.all_bbox_preds), f.get("out.all_bbox_preds"), "all_bbox_preds"),
        heads_tol);
    EXPECT_LE(rel(r.heads.all_lane_cls_one2one, f.get("out.all_lane_cls_one2one"), "all_lane_cls_one2one"), heads_tol);
    EXPECT_LE(rel(r.heads.all_lane_preds_one2one, f.get("out.all_lane_preds_one2one"), "all_lane_preds_one2one"), heads_tol);
    EXPECT_LE(rel(r.heads.vision_tokens, f.get("out.vision_tokens"), "vision_tokens"), heads_tol);
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
      EXPECT_LE(rel(r.heads.lanes.points, f.get("out.lanes.points"), "lanes.points"), tol) << "lane points";
      // The memory after the frame, rows matched by origin (Appendix C: ties may reorder them).
      expect_memory_matches(state, f, "bbox", std::max(tol, 1e-5));
      expect_memory_matches(state, f, "map", std::max(tol, 1e-5));
    }
    for (const char* name : {"memory_canbus_bbox", "sample_time_bbox", "sample_time_map"})
      EXPECT_LE(rel(state.at(name), f.get(std::string("state_out.") + name), name),
                std::max(tol, 1e-5))
          << name;
    previous_bbox_match = match_memory_rows(state, f, "bbox");
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

// fp16 / bf16 backbone (heads in float32, the reference deployment's "mixed" engine), first
// frame: the 513 vision tokens against the float32 reference. Measured on the H200 with the tiny
// checkpoint: fp16 7.8e-3, bf16 7.2e-2 (bf16's 8-bit mantissa on a deliberately sharp random
// model). Later frames are not compared here: the memory's top-k selection turns small drifts
// into different selected entries, which is a discrete effect, not an error of the engine.
TEST(VisionParity, CudaHalfBackboneTokensWithinTolerance) {
  OMNIRT_REQUIRE_CUDA();
  for (DType dt : {DType::F16, DType::BF16}) {
    auto engine = VisionEngine::load(ckpt_dir(), {Device::CUDA, dt, false});
    const VisionConfig& c = engine->config();
    auto f = SafetensorsFile::open(fixture(0));
    Tensor img = f.get("inputs.img").reshape({c.num_cams, 3, c.img_h, c.img_w});
    VisionFrameResult r = engine->run(img, geometry(f, c.num_cams));
    const double e = rel(r.heads.vision_tokens, f.get("out.vision_tokens"));
    std::printf("%s backbone, frame 0: vision tokens rel. error %.3g\n",
                std::string(dtype_name(dt)).c_str(), e);
    EXPECT_LE(e, dt == DType::F16 ? 1e-2 : 1e-1) << dtype_name(dt);
  }
}

// Full half precision (backbone and heads in fp16/bf16), first frame, against the float32
// reference: the 513 tokens, the final-layer class scores and the position embedding.
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
    const double tokens = rel(r.heads.vision_tokens, f.get("out.vision_tokens"), "vision_tokens");
    const double pos = rel(r.heads.pos_embed, f.get("out.pos_embed"), "pos_embed");
    const double cls = rel(r.heads.all_cls_scores, f.get("out.all_cls_scores"), "all_cls_scores");
    const double half_tol = dt == DType::F16 ? 2e-2 : 1.5e-1;
    EXPECT_LE(tokens, half_tol) << name;
    EXPECT_LE(pos, half_tol) << name;
    EXPECT_LE(cls, half_tol) << name;
  }
}
