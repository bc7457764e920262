"""PETR decoder, StreamPETR box head (`pts_bbox_head`) and PETRHeadM lane head (`map_head`).

Spec §3.3-§3.9. Both heads are written functionally with respect to the temporal memory: they take
the state tensors of the previous frame and return the new ones, doing what the original's
pre_update_memory / post_update_memory do to their attributes (and what deploy/export_vision.py
does inline).
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn as nn

from .config import OmniDriveConfig
from .layers import (MLN, MultiheadAttention, inverse_sigmoid, nerf_positional_encoding,
                     pos2posemb1d, transform_points)


# ------------------------------------------------------------------------------------------------
# Decoder (petr_transformer.py)
# ------------------------------------------------------------------------------------------------
class MultiHeadAttentionwDropout(nn.Module):
    """Wrapper that adds positions to q and k (not v) and the residual (without position)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attn = MultiheadAttention(dim, heads)

    def forward(self, query, key, value, query_pos, key_pos, blocked=None):
        out = self.attn(query + query_pos, key + key_pos, value, blocked)
        return out + query


class FFN(nn.Module):
    def __init__(self, dim: int, ffn: int):
        super().__init__()
        # Indices 0 and 3 are the Linears in the original (ReLU at 1, Dropouts at 2 and 4).
        self._layers = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(), nn.Identity(),
                                     nn.Linear(ffn, dim), nn.Identity())

    def forward(self, x):
        return self._layers(x) + x


class PETRTransformerDecoderLayer(nn.Module):
    """Post-norm: self-attn (queries + temporal memory as extra keys) -> LN -> cross-attn -> LN ->
    FFN -> LN."""

    def __init__(self, cfg: OmniDriveConfig):
        super().__init__()
        d = cfg.dec_dim
        self.transformer_layers = nn.ModuleList([
            MultiHeadAttentionwDropout(d, cfg.dec_heads),
            nn.LayerNorm(d, eps=cfg.dec_ln_eps),
            MultiHeadAttentionwDropout(d, cfg.dec_heads),
            nn.LayerNorm(d, eps=cfg.dec_ln_eps),
            FFN(d, cfg.dec_ffn),
            nn.LayerNorm(d, eps=cfg.dec_ln_eps),
        ])

    def forward(self, query, key, query_pos, key_pos, blocked, temp_memory, temp_pos):
        t = self.transformer_layers
        kv = torch.cat([query, temp_memory], dim=1)
        kv_pos = torch.cat([query_pos, temp_pos], dim=1)
        query = t[1](t[0](query, kv, kv, query_pos, kv_pos, blocked))
        query = t[3](t[2](query, key, key, query_pos, key_pos, None))
        return t[5](t[4](query))


class PETRTransformerDecoder(nn.Module):
    def __init__(self, cfg: OmniDriveConfig):
        super().__init__()
        self._layers = nn.ModuleList([PETRTransformerDecoderLayer(cfg)
                                      for _ in range(cfg.dec_layers)])

    def forward(self, query, key, query_pos, key_pos, blocked, temp_memory, temp_pos):
        outs = []
        for layer in self._layers:
            query = layer(query, key, query_pos, key_pos, blocked, temp_memory, temp_pos)
            outs.append(query)
        return torch.stack(outs, dim=0)


class PETRTemporalTransformer(nn.Module):
    def __init__(self, cfg: OmniDriveConfig):
        super().__init__()
        self.query_decoder = PETRTransformerDecoder(cfg)

    def forward(self, *args):
        return self.query_decoder(*args)


def _cls_branch(dim: int, out: int) -> nn.Sequential:
    # Linear, LN, ReLU, Linear, LN, ReLU, Linear  (num_reg_fcs = 2)
    return nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.ReLU(),
                         nn.Linear(dim, dim), nn.LayerNorm(dim), nn.ReLU(),
                         nn.Linear(dim, out))


def _reg_branch(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(),
                         nn.Linear(dim, out))


def _frozen(values) -> nn.Parameter:
    return nn.Parameter(torch.tensor(list(values), dtype=torch.float32), requires_grad=False)


def _temporal_keep(sample_time: torch.Tensor, timestamp: torch.Tensor, keep_seconds: float):
    """sample_time += T; keep = |sample_time| < 2 s (float32, like the original's `x`)."""
    st = sample_time + timestamp
    return (torch.abs(st) < keep_seconds).to(torch.float32)


def _memory_time_pos(head, temp_pos: torch.Tensor, mem_ts: torch.Tensor, mem_pose: torch.Tensor):
    """MLN ego-motion conditioning + time embedding of the memory entries (both heads).

    mem_ts is float64 [B, M, 1]; the ego-motion vector is concatenated in float64 and cast to
    float32; pos2posemb1d runs in float64 and is cast to float32 before time_embedding.
    """
    ego_motion = torch.cat([mem_ts, mem_pose[..., :3, :].flatten(-2).to(mem_ts.dtype)],
                           dim=-1).float()
    temp_pos = head.ego_pose_pe(temp_pos, nerf_positional_encoding(ego_motion))
    t_emb = pos2posemb1d(mem_ts, num_pos_feats=head.cfg.dec_dim).float()
    return temp_pos + head.time_embedding(t_emb)


def _zero_time_embedding(head, like: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(like[..., :1])
    return head.time_embedding(pos2posemb1d(z, num_pos_feats=head.cfg.dec_dim))


# ------------------------------------------------------------------------------------------------
# Box head (streampetr_head.py)
# ------------------------------------------------------------------------------------------------
class StreamPETRHead(nn.Module):
    def __init__(self, cfg: OmniDriveConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dec_dim
        self.code_weights = _frozen(cfg.box_code_weights[:cfg.code_size])
        self.match_costs = _frozen(cfg.box_code_weights[:cfg.code_size])
        self.pc_range = _frozen(cfg.pc_range)
        self.transformer = PETRTemporalTransformer(cfg)
        fc_cls = _cls_branch(d, cfg.num_classes)
        reg = _reg_branch(d, cfg.code_size)
        # One module stored num_pred times (the original's `[fc_cls for _ in range(6)]`).
        self.cls_branches = nn.ModuleList([fc_cls for _ in range(cfg.num_pred)])
        self.reg_branches = nn.ModuleList([reg for _ in range(cfg.num_pred)])
        self.input_projection = nn.Linear(cfg.embed_dim, d)
        self.output_projection = nn.Linear(d, cfg.out_dims)
        self.reference_points = nn.Embedding(cfg.num_query, 3)
        self.pseudo_reference_points = nn.Embedding(cfg.num_propagated, 3)
        self.query_embedding = nn.Embedding(cfg.num_extra, d)
        self.can_bus_embed = nn.Sequential(nn.Linear(cfg.can_bus_in, d * 4), nn.ReLU(),
                                           nn.Linear(d * 4, cfg.out_dims))
        # query_pos, time_embedding, ego_pose_pe are attached by OmniDriveVision (shared).

    # -- memory -----------------------------------------------------------------------------
    def pre_update(self, st: Dict[str, torch.Tensor], inputs: Dict[str, torch.Tensor],
                   is_first_frame: bool) -> Dict[str, torch.Tensor]:
        """Start-of-frame refresh (spec §3.6 pre-update). Returns the 600-entry memory."""
        cfg = self.cfg
        b = inputs["ego_pose"].shape[0]
        dev = inputs["ego_pose"].device
        ml, p = cfg.memory_len, cfg.num_propagated
        if is_first_frame:
            # The original's `memory_embedding is None` path: fresh zeros, x = 0.
            emb = torch.zeros(b, ml, cfg.dec_dim, device=dev)
            ref = torch.zeros(b, ml, 3, device=dev)
            ts = torch.zeros(b, ml, 1, dtype=torch.float64, device=dev)
            pose = torch.zeros(b, ml, 4, 4, device=dev)
            canbus = torch.zeros(b, cfg.can_bus_len, 14, device=dev)
            x = torch.zeros(b, device=dev)
        else:
            t = inputs["timestamp"]
            ts = st["memory_timestamp_bbox"] + t.view(-1, 1, 1)
            x = _temporal_keep(st["sample_time_bbox"], t, cfg.memory_keep_seconds)
            pose = inputs["ego_pose_inv"].unsqueeze(1) @ st["memory_egopose_bbox"]
            ref = transform_points(st["memory_reference_point_bbox"], inputs["ego_pose_inv"])
            ts = ts[:, :ml] * x.view(-1, 1, 1)
            ref = ref[:, :ml] * x.view(-1, 1, 1)
            emb = st["memory_embedding_bbox"][:, :ml] * x.view(-1, 1, 1)
            pose = pose[:, :ml] * x.view(-1, 1, 1, 1)
            canbus = st["memory_canbus_bbox"][:, :cfg.can_bus_len] * x.view(-1, 1, 1)
        # First frame / reset: pseudo reference points and identity poses for the propagated slots.
        pseudo = (self.pseudo_reference_points.weight * (self.pc_range[3:6] - self.pc_range[0:3])
                  + self.pc_range[0:3])
        ref = ref.clone()
        pose = pose.clone()
        ref[:, :p] = ref[:, :p] + (1 - x).view(b, 1, 1) * pseudo
        pose[:, :p] = pose[:, :p] + (1 - x).view(b, 1, 1, 1) * torch.eye(4, device=dev)
        return {"embedding": emb, "reference_point": ref, "timestamp": ts, "egopose": pose,
                "canbus": canbus, "keep": x}

    def post_update(self, mem: Dict[str, torch.Tensor], inputs: Dict[str, torch.Tensor],
                    cls_last: torch.Tensor, bbox_last: torch.Tensor, dec_last: torch.Tensor,
                    rec_can_bus: torch.Tensor) -> Dict[str, torch.Tensor]:
        """End-of-frame update (spec §3.6 post-update): top-k of the 900 decoded queries is prepended,
        then everything is moved to the global frame."""
        cfg = self.cfg
        b = cls_last.shape[0]
        dev = cls_last.device
        score = cls_last.sigmoid().topk(1, dim=-1).values[..., 0:1]  # [B, 900, 1]
        _, idx = torch.topk(score, cfg.topk, dim=1)  # [B, topk, 1]
        idx = idx[..., 0]
        gather = lambda t: torch.gather(t, 1, idx.view(b, -1, *([1] * (t.dim() - 2))).expand(
            b, idx.shape[1], *t.shape[2:]))
        rec_ref = gather(bbox_last[..., :3])
        rec_emb = gather(dec_last)
        rec_ts = torch.zeros(b, cfg.topk, 1, dtype=torch.float64, device=dev)
        rec_pose = torch.eye(4, device=dev).expand(b, cfg.topk, 4, 4)
        t = inputs["timestamp"]
        emb = torch.cat([rec_emb, mem["embedding"]], dim=1)
        ts = torch.cat([rec_ts, mem["timestamp"]], dim=1)
        pose = torch.cat([rec_pose, mem["egopose"]], dim=1)
        ref = torch.cat([rec_ref, mem["reference_point"]], dim=1)
        canbus = torch.cat([rec_can_bus.unsqueeze(-2), mem["canbus"]], dim=1)
        ref = transform_points(ref, inputs["ego_pose"])
        ts = ts - t.view(-1, 1, 1)
        sample_time = torch.zeros(b, dtype=torch.float64, device=dev) - t
        pose = inputs["ego_pose"].unsqueeze(1) @ pose
        return {
            "memory_embedding_bbox": emb,
            "memory_reference_point_bbox": ref,
            "memory_timestamp_bbox": ts,
            "memory_egopose_bbox": pose,
            "memory_canbus_bbox": canbus,
            "sample_time_bbox": sample_time,
            "topk_indexes_bbox": idx,
        }

    # -- forward ----------------------------------------------------------------------------
    def forward(self, feats: torch.Tensor, pos_embed: torch.Tensor, inputs: Dict[str, torch.Tensor],
                st: Dict[str, torch.Tensor], is_first_frame: bool) -> Dict[str, torch.Tensor]:
        """feats: image tokens [B, N*H*W, C_vit]; pos_embed: [B, N*H*W, dec_dim]."""
        cfg = self.cfg
        pc = self.pc_range
        b = feats.shape[0]
        ne, nq, p = cfg.num_extra, cfg.num_query, cfg.num_propagated
        mem = self.pre_update(st, inputs, is_first_frame)
        memory = self.input_projection(feats)

        # Queries [extra | detection]; detection reference points used raw (no sigmoid, A14).
        ref = self.reference_points.weight
        ref = torch.cat([torch.zeros_like(ref[:ne]), ref], dim=0).unsqueeze(0).repeat(b, 1, 1)
        query_pos = self.query_pos(nerf_positional_encoding(ref.repeat(1, 1, cfg.n_control)))
        tgt = torch.zeros_like(query_pos)

        # Temporal alignment: memory positions (tiled xyz x n_control), MLN, time embedding.
        temp_ref = (mem["reference_point"] - pc[:3]) / (pc[3:6] - pc[0:3])
        temp_pos = self.query_pos(nerf_positional_encoding(temp_ref.repeat(1, 1, cfg.n_control)))
        temp_pos = _memory_time_pos(self, temp_pos, mem["timestamp"], mem["egopose"])
        query_pos = query_pos + _zero_time_embedding(self, ref)
        temp_memory = mem["embedding"]
        tgt = torch.cat([tgt, temp_memory[:, :p]], dim=1)
        query_pos = torch.cat([query_pos, temp_pos[:, :p]], dim=1)
        ref = torch.cat([ref, temp_ref[:, :p]], dim=1)
        temp_memory = temp_memory[:, p:]
        temp_pos = temp_pos[:, p:]
        # VLM ("extra") queries: learned content, position zeroed after the time embedding.
        tgt = tgt.clone()
        tgt[:, :ne] = self.query_embedding.weight.unsqueeze(0)
        query_pos = query_pos.clone()
        query_pos[:, :ne] = query_pos[:, :ne] * 0

        nqt = cfg.box_queries
        blocked = torch.zeros(nqt, nqt + temp_memory.shape[1], dtype=torch.bool,
                              device=feats.device)
        if cfg.with_mask:
            blocked[ne:, :ne] = True  # detection + propagated queries cannot see the VLM queries

        dec = self.transformer(tgt, memory, query_pos, pos_embed, blocked, temp_memory, temp_pos)
        dec = torch.nan_to_num(dec)
        vlm = dec[-1, :, :ne]
        dec_q = dec[:, :, ne:]
        reference = inverse_sigmoid(ref[:, ne:])
        cls_l, reg_l = [], []
        for lvl in range(dec_q.shape[0]):
            cls_l.append(self.cls_branches[lvl](dec_q[lvl]))
            tmp = self.reg_branches[lvl](dec_q[lvl])
            xyz = (tmp[..., 0:3] + reference).sigmoid()
            reg_l.append(torch.cat([xyz, tmp[..., 3:]], dim=-1))
        all_cls = torch.stack(cls_l)
        all_bbox = torch.stack(reg_l)
        all_bbox = torch.cat([all_bbox[..., 0:3] * (pc[3:6] - pc[0:3]) + pc[0:3],
                              all_bbox[..., 3:]], dim=-1)

        # VLM tokens + ego (can-bus) token.
        rec_can_bus = torch.cat([inputs["command"].view(b, 1).float(), inputs["can_bus"]], dim=-1)
        pose_blocks = mem["egopose"].reshape(b, -1, cfg.topk, 4, 4).flatten(-2).mean(-2)
        can_bus_input = torch.cat([rec_can_bus, mem["canbus"].flatten(-2), pose_blocks.flatten(-2)],
                                  dim=-1)
        box_tokens = self.output_projection(vlm)
        ego_token = self.can_bus_embed(can_bus_input)
        new_state = self.post_update(mem, inputs, all_cls[-1], all_bbox[-1], dec_q[-1], rec_can_bus)
        return {
            "box_tgt": tgt, "box_query_pos": query_pos, "box_reference_points": ref,
            "box_temp_memory": temp_memory, "box_temp_pos": temp_pos, "box_attn_mask": blocked,
            "box_memory_keep": mem["keep"], "box_pre_memory_egopose": mem["egopose"],
            "box_pre_memory_reference_point": mem["reference_point"],
            "box_pre_memory_timestamp": mem["timestamp"],
            "box_can_bus_input": can_bus_input,
            "box_outs_dec": dec, "box_vlm_memory": vlm,
            "all_cls_scores": all_cls, "all_bbox_preds": all_bbox,
            "box_tokens": box_tokens, "ego_token": ego_token.unsqueeze(-2),
            "new_state": new_state,
        }


# ------------------------------------------------------------------------------------------------
# Lane head (petr_head_map.py)
# ------------------------------------------------------------------------------------------------
class PETRHeadM(nn.Module):
    def __init__(self, cfg: OmniDriveConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dec_dim
        self.code_weights = _frozen(cfg.lane_code_weights)
        self.match_costs = _frozen(cfg.lane_code_weights)
        self.pc_range = _frozen(cfg.pc_range)
        self.transformer = PETRTemporalTransformer(cfg)
        fc_cls = _cls_branch(d, cfg.lane_num_classes)
        reg = _reg_branch(d, cfg.n_control * 3)
        self.cls_branches = nn.ModuleList([fc_cls for _ in range(cfg.num_pred)])
        self.reg_branches = nn.ModuleList([reg for _ in range(cfg.num_pred)])
        self.input_projection = nn.Linear(cfg.embed_dim, d)
        self.output_projection = nn.Linear(d, cfg.out_dims)
        self.reference_points_lane = nn.Linear(d, 3)
        self.points_embedding_lane = nn.Embedding(cfg.n_control, d)
        self.instance_embedding_lane = nn.Embedding(cfg.num_lane, d)
        self.query_embedding = nn.Embedding(cfg.num_extra, d)

    def pre_update(self, st, inputs, is_first_frame: bool):
        cfg = self.cfg
        b = inputs["ego_pose"].shape[0]
        dev = inputs["ego_pose"].device
        ml = cfg.lane_memory_len
        if is_first_frame:
            return {"embedding": torch.zeros(b, ml, cfg.dec_dim, device=dev),
                    "reference_point": torch.zeros(b, ml, cfg.n_control, 3, device=dev),
                    "timestamp": torch.zeros(b, ml, 1, dtype=torch.float64, device=dev),
                    "egopose": torch.zeros(b, ml, 4, 4, device=dev),
                    "keep": torch.zeros(b, device=dev)}
        t = inputs["timestamp"]
        ts = st["memory_timestamp_map"] + t.view(-1, 1, 1)
        x = _temporal_keep(st["sample_time_map"], t, cfg.memory_keep_seconds)
        pose = inputs["ego_pose_inv"].unsqueeze(1) @ st["memory_egopose_map"]
        ref = transform_points(st["memory_reference_point_map"], inputs["ego_pose_inv"])
        return {"embedding": st["memory_embedding_map"][:, :ml] * x.view(-1, 1, 1),
                "reference_point": ref[:, :ml] * x.view(-1, 1, 1, 1),
                "timestamp": ts[:, :ml] * x.view(-1, 1, 1),
                "egopose": pose[:, :ml] * x.view(-1, 1, 1, 1),
                "keep": x}

    def post_update(self, mem, inputs, cls_last, preds_last, dec_last):
        cfg = self.cfg
        b = cls_last.shape[0]
        dev = cls_last.device
        rec_ref = preds_last.reshape(b, -1, cfg.n_control, 3)
        score = cls_last.sigmoid().topk(1, dim=-1).values[..., 0:1]
        _, idx = torch.topk(score, cfg.lane_topk, dim=1)
        idx = idx[..., 0]
        gather = lambda t: torch.gather(t, 1, idx.view(b, -1, *([1] * (t.dim() - 2))).expand(
            b, idx.shape[1], *t.shape[2:]))
        rec_ref = gather(rec_ref)
        rec_emb = gather(dec_last)
        rec_ts = torch.zeros(b, cfg.lane_topk, 1, dtype=torch.float64, device=dev)
        rec_pose = torch.eye(4, device=dev).expand(b, cfg.lane_topk, 4, 4)
        t = inputs["timestamp"]
        emb = torch.cat([rec_emb, mem["embedding"]], dim=1)
        ts = torch.cat([rec_ts, mem["timestamp"]], dim=1)
        pose = torch.cat([rec_pose, mem["egopose"]], dim=1)
        ref = torch.cat([rec_ref, mem["reference_point"]], dim=1)
        ref = transform_points(ref, inputs["ego_pose"])
        ts = ts - t.view(-1, 1, 1)
        sample_time = torch.zeros(b, dtype=torch.float64, device=dev) - t
        pose = inputs["ego_pose"].unsqueeze(1) @ pose
        return {
            "memory_embedding_map": emb,
            "memory_reference_point_map": ref,
            "memory_timestamp_map": ts,
            "memory_egopose_map": pose,
            "sample_time_map": sample_time,
            "topk_indexes_map": idx,
        }

    def lane_reference_points(self) -> torch.Tensor:
        """sigmoid(reference_points_lane(instance_q + point_p)) -> [num_lane, n_control*3]."""
        emb = self.instance_embedding_lane.weight.unsqueeze(-2) + \
            self.points_embedding_lane.weight.unsqueeze(0)
        return self.reference_points_lane(emb).sigmoid().flatten(-2)

    def forward(self, feats, pos_embed, inputs, st, is_first_frame: bool,
                drop_one2many: bool = False):
        """drop_one2many=True builds only the [VLM | one2one] queries (the C++ runtime's choice);
        by the mask structure the used outputs must not change (spec §3.5, A13)."""
        cfg = self.cfg
        pc = self.pc_range
        b = feats.shape[0]
        ne, n11 = cfg.num_extra, cfg.num_lane_one2one
        nl = n11 if drop_one2many else cfg.num_lane
        mem = self.pre_update(st, inputs, is_first_frame)
        memory = self.input_projection(feats)

        ref_lane = self.lane_reference_points()[:nl].unsqueeze(0).repeat(b, 1, 1)
        query_pos = self.query_pos(nerf_positional_encoding(ref_lane))
        tgt = self.instance_embedding_lane.weight[:nl].unsqueeze(0).repeat(b, 1, 1)
        query_embedding = self.query_embedding.weight.unsqueeze(0).repeat(b, 1, 1)

        nqt = ne + nl
        blocked = torch.zeros(nqt, nqt + cfg.lane_memory_len, dtype=torch.bool,
                              device=feats.device)
        blocked[n11 + ne:nqt, 0:n11 + ne] = True  # one2many cannot see VLM + one2one
        blocked[0:n11 + ne, n11 + ne:nqt] = True  # VLM + one2one cannot see one2many
        if cfg.with_mask:
            blocked[ne:, :ne] = True  # lanes cannot see the VLM queries

        temp_ref = (mem["reference_point"] - pc[:3]) / (pc[3:6] - pc[0:3])
        temp_pos = self.query_pos(nerf_positional_encoding(temp_ref.flatten(-2)))
        temp_pos = _memory_time_pos(self, temp_pos, mem["timestamp"], mem["egopose"])
        query_pos = query_pos + _zero_time_embedding(self, tgt)
        temp_memory = mem["embedding"]  # no propagated queries in the lane head

        tgt = torch.cat([query_embedding, tgt], dim=1)
        query_pos = torch.cat([torch.zeros_like(query_embedding), query_pos], dim=1)
        dec = self.transformer(tgt, memory, query_pos, pos_embed, blocked, temp_memory, temp_pos)
        vlm = dec[-1, :, :ne]  # taken before nan_to_num, as in the original
        dec_q = torch.nan_to_num(dec[:, :, ne:])

        reference = inverse_sigmoid(ref_lane).view(b, nl, cfg.n_control * 3)
        preds, clss = [], []
        for lvl in range(dec_q.shape[0]):
            tmp = self.reg_branches[lvl](dec_q[lvl]).reshape(b, nl, cfg.n_control * 3)
            clss.append(self.cls_branches[lvl](dec_q[lvl]))
            preds.append((tmp + reference).sigmoid().reshape(b, nl, cfg.n_control, 3))
        all_preds = torch.stack(preds)
        all_cls = torch.stack(clss)
        all_preds = (all_preds * (pc[3:6] - pc[0:3]) + pc[0:3]).flatten(-2)

        out = {
            "lane_tgt": tgt, "lane_query_pos": query_pos, "lane_reference_points": ref_lane,
            "lane_temp_pos": temp_pos, "lane_attn_mask": blocked, "lane_memory_keep": mem["keep"],
            "lane_outs_dec": dec, "lane_vlm_memory": vlm,
            "all_lane_cls_one2one": all_cls[:, :, :n11],
            "all_lane_preds_one2one": all_preds[:, :, :n11],
            "outs_dec_one2one": dec_q[:, :, :n11],
        }
        if not drop_one2many:
            out["all_lane_cls_one2many"] = all_cls[:, :, n11:]
            out["all_lane_preds_one2many"] = all_preds[:, :, n11:]
            out["outs_dec_one2many"] = dec_q[:, :, n11:]
        out["lane_tokens"] = self.output_projection(vlm)
        out["new_state"] = self.post_update(mem, inputs, all_cls[-1, :, :n11],
                                            all_preds[-1, :, :n11], dec_q[-1, :, :n11])
        return out
