"""The reference in half precision: how far a correct fp16 / bf16 implementation drifts.

The C++ half-precision vision engines are compared with the float32 reference. How large that
drift may be depends on the checkpoint (a random full-size model amplifies rounding far more than
a trained one), so the fixtures also record the PyTorch reference's own drift at the same
precisions on the same frame (make_fixtures: `half.<mode>.<name>`), and the parity tests hold our
drift to a multiple of it (tests/vision/test_vision_parity.cpp, docs/parity.md).

Modes, as the engines (`omnirt parity --vision`):
  backbone_f16 / backbone_bf16: the ViT's weights and activations in that dtype, the position
      encoder and the heads in float32 (the "mixed" engine: VisionEngineOptions.backbone_dtype);
  full_f16 / full_bf16: the ViT, the position encoder MLP and both heads in that dtype
      (VisionEngineOptions.heads_dtype too): weights in the half dtype and every layer's input
      cast to it. As in the engine, the frustum points that feed the position encoder are
      computed in float32 (host geometry) and cast; the rest of the heads' arithmetic runs in
      the half dtype (`.float()` casts inside the reference become casts to it; float64
      timestamps stay float64).
Outputs are returned as float32.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Dict

import torch

from .vision import OmniDriveVision, VisionState

MODES = {"backbone_f16": (torch.float16, False), "backbone_bf16": (torch.bfloat16, False),
         "full_f16": (torch.float16, True), "full_bf16": (torch.bfloat16, True)}
# What is stored per mode (what the C++ half tests compare).
HALF_OUTPUTS = ("vision_tokens", "all_cls_scores")


@contextlib.contextmanager
def _dtype_mode(dtype: torch.dtype):
    float_orig = torch.Tensor.float
    dtype_orig = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    torch.Tensor.float = lambda self, *a, **k: self.to(dtype)
    try:
        yield
    finally:
        torch.Tensor.float = float_orig
        torch.set_default_dtype(dtype_orig)


def _to(t: Any, dtype: torch.dtype) -> Any:
    """float32 tensors -> dtype; float64 (timestamps) and integer tensors unchanged."""
    return t.to(dtype) if torch.is_tensor(t) and t.dtype == torch.float32 else t


@torch.no_grad()
def forward_half(model: OmniDriveVision, inputs: Dict[str, Any], state: VisionState, mode: str
                 ) -> Dict[str, torch.Tensor]:
    """One frame of the reference in `mode` (MODES); returns HALF_OUTPUTS as float32."""
    if mode not in MODES:
        raise ValueError(f"forward_half: unknown mode '{mode}' (one of {sorted(MODES)})")
    dtype, full = MODES[mode]
    cfg = model.cfg
    is_first = bool(inputs.get("is_first_frame", False))
    p = model._prepare_inputs(inputs)
    n = cfg.num_cams
    backbone = copy.deepcopy(model.img_backbone).to(dtype)
    feats = backbone(p["img"].reshape(n, 3, cfg.img_h, cfg.img_w).to(dtype))
    del backbone
    tokens = feats.permute(0, 2, 3, 1).reshape(1, cfg.num_tokens, cfg.embed_dim)
    pe_in = model.position_embedding_input(p["img2lidars"])  # float32 geometry
    st = state.as_dict()
    if not full:
        tokens = tokens.float()
        pos_embed = model.position_encoder(pe_in)
        box = model.pts_bbox_head(tokens, pos_embed, p, st, is_first)
        lane = model.map_head(tokens, pos_embed, p, st, is_first)
    else:
        mh = copy.deepcopy(model).to(dtype)
        del mh.img_backbone
        # The reference's few explicitly float32 constants (e.g. pos2posemb1d's dim_t) promote
        # half activations back to float32; a half implementation feeds every layer in half.
        def cast_inputs(module, args):
            return tuple(_to(a, dtype) for a in args)

        for m in mh.modules():
            if any(True for _ in m.parameters(recurse=False)):
                m.register_forward_pre_hook(cast_inputs)
        ph = {k: _to(v, dtype) for k, v in p.items()}
        sh = {k: _to(v, dtype) for k, v in st.items()}
        with _dtype_mode(dtype):
            pos_embed = mh.position_encoder(pe_in.to(dtype))
            box = mh.pts_bbox_head(tokens, pos_embed, ph, sh, is_first)
            lane = mh.map_head(tokens, pos_embed, ph, sh, is_first)
    out = {"all_cls_scores": box["all_cls_scores"],
           "vision_tokens": torch.cat([box["box_tokens"], box["ego_token"], lane["lane_tokens"]],
                                      1)}
    for k, v in out.items():
        if v.dtype != (dtype if full else torch.float32):
            raise RuntimeError(f"forward_half({mode}): {k} came out {v.dtype}")
    return {k: out[k].float() for k in HALF_OUTPUTS}
