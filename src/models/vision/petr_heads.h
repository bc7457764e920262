// The heads of OmniDrive's vision part (spec/omnidrive_model.md §3): the 3-D frustum position
// embedding, the StreamPETR box head, the PETRHeadM lane head, their temporal memory and the
// VLM/ego tokens. Mirrors python/omnidrive_ref/heads.py + vision.py.
//
// Split of the work:
//   * on the engine's device (CPU or CUDA, through ops::*): every Linear/MLP, the decoders'
//     attention, LayerNorms and the token projections — everything that scales with the image
//     tokens or the queries;
//   * on the host, in the reference's own dtypes: the per-frame bookkeeping of a few thousand
//     values (memory alignment, NeRF/sinusoidal encodings of positions and timestamps, top-k,
//     box/lane decoding), which the reference partly does in float64.
// The lane head builds only the [VLM | one2one] queries: by the attention mask the 1500
// one2many queries cannot influence any output we use (tests/vision show it numerically).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "models/vision/eva_vit.h"
#include "models/vision/host_math.h"
#include "models/vision/vision_config.h"

namespace omnirt::vision {

namespace cuda {
class AsyncDownload;
}

// Per-frame inputs of the heads (batch 1). Matrices are row-major float32.
struct FrameGeometry {
  std::vector<host::Mat4> lidar2img;  // per camera: ego -> image (after preprocessing)
  // Optional: the inverses (image -> ego), as the deploy runner computes them (torch.inverse
  // in float32). When empty, the engine inverts lidar2img itself.
  std::vector<host::Mat4> img2lidars;
  host::Mat4 ego_pose{};              // ego -> global
  host::Mat4 ego_pose_inv{};          // global -> ego
  double timestamp = 0;               // seconds (scene-relative recommended)
  float command = 2;                  // 0 left, 1 right, 2 forward
  std::array<float, 13> can_bus{};
  bool is_first_frame = false;
};

// Temporal memory carried between frames (spec §1.3), as after a post-update. Host tensors,
// except the two memory_embedding_* tensors: F32 on the heads' device (a CUDA engine keeps them
// there between frames; as_map() returns host copies; from_map() gives host tensors, which the
// next forward uploads). Empty (undefined tensors) before the first frame.
struct VisionState {
  Tensor memory_embedding_bbox;        // F32 [1, topk+memory_len, d], heads' device
  Tensor memory_reference_point_bbox;  // F32 [1, M, 3]
  Tensor memory_timestamp_bbox;        // F64 [1, M, 1]
  Tensor memory_egopose_bbox;          // F32 [1, M, 4, 4]
  Tensor memory_canbus_bbox;           // F32 [1, can_bus_len+1, 14]
  Tensor sample_time_bbox;             // F64 [1]
  Tensor memory_embedding_map;         // F32 [1, lane_topk+lane_memory_len, d], heads' device
  Tensor memory_reference_point_map;   // F32 [1, M, n_control, 3]
  Tensor memory_timestamp_map;         // F64 [1, M, 1]
  Tensor memory_egopose_map;           // F32 [1, M, 4, 4]
  Tensor sample_time_map;              // F64 [1]
  bool empty() const { return !memory_embedding_bbox.defined(); }
  std::map<std::string, Tensor> as_map() const;
  static VisionState from_map(const std::map<std::string, Tensor>& m, const VisionConfig& cfg,
                              const std::string& where);
};

struct DecodedBoxes {  // NMS-free top-k, sorted by score
  std::vector<std::array<float, 9>> boxes;  // x, y, z_bottom, size0, size1, size2, yaw, vx, vy
  std::vector<float> scores;
  std::vector<int> labels;
  std::vector<int> query;  // which of the 900 queries produced it
};
struct DecodedLanes {
  Tensor points;  // F32 [num_lane_one2one, n_control, 3], x/y clamped to pc_range
  Tensor scores;  // F32 [num_lane_one2one]
};

struct HeadsOutput {
  Tensor pos_embed;               // [1, T, d] on device
  Tensor all_cls_scores;          // host F32 [L, 1, Q, num_classes]
  Tensor all_bbox_preds;          // host F32 [L, 1, Q, 10]
  Tensor all_lane_cls_one2one;    // host F32 [L, 1, n11, 1]
  Tensor all_lane_preds_one2one;  // host F32 [L, 1, n11, 3*n_control]
  Tensor vision_tokens;           // F32 [1, 2*num_extra+1, out_dims] on device
  DecodedBoxes boxes;
  DecodedLanes lanes;
  std::vector<int> topk_indexes_bbox, topk_indexes_map;
  bool memory_reset = false;  // true when the memory was dropped this frame (first frame / gap)
};

// Where and in which dtype the heads keep their weights and activations.
struct Placement {
  Device device = Device::CPU;
  DType dtype = DType::F32;  // F32 everywhere; F16/BF16 on CUDA ("full half" heads)
  bool tf32 = false;         // F32 GEMMs on CUDA may use TF32 (the engine's tf32 option)
};

struct Linear {
  Tensor w, b;
  ops::Fp32Compute fp32 = ops::Fp32Compute::Exact;  // F32 on CUDA: exact or TF32
  void load(const WeightGetter& get, const std::string& name, int64_t out, int64_t in,
            const Placement& at, bool bias = true);
  void apply(const Tensor& x, Tensor& out, ops::GemmActivation act = ops::GemmActivation::None) const;
  // out = x W^T + b + out (the residual already in `out`; one GEMM, no separate add).
  void apply_residual(const Tensor& x, Tensor& out) const;
  Tensor operator()(const Tensor& x, ops::GemmActivation act = ops::GemmActivation::None) const;
};
struct Norm {
  Tensor w, b;
  void load(const WeightGetter& get, const std::string& name, int64_t dim, const Placement& at);
};
struct Mha {
  Linear q, k, v, out;  // slices of in_proj_weight / in_proj_bias
  int heads = 8;
};
struct DecoderLayer {
  Mha self_attn, cross_attn;
  Linear self_qk;  // [Wq; Wk] of self_attn: q and k in one GEMM (see PetrHeads::decode)
  Norm norm1, norm2, norm3;
  Linear ffn1, ffn2;
};
struct Decoder {
  std::vector<DecoderLayer> layers;
  // The cross-attention key / value projections of all layers stacked [L * e, e]: their input
  // (the image tokens) is the same for every layer, so each is one GEMM per frame.
  Linear cross_k_all, cross_v_all;
};

class PetrHeads {
 public:
  // dtype: the heads' weights and activations (F32, or F16/BF16 on CUDA); host-side
  // bookkeeping and the outputs handed to the host stay float32 either way.
  PetrHeads(const VisionConfig& cfg, const WeightGetter& get, Device device, bool tf32 = false,
            DType dtype = DType::F32);

  // tokens: backbone features [N, gh, gw, C] on the device (any float dtype; converted to the
  // heads' dtype).
  // `state` is read and replaced by the new memory.
  HeadsOutput forward(const Tensor& tokens, const FrameGeometry& geo, VisionState& state);

  // The 3-D position-embedding MLP input for given cameras (inverse_sigmoid of normalised
  // frustum points), host F32 [T, 3*depth_num]. Exposed for tests.
  Tensor position_embedding_input(const std::vector<host::Mat4>& img2lidars) const;

  // CUDA: replay the frame's device work from CUDA graphs (on by default). The first frame
  // runs eagerly (it sets up workspaces and algorithm choices), the second captures the graphs,
  // later ones replay them. Off: every frame runs eagerly (same kernels, launched one by one).
  // Graphs are not used when a decoder attention needs the CPU fallback (head_dim other than
  // 32/64/128, or OMNIRT_DEBUG_HEADS_CPU_ATTENTION). Ignored on the CPU.
  void set_cuda_graphs(bool on) { use_graphs_ = on; }
  // CUDA, with graphs (experimental, off by default): replay the box and lane graphs on two
  // streams at once (they depend only on the frame's inputs), so that each decoder's small
  // kernels and its attention's last partial wave overlap the other's. The eager frames run the
  // two segments one after the other (the lane one on the second stream, which sets up its
  // workspaces). The 513 tokens are then concatenated after both, outside the graphs.
  void set_concurrent_decoders(bool on) { concurrent_ = on; }
  // How many frames replayed the graphs so far, and the graphs' total node count (0 = none).
  int64_t graph_replays() const;
  size_t graph_nodes() const;

 private:
  struct BoxMem;
  Tensor mlp_query_pos(const Tensor& nerf_host) const;
  // temp_pos of `entries` memory entries from their normalised reference points (F32
  // [entries * per_entry]), timestamps (F64 [entries]) and poses (F32 [entries, 16]), all on the
  // heads' device (host tensors on the CPU).
  Tensor temporal_pos(const Tensor& norm_ref, int per_entry, const Tensor& ts,
                      const Tensor& pose) const;
  Tensor temporal_pos_from_encodings(const Tensor& nerf, const Tensor& ego,
                                     const Tensor& tpe) const;
  std::vector<Tensor> decode(const Decoder& dec, const Tensor& tgt,
                             const Tensor& query_pos, const Tensor& mem_k, const Tensor& mem_v,
                             const Tensor& mask, const Tensor& temp_memory,
                             const Tensor& temp_pos) const;
  // softmax(q k^T / sqrt(hd) + mask) v for `m.heads` heads, written into `merged` [rows, e]. q,
  // k, v are column blocks (q_block, ...; width e) of projections [len, n * e] (rows [0, rows)
  // of q), read as strided per-head views without copies.
  void attend(const Mha& m, const Tensor& q, int64_t q_block, int64_t rows, const Tensor& k,
              int64_t k_block, const Tensor& v, int64_t v_block, const Tensor& mask,
              Tensor& merged) const;
  Tensor branch_cls(const std::vector<Linear>& lin, const std::vector<Norm>& ln,
                    const Tensor& x) const;
  Tensor branch_reg(const std::vector<Linear>& lin, const Tensor& x) const;
  // Branch outputs cls [R, C] and reg [R, cols] (heads' dtype, R = layers * queries) as F32
  // [cls | host::regression_to_ego(reg)], flat, on the heads' device (one kernel on CUDA).
  // ref_inv: F32 [queries, ref_cols] on the heads' device.
  Tensor branch_outputs(const Tensor& cls, const Tensor& reg, const Tensor& ref_inv,
                        int ref_cols) const;
  Tensor as_heads_dtype(const Tensor& f32) const;  // a device F32 tensor in the heads' dtype
  Tensor upload(const Tensor& host) const;  // host F32 -> device, heads dtype
  Tensor empty(const Shape& shape) const;   // device, heads dtype

  // The device work of a frame runs in two segments, box_segment() and lane_segment(), which
  // read only `io_`'s inputs and the weights, and write only `io_`'s outputs. On CUDA the inputs
  // are buffers allocated once (same addresses every frame), so that the segments can be
  // captured in CUDA graphs once and replayed (docs/vision_engine.md, "CUDA graphs").
  struct SmallInputs;  // the per-frame host-computed inputs (memory geometry, references, can bus)
  struct SegmentIO;
  struct CudaState;    // CUDA: stream, staging, downloads, graphs and their memory
  void box_segment();
  void lane_segment(bool with_tokens);
  void assemble_tokens();  // io_'s box, ego and lane tokens -> io_.tokens_out (F32)
  bool graph_capable() const;  // no segment op needs the host (CPU attention fallback)
  std::shared_ptr<CudaState> cuda_;  // before io_: io_'s tensors die first (graph memory)
  std::shared_ptr<SegmentIO> io_;
  bool use_graphs_ = true;
  bool concurrent_ = false;
  VisionConfig cfg_;
  Device device_;
  DType dtype_;
  ops::GemmOptions gemm_;
  // shared detector-level modules
  Linear query_pos0_, query_pos2_, time_emb0_, pos_enc0_, pos_enc2_;
  Norm time_emb1_;
  Linear mln_reduce_, mln_gamma_, mln_beta_;
  std::vector<float> coords_d_;
  std::vector<float> posemb_dim_t_;  // host::posemb_dim_t(dec_dim)
  Tensor time_embedding_zero_;  // time_embedding(pos2posemb1d(0)) [d], device
  // box head
  Linear box_in_proj_, box_out_proj_, canbus0_, canbus2_;
  Decoder box_dec_;
  std::vector<Linear> box_cls_lin_, box_reg_lin_;
  std::vector<Norm> box_cls_ln_;
  Tensor box_query_embedding_;          // [ne, d] device
  std::vector<float> box_reference_;    // [nq, 3] host (raw, no sigmoid)
  std::vector<float> pseudo_reference_; // [p, 3] host
  Tensor box_tgt_head_;                 // [ne+nq, d] device: [query_embedding; zeros]
  Tensor box_self_mask_, lane_self_mask_;  // U8 device: decoder self-attention masks
  Tensor box_det_query_pos_;            // [ne+nq, d] device: MLP(NeRF(ref)) + time_emb(0), VLM rows 0
  // lane head
  Linear lane_in_proj_, lane_out_proj_;
  Decoder lane_dec_;
  std::vector<Linear> lane_cls_lin_, lane_reg_lin_;
  std::vector<Norm> lane_cls_ln_;
  Tensor lane_tgt_;                     // [ne + n11, d] device: [query_embedding; instance[:n11]]
  Tensor lane_query_pos_;               // [ne + n11, d] device
  std::vector<float> lane_reference_;   // [n11, 33] host, sigmoid space
  std::vector<float> lane_reference_inv_;  // inverse_sigmoid(lane_reference_), host
  Tensor lane_reference_inv_dev_;          // the same, F32 on the heads' device
};

}  // namespace omnirt::vision
