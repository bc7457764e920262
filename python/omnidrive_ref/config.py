"""Sizes of OmniDrive's vision part (EVA-02 ViT + StreamPETR box head + PETRHeadM lane head).

`OmniDriveConfig.full()` is `projects/configs/OmniDrive/eva_base_tinyllama.py` exactly (plus the
class defaults that config does not override, see spec §2 and §3). `OmniDriveConfig.tiny()` keeps the
same architecture (same block pattern, window padding, global RoPE scaling, masks, memory layout)
at toy sizes for fast CPU tests and fixtures.

A few sizes are hard-coded in the original because they follow from others; here they are
derived properties so that the tiny config stays consistent:
  query_pos_in   = 12 * 3 * n_control   (396; NeRF PE of 33 tiled/flattened coordinates)
  ego_motion_dim = 12 * 13              (156; NeRF PE of [dt, 3x4 pose])
  can_bus_in     = 14 + 14 * can_bus_len + 16 * (memory_len // topk)   (74)
  time_pos_feats = dec_dim              (pos2posemb1d's fixed 256 == embed_dims in the original)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple


@dataclass
class OmniDriveConfig:
    # ---- cameras / images -------------------------------------------------------------
    num_cams: int = 6
    img_h: int = 640
    img_w: int = 640
    # ---- EVA-02 ViT backbone (`img_backbone`) -----------------------------------------
    patch: int = 16
    embed_dim: int = 768
    depth: int = 12
    heads: int = 12
    window_size: int = 16
    window_block_indexes: Tuple[int, ...] = (0, 1, 3, 4, 6, 7, 9, 10)
    mlp_hidden: int = 2048  # int(768 * 4 * 2 / 3)
    pretrain_grid: int = 14  # pretrain_img_size 224 / patch 16; pos_embed = 1 + 14*14 rows
    pt_hw_seq_len: int = 16  # RoPE pre-training grid; global positions are scaled by this/grid
    rope_theta: float = 10000.0
    vit_ln_eps: float = 1e-6
    # ---- decoders (both heads) ----------------------------------------------------------
    dec_layers: int = 6
    dec_dim: int = 256
    dec_heads: int = 8
    dec_ffn: int = 2048
    dec_ln_eps: float = 1e-5
    # ---- box head (`pts_bbox_head`, StreamPETRHead) -------------------------------------
    num_classes: int = 10
    code_size: int = 10
    num_query: int = 600
    num_propagated: int = 300
    memory_len: int = 600
    topk: int = 300
    num_extra: int = 256
    can_bus_len: int = 2
    max_boxes: int = 300  # NMSFreeCoder max_num
    box_code_weights: Tuple[float, ...] = (2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    # ---- lane head (`map_head`, PETRHeadM) ----------------------------------------------
    num_lane: int = 1800
    num_lane_one2one: int = 300
    lane_memory_len: int = 600
    lane_topk: int = 300
    n_control: int = 11
    lane_num_classes: int = 1
    lane_code_weights: Tuple[float, ...] = (1.0, 1.0)
    # ---- shared -------------------------------------------------------------------------
    out_dims: int = 2048  # LLM hidden size
    depth_num: int = 64
    depth_start: float = 1.0
    position_range: Tuple[float, ...] = (-61.2, -61.2, -10.0, 61.2, 61.2, 10.0)
    pc_range: Tuple[float, ...] = (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0)
    post_center_range: Tuple[float, ...] = (-61.2, -61.2, -10.0, 61.2, 61.2, 10.0)
    memory_keep_seconds: float = 2.0
    with_mask: bool = True

    # ---- derived sizes ------------------------------------------------------------------
    @property
    def grid_h(self) -> int:
        return self.img_h // self.patch

    @property
    def grid_w(self) -> int:
        return self.img_w // self.patch

    @property
    def num_tokens(self) -> int:
        """Image tokens seen by the decoders: cameras x grid."""
        return self.num_cams * self.grid_h * self.grid_w

    @property
    def global_block_indexes(self) -> Tuple[int, ...]:
        return tuple(i for i in range(self.depth) if i not in self.window_block_indexes)

    @property
    def vit_head_dim(self) -> int:
        return self.embed_dim // self.heads

    @property
    def query_pos_in(self) -> int:
        return 12 * 3 * self.n_control

    @property
    def ego_motion_dim(self) -> int:
        return 12 * 13

    @property
    def can_bus_in(self) -> int:
        return 14 + 14 * self.can_bus_len + 16 * (self.memory_len // self.topk)

    @property
    def num_pred(self) -> int:
        """Entries of cls_branches/reg_branches (one shared module; 6 in the original)."""
        return self.dec_layers

    @property
    def box_queries(self) -> int:
        """Box-head decoder queries: [extra | detection | propagated]."""
        return self.num_extra + self.num_query + self.num_propagated

    @property
    def box_keys(self) -> int:
        return self.box_queries + (self.memory_len - self.num_propagated)

    @property
    def lane_queries(self) -> int:
        return self.num_extra + self.num_lane

    @property
    def lane_keys(self) -> int:
        return self.lane_queries + self.lane_memory_len

    @property
    def num_vision_tokens(self) -> int:
        return 2 * self.num_extra + 1

    # ---- constructors -------------------------------------------------------------------
    @classmethod
    def full(cls) -> "OmniDriveConfig":
        """eva_base_tinyllama, exactly."""
        return cls()

    @classmethod
    def tiny(cls) -> "OmniDriveConfig":
        """Same architecture, toy sizes.

        80x80 images with patch 16 give a 5x5 grid; window 4 pads it to 8x8 (2x2 windows, 3 padded
        rows/cols), so both the zero padding and the global blocks are exercised. pt_hw_seq_len = 4
        equals the window (as 16 == window in the full model), so window RoPE positions are
        0..3 and global ones are scaled by 4/5. pretrain_grid 3 < grid 5 so pos_embed is upsampled
        like 14 -> 40.
        """
        return cls(
            num_cams=2,
            img_h=80,
            img_w=80,
            patch=16,
            embed_dim=64,
            depth=4,
            heads=2,
            window_size=4,
            window_block_indexes=(0, 2),
            mlp_hidden=int(64 * 4 * 2 / 3),  # 170, same formula as the original
            pretrain_grid=3,
            pt_hw_seq_len=4,
            dec_layers=2,
            dec_dim=32,
            dec_heads=4,
            dec_ffn=64,
            num_query=24,
            num_propagated=12,
            memory_len=24,
            topk=12,
            num_extra=8,
            max_boxes=12,
            num_lane=48,
            num_lane_one2one=12,
            lane_memory_len=24,
            lane_topk=12,
            n_control=11,
            out_dims=64,
            depth_num=8,
        )

    # ---- validation / (de)serialisation -------------------------------------------------
    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(f"OmniDriveConfig: {msg}")

        need(self.img_h % self.patch == 0 and self.img_w % self.patch == 0,
             f"image {self.img_h}x{self.img_w} not a multiple of patch {self.patch}")
        need(self.embed_dim % self.heads == 0, "embed_dim % heads != 0")
        need(self.vit_head_dim % 4 == 0, "ViT head_dim must be a multiple of 4 (2-D RoPE pairs)")
        need(all(0 <= i < self.depth for i in self.window_block_indexes),
             "window_block_indexes out of range")
        need(self.dec_dim % self.dec_heads == 0, "dec_dim % dec_heads != 0")
        need(self.dec_dim % 2 == 0, "dec_dim must be even (pos2posemb1d)")
        need(self.memory_len % self.topk == 0, "memory_len must be a multiple of topk")
        need(self.num_propagated <= self.memory_len, "num_propagated > memory_len")
        need(self.topk <= self.num_query + self.num_propagated, "topk > box candidates")
        need(self.lane_topk <= self.num_lane_one2one, "lane_topk > one2one lanes")
        need(self.num_lane_one2one <= self.num_lane, "num_lane_one2one > num_lane")
        need(self.max_boxes <= (self.num_query + self.num_propagated) * self.num_classes,
             "max_boxes > candidates")
        need(len(self.position_range) == 6 and len(self.pc_range) == 6, "ranges need 6 values")

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "OmniDriveConfig":
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"OmniDriveConfig: unknown vision config fields {unknown}")
        kwargs = {}
        for k, v in d.items():
            kwargs[k] = tuple(v) if isinstance(v, list) else v
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def to_json(self) -> str:
        """The "vision" section of config.json (a JSON object)."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "OmniDriveConfig":
        """Accepts either the vision object itself or a whole config.json with a "vision" key."""
        d = json.loads(text)
        if "vision" in d and isinstance(d["vision"], dict):
            d = d["vision"]
        return cls.from_dict(d)
