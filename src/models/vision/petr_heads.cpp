#include "models/vision/petr_heads.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "core/stage_timer.h"
#include "core/graph_memory.h"
#ifdef OMNIRT_WITH_CUDA
#include "core/cuda_check.h"
#include "models/vision/heads_cuda.h"
#endif
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/cast.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/norm.h"
#include "ops/permute.h"

namespace omnirt::vision {

using ops::GemmActivation;

namespace {

Tensor host_f32(const WeightGetter& get, const std::string& name, const Shape& shape) {
  Tensor t = get(name);
  expect_shape(t, shape, "weight '" + name + "'");
  return t.dtype() == DType::F32 ? t.contiguous() : t.to_dtype(DType::F32);
}

// A host F32 tensor as a new tensor at `at` (converted on the host, then copied).
Tensor to_device(const Tensor& host, const Placement& at) {
  Tensor h = host.dtype() == at.dtype ? host : host.to_dtype(at.dtype);
  return at.device == Device::CPU ? h.clone() : h.to(at.device);
}

// Rows [a; b] of two [*, d] tensors on one device.
Tensor cat_rows(const Tensor& a, const Tensor& b) {
  Shape s = a.shape();
  s[0] += b.dim(0);
  Tensor out = Tensor::empty(s, a.dtype(), a.device());
  Tensor top = out.slice(0, 0, a.dim(0)), bottom = out.slice(0, a.dim(0), s[0]);
  top.copy_from(a);
  bottom.copy_from(b);
  return out;
}

// Rows [begin, end) of every tensor in `layers` ([rows, d] each), stacked into one tensor.
Tensor stack_rows(const std::vector<Tensor>& layers, int64_t begin, int64_t end) {
  const int64_t n = end - begin;
  Tensor out = Tensor::empty({int64_t(layers.size()) * n, layers[0].dim(1)}, layers[0].dtype(),
                             layers[0].device());
  for (size_t l = 0; l < layers.size(); ++l)
    out.slice(0, int64_t(l) * n, int64_t(l + 1) * n).copy_from(layers[l].slice(0, begin, end));
  return out;
}

}  // namespace

// Self-attention mask over [queries ; memory]: the non-VLM queries (rows >= ne) may not attend
// to the VLM queries (columns < ne). Constant for a configuration.
static Tensor self_attention_mask(int64_t queries, int64_t keys, int64_t ne, Device device) {
  Tensor m = Tensor::zeros({queries, keys}, DType::U8);
  for (int64_t r = ne; r < queries; ++r)
    for (int64_t col = 0; col < ne; ++col) m.data<uint8_t>()[r * keys + col] = 1;
  return to_device(m, {device, DType::U8});
}

// ---- small building blocks -------------------------------------------------------------------
void Linear::load(const WeightGetter& get, const std::string& name, int64_t out, int64_t in,
                  const Placement& at, bool bias) {
  w = to_device(host_f32(get, name + ".weight", {out, in}), at);
  if (bias) b = to_device(host_f32(get, name + ".bias", {out}), at);
  fp32 = at.tf32 ? ops::Fp32Compute::TF32 : ops::Fp32Compute::Exact;
}

void Linear::apply(const Tensor& x, Tensor& out, GemmActivation act) const {
  ops::GemmOptions o;
  o.activation = act;
  o.fp32_compute = fp32;
  ops::linear(x, w, b, out, o);
}

void Linear::apply_residual(const Tensor& x, Tensor& out) const {
  ops::GemmOptions o;
  o.fp32_compute = fp32;
  ops::gemm(x, w, out, /*trans_a=*/false, /*trans_b=*/true, 1.f, /*beta=*/1.f, b, o);
}

Tensor Linear::operator()(const Tensor& x, GemmActivation act) const {
  Shape s = x.shape();
  s.back() = w.dim(0);
  Tensor out = Tensor::empty(s, x.dtype(), x.device());
  apply(x, out, act);
  return out;
}

void Norm::load(const WeightGetter& get, const std::string& name, int64_t dim, const Placement& at) {
  w = to_device(host_f32(get, name + ".weight", {dim}), at);
  b = to_device(host_f32(get, name + ".bias", {dim}), at);
}

static Tensor layernorm(const Tensor& x, const Norm& n, float eps) {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  ops::layernorm(x, n.w, n.b, eps, out);
  return out;
}

static Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = Tensor::empty(a.shape(), a.dtype(), a.device());
  ops::add(a, b, out);
  return out;
}

static void load_mha(Mha& m, const WeightGetter& get, const std::string& name, int64_t e,
                     int heads, const Placement& device) {
  Tensor w = host_f32(get, name + ".in_proj_weight", {3 * e, e});
  Tensor b = host_f32(get, name + ".in_proj_bias", {3 * e});
  Linear* parts[3] = {&m.q, &m.k, &m.v};
  for (int i = 0; i < 3; ++i) {
    parts[i]->w = to_device(w.slice(0, i * e, (i + 1) * e), device);
    parts[i]->b = to_device(b.slice(0, i * e, (i + 1) * e), device);
    parts[i]->fp32 = device.tf32 ? ops::Fp32Compute::TF32 : ops::Fp32Compute::Exact;
  }
  m.out.load(get, name + ".out_proj", e, e, device);
  m.heads = heads;
}

// A Linear from host F32 weight rows [rows, in] and bias [rows].
static Linear linear_from_host(const Tensor& w, const Tensor& b, const Placement& at) {
  Linear lin;
  lin.w = to_device(w, at);
  lin.b = to_device(b, at);
  lin.fp32 = at.tf32 ? ops::Fp32Compute::TF32 : ops::Fp32Compute::Exact;
  return lin;
}

static Decoder load_decoder(const WeightGetter& get, const std::string& prefix,
                            const VisionConfig& c, const Placement& device) {
  Decoder dec;
  std::vector<DecoderLayer>& layers = dec.layers;
  layers.resize(c.dec_layers);
  const int64_t e = c.dec_dim, L = c.dec_layers;
  Tensor k_all = Tensor::empty({L * e, e}, DType::F32), kb_all = Tensor::empty({L * e}, DType::F32);
  Tensor v_all = Tensor::empty({L * e, e}, DType::F32), vb_all = Tensor::empty({L * e}, DType::F32);
  for (int l = 0; l < c.dec_layers; ++l) {
    const std::string p =
        prefix + "transformer.query_decoder._layers." + std::to_string(l) + ".transformer_layers.";
    DecoderLayer& L = layers[l];
    load_mha(L.self_attn, get, p + "0.attn", c.dec_dim, c.dec_heads, device);
    L.norm1.load(get, p + "1", c.dec_dim, device);
    load_mha(L.cross_attn, get, p + "2.attn", c.dec_dim, c.dec_heads, device);
    L.norm2.load(get, p + "3", c.dec_dim, device);
    L.ffn1.load(get, p + "4._layers.0", c.dec_ffn, c.dec_dim, device);
    L.ffn2.load(get, p + "4._layers.3", c.dec_dim, c.dec_ffn, device);
    L.norm3.load(get, p + "5", c.dec_dim, device);
    // Self-attention [Wq; Wk] (rows [0, 2e) of in_proj); cross-attention Wk, Wv stacked.
    const Tensor sw = host_f32(get, p + "0.attn.in_proj_weight", {3 * e, e});
    const Tensor sb = host_f32(get, p + "0.attn.in_proj_bias", {3 * e});
    L.self_qk = linear_from_host(sw.slice(0, 0, 2 * e), sb.slice(0, 0, 2 * e), device);
    const Tensor cw = host_f32(get, p + "2.attn.in_proj_weight", {3 * e, e});
    const Tensor cb = host_f32(get, p + "2.attn.in_proj_bias", {3 * e});
    k_all.slice(0, l * e, (l + 1) * e).copy_from(cw.slice(0, e, 2 * e));
    kb_all.slice(0, l * e, (l + 1) * e).copy_from(cb.slice(0, e, 2 * e));
    v_all.slice(0, l * e, (l + 1) * e).copy_from(cw.slice(0, 2 * e, 3 * e));
    vb_all.slice(0, l * e, (l + 1) * e).copy_from(cb.slice(0, 2 * e, 3 * e));
  }
  dec.cross_k_all = linear_from_host(k_all, kb_all, device);
  dec.cross_v_all = linear_from_host(v_all, vb_all, device);
  return dec;
}

// The cls/reg branches are one module stored num_pred times; we load entry 0 once.
static void load_branches(const WeightGetter& get, const std::string& prefix, int64_t d,
                          int64_t cls_out, int64_t reg_out, const Placement& device,
                          std::vector<Linear>& cls_lin, std::vector<Norm>& cls_ln,
                          std::vector<Linear>& reg_lin) {
  cls_lin.resize(3);
  cls_ln.resize(2);
  reg_lin.resize(3);
  const std::string c = prefix + "cls_branches.0.", r = prefix + "reg_branches.0.";
  cls_lin[0].load(get, c + "0", d, d, device);
  cls_ln[0].load(get, c + "1", d, device);
  cls_lin[1].load(get, c + "3", d, d, device);
  cls_ln[1].load(get, c + "4", d, device);
  cls_lin[2].load(get, c + "6", cls_out, d, device);
  reg_lin[0].load(get, r + "0", d, d, device);
  reg_lin[1].load(get, r + "2", d, d, device);
  reg_lin[2].load(get, r + "4", reg_out, d, device);
}

// ---- state -----------------------------------------------------------------------------------
static const char* kStateNames[] = {
    "memory_embedding_bbox", "memory_reference_point_bbox", "memory_timestamp_bbox",
    "memory_egopose_bbox",   "memory_canbus_bbox",          "sample_time_bbox",
    "memory_embedding_map",  "memory_reference_point_map",  "memory_timestamp_map",
    "memory_egopose_map",    "sample_time_map"};

std::map<std::string, Tensor> VisionState::as_map() const {
  const Tensor* t[] = {&memory_embedding_bbox, &memory_reference_point_bbox, &memory_timestamp_bbox,
                       &memory_egopose_bbox,   &memory_canbus_bbox,          &sample_time_bbox,
                       &memory_embedding_map,  &memory_reference_point_map,  &memory_timestamp_map,
                       &memory_egopose_map,    &sample_time_map};
  std::map<std::string, Tensor> m;
  // Host tensors (the CUDA heads keep the embeddings on the device: they are copied here).
  for (int i = 0; i < 11; ++i)
    m[kStateNames[i]] = t[i]->defined() && t[i]->device() != Device::CPU ? t[i]->to(Device::CPU) : *t[i];
  return m;
}

VisionState VisionState::from_map(const std::map<std::string, Tensor>& m, const VisionConfig& c,
                                  const std::string& where) {
  const int64_t mb = c.topk + c.memory_len, mm = c.lane_topk + c.lane_memory_len, d = c.dec_dim;
  const Shape shapes[] = {{1, mb, d}, {1, mb, 3},  {1, mb, 1}, {1, mb, 4, 4}, {1, c.can_bus_len + 1, 14},
                          {1},        {1, mm, d},  {1, mm, c.n_control, 3},   {1, mm, 1},
                          {1, mm, 4, 4}, {1}};
  VisionState s;
  Tensor* t[] = {&s.memory_embedding_bbox, &s.memory_reference_point_bbox, &s.memory_timestamp_bbox,
                 &s.memory_egopose_bbox,   &s.memory_canbus_bbox,          &s.sample_time_bbox,
                 &s.memory_embedding_map,  &s.memory_reference_point_map,  &s.memory_timestamp_map,
                 &s.memory_egopose_map,    &s.sample_time_map};
  for (int i = 0; i < 11; ++i) {
    auto it = m.find(kStateNames[i]);
    OMNIRT_CHECK(it != m.end(), where, ": vision state tensor '", kStateNames[i], "' is missing");
    expect_shape(it->second, shapes[i], where + ": vision state tensor '" + kStateNames[i] + "'");
    const bool f64 = std::string(kStateNames[i]).find("time") != std::string::npos;
    Tensor h = it->second.device() == Device::CPU ? it->second.contiguous() : it->second.to(Device::CPU);
    *t[i] = h.dtype() == (f64 ? DType::F64 : DType::F32) ? h.clone() : h.to_dtype(f64 ? DType::F64 : DType::F32);
  }
  return s;
}

// ---- construction ----------------------------------------------------------------------------
PetrHeads::PetrHeads(const VisionConfig& c, const WeightGetter& get, Device dev, bool tf32,
                     DType dtype)
    : cfg_(c), device_(dev), dtype_(dtype) {
  OMNIRT_CHECK(dtype == DType::F32 || ((dtype == DType::F16 || dtype == DType::BF16) &&
                                       dev == Device::CUDA),
               "vision heads: dtype ", dtype_name(dtype), " is not supported on ",
               device_name(dev), " (F32 anywhere, F16/BF16 on CUDA)");
  const Placement device{dev, dtype, tf32 && dtype == DType::F32};
  gemm_.fp32_compute = tf32 ? ops::Fp32Compute::TF32 : ops::Fp32Compute::Exact;
  const int64_t d = c.dec_dim, nq = c.num_query, ne = c.num_extra, n11 = c.num_lane_one2one;
  const int64_t qp_in = 12 * 3 * c.n_control;
  query_pos0_.load(get, "query_pos.0", d, qp_in, device);
  query_pos2_.load(get, "query_pos.2", d, d, device);
  time_emb0_.load(get, "time_embedding.0", d, d, device);
  time_emb1_.load(get, "time_embedding.1", d, device);
  mln_reduce_.load(get, "ego_pose_pe.reduce.0", d, 12 * 13, device);
  mln_gamma_.load(get, "ego_pose_pe.gamma", d, d, device);
  mln_beta_.load(get, "ego_pose_pe.beta", d, d, device);
  pos_enc0_.load(get, "position_encoder.0", 4 * d, 3 * c.depth_num, device);
  pos_enc2_.load(get, "position_encoder.2", d, 4 * d, device);
  posemb_dim_t_ = host::posemb_dim_t(static_cast<int>(d));
  Tensor cd = host_f32(get, "coords_d", {c.depth_num});
  coords_d_.assign(cd.data<float>(), cd.data<float>() + c.depth_num);

  // time_embedding(pos2posemb1d(0)): a constant vector.
  std::vector<float> pe0(d);
  host::pos2posemb1d(0.0, static_cast<int>(d), pe0.data());
  Tensor te_in = to_device(Tensor::from_vector(pe0, {1, d}), device);
  time_embedding_zero_ = layernorm(time_emb0_(te_in), time_emb1_, 1e-5f);

  // ---- box head
  const std::string bp = "pts_bbox_head.";
  box_in_proj_.load(get, bp + "input_projection", d, c.embed_dim, device);
  box_out_proj_.load(get, bp + "output_projection", c.out_dims, d, device);
  const int64_t can_in = 14 + 14 * c.can_bus_len + 16 * (c.memory_len / c.topk);
  canbus0_.load(get, bp + "can_bus_embed.0", 4 * d, can_in, device);
  canbus2_.load(get, bp + "can_bus_embed.2", c.out_dims, 4 * d, device);
  box_dec_ = load_decoder(get, bp, c, device);
  load_branches(get, bp, d, c.num_classes, c.code_size, device, box_cls_lin_, box_cls_ln_,
                box_reg_lin_);
  box_query_embedding_ = to_device(host_f32(get, bp + "query_embedding.weight", {ne, d}), device);
  Tensor rp = host_f32(get, bp + "reference_points.weight", {nq, 3});
  box_reference_.assign(rp.data<float>(), rp.data<float>() + nq * 3);
  Tensor pr = host_f32(get, bp + "pseudo_reference_points.weight", {c.num_propagated, 3});
  pseudo_reference_.assign(pr.data<float>(), pr.data<float>() + c.num_propagated * 3);
  {
    // Query positions of [VLM | detection] queries: MLP(NeRF(ref tiled x n_control)) + time
    // embedding of 0; the VLM rows are then zeroed (they only depend on weights).
    Tensor nerf = Tensor::empty({ne + nq, qp_in}, DType::F32);
    std::vector<float> tiled(3 * c.n_control);
    for (int64_t q = 0; q < ne + nq; ++q) {
      const float* r = q < ne ? nullptr : &box_reference_[(q - ne) * 3];
      for (int k = 0; k < c.n_control; ++k)
        for (int j = 0; j < 3; ++j) tiled[k * 3 + j] = r ? r[j] : 0.f;
      host::nerf_pe(tiled.data(), 3 * c.n_control, nerf.data<float>() + q * qp_in);
    }
    Tensor qpos = mlp_query_pos(nerf);
    ops::add(qpos, time_embedding_zero_.reshape({d}), qpos);
    Tensor vlm_rows = qpos.slice(0, 0, ne);
    vlm_rows.copy_from(to_device(Tensor::zeros({ne, d}, DType::F32), device));
    box_det_query_pos_ = qpos;
  }

  // ---- lane head (VLM + one2one queries only)
  const std::string lp = "map_head.";
  lane_in_proj_.load(get, lp + "input_projection", d, c.embed_dim, device);
  lane_out_proj_.load(get, lp + "output_projection", c.out_dims, d, device);
  lane_dec_ = load_decoder(get, lp, c, device);
  load_branches(get, lp, d, 1, 3 * c.n_control, device, lane_cls_lin_, lane_cls_ln_, lane_reg_lin_);
  Tensor inst = host_f32(get, lp + "instance_embedding_lane.weight", {c.num_lane, d});
  Tensor pts = host_f32(get, lp + "points_embedding_lane.weight", {c.n_control, d});
  Tensor rpl_w = host_f32(get, lp + "reference_points_lane.weight", {3, d});
  Tensor rpl_b = host_f32(get, lp + "reference_points_lane.bias", {3});
  Tensor qemb = host_f32(get, lp + "query_embedding.weight", {ne, d});
  {
    // Lane reference points sigmoid(Linear(instance_q + point_p)) on the host (weights only).
    Tensor emb = Tensor::empty({n11 * c.n_control, d}, DType::F32);
    for (int64_t q = 0; q < n11; ++q)
      for (int p = 0; p < c.n_control; ++p)
        for (int64_t i = 0; i < d; ++i)
          emb.data<float>()[(q * c.n_control + p) * d + i] =
              inst.data<float>()[q * d + i] + pts.data<float>()[p * d + i];
    Tensor ref = Tensor::empty({n11 * c.n_control, 3}, DType::F32);
    ops::linear(emb, rpl_w, rpl_b, ref);
    lane_reference_.resize(n11 * 3 * c.n_control);
    lane_reference_inv_.resize(lane_reference_.size());
    for (size_t i = 0; i < lane_reference_.size(); ++i) {
      lane_reference_[i] = host::sigmoid(ref.data<float>()[i]);
      lane_reference_inv_[i] = host::inverse_sigmoid(lane_reference_[i]);
    }
    lane_reference_inv_dev_ =
        Tensor::from_vector(lane_reference_inv_, {n11, 3 * int64_t(c.n_control)});
    if (dev == Device::CUDA) lane_reference_inv_dev_ = lane_reference_inv_dev_.to(dev);
    Tensor nerf = Tensor::empty({n11, qp_in}, DType::F32);
    for (int64_t q = 0; q < n11; ++q)
      host::nerf_pe(&lane_reference_[q * 3 * c.n_control], 3 * c.n_control,
                    nerf.data<float>() + q * qp_in);
    Tensor qpos = mlp_query_pos(nerf);
    ops::add(qpos, time_embedding_zero_.reshape({d}), qpos);
    lane_query_pos_ = cat_rows(to_device(Tensor::zeros({ne, d}, DType::F32), device), qpos);
    lane_tgt_ = cat_rows(to_device(qemb, device), to_device(inst.slice(0, 0, n11), device));
  }
  // Per-frame constants: the box queries' [VLM embedding | zero detection targets], the masks.
  box_tgt_head_ = cat_rows(box_query_embedding_, to_device(Tensor::zeros({nq, d}, DType::F32), device));
  const int64_t qb = ne + nq + c.num_propagated, ql = ne + n11;
  box_self_mask_ = self_attention_mask(qb, qb + c.memory_len - c.num_propagated, ne, dev);
  lane_self_mask_ = self_attention_mask(ql, ql + c.lane_memory_len, ne, dev);
  io_ = std::make_shared<SegmentIO>();
#ifdef OMNIRT_WITH_CUDA
  if (dev == Device::CUDA) cuda_ = std::make_shared<CudaState>();
#endif
}

// ---- the segments' inputs and outputs ----------------------------------------------------------
// The small per-frame inputs that the host computes (memory geometry after the ego-motion
// alignment, the box references, the can-bus input of the ego token): views into one block, so
// that on CUDA they travel in one copy from pinned memory.
struct PetrHeads::SmallInputs {
  Tensor norm_ref_b;   // F32 [ml * 3], box memory reference points normalised to pc_range
  Tensor ts_b;         // F64 [ml], box memory timestamps (relative to this frame)
  Tensor pose_b;       // F32 [ml, 16], box memory poses in the current ego frame
  Tensor norm_ref_l;   // F32 [lml * 3 * n_control]
  Tensor ts_l;         // F64 [lml]
  Tensor pose_l;       // F32 [lml, 16]
  Tensor box_ref_inv;  // F32 [nq + p, 3], inverse_sigmoid of the detection/propagated references
  Tensor can_in;       // F32 [1, can_len], the ego token's input

  // Views at 256-byte aligned offsets of `base` (null: only the size); returns the bytes used.
  static size_t layout(const VisionConfig& c, char* base, Device dev,
                       const std::shared_ptr<void>& keep, SmallInputs* views) {
    const int64_t ml = c.memory_len, lml = c.lane_memory_len, ptsz = 3 * int64_t(c.n_control);
    const int64_t can_len = 14 + 14 * int64_t(c.can_bus_len) + 16 * (c.memory_len / c.topk);
    size_t off = 0;
    auto place = [&](Tensor SmallInputs::*member, const Shape& shape, DType dt) {
      if (base != nullptr) views->*member = Tensor::from_blob(base + off, shape, dt, dev, keep);
      off += (dtype_nbytes(dt, shape_numel(shape)) + 255) / 256 * 256;
    };
    place(&SmallInputs::norm_ref_b, {ml * 3}, DType::F32);
    place(&SmallInputs::ts_b, {ml}, DType::F64);
    place(&SmallInputs::pose_b, {ml, 16}, DType::F32);
    place(&SmallInputs::norm_ref_l, {lml * ptsz}, DType::F32);
    place(&SmallInputs::ts_l, {lml}, DType::F64);
    place(&SmallInputs::pose_l, {lml, 16}, DType::F32);
    place(&SmallInputs::box_ref_inv, {c.num_query + c.num_propagated, 3}, DType::F32);
    place(&SmallInputs::can_in, {1, can_len}, DType::F32);
    return off;
  }
};

struct PetrHeads::SegmentIO {
  // inputs
  Tensor tokens;     // [T, C] heads' dtype, the image tokens
  Tensor pos_embed;  // [T, d] heads' dtype
  Tensor emb_b;      // F32 [ml, d], the aligned box memory embeddings (zeros after a reset)
  Tensor emb_l;      // F32 [lml, d]
  SmallInputs small;
  // outputs
  Tensor dec_b_last;  // [ne + nq + p, d] the box decoder's last layer
  Tensor dec_l_last;  // [ne + n11, d]
  Tensor box_out;     // F32 [L*nd*classes + L*nd*code_size], branch_outputs()
  Tensor lane_out;    // F32 [L*n11 + L*n11*ptsz]
  Tensor box_tokens, ego_token;  // heads' dtype, read by assemble_tokens()
  Tensor lane_tokens;
  Tensor tokens_out;  // F32 [2 ne + 1, out_dims], the vision tokens
};

#ifdef OMNIRT_WITH_CUDA
struct PetrHeads::CudaState {
  cuda::HeadsStream stream;
  cuda::AsyncDownload box_copy, lane_copy;
  // The small inputs: written by the host into pinned memory, one copy to the device block.
  std::shared_ptr<void> pinned;
  SmallInputs staged;  // views into `pinned`
  cudaEvent_t staged_copied = nullptr;  // the last copy out of `pinned` has been done
  bool staged_pending = false;
  // Graph memory first: it must outlive the graphs (members die in reverse order).
  GraphMemoryPool pool;
  cuda::SegmentGraph box_graph, lane_graph;
  int64_t eager_frames = 0, replays = 0;
  bool graph_failed = false;
  // The graphs use the capturing thread's cuBLASLt and attention workspaces (kept per thread
  // and stream): a frame on another thread runs eagerly and captures its own graphs.
  std::thread::id graph_thread;
  bool graphs_two_streams = false;  // how the graphs were captured (set_concurrent_decoders)
  // The second stream of set_concurrent_decoders (created on first use) and its fork/join events.
  cudaStream_t lane_stream = nullptr;
  cudaEvent_t fork_event = nullptr, join_event = nullptr;

  void ensure_lane_stream() {
    if (lane_stream != nullptr) return;
    OMNIRT_CUDA_CHECK(cudaStreamCreateWithFlags(&lane_stream, cudaStreamNonBlocking));
    OMNIRT_CUDA_CHECK(cudaEventCreateWithFlags(&fork_event, cudaEventDisableTiming));
    OMNIRT_CUDA_CHECK(cudaEventCreateWithFlags(&join_event, cudaEventDisableTiming));
  }
  // `to` waits for the work queued so far on `from` (event record + wait; no host sync).
  static void order(cudaEvent_t e, cudaStream_t from, cudaStream_t to) {
    OMNIRT_CUDA_CHECK(cudaEventRecord(e, from));
    OMNIRT_CUDA_CHECK(cudaStreamWaitEvent(to, e, 0));
  }

  CudaState() { OMNIRT_CUDA_CHECK(cudaEventCreateWithFlags(&staged_copied, cudaEventDisableTiming)); }
  ~CudaState() {
    box_graph.reset();
    lane_graph.reset();
    if (staged_copied != nullptr) {
      (void)cudaEventSynchronize(staged_copied);
      (void)cudaEventDestroy(staged_copied);
    }
    if (lane_stream != nullptr) {
      (void)cudaStreamSynchronize(lane_stream);
      (void)cudaStreamDestroy(lane_stream);
      (void)cudaEventDestroy(fork_event);
      (void)cudaEventDestroy(join_event);
    }
  }
};
#else
struct PetrHeads::CudaState {};
#endif

// The host tensor of an asynchronous copy, once it has arrived.
static Tensor collect([[maybe_unused]] cuda::AsyncDownload* copy) {
#ifdef OMNIRT_WITH_CUDA
  return copy->wait();
#else
  OMNIRT_FAIL("vision heads: asynchronous copy without CUDA");
#endif
}

int64_t PetrHeads::graph_replays() const {
#ifdef OMNIRT_WITH_CUDA
  if (cuda_) return cuda_->replays;
#endif
  return 0;
}

size_t PetrHeads::graph_nodes() const {
#ifdef OMNIRT_WITH_CUDA
  if (cuda_) return cuda_->box_graph.nodes() + cuda_->lane_graph.nodes();
#endif
  return 0;
}

bool PetrHeads::graph_capable() const {
  const int64_t hd = cfg_.dec_dim / cfg_.dec_heads;
  static const bool debug_cpu_attention = std::getenv("OMNIRT_DEBUG_HEADS_CPU_ATTENTION") != nullptr;
  return !debug_cpu_attention && (hd == 32 || hd == 64 || hd == 128);
}

Tensor PetrHeads::branch_outputs(const Tensor& cls, const Tensor& reg, const Tensor& ref_inv,
                                 int ref_cols) const {
  const int64_t n_cls = cls.numel(), n_reg = reg.numel(), cols = reg.dim(-1);
  Tensor out = Tensor::empty({n_cls + n_reg}, DType::F32, device_);
#ifdef OMNIRT_WITH_CUDA
  if (device_ == Device::CUDA) {
    Tensor cls_f = out.slice(0, 0, n_cls), reg_f = out.slice(0, n_cls, n_cls + n_reg);
    cuda::branch_outputs(cls, reg, ref_inv, ref_cols, cfg_.pc_range, cls_f, reg_f);
    return out;
  }
#endif
  const Tensor c = cls.contiguous(), r = reg.contiguous();  // CPU heads: F32 host tensors
  expect_dtype(c, DType::F32, "vision heads: class branch output");
  expect_dtype(r, DType::F32, "vision heads: regression branch output");
  std::memcpy(out.data<float>(), c.data<float>(), n_cls * 4);
  host::regression_to_ego(r.data<float>(), n_reg / cols, static_cast<int>(cols),
                          ref_inv.data<float>(), ref_inv.numel() / ref_cols, ref_cols,
                          cfg_.pc_range, out.data<float>() + n_cls);
  return out;
}

Tensor PetrHeads::as_heads_dtype(const Tensor& f32) const {
  if (dtype_ == DType::F32) return f32;
  Tensor t = empty(f32.shape());
  ops::cast(f32, t);
  return t;
}

Tensor PetrHeads::upload(const Tensor& host) const {
  if (dtype_ == DType::F32 || host.dtype() != DType::F32 || device_ == Device::CPU)
    return to_device(host, {device_, dtype_});
  // Per-frame data: copy as float32 and narrow on the GPU (faster than the host conversion).
  Tensor f32 = host.to(device_);
  Tensor out = empty(host.shape());
  ops::cast(f32, out);
  return out;
}
Tensor PetrHeads::empty(const Shape& shape) const { return Tensor::empty(shape, dtype_, device_); }

Tensor PetrHeads::mlp_query_pos(const Tensor& nerf_host) const {
  Tensor x = upload(nerf_host);
  return query_pos2_(query_pos0_(x, GemmActivation::Relu));
}

// temp_pos = MLN(MLP(NeRF(norm_ref)), NeRF([dt, pose[:3,:]])) + time_embedding(pe(dt)).
Tensor PetrHeads::temporal_pos(const Tensor& norm_ref_t, int per_entry, const Tensor& ts_t,
                               const Tensor& pose_t) const {
  const int64_t d = cfg_.dec_dim, qp_in = 12 * 3 * cfg_.n_control;
  const int entries = static_cast<int>(ts_t.numel());
#ifdef OMNIRT_WITH_CUDA
  if (device_ == Device::CUDA) {
    // The encodings (~1 M sines and cosines per frame) on the GPU; see heads_cuda.h.
    Tensor nerf = empty({entries, qp_in}), ego = empty({entries, 12 * 13}), tpe = empty({entries, d});
    cuda::temporal_encodings(norm_ref_t, per_entry, cfg_.n_control, ts_t, pose_t, posemb_dim_t_,
                             nerf, ego, tpe);
    return temporal_pos_from_encodings(nerf, ego, tpe);
  }
#endif
  const float* norm_ref = norm_ref_t.data<float>();
  const double* ts = ts_t.data<double>();
  const float* pose = pose_t.data<float>();
  Tensor nerf = Tensor::empty({entries, qp_in}, DType::F32);
  Tensor ego = Tensor::empty({entries, 12 * 13}, DType::F32);
  Tensor tpe = Tensor::empty({entries, d}, DType::F32);
  std::vector<float> tiled(3 * cfg_.n_control);
  for (int e = 0; e < entries; ++e) {
    const float* r = &norm_ref[size_t(e) * per_entry];
    if (per_entry == 3) {
      for (int k = 0; k < cfg_.n_control; ++k)
        for (int j = 0; j < 3; ++j) tiled[k * 3 + j] = r[j];
    } else {
      std::copy(r, r + 3 * cfg_.n_control, tiled.begin());
    }
    host::nerf_pe(tiled.data(), 3 * cfg_.n_control, nerf.data<float>() + e * qp_in);
    // ego motion [dt, pose rows 0..2 flattened]: concatenated in float64, cast to float32.
    float motion[13];
    motion[0] = static_cast<float>(ts[e]);
    for (int i = 0; i < 12; ++i) motion[1 + i] = static_cast<float>(static_cast<double>(pose[e * 16 + i]));
    host::nerf_pe(motion, 13, ego.data<float>() + e * 12 * 13);
    host::pos2posemb1d(ts[e], static_cast<int>(d), tpe.data<float>() + e * d);
  }
  return temporal_pos_from_encodings(upload(nerf), upload(ego), upload(tpe));
}

Tensor PetrHeads::temporal_pos_from_encodings(const Tensor& nerf, const Tensor& ego,
                                              const Tensor& tpe) const {
  Tensor pos = query_pos2_(query_pos0_(nerf, GemmActivation::Relu));
  // MLN: gamma(c) * LN(x) + beta(c), LN without affine.
  Tensor xn = empty(pos.shape());
  ops::layernorm(pos, Tensor(), Tensor(), 1e-5f, xn);
  Tensor cvec = mln_reduce_(ego, GemmActivation::Relu);
  Tensor gamma = mln_gamma_(cvec), beta = mln_beta_(cvec);
  ops::mul(gamma, xn, xn);
  ops::add(xn, beta, xn);
  Tensor te = layernorm(time_emb0_(tpe), time_emb1_, 1e-5f);
  ops::add(xn, te, xn);
  return xn;
}

// Column block `block` (width h * hd) of a contiguous projection [len, n * h * hd], rows
// [0, rows), as the [1, h, rows, hd] strided view the attention reads (no copy).
static Tensor heads_block(const Tensor& t, int64_t block, int64_t rows, int64_t h, int64_t hd) {
  const int64_t len = t.dim(0), blocks = t.dim(1) / (h * hd);
  return t.reshape({1, len, blocks * h, hd})
      .permute({0, 2, 1, 3})
      .slice(1, block * h, (block + 1) * h)
      .slice(2, 0, rows);
}

void PetrHeads::attend(const Mha& m, const Tensor& q, int64_t q_block, int64_t rows,
                       const Tensor& k, int64_t k_block, const Tensor& v, int64_t v_block,
                       const Tensor& mask, Tensor& merged) const {
  const int64_t e = merged.dim(1), h = m.heads, hd = e / h, lk = k.dim(0);
  ops::AttentionOptions opt;
  opt.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  opt.mask = mask;
  opt.allow_tf32 = gemm_.fp32_compute == ops::Fp32Compute::TF32;  // the engine's tf32 option
  // OMNIRT_DEBUG_HEADS_CPU_ATTENTION=1 sends every decoder attention through the CPU reference
  // (diagnosis of GPU-only differences; slow).
  static const bool debug_cpu_attention = std::getenv("OMNIRT_DEBUG_HEADS_CPU_ATTENTION") != nullptr;
  if (device_ == Device::CUDA && (debug_cpu_attention || (hd != 32 && hd != 64 && hd != 128))) {
    // The CUDA attention kernels support head_dim 32/64/128 (the full model's decoders use 32).
    // Other sizes (the tiny test model's 8) run on the CPU reference: slow, but exact.
    opt.mask = mask.defined() ? mask.to(Device::CPU) : Tensor();
    auto host_f32_of = [](const Tensor& t) { return t.to(Device::CPU).to_dtype(DType::F32); };
    Tensor oc = Tensor::empty({rows, e}, DType::F32);
    Tensor oc_view = heads_block(oc, 0, rows, h, hd);
    ops::attention(heads_block(host_f32_of(q), q_block, rows, h, hd),
                   heads_block(host_f32_of(k), k_block, lk, h, hd),
                   heads_block(host_f32_of(v), v_block, lk, h, hd), oc_view, opt);
    merged.copy_from(oc.to_dtype(dtype_).to(device_));
  } else {
    Tensor o = heads_block(merged, 0, rows, h, hd);
    StageTimer::mark("heads: decoder GEMMs + pointwise");
    ops::attention(heads_block(q, q_block, rows, h, hd), heads_block(k, k_block, lk, h, hd),
                   heads_block(v, v_block, lk, h, hd), o, opt);
    StageTimer::mark("heads: decoder attention kernel");
  }
}

// The decoder (post-norm layers: self-attention over [queries ; temporal memory], cross-attention
// over the image tokens, FFN), arranged to launch few kernels (docs/vision_engine.md, "Decoder
// launches"):
//   * the cross-attention keys and values of all layers are two GEMMs before the loop (the same
//     image tokens feed every layer; the layers' weights are stacked);
//   * self-attention: the key input [tgt ; memory] + [query_pos ; temp_pos] holds the query input
//     tgt + query_pos in its first rows, so q and k come from one GEMM with [Wq; Wk];
//   * [tgt ; memory] lives in one buffer: the memory rows are written once, the query rows once
//     per layer; after the attention those rows take the residual sum (output projection GEMM
//     with beta = 1 on them), as do the cross-attention and FFN outputs: no separate adds.
// Same arithmetic as the reference up to the order of the bias and residual additions.
std::vector<Tensor> PetrHeads::decode(const Decoder& dec, const Tensor& tgt0,
                                      const Tensor& query_pos, const Tensor& mem_k,
                                      const Tensor& mem_v, const Tensor& mask,
                                      const Tensor& temp_memory, const Tensor& temp_pos) const {
  const float eps = cfg_.dec_ln_eps;
  const int64_t lq = tgt0.dim(0), lk = lq + temp_memory.dim(0), e = tgt0.dim(1);
  const Tensor k_all = dec.cross_k_all(mem_k);  // [T, L * e]: layer l's keys in column block l
  const Tensor v_all = dec.cross_v_all(mem_v);
  Tensor kv = empty({lk, e});
  Tensor kv_top = kv.slice(0, 0, lq);
  kv.slice(0, lq, lk).copy_from(temp_memory);
  const Tensor kv_pos = cat_rows(query_pos, temp_pos);
  std::vector<Tensor> outs;
  Tensor tgt = tgt0;
  for (size_t l = 0; l < dec.layers.size(); ++l) {
    const DecoderLayer& L = dec.layers[l];
    kv_top.copy_from(tgt);
    const Tensor qk = L.self_qk(add(kv, kv_pos));  // [lk, 2e]: q (first lq rows) | k
    const Tensor v = L.self_attn.v(kv);
    Tensor merged = empty({lq, e});
    attend(L.self_attn, qk, 0, lq, qk, 1, v, 0, mask, merged);
    L.self_attn.out.apply_residual(merged, kv_top);  // kv_top = tgt + out_proj(attention)
    Tensor x = layernorm(kv_top, L.norm1, eps);
    const Tensor q = L.cross_attn.q(add(x, query_pos));
    attend(L.cross_attn, q, 0, lq, k_all, static_cast<int64_t>(l), v_all,
           static_cast<int64_t>(l), Tensor(), merged);
    L.cross_attn.out.apply_residual(merged, x);  // x += out_proj(attention)
    Tensor x2 = layernorm(x, L.norm2, eps);
    const Tensor hidden = L.ffn1(x2, GemmActivation::Relu);
    L.ffn2.apply_residual(hidden, x2);  // x2 += ffn2(hidden)
    tgt = layernorm(x2, L.norm3, eps);
    outs.push_back(tgt);
  }
  return outs;
}

Tensor PetrHeads::branch_cls(const std::vector<Linear>& lin, const std::vector<Norm>& ln,
                             const Tensor& x) const {
  Tensor h = layernorm(lin[0](x), ln[0], 1e-5f);
  ops::relu(h, h);
  h = layernorm(lin[1](h), ln[1], 1e-5f);
  ops::relu(h, h);
  return lin[2](h);
}

Tensor PetrHeads::branch_reg(const std::vector<Linear>& lin, const Tensor& x) const {
  return lin[2](lin[1](lin[0](x, GemmActivation::Relu), GemmActivation::Relu));
}

Tensor PetrHeads::position_embedding_input(const std::vector<host::Mat4>& img2lidars) const {
  return host::position_embedding_input(cfg_, coords_d_, img2lidars);
}

// ---- forward ---------------------------------------------------------------------------------
// The box head's device work: decoder over [VLM | detection | propagated] queries, its branches
// (as F32 host-ready values), the box tokens and the ego token. Reads io_ inputs, writes io_.
void PetrHeads::box_segment() {
  const VisionConfig& c = cfg_;
  const int64_t ne = c.num_extra, nq = c.num_query, p = c.num_propagated, ml = c.memory_len;
  SegmentIO& io = *io_;
  Tensor memory_b = box_in_proj_(io.tokens);
  Tensor mem_k_b = add(memory_b, io.pos_embed);
  StageTimer::mark("heads: decoder GEMMs + pointwise");
  Tensor temp_pos_b = temporal_pos(io.small.norm_ref_b, 3, io.small.ts_b, io.small.pose_b);
  StageTimer::mark("heads: temporal position encodings");
  const Tensor emb_b_dev = as_heads_dtype(io.emb_b);
  // queries [VLM | detection | propagated]
  Tensor tgt_b = cat_rows(box_tgt_head_, emb_b_dev.slice(0, 0, p));
  Tensor qpos_b = cat_rows(box_det_query_pos_, temp_pos_b.slice(0, 0, p));
  const int64_t qb = ne + nq + p;
  std::vector<Tensor> dec_b = decode(box_dec_, tgt_b, qpos_b, mem_k_b, memory_b, box_self_mask_,
                                     emb_b_dev.slice(0, p, ml), temp_pos_b.slice(0, p, ml));
  StageTimer::mark("heads: decoder GEMMs + pointwise");
  // The branches are row-wise: run them once over every layer's 900 detection + propagated
  // queries stacked [L * nd, d] (one pass) instead of once per layer.
  const Tensor box_dq = stack_rows(dec_b, ne, qb);
  const Tensor box_cls = branch_cls(box_cls_lin_, box_cls_ln_, box_dq);
  const Tensor box_reg = branch_reg(box_reg_lin_, box_dq);
  io.box_out = branch_outputs(box_cls, box_reg, io.small.box_ref_inv, 3);
  StageTimer::mark("heads: box branches");
  io.box_tokens = box_out_proj_(dec_b.back().slice(0, 0, ne));
  io.ego_token = canbus2_(canbus0_(as_heads_dtype(io.small.can_in), GemmActivation::Relu));
  io.dec_b_last = dec_b.back();
  StageTimer::mark("heads: box tokens + ego token");
}

// The lane head's device work (VLM + one2one queries) and, with_tokens, the 513 vision tokens.
void PetrHeads::lane_segment(bool with_tokens) {
  const VisionConfig& c = cfg_;
  const int64_t ne = c.num_extra, n11 = c.num_lane_one2one;
  SegmentIO& io = *io_;
  Tensor memory_l = lane_in_proj_(io.tokens);
  Tensor mem_k_l = add(memory_l, io.pos_embed);
  StageTimer::mark("heads: decoder GEMMs + pointwise");
  Tensor temp_pos_l =
      temporal_pos(io.small.norm_ref_l, 3 * c.n_control, io.small.ts_l, io.small.pose_l);
  StageTimer::mark("heads: temporal position encodings");
  const int64_t ql = ne + n11;
  const Tensor emb_l_dev = as_heads_dtype(io.emb_l);
  std::vector<Tensor> dec_l = decode(lane_dec_, lane_tgt_, lane_query_pos_, mem_k_l, memory_l,
                                     lane_self_mask_, emb_l_dev, temp_pos_l);
  const Tensor lane_dq = stack_rows(dec_l, ne, ql);
  const Tensor lane_cls = branch_cls(lane_cls_lin_, lane_cls_ln_, lane_dq);
  const Tensor lane_reg = branch_reg(lane_reg_lin_, lane_dq);
  io.lane_out = branch_outputs(lane_cls, lane_reg, lane_reference_inv_dev_, 3 * c.n_control);
  io.lane_tokens = lane_out_proj_(dec_l.back().slice(0, 0, ne));
  io.dec_l_last = dec_l.back();
  if (with_tokens) assemble_tokens();
  StageTimer::mark("heads: lane head");
}

void PetrHeads::assemble_tokens() {
  SegmentIO& io = *io_;
  // 513 vision tokens [box | ego | lane], F32.
  Tensor tokens_out = cat_rows(cat_rows(io.box_tokens, io.ego_token), io.lane_tokens);
  if (tokens_out.dtype() != DType::F32) {
    Tensor f = Tensor::empty(tokens_out.shape(), DType::F32, device_);
    ops::cast(tokens_out, f);
    tokens_out = f;
  }
  io.tokens_out = tokens_out;
}

HeadsOutput PetrHeads::forward(const Tensor& backbone, const FrameGeometry& geo, VisionState& st) {
#ifdef OMNIRT_WITH_CUDA
  // On CUDA all of the heads' work runs on their own stream (graph capture needs a stream other
  // than the legacy default one), ordered after the caller's work and before the caller's next.
  std::optional<cuda::HeadsStream::Use> on_heads_stream;
  if (cuda_) on_heads_stream.emplace(cuda_->stream);
#endif
  const VisionConfig& c = cfg_;
  const int64_t d = c.dec_dim, ne = c.num_extra, nq = c.num_query, p = c.num_propagated;
  const int64_t ml = c.memory_len, lml = c.lane_memory_len, n11 = c.num_lane_one2one;
  const int64_t T = int64_t(c.num_cams) * c.grid_h() * c.grid_w();
  const auto& pc = c.pc_range;
  OMNIRT_CHECK(static_cast<int>(geo.lidar2img.size()) == c.num_cams, "frame geometry: expected ",
               c.num_cams, " camera matrices, got ", geo.lidar2img.size());
  HeadsOutput out;
  SegmentIO& io = *io_;

  // Image tokens in the heads' dtype, [T, C]. On CUDA into the same buffer every frame.
  Tensor tokens = backbone.reshape({T, c.embed_dim});
  if (cuda_) {
    if (!io.tokens.defined()) io.tokens = empty({T, c.embed_dim});
    if (tokens.dtype() != dtype_)
      ops::cast(tokens, io.tokens);
    else
      io.tokens.copy_from(tokens);
  } else {
    if (tokens.dtype() != dtype_) {
      Tensor f = empty({T, c.embed_dim});
      ops::cast(tokens, f);
      tokens = f;
    }
    io.tokens = tokens;
  }

  // 3-D position embedding (depends on calibration only).
  std::vector<host::Mat4> img2lidars = geo.img2lidars;
  if (img2lidars.empty()) {
    for (int cam = 0; cam < c.num_cams; ++cam) {
      const std::string what = "calibration: lidar2img of camera " + std::to_string(cam);
      img2lidars.push_back(host::inverse4(geo.lidar2img[cam], what.c_str()));
    }
  }
  OMNIRT_CHECK(static_cast<int>(img2lidars.size()) == c.num_cams, "frame geometry: expected ",
               c.num_cams, " img2lidars matrices, got ", img2lidars.size());
  Tensor pe_input;
#ifdef OMNIRT_WITH_CUDA
  if (device_ == Device::CUDA) {
    pe_input = Tensor::empty({T, 3 * int64_t(c.depth_num)}, DType::F32, device_);
    cuda::position_embedding_input(c, coords_d_, img2lidars, pe_input);
  }
#endif
  if (!pe_input.defined()) pe_input = upload(position_embedding_input(img2lidars));
  if (pe_input.dtype() != dtype_) {
    Tensor cast = empty(pe_input.shape());
    ops::cast(pe_input, cast);
    pe_input = cast;
  }
  Tensor pos_embed = pos_enc2_(pos_enc0_(pe_input, GemmActivation::Relu));
  out.pos_embed = pos_embed.reshape({1, T, d});
  if (cuda_) {
    if (!io.pos_embed.defined()) io.pos_embed = empty({T, d});
    io.pos_embed.copy_from(pos_embed);  // the caller keeps out.pos_embed; the graphs read this
  } else {
    io.pos_embed = pos_embed;
  }

  StageTimer::mark("heads: 3-D position embedding");

  // ---- memory pre-update (host) -----------------------------------------------------------
  const bool first = geo.is_first_frame || st.empty();
  auto keep_of = [&](const Tensor& sample_time) {
    if (first) return 0.f;
    return std::fabs(sample_time.data<double>()[0] + geo.timestamp) < c.memory_keep_seconds ? 1.f : 0.f;
  };
  const float xb = keep_of(st.sample_time_bbox), xl = keep_of(st.sample_time_map);
  out.memory_reset = xb == 0.f;
  if (!first && xb == 0.f) LOG_INFO("vision memory reset: time gap to the previous frame >= ", c.memory_keep_seconds, " s");
  // The small inputs are written in place: on CUDA into pinned memory (copied to the device
  // in one go below), on the CPU into the host tensors the segments read.
  SmallInputs* small = &io.small;
#ifdef OMNIRT_WITH_CUDA
  if (cuda_) {
    if (!cuda_->pinned) {
      const size_t bytes = SmallInputs::layout(c, nullptr, Device::CPU, nullptr, nullptr);
      void* h = nullptr;
      OMNIRT_CUDA_CHECK(cudaMallocHost(&h, bytes));
      cuda_->pinned = std::shared_ptr<void>(h, [](void* q) { (void)cudaFreeHost(q); });
      SmallInputs::layout(c, static_cast<char*>(h), Device::CPU, cuda_->pinned, &cuda_->staged);
      auto block = std::make_shared<Tensor>(Tensor::empty({int64_t(bytes)}, DType::U8, device_));
      SmallInputs::layout(c, static_cast<char*>(block->raw()), device_, block, &io.small);
    }
    // The previous frame's copy out of the pinned block must be done before it is rewritten.
    if (cuda_->staged_pending) OMNIRT_CUDA_CHECK(cudaEventSynchronize(cuda_->staged_copied));
    cuda_->staged_pending = false;
    small = &cuda_->staged;
  }
#endif
  if (!cuda_) {
    const size_t bytes = SmallInputs::layout(c, nullptr, Device::CPU, nullptr, nullptr);
    auto block = std::make_shared<Tensor>(Tensor::empty({int64_t(bytes)}, DType::U8));
    SmallInputs::layout(c, static_cast<char*>(block->raw()), Device::CPU, block, &io.small);
  }
  // Plain pointers in the loops below: Tensor::data() is an out-of-line, checked call, and the
  // loops touch ~300k values per frame (it used to cost ~1 ms per frame through data()).
  // box memory, 600 entries in the current ego frame
  std::vector<float> ref_b(ml * 3, 0.f), canbus_b(c.can_bus_len * 14, 0.f);
  float* const pose_b = small->pose_b.data<float>();
  double* const ts_b = small->ts_b.data<double>();
  std::fill(pose_b, pose_b + ml * 16, 0.f);
  std::fill(ts_b, ts_b + ml, 0.0);
  if (!first) {
    const double* st_ts = st.memory_timestamp_bbox.data<double>();
    const float* st_pose = st.memory_egopose_bbox.data<float>();
    const float* st_ref = st.memory_reference_point_bbox.data<float>();
    for (int64_t e = 0; e < ml; ++e) {
      ts_b[e] = (st_ts[e] + geo.timestamp) * xb;
      host::Mat4 mp;
      std::memcpy(mp.data(), st_pose + e * 16, 64);
      host::Mat4 aligned = host::matmul4_accurate(geo.ego_pose_inv, mp);
      for (int i = 0; i < 16; ++i) pose_b[e * 16 + i] = aligned[i] * xb;
      float r[3];
      host::transform_point_accurate(geo.ego_pose_inv, st_ref + e * 3, r);
      for (int i = 0; i < 3; ++i) ref_b[e * 3 + i] = r[i] * xb;
    }
    const float* st_can = st.memory_canbus_bbox.data<float>();
    for (int i = 0; i < c.can_bus_len * 14; ++i) canbus_b[i] = st_can[i] * xb;
  }
  for (int64_t e = 0; e < p; ++e) {  // pseudo reference points / identity poses after a reset
    for (int i = 0; i < 3; ++i)
      ref_b[e * 3 + i] += (1 - xb) * (pseudo_reference_[e * 3 + i] * (pc[i + 3] - pc[i]) + pc[i]);
    for (int i = 0; i < 4; ++i) pose_b[e * 16 + i * 5] += (1 - xb);
  }
  // lane memory
  const int ptsz = 3 * c.n_control;
  std::vector<float> ref_l(lml * ptsz, 0.f);
  float* const pose_l = small->pose_l.data<float>();
  double* const ts_l = small->ts_l.data<double>();
  std::fill(pose_l, pose_l + lml * 16, 0.f);
  std::fill(ts_l, ts_l + lml, 0.0);
  if (!first) {
    const double* st_ts = st.memory_timestamp_map.data<double>();
    const float* st_pose = st.memory_egopose_map.data<float>();
    const float* st_ref = st.memory_reference_point_map.data<float>();
    for (int64_t e = 0; e < lml; ++e) {
      ts_l[e] = (st_ts[e] + geo.timestamp) * xl;
      host::Mat4 mp;
      std::memcpy(mp.data(), st_pose + e * 16, 64);
      host::Mat4 aligned = host::matmul4_accurate(geo.ego_pose_inv, mp);
      for (int i = 0; i < 16; ++i) pose_l[e * 16 + i] = aligned[i] * xl;
      for (int k = 0; k < c.n_control; ++k) {
        float r[3];
        host::transform_point_accurate(geo.ego_pose_inv, st_ref + e * ptsz + k * 3, r);
        for (int i = 0; i < 3; ++i) ref_l[e * ptsz + k * 3 + i] = r[i] * xl;
      }
    }
  }
  // Normalised reference points, the box references of the branches, the ego token's input.
  float* const norm_ref_b = small->norm_ref_b.data<float>();
  for (int64_t e = 0; e < ml; ++e)
    for (int i = 0; i < 3; ++i) norm_ref_b[e * 3 + i] = (ref_b[e * 3 + i] - pc[i]) / (pc[i + 3] - pc[i]);
  float* const norm_ref_l = small->norm_ref_l.data<float>();
  for (int64_t e = 0; e < lml; ++e)
    for (int k = 0; k < ptsz; ++k)
      norm_ref_l[e * ptsz + k] = (ref_l[e * ptsz + k] - pc[k % 3]) / (pc[k % 3 + 3] - pc[k % 3]);
  const int64_t nd = nq + p, L = c.dec_layers;
  float* const box_ref_inv = small->box_ref_inv.data<float>();
  for (int64_t q = 0; q < nd; ++q)
    for (int i = 0; i < 3; ++i) {
      const float r = q < nq ? box_reference_[q * 3 + i] : norm_ref_b[(q - nq) * 3 + i];
      box_ref_inv[q * 3 + i] = host::inverse_sigmoid(r);
    }
  // ego token input: [command, can_bus] + can-bus memory + mean pose of each memory block
  std::vector<float> rec_can(14);
  rec_can[0] = geo.command;
  std::copy(geo.can_bus.begin(), geo.can_bus.end(), rec_can.begin() + 1);
  {
    float* can_in = small->can_in.data<float>();
    int64_t n = 0;
    for (float v : rec_can) can_in[n++] = v;
    for (float v : canbus_b) can_in[n++] = v;
    for (int64_t blk = 0; blk < ml / c.topk; ++blk)
      for (int i = 0; i < 16; ++i) {
        float s = 0.f;
        for (int64_t e = 0; e < c.topk; ++e) s += pose_b[(blk * c.topk + e) * 16 + i];
        can_in[n++] = s / static_cast<float>(c.topk);
      }
    OMNIRT_CHECK(n == small->can_in.numel(), "vision heads: ego token input has ", n,
                 " values, expected ", small->can_in.numel());
  }
#ifdef OMNIRT_WITH_CUDA
  if (cuda_) {  // one asynchronous copy of all the small inputs
    const size_t bytes = SmallInputs::layout(c, nullptr, Device::CPU, nullptr, nullptr);
    OMNIRT_CUDA_CHECK(cudaMemcpyAsync(io.small.norm_ref_b.raw(), cuda_->staged.norm_ref_b.raw(),
                                      bytes, cudaMemcpyHostToDevice,
                                      omnirt::cuda::current_stream()));
    OMNIRT_CUDA_CHECK(cudaEventRecord(cuda_->staged_copied, omnirt::cuda::current_stream()));
    cuda_->staged_pending = true;
  }
#endif

  // The memory embeddings stay on the engine's device (F32): aligned = memory * keep, where
  // keep is exactly 0 or 1, i.e. the memory itself or zeros. The first `rows` entries of the
  // stored [1, k + rows, d] memory (newest first), as the reference's memory_embedding[:, :rows].
  auto set_aligned_embedding = [&](Tensor& dst, const Tensor& mem, float keep, int64_t rows) {
    const bool zero = first || keep == 0.f;
    if (!cuda_) {  // CPU: the segments read it directly
      dst = zero ? Tensor::zeros({rows, d}, DType::F32) : mem.reshape({mem.dim(1), d}).slice(0, 0, rows);
      if (dst.device() != Device::CPU) dst = dst.to(Device::CPU);
      return;
    }
    if (!dst.defined()) dst = Tensor::empty({rows, d}, DType::F32, device_);
    if (zero)
      device_memset(device_, dst.raw(), 0, dst.nbytes());
    else
      dst.copy_from(mem.reshape({mem.dim(1), d}).slice(0, 0, rows));  // also from a host state
  };
  set_aligned_embedding(io.emb_b, st.memory_embedding_bbox, xb, ml);
  set_aligned_embedding(io.emb_l, st.memory_embedding_map, xl, lml);

  StageTimer::mark("heads: memory alignment (host)");

  // ---- the device work: box head, then lane head + tokens ----------------------------------
  bool replay = false, two_streams = false;
#ifdef OMNIRT_WITH_CUDA
  cudaStream_t heads_stream = nullptr;
  if (cuda_) {
    heads_stream = omnirt::cuda::current_stream();
    two_streams = concurrent_ && use_graphs_ && !cuda_->graph_failed && graph_capable();
    if (two_streams) cuda_->ensure_lane_stream();
  }
  if (cuda_ && cuda_->box_graph.ready() &&
      (cuda_->graph_thread != std::this_thread::get_id() ||
       cuda_->graphs_two_streams != two_streams)) {
    cuda_->box_graph.reset();
    cuda_->lane_graph.reset();
    cuda_->eager_frames = 0;
  }
  if (cuda_ && use_graphs_ && !cuda_->graph_failed && cuda_->eager_frames >= 1 && graph_capable()) {
    if (!cuda_->box_graph.ready() || !cuda_->lane_graph.ready()) {
      cuda_->graph_thread = std::this_thread::get_id();
      cuda_->graphs_two_streams = two_streams;
      try {
        StageTimer::Pause no_marks;  // an event record would become part of the graph
        GraphMemoryPool::Scope graph_memory(cuda_->pool);
        cuda_->box_graph.capture([&] { box_segment(); });
        if (two_streams) {  // captured with the lane stream's workspaces (primed eagerly)
          omnirt::cuda::StreamGuard on_lane(cuda_->lane_stream);
          cuda_->lane_graph.capture([&] { lane_segment(false); });
        } else {
          cuda_->lane_graph.capture([&] { lane_segment(true); });
        }
        LOG_INFO("vision heads: captured CUDA graphs (", cuda_->box_graph.nodes(), " + ",
                 cuda_->lane_graph.nodes(), " nodes, ", cuda_->pool.bytes() >> 20,
                 " MiB of graph memory", two_streams ? ", box and lane on two streams" : "", ")");
      } catch (const std::exception& e) {
        cuda_->box_graph.reset();
        cuda_->lane_graph.reset();
        cuda_->graph_failed = true;
        LOG_WARN("vision heads: CUDA graph capture failed, running without graphs: ", e.what());
      }
    }
    replay = cuda_->box_graph.ready() && cuda_->lane_graph.ready();
  }
  if (!replay && cuda_ && cuda_->graph_failed) two_streams = false;
#endif
  cuda::AsyncDownload *box_copy = nullptr, *lane_copy = nullptr;
#ifdef OMNIRT_WITH_CUDA
  if (cuda_) box_copy = &cuda_->box_copy, lane_copy = &cuda_->lane_copy;
#endif
  // On CUDA the box outputs are copied to the host while the lane head runs, so that the host
  // decodes the boxes and updates the box memory meanwhile.
#ifdef OMNIRT_WITH_CUDA
  if (replay && two_streams) {
    // The lane graph waits only for this frame's inputs, not for the box graph.
    CudaState::order(cuda_->fork_event, heads_stream, cuda_->lane_stream);
    cuda_->box_graph.launch();
    box_copy->start(io.box_out);
    {
      omnirt::cuda::StreamGuard on_lane(cuda_->lane_stream);
      cuda_->lane_graph.launch();
      lane_copy->start(io.lane_out);
    }
    CudaState::order(cuda_->join_event, cuda_->lane_stream, heads_stream);
    assemble_tokens();  // fresh tensor: no copy needed below
    StageTimer::mark("heads: box + lane heads (concurrent CUDA graphs)");
    ++cuda_->replays;
  } else if (replay) {
    cuda_->box_graph.launch();
    box_copy->start(io.box_out);
    StageTimer::mark("heads: box head (CUDA graph)");
    cuda_->lane_graph.launch();
    lane_copy->start(io.lane_out);
    StageTimer::mark("heads: lane head (CUDA graph)");
    ++cuda_->replays;
  } else
#endif
  {
    box_segment();
#ifdef OMNIRT_WITH_CUDA
    if (box_copy) box_copy->start(io.box_out);
    if (two_streams) {
      // Eagerly the two segments run one after the other (the shared allocator's blocks are
      // reused in host order, which is only safe in stream order); the lane one on the lane
      // stream, so that its cuBLASLt and attention workspaces exist before its capture.
      CudaState::order(cuda_->fork_event, heads_stream, cuda_->lane_stream);
      {
        omnirt::cuda::StreamGuard on_lane(cuda_->lane_stream);
        lane_segment(false);
        lane_copy->start(io.lane_out);
      }
      CudaState::order(cuda_->join_event, cuda_->lane_stream, heads_stream);
      assemble_tokens();
    } else
#endif
    {
      lane_segment(true);
#ifdef OMNIRT_WITH_CUDA
      if (lane_copy) lane_copy->start(io.lane_out);
#endif
    }
#ifdef OMNIRT_WITH_CUDA
    if (cuda_) ++cuda_->eager_frames;
#endif
  }
  // The caller keeps the tokens; a graph's buffer is rewritten by the next frame.
  const bool tokens_in_graph = replay && !two_streams;
  out.vision_tokens =
      (tokens_in_graph ? io.tokens_out.clone() : io.tokens_out).reshape({1, 2 * ne + 1, c.out_dims});

  // ---- boxes: outputs to the host, decoding, memory update (host) ---------------------------
  // (On CUDA the lane head is still running while the host does this.)
  const int64_t n_bcls = L * nd * c.num_classes, n_breg = L * nd * c.code_size;
  const int64_t n_lcls = L * n11, n_lreg = L * n11 * ptsz;
  Tensor box_host = box_copy ? collect(box_copy) : io.box_out;
  out.all_cls_scores = box_host.slice(0, 0, n_bcls).reshape({L, 1, nd, c.num_classes});
  out.all_bbox_preds = box_host.slice(0, n_bcls, n_bcls + n_breg).reshape({L, 1, nd, c.code_size});
  const float* const box_cls_last = box_host.data<float>() + (L - 1) * nd * c.num_classes;
  const float* const box_reg_last = box_host.data<float>() + n_bcls + (L - 1) * nd * c.code_size;
  StageTimer::mark("heads: branch outputs to host");

  std::vector<float> box_sig(nd * c.num_classes);  // sigmoid of the last layer's logits
  for (size_t i = 0; i < box_sig.size(); ++i) box_sig[i] = host::sigmoid(box_cls_last[i]);
  for (int idx : host::topk_indices(box_sig, c.max_boxes)) {
    const int q = idx / c.num_classes, label = idx % c.num_classes;
    const float* b = box_reg_last + int64_t(q) * c.code_size;
    std::array<float, 9> box{b[0], b[1], b[2], std::exp(b[3]), std::exp(b[4]), std::exp(b[5]),
                             std::atan2(b[6], b[7]), b[8], b[9]};
    bool inside = true;
    for (int i = 0; i < 3; ++i)
      inside &= box[i] >= c.position_range[i] && box[i] <= c.position_range[i + 3];
    if (!inside) continue;
    box[2] -= box[5] * 0.5f;  // bottom centre
    out.boxes.boxes.push_back(box);
    out.boxes.scores.push_back(box_sig[idx]);
    out.boxes.labels.push_back(label);
    out.boxes.query.push_back(q);
  }
  StageTimer::mark("heads: box/lane decoding (host)");

  // Memory post-update. The new embeddings are [the top-k queries' last-layer outputs (F32) ;
  // the aligned memory], F32 [1, k + M, d], built on the engine's device from the host's top-k.
  auto new_memory_embedding = [&](const Tensor& dec_last, const std::vector<int>& topk,
                                  const Tensor& aligned) {
    const int64_t k = static_cast<int64_t>(topk.size()), m = aligned.dim(0);
    Tensor mem = Tensor::empty({k + m, d}, DType::F32, device_);
    Tensor recent = mem.slice(0, 0, k);
#ifdef OMNIRT_WITH_CUDA
    if (device_ == Device::CUDA) cuda::gather_rows_f32(dec_last, topk, recent);  // no sync
#endif
    if (device_ == Device::CPU) {
      Tensor ids = Tensor::empty({k}, DType::I32);
      std::copy(topk.begin(), topk.end(), ids.data<int32_t>());
      ops::embedding(dec_last, ids, recent);  // F32 heads on the CPU
    }
    mem.slice(0, k, k + m).copy_from(aligned);
    return mem.reshape({1, k + m, d});
  };
  const host::Mat4 eye = host::identity4();
  VisionState ns;
  {
    std::vector<float> score(nd);
    for (int64_t q = 0; q < nd; ++q) {
      float m = -INFINITY;
      for (int k = 0; k < c.num_classes; ++k) m = std::max(m, box_sig[q * c.num_classes + k]);
      score[q] = m;
    }
    out.topk_indexes_bbox = host::topk_indices(score, c.topk);
    const int64_t mb = c.topk + ml;
    ns.memory_embedding_bbox = new_memory_embedding(io.dec_b_last.slice(0, ne, ne + nd),
                                                    out.topk_indexes_bbox, io.emb_b);
    ns.memory_reference_point_bbox = Tensor::empty({1, mb, 3}, DType::F32);
    ns.memory_timestamp_bbox = Tensor::empty({1, mb, 1}, DType::F64);
    ns.memory_egopose_bbox = Tensor::empty({1, mb, 4, 4}, DType::F32);
    ns.memory_canbus_bbox = Tensor::empty({1, c.can_bus_len + 1, 14}, DType::F32);
    ns.sample_time_bbox = Tensor::empty({1}, DType::F64);
    ns.sample_time_bbox.data<double>()[0] = 0.0 - geo.timestamp;
    float* n_ref = ns.memory_reference_point_bbox.data<float>();
    double* n_ts = ns.memory_timestamp_bbox.data<double>();
    float* n_pose = ns.memory_egopose_bbox.data<float>();
    for (int64_t e = 0; e < mb; ++e) {
      const bool rec = e < c.topk;
      const int q = rec ? out.topk_indexes_bbox[e] : -1;
      const float* r = rec ? box_reg_last + int64_t(q) * c.code_size : &ref_b[(e - c.topk) * 3];
      host::transform_point(geo.ego_pose, r, n_ref + e * 3);
      const double ts = rec ? 0.0 : ts_b[e - c.topk];
      n_ts[e] = ts - geo.timestamp;
      host::Mat4 pose = eye;
      if (!rec) std::memcpy(pose.data(), &pose_b[(e - c.topk) * 16], 64);
      host::Mat4 g = host::matmul4(geo.ego_pose, pose);
      std::memcpy(n_pose + e * 16, g.data(), 64);
    }
    std::memcpy(ns.memory_canbus_bbox.data<float>(), rec_can.data(), 14 * 4);
    std::memcpy(ns.memory_canbus_bbox.data<float>() + 14, canbus_b.data(), canbus_b.size() * 4);
  }
  StageTimer::mark("heads: memory update (host)");

  // ---- lanes: outputs to the host, decoding, memory update (host) -------------------------
  Tensor lane_host = lane_copy ? collect(lane_copy) : io.lane_out;
  out.all_lane_cls_one2one = lane_host.slice(0, 0, n_lcls).reshape({L, 1, n11, 1});
  out.all_lane_preds_one2one =
      lane_host.slice(0, n_lcls, n_lcls + n_lreg).reshape({L, 1, n11, ptsz});
  const float* const lane_cls_last = lane_host.data<float>() + (L - 1) * n11;
  const float* const lane_reg_last = lane_host.data<float>() + n_lcls + (L - 1) * n11 * ptsz;
  StageTimer::mark("heads: branch outputs to host");

  out.lanes.points = Tensor::empty({n11, c.n_control, 3}, DType::F32);
  out.lanes.scores = Tensor::empty({n11}, DType::F32);
  {
    float* lane_points = out.lanes.points.data<float>();
    float* lane_scores = out.lanes.scores.data<float>();
    for (int64_t q = 0; q < n11; ++q) {
      lane_scores[q] = host::sigmoid(lane_cls_last[q]);
      for (int k = 0; k < ptsz; ++k) {
        float v = lane_reg_last[q * ptsz + k];
        if (k % 3 < 2) v = std::clamp(v, pc[k % 3], pc[k % 3 + 3]);
        lane_points[q * ptsz + k] = v;
      }
    }
  }
  StageTimer::mark("heads: box/lane decoding (host)");

  {  // lane memory: top lane_topk of the one2one lanes
    std::vector<float> lscore(n11);
    for (int64_t q = 0; q < n11; ++q) lscore[q] = host::sigmoid(lane_cls_last[q]);
    out.topk_indexes_map = host::topk_indices(lscore, c.lane_topk);
    const int64_t mm = c.lane_topk + lml;
    ns.memory_embedding_map = new_memory_embedding(io.dec_l_last.slice(0, ne, ne + n11),
                                                   out.topk_indexes_map, io.emb_l);
    ns.memory_reference_point_map = Tensor::empty({1, mm, c.n_control, 3}, DType::F32);
    ns.memory_timestamp_map = Tensor::empty({1, mm, 1}, DType::F64);
    ns.memory_egopose_map = Tensor::empty({1, mm, 4, 4}, DType::F32);
    ns.sample_time_map = Tensor::empty({1}, DType::F64);
    ns.sample_time_map.data<double>()[0] = 0.0 - geo.timestamp;
    float* n_ref = ns.memory_reference_point_map.data<float>();
    double* n_ts = ns.memory_timestamp_map.data<double>();
    float* n_pose = ns.memory_egopose_map.data<float>();
    for (int64_t e = 0; e < mm; ++e) {
      const bool rec = e < c.lane_topk;
      const int q = rec ? out.topk_indexes_map[e] : -1;
      const float* r = rec ? lane_reg_last + int64_t(q) * ptsz : &ref_l[(e - c.lane_topk) * ptsz];
      for (int k = 0; k < c.n_control; ++k)
        host::transform_point(geo.ego_pose, r + k * 3, n_ref + e * ptsz + k * 3);
      const double ts = rec ? 0.0 : ts_l[e - c.lane_topk];
      n_ts[e] = ts - geo.timestamp;
      host::Mat4 pose = eye;
      if (!rec) std::memcpy(pose.data(), &pose_l[(e - c.lane_topk) * 16], 64);
      host::Mat4 g = host::matmul4(geo.ego_pose, pose);
      std::memcpy(n_pose + e * 16, g.data(), 64);
    }
  }
  st = std::move(ns);
  StageTimer::mark("heads: memory update (host)");
  return out;
}

}  // namespace omnirt::vision
