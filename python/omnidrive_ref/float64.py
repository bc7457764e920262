"""The vision heads evaluated in float64: the yardstick of the full-size parity tests.

A random checkpoint can be ill-conditioned: float32 rounding inside the heads then moves their
outputs far more than one ulp, and any two correct float32 implementations differ by about as
much as the float32 reference differs from exact arithmetic. `heads_float64` gives that exact
arithmetic (to float64 precision) on the same inputs as the float32 reference's heads, so a test
can compare our error with the reference's own (tests/vision/test_vision_parity.cpp,
docs/parity.md).

The reference casts to float32 in places on purpose (`.float()`, float32 zeros); float64 mode
turns those into float64 too, by making float64 the default dtype and `Tensor.float` a cast to
float64 for the duration of the call.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Dict

import torch

from .vision import OmniDriveVision, VisionState

# The heads' outputs stored as float64 references (make_fixtures: `ref64.<name>`).
HEAD_OUTPUTS = ("pos_embed", "all_cls_scores", "all_bbox_preds", "all_lane_cls_one2one",
                "all_lane_preds_one2one", "box_outs_dec", "lane_outs_dec", "vision_tokens")


@contextlib.contextmanager
def _float64_mode():
    float_orig = torch.Tensor.float
    dtype_orig = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.Tensor.float = lambda self, *a, **k: self.to(torch.float64)
    try:
        yield
    finally:
        torch.Tensor.float = float_orig
        torch.set_default_dtype(dtype_orig)


def _f64(t: Any) -> Any:
    return t.double() if torch.is_tensor(t) and t.is_floating_point() else t


def _heads(model: OmniDriveVision, tokens: torch.Tensor, p: Dict[str, Any],
           st: Dict[str, Any], is_first: bool) -> Dict[str, torch.Tensor]:
    pos_embed = model.position_encoder(model.position_embedding_input(p["img2lidars"]))
    box = model.pts_bbox_head(tokens, pos_embed, p, st, is_first)
    lane = model.map_head(tokens, pos_embed, p, st, is_first)
    out = {**box, **lane, "pos_embed": pos_embed}
    out["vision_tokens"] = torch.cat([box["box_tokens"], box["ego_token"], lane["lane_tokens"]], 1)
    return {k: out[k] for k in HEAD_OUTPUTS}


def _tokens(model: OmniDriveVision, backbone_feats: torch.Tensor) -> torch.Tensor:
    cfg = model.cfg
    return backbone_feats.permute(0, 1, 3, 4, 2).reshape(1, cfg.num_tokens, cfg.embed_dim)


@torch.no_grad()
def heads_float64(model: OmniDriveVision, backbone_feats: torch.Tensor, inputs: Dict[str, Any],
                  state: VisionState) -> Dict[str, torch.Tensor]:
    """position encoder + box head + lane head in float64 on the float32 reference's inputs.

    backbone_feats: the float32 reference's [1, N, C, h, w] (the heads' input); inputs and state as
    for forward_frame (the state *before* the frame). Returns HEAD_OUTPUTS, float64.
    """
    is_first = bool(inputs.get("is_first_frame", False))
    p = {k: _f64(v) for k, v in model._prepare_inputs(inputs).items()}
    st = {k: _f64(v) for k, v in state.as_dict().items()}
    m64 = copy.deepcopy(model).double()
    with _float64_mode():
        res = _heads(m64, _tokens(m64, backbone_feats.double()), p, st, is_first)
    for k, v in res.items():
        if v.dtype != torch.float64:
            raise RuntimeError(f"heads_float64: {k} came out {v.dtype}, not float64")
    return res


@torch.no_grad()
def heads_input_gain(model: OmniDriveVision, backbone_feats: torch.Tensor,
                     inputs: Dict[str, Any], state: VisionState, reference: Dict[str, Any],
                     rel: float = 1e-4, seed: int = 0) -> Dict[str, float]:
    """How much the float32 heads amplify a relative perturbation of their input features.

    Adds seeded Gaussian noise of relative size `rel` to backbone_feats, reruns the float32 heads
    and returns rel_change(output) / rel per HEAD_OUTPUTS name (`reference`: the unperturbed
    outputs). An implementation whose backbone is off by e relative can expect its head outputs
    off by about gain * e end to end.
    """
    is_first = bool(inputs.get("is_first_frame", False))
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn(backbone_feats.shape, generator=g, dtype=torch.float32)
    noise = noise.to(backbone_feats.device)
    feats = backbone_feats + noise * (rel * backbone_feats.norm() / noise.norm())
    out = _heads(model, _tokens(model, feats), model._prepare_inputs(inputs), state.as_dict(),
                 is_first)
    gains = {}
    for k, v in out.items():
        ref = reference[k].double()
        gains[k] = float((v.double() - ref).norm() / ref.norm().clamp_min(1e-30)) / rel
    return gains


# What the end-to-end float64 run stores (make_fixtures: `e2e64.<name>`): the stage outputs the
# C++ end-to-end parity test compares, plus the memory rows' reference points (the test matches
# memory rows by them) and the decoded lane points.
E2E_OUTPUTS = ("backbone_feats", "all_cls_scores", "all_bbox_preds", "all_lane_cls_one2one",
               "all_lane_preds_one2one", "vision_tokens", "lanes.points")
E2E_STATE = ("memory_embedding_bbox", "memory_reference_point_bbox", "memory_embedding_map",
             "memory_reference_point_map")


def model_float64(model: OmniDriveVision) -> OmniDriveVision:
    """A float64 copy of the model whose forward_frame takes the same inputs as the float32 one."""
    m64 = copy.deepcopy(model).double()
    prepare32 = OmniDriveVision._prepare_inputs

    def prepare64(inputs: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        return {k: _f64(v) for k, v in prepare32(m64, inputs).items()}

    m64._prepare_inputs = prepare64  # instance attribute: forward_frame picks it up
    return m64


def state_float64(state: VisionState) -> VisionState:
    return VisionState.from_dict({k: _f64(v) for k, v in state.as_dict().items()})


@torch.no_grad()
def forward_frame_float64(m64: OmniDriveVision, inputs: Dict[str, Any], state64: VisionState
                          ) -> Dict[str, Any]:
    """The whole reference frame (backbone + heads + memory update) in float64.

    m64 from model_float64; inputs as for forward_frame (float32 inputs, widened); state64 the
    float64 state the previous float64 frame left (state_float64(initial_state) on frame 0).
    Returns forward_frame's dict; out["state"] is the float64 state to carry to the next frame.
    Raises if an output E2E_OUTPUTS / E2E_STATE is not float64 (a float32 cast left inside).
    """
    with _float64_mode():
        out = m64.forward_frame(inputs, state64)
    for k in E2E_OUTPUTS:
        v = out[k] if "." not in k else out[k.split(".")[0]][k.split(".")[1]]
        if v.dtype != torch.float64:
            raise RuntimeError(f"forward_frame_float64: {k} came out {v.dtype}, not float64")
    for k in E2E_STATE:
        if getattr(out["state"], k).dtype != torch.float64:
            raise RuntimeError(f"forward_frame_float64: state {k} is not float64")
    return out
