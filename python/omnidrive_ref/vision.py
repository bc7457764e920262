"""OmniDrive vision part: EVA ViT -> 3-D position embedding -> box head + lane head -> 513 tokens.

The module tree mirrors `Petr3D` so that `state_dict()` has exactly the checkpoint's key names
(741 keys for the full config; shared modules are stored under every name, like the original):
  position_range, coords_d, query_pos.*, time_embedding.*, ego_pose_pe.*, position_encoder.*,
  img_backbone.*, pts_bbox_head.* (incl. its aliases query_pos/time_embedding/ego_pose_pe),
  map_head.* (same aliases).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
import torch.nn as nn

from .config import OmniDriveConfig
from .eva_vit import EVAViT
from .heads import PETRHeadM, StreamPETRHead
from .layers import MLN, inverse_sigmoid

STATE_FIELDS = (
    "memory_embedding_bbox", "memory_reference_point_bbox", "memory_timestamp_bbox",
    "memory_egopose_bbox", "memory_canbus_bbox", "sample_time_bbox",
    "memory_embedding_map", "memory_reference_point_map", "memory_timestamp_map",
    "memory_egopose_map", "sample_time_map",
)


@dataclass
class VisionState:
    """Temporal state carried between frames (spec §1.3), as stored after a frame's post-update.

    memory_embedding_bbox        [1, topk+memory_len, dec_dim]   f32
    memory_reference_point_bbox  [1, topk+memory_len, 3]         f32  (metres, global frame)
    memory_timestamp_bbox        [1, topk+memory_len, 1]         f64  (-T_record)
    memory_egopose_bbox          [1, topk+memory_len, 4, 4]      f32  (record-ego -> global)
    memory_canbus_bbox           [1, can_bus_len+1, 14]          f32
    sample_time_bbox             [1]                             f64
    memory_embedding_map         [1, lane_topk+lane_memory_len, dec_dim]       f32
    memory_reference_point_map   [1, lane_topk+lane_memory_len, n_control, 3]  f32
    memory_timestamp_map         [1, lane_topk+lane_memory_len, 1]             f64
    memory_egopose_map           [1, lane_topk+lane_memory_len, 4, 4]          f32
    sample_time_map              [1]                                           f64
    The timestamps are float64 because the original keeps them so (float64 zeros are concatenated
    in post_update_memory). The ONNX/TensorRT path stores them as float32.
    """

    memory_embedding_bbox: torch.Tensor
    memory_reference_point_bbox: torch.Tensor
    memory_timestamp_bbox: torch.Tensor
    memory_egopose_bbox: torch.Tensor
    memory_canbus_bbox: torch.Tensor
    sample_time_bbox: torch.Tensor
    memory_embedding_map: torch.Tensor
    memory_reference_point_map: torch.Tensor
    memory_timestamp_map: torch.Tensor
    memory_egopose_map: torch.Tensor
    sample_time_map: torch.Tensor

    def as_dict(self) -> Dict[str, torch.Tensor]:
        return {f: getattr(self, f) for f in STATE_FIELDS}

    @classmethod
    def from_dict(cls, d: Dict[str, torch.Tensor]) -> "VisionState":
        return cls(**{f: d[f] for f in STATE_FIELDS})

    def to(self, device) -> "VisionState":
        return VisionState(**{f: getattr(self, f).to(device) for f in STATE_FIELDS})


def lid_depth_bins(cfg: OmniDriveConfig) -> torch.Tensor:
    """Linear-increasing depth bins d_k = start + bin * k * (k+1), computed like Petr3D.__init__
    (float32; bin from the float32 position_range[3])."""
    index = torch.arange(0, cfg.depth_num, 1).float()
    max_depth = torch.tensor(list(cfg.position_range), dtype=torch.float32)[3]
    bin_size = (max_depth - cfg.depth_start) / (cfg.depth_num * (1 + cfg.depth_num))
    return cfg.depth_start + bin_size * index * (index + 1)


def _locations(h: int, w: int, stride: int, pad_h: int, pad_w: int, device) -> torch.Tensor:
    """misc.locations: feature-cell centres normalised by the padded image size, [h, w, 2] (x, y)."""
    sx = (torch.arange(0, stride * w, step=stride, dtype=torch.float32, device=device)
          + stride // 2) / pad_w
    sy = (torch.arange(0, h * stride, step=stride, dtype=torch.float32, device=device)
          + stride // 2) / pad_h
    yy, xx = torch.meshgrid(sy, sx, indexing="ij")
    return torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=1).reshape(h, w, 2)


class OmniDriveVision(nn.Module):
    """OmniDrive's vision part in float32 PyTorch (the export path's maths: no flash-attn).

    Usage:
        model = OmniDriveVision(cfg).eval(); init_random(model, seed) or load_state_dict(ckpt)
        state = model.initial_state()
        out = model.forward_frame(inputs, state)   # inputs: see forward_frame
        state = out["state"]
    """

    def __init__(self, cfg: OmniDriveConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        d = cfg.dec_dim
        self.img_backbone = EVAViT(cfg)
        self.pts_bbox_head = StreamPETRHead(cfg)
        self.map_head = PETRHeadM(cfg)
        # Shared detector-level modules (Petr3D.__init__), attached to both heads.
        self.query_pos = nn.Sequential(nn.Linear(cfg.query_pos_in, d), nn.ReLU(), nn.Linear(d, d))
        self.time_embedding = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d))
        self.ego_pose_pe = MLN(cfg.ego_motion_dim, d)
        for head in (self.pts_bbox_head, self.map_head):
            head.query_pos = self.query_pos
            head.time_embedding = self.time_embedding
            head.ego_pose_pe = self.ego_pose_pe
        self.position_range = nn.Parameter(torch.tensor(list(cfg.position_range)),
                                           requires_grad=False)
        self.coords_d = nn.Parameter(lid_depth_bins(cfg), requires_grad=False)
        self.position_encoder = nn.Sequential(nn.Linear(cfg.depth_num * 3, d * 4), nn.ReLU(),
                                              nn.Linear(d * 4, d))

    # ---------------------------------------------------------------------------------------
    def initial_state(self, device=None) -> VisionState:
        """All-zero state with the post-update shapes (what the deploy runner's buffers start as).
        The first frame of every scene must be run with is_first_frame=True."""
        cfg = self.cfg
        dev = device if device is not None else self.coords_d.device
        f32, f64 = torch.float32, torch.float64
        mb, mm = cfg.topk + cfg.memory_len, cfg.lane_topk + cfg.lane_memory_len
        z = lambda *s, dt=f32: torch.zeros(*s, dtype=dt, device=dev)
        return VisionState(
            memory_embedding_bbox=z(1, mb, cfg.dec_dim),
            memory_reference_point_bbox=z(1, mb, 3),
            memory_timestamp_bbox=z(1, mb, 1, dt=f64),
            memory_egopose_bbox=z(1, mb, 4, 4),
            memory_canbus_bbox=z(1, cfg.can_bus_len + 1, 14),
            sample_time_bbox=z(1, dt=f64),
            memory_embedding_map=z(1, mm, cfg.dec_dim),
            memory_reference_point_map=z(1, mm, cfg.n_control, 3),
            memory_timestamp_map=z(1, mm, 1, dt=f64),
            memory_egopose_map=z(1, mm, 4, 4),
            sample_time_map=z(1, dt=f64),
        )

    # ---------------------------------------------------------------------------------------
    def position_embedding_input(self, img2lidars: torch.Tensor) -> torch.Tensor:
        """Frustum points -> normalised -> inverse_sigmoid: [B, N*H*W, depth_num*3] (spec §3.2).

        img2lidars: [B, N, 4, 4] float32 (inverse of lidar2img, i.e. image -> ego)."""
        cfg = self.cfg
        b, n = img2lidars.shape[:2]
        h, w = cfg.grid_h, cfg.grid_w
        pad_h, pad_w = cfg.img_h, cfg.img_w
        dev = img2lidars.device
        eps = 1e-5
        loc = _locations(h, w, cfg.patch, pad_h, pad_w, dev)
        u = loc[..., 0] * pad_w
        v = loc[..., 1] * pad_h
        dd = self.coords_d.shape[0]
        centers = torch.stack([u, v], dim=-1).view(1, 1, h * w, 1, 2).expand(b, n, h * w, dd, 2)
        depth = self.coords_d.view(1, 1, 1, dd, 1).expand(b, n, h * w, dd, 1)
        coords = torch.cat([centers, depth, torch.ones_like(depth)], dim=-1)
        coords = torch.cat([coords[..., :2] * torch.clamp(coords[..., 2:3], min=eps),
                            coords[..., 2:]], dim=-1)
        m = img2lidars.view(b, n, 1, 1, 4, 4)
        pts = (m @ coords.unsqueeze(-1)).squeeze(-1)[..., :3]  # [B, N, HW, D, 3]
        pr = self.position_range
        pts = (pts - pr[0:3]) / (pr[3:6] - pr[0:3])
        pts = pts.reshape(b, n * h * w, dd * 3)
        return inverse_sigmoid(pts)

    # ---------------------------------------------------------------------------------------
    def _prepare_inputs(self, inputs: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        cfg = self.cfg
        dev = self.coords_d.device
        need = ("img", "lidar2img", "ego_pose", "ego_pose_inv", "timestamp", "command", "can_bus")
        missing = [k for k in need if k not in inputs]
        if missing:
            raise KeyError(f"forward_frame: missing inputs {missing}")

        def t32(k, shape):
            x = torch.as_tensor(inputs[k], dtype=torch.float32, device=dev)
            x = x.reshape(shape) if x.numel() == int(torch.tensor(shape).prod()) else x
            if tuple(x.shape) != tuple(shape):
                raise ValueError(f"forward_frame: input '{k}' has shape {tuple(x.shape)}, "
                                 f"expected {tuple(shape)}")
            return x

        n = cfg.num_cams
        p = {
            "img": t32("img", (1, n, 3, cfg.img_h, cfg.img_w)),
            "lidar2img": t32("lidar2img", (1, n, 4, 4)),
            "ego_pose": t32("ego_pose", (1, 4, 4)),
            "ego_pose_inv": t32("ego_pose_inv", (1, 4, 4)),
            "command": t32("command", (1,)),
            "can_bus": t32("can_bus", (1, 13)),
        }
        ts = torch.as_tensor(inputs["timestamp"], dtype=torch.float64, device=dev).reshape(1)
        p["timestamp"] = ts
        if inputs.get("img2lidars") is not None:
            p["img2lidars"] = t32("img2lidars", (1, n, 4, 4))
        else:
            p["img2lidars"] = torch.inverse(p["lidar2img"])  # float32, as the runner does
        return p

    @torch.no_grad()
    def forward_frame(self, inputs: Dict[str, Any], state: VisionState,
                      drop_one2many: bool = False, keep_backbone_taps: bool = False
                      ) -> Dict[str, Any]:
        """Run one frame.

        inputs (B = 1):
          img [1,N,3,H,W] f32 (normalised), lidar2img [1,N,4,4] (ego->image), optional img2lidars
          [1,N,4,4] (else torch.inverse(lidar2img) in f32), ego_pose [1,4,4] (ego->global),
          ego_pose_inv [1,4,4], timestamp (float seconds, scene-relative is fine; kept in f64),
          command [1] (0 left, 1 right, 2 forward), can_bus [1,13], is_first_frame (bool; must be
          True on the first frame of every scene).
        drop_one2many: build only [VLM | one2one] lane queries (used outputs unchanged, A13).
        keep_backbone_taps: also return per-block ViT outputs.

        Returns a dict:
          backbone_feats      [1,N,C_vit,h,w]   EVA output (C_vit = embed_dim, h = H/16)
          img_tokens          [1,N*h*w,C_vit]   token order camera, row, col
          img2lidars          [1,N,4,4]
          pos_embed_input     [1,N*h*w,3*depth_num]  inverse_sigmoid of normalised frustum points
          pos_embed           [1,N*h*w,dec_dim]
          abs_pos             [1,h,w,C_vit]     resized ViT pos_embed (weights-only)
          box_tgt / box_query_pos / box_reference_points   decoder inputs [1,Qb,*] with
                              Qb = num_extra+num_query+num_propagated (order VLM|det|propagated)
          box_temp_memory / box_temp_pos   extra self-attn keys [1,memory_len-num_propagated,dec_dim]
          box_attn_mask       [Qb, Qb+memory_len-num_propagated] bool, True = blocked
          box_memory_keep     [1] f32, 1 = memory kept (0 on first frame / >=2 s gap)
          box_pre_memory_*    memory after pre-update (egopose [1,memory_len,4,4], reference_point
                              [1,memory_len,3] ego frame, timestamp [1,memory_len,1] f64 = dt)
          box_can_bus_input   [1,can_bus_in]    input of can_bus_embed (74)
          box_outs_dec        [L,1,Qb,dec_dim]  all decoder layers (after nan_to_num)
          box_vlm_memory      [1,num_extra,dec_dim]
          all_cls_scores      [L,1,num_query+num_propagated,num_classes]
          all_bbox_preds      [L,1,num_query+num_propagated,10] (xyz metres centre, log sizes,
                              sin, cos, vx, vy)
          box_tokens          [1,num_extra,out_dims]
          ego_token           [1,1,out_dims]
          lane_tgt / lane_query_pos [1,Ql,dec_dim] with Ql = num_extra+num_lane (or +one2one)
          lane_reference_points [1,num_lane,3*n_control] (sigmoid space)
          lane_temp_pos       [1,lane_memory_len,dec_dim]
          lane_attn_mask      [Ql, Ql+lane_memory_len] bool
          lane_memory_keep    [1]
          lane_outs_dec       [L,1,Ql,dec_dim]  (before nan_to_num)
          lane_vlm_memory     [1,num_extra,dec_dim]
          all_lane_cls_one2one   [L,1,num_lane_one2one,1]
          all_lane_preds_one2one [L,1,num_lane_one2one,3*n_control] metres
          outs_dec_one2one       [L,1,num_lane_one2one,dec_dim]
          all_lane_cls_one2many / all_lane_preds_one2many / outs_dec_one2many  (absent if dropped)
          lane_tokens         [1,num_extra,out_dims]
          vision_tokens       [1,2*num_extra+1,out_dims] = [box | ego | lane]  (513 x 2048 full)
          boxes               dict from decode_boxes (last layer, NMS-free top-max_boxes)
          lanes               dict from decode_lanes (last layer one2one, clamped)
          topk_indexes_bbox   [1,topk] box queries (of the 900) written to memory this frame
          topk_indexes_map    [1,lane_topk]
          state               VisionState after this frame
          backbone_taps       (only with keep_backbone_taps) dict patch_embed / block{i} NHWC
        """
        cfg = self.cfg
        is_first = bool(inputs.get("is_first_frame", False))
        p = self._prepare_inputs(inputs)
        st = state.as_dict()
        out: Dict[str, Any] = {}

        n = cfg.num_cams
        taps: Optional[Dict[str, torch.Tensor]] = {}
        feats = self.img_backbone(p["img"].reshape(n, 3, cfg.img_h, cfg.img_w), taps)
        out["abs_pos"] = taps.pop("abs_pos")
        if keep_backbone_taps:
            out["backbone_taps"] = taps
        feats = feats.reshape(1, n, cfg.embed_dim, cfg.grid_h, cfg.grid_w)
        out["backbone_feats"] = feats
        tokens = feats.permute(0, 1, 3, 4, 2).reshape(1, cfg.num_tokens, cfg.embed_dim)
        out["img_tokens"] = tokens
        out["img2lidars"] = p["img2lidars"]
        pe_in = self.position_embedding_input(p["img2lidars"])
        out["pos_embed_input"] = pe_in
        pos_embed = self.position_encoder(pe_in)
        out["pos_embed"] = pos_embed

        box = self.pts_bbox_head(tokens, pos_embed, p, st, is_first)
        lane = self.map_head(tokens, pos_embed, p, st, is_first, drop_one2many=drop_one2many)
        box_state = box.pop("new_state")
        lane_state = lane.pop("new_state")
        out.update(box)
        out.update(lane)
        out["topk_indexes_bbox"] = box_state.pop("topk_indexes_bbox")
        out["topk_indexes_map"] = lane_state.pop("topk_indexes_map")
        out["vision_tokens"] = torch.cat([box["box_tokens"], box["ego_token"],
                                          lane["lane_tokens"]], dim=1)
        out["boxes"] = self.decode_boxes(out["all_cls_scores"], out["all_bbox_preds"])
        out["lanes"] = self.decode_lanes(out["all_lane_cls_one2one"],
                                         out["all_lane_preds_one2one"])
        out["state"] = VisionState.from_dict({**box_state, **lane_state})
        return out

    # ---------------------------------------------------------------------------------------
    def decode_boxes(self, all_cls_scores: torch.Tensor, all_bbox_preds: torch.Tensor
                     ) -> Dict[str, torch.Tensor]:
        """NMSFreeCoder (max_num = max_boxes, no score threshold) + get_bboxes' bottom-centre z.

        Returns bboxes [K,9] (x, y, z_bottom, size0, size1, size2, yaw, vx, vy), scores [K],
        labels [K] (int64), query [K] (index into the 900 detection+propagated queries), sorted by
        score; K <= max_boxes (boxes outside post_center_range are dropped).
        """
        cfg = self.cfg
        cls = all_cls_scores[-1, 0].sigmoid()  # [Q, C]
        preds = all_bbox_preds[-1, 0]
        scores, idx = cls.reshape(-1).topk(cfg.max_boxes)
        labels = idx % cfg.num_classes
        query = torch.div(idx, cfg.num_classes, rounding_mode="floor")
        bp = preds[query]
        rot = torch.atan2(bp[:, 6:7], bp[:, 7:8])
        boxes = torch.cat([bp[:, 0:3], bp[:, 3:6].exp(), rot, bp[:, 8:10]], dim=-1)
        pcr = torch.tensor(cfg.post_center_range, dtype=boxes.dtype, device=boxes.device)
        keep = (boxes[:, :3] >= pcr[:3]).all(1) & (boxes[:, :3] <= pcr[3:]).all(1)
        boxes, scores, labels, query = boxes[keep], scores[keep], labels[keep], query[keep]
        boxes = boxes.clone()
        boxes[:, 2] = boxes[:, 2] - boxes[:, 5] * 0.5
        return {"bboxes": boxes, "scores": scores, "labels": labels, "query": query}

    def decode_lanes(self, all_lane_cls_one2one: torch.Tensor,
                     all_lane_preds_one2one: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Last layer, one2one lanes: x, y clamped to pc_range; points [300, n_control, 3] and
        scores [300, 1] = sigmoid(cls). No threshold, no top-k, no Bezier conversion."""
        cfg = self.cfg
        pc = cfg.pc_range
        pts = all_lane_preds_one2one[-1, 0].clone().reshape(-1, cfg.n_control, 3)
        pts[..., 0] = pts[..., 0].clamp(min=pc[0], max=pc[3])
        pts[..., 1] = pts[..., 1].clamp(min=pc[1], max=pc[4])
        return {"points": pts, "scores": all_lane_cls_one2one[-1, 0].sigmoid()}
