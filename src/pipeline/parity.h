// `omnirt parity`: the engines at chosen precisions against our float32 reference (fp32 engines,
// TF32 off) on the same frames. Prints the reference deployment's accuracy table (vision precision
// x LLM precision -> BBOX mAP, NDS, planning L2 and collision at 1/2/3 s, through src/eval) and
// the drift of each stage against the reference: the 513 vision tokens, the boxes (matched by the
// decoder query they come from, see QueryLineage), the LLM's first-token logits with the
// REFERENCE vision tokens fed to every LLM precision (so LLM drift is not mixed with vision
// drift), and whether the greedy answers are identical. Design and definitions: docs/parity.md.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "eval/report.h"
#include "pipeline/engines.h"

namespace omnirt::pipeline {

struct Precision {
  std::string name;          // fp32, tf32, fp16, bf16
  DType dtype = DType::F32;  // vision: the backbone's dtype (heads stay float32); LLM: weights
                             // and activations
  bool tf32 = false;         // fp32 GEMMs may use TF32 (CUDA vision only)
};

// "fp32,fp16" -> precisions, in the given order, duplicates rejected. Vision accepts fp32, tf32,
// fp16, bf16; the LLM fp32, fp16, bf16. The CPU backend runs fp32 only. `option` names the
// command-line flag in errors.
std::vector<Precision> parse_precisions(const std::string& list, bool vision, Device device,
                                        const std::string& option);

struct ParityOptions {
  std::string scene;      // folder with scene.json
  std::string model_dir;  // checkpoint folder
  std::string gt_path;    // ground truth (scene or eval layout); empty: drift only
  Device device = Device::CPU;
  Device reference_device = Device::CPU;
  std::vector<Precision> vision, llm;
  int frames = -1;  // the first N frames of the scene; -1: all
  int max_new_tokens = 320;
  bool filter_boxes = true;  // the devkit's class-range / num_pts / bike-rack filter
  bool random_weights = false;
};

// ---- box identity across runs -----------------------------------------------------------------
// A decoded box comes from one of num_query detection queries or num_propagated memory queries.
// A propagated query's slot is the rank its object had in the previous frame's memory top-k, so
// two runs whose scores swap two memory entries hold the same objects in swapped slots. The
// lineage names every query by where it comes from instead: detection query q of frame t, or
// "propagated at t" + the identity of the memory entry it carries (the memory entries themselves
// are the previous frames' top-k queries, followed by the older kept entries, as in
// PetrHeads::forward). Identities come from one LineageTable shared by the runs compared, so equal
// lineages get equal ids.
class LineageTable {
 public:
  int64_t intern(int kind, int frame, int64_t what);

 private:
  std::map<std::tuple<int, int, int64_t>, int64_t> ids_;
};

class QueryLineage {
 public:
  QueryLineage(int num_query, int num_propagated, int memory_len, int topk, LineageTable& table);
  // Identities of the num_query + num_propagated decoder queries of this frame. `memory_reset`:
  // the engine started from an empty memory (first frame or a time gap).
  const std::vector<int64_t>& begin_frame(int frame, bool memory_reset);
  // The frame's memory update: topk_queries (the top-k query indices, best first) go in front of
  // the kept entries.
  void end_frame(const std::vector<int>& topk_queries);

 private:
  int nq_, np_, ml_, topk_;
  LineageTable& table_;
  int frame_ = -1;
  std::vector<int64_t> memory_;   // identity of each memory entry read by the next frame
  std::vector<int64_t> queries_;  // identity of each decoder query of the current frame
};

// One box's identity: its query's lineage and its class (the top-k is over (query, class)).
inline int64_t box_identity(int64_t query_identity, int label) {
  return query_identity * 64 + label;
}

// Boxes of a run against the reference's: the boxes with the same identity are compared on
// (centre, size, sin yaw, cos yaw, velocity, score); rel_error = ||a - b|| / ||b|| over all of
// them (NaN when none match). A box that left or entered the top-k is counted, not measured.
struct BoxDrift {
  double rel_error = 0;
  int matched = 0;    // reference boxes found in the run
  int reference = 0;  // reference boxes
};
BoxDrift box_drift(const std::vector<Box3D>& ref, const std::vector<int64_t>& ref_ids,
                   const std::vector<Box3D>& run, const std::vector<int64_t>& run_ids);

// ||a - b|| / ||b|| in float64 (tests/common/test_util.h rel_error); infinity if a has a
// non-finite value. Shapes must match.
double relative_error(const Tensor& a, const Tensor& b);

// ---- results ----------------------------------------------------------------------------------
struct VisionDrift {  // one vision precision against the reference vision, per frame
  std::vector<double> tokens;
  std::vector<BoxDrift> boxes;
  std::string error;  // non-empty: this precision failed (load or run); its rows say so
};

struct LlmDrift {  // one LLM precision against the reference LLM, both fed the reference tokens
  std::vector<double> logits;             // first-token logits of the prefill
  std::vector<bool> first_token_same;     // argmax of those logits
  std::vector<int> divergence;            // first differing generated token; -1: identical
  std::vector<double> divergence_margin;  // the reference's top-1 margin there (NaN: none)
  std::string error;                      // non-empty: this precision failed
};

struct ParityRow {
  int vision = -1, llm = -1;  // indices into ParityResult::vision / llm; -1: the reference
  std::optional<eval::EvalReport> report;  // absent without ground truth
  nlohmann::json predictions;  // what was evaluated: `omnirt eval` "frames" layout, ego frame
  std::vector<std::string> answers;
  std::vector<int> divergence;  // first token differing from the reference answer; -1: same
  std::vector<double> divergence_margin;  // the reference's top-1 margin there (NaN: none)
  int trajectories_parsed = 0;
  std::string error;  // non-empty: this pair failed (the other fields are empty)
};

struct ParityResult {
  std::string scene, model, model_description, gt_path;
  std::vector<std::string> tokens;  // sample tokens of the frames run
  std::string device, reference_device;
  std::vector<Precision> vision, llm;
  bool random_weights = false;
  int max_new_tokens = 0;
  ParityRow reference;
  std::vector<ParityRow> rows;            // vision-major: (v0, l0), (v0, l1), ...
  std::vector<VisionDrift> vision_drift;  // per vision precision
  std::vector<LlmDrift> llm_drift;        // per LLM precision
  std::vector<std::string> notes;
  int failed_rows = 0;
  double wall_s = 0;
};

// Runs everything; progress lines go to `log`. Throws when the inputs or the reference fail; a
// failing precision or pair is recorded (error fields, failed_rows) and the others still run.
ParityResult run_parity(const ParityOptions& opt, std::FILE* log);

// The two tables (markdown), with the random-weights warning and notes.
std::string format_parity(const ParityResult& r);
nlohmann::json parity_to_json(const ParityResult& r);

}  // namespace omnirt::pipeline
