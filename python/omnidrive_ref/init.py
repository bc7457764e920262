"""Seeded random weights for OmniDriveVision (test checkpoints; no trained weights exist here).

Exactly what is done is listed in python/README.md ("Random test checkpoints"). In short:

* The heads and the detector-level modules (query_pos, time_embedding, ego_pose_pe,
  position_encoder) are initialised as the original initialises them: PyTorch's defaults for
  Linear layers and embeddings (Petr3D and both heads' own layers), xavier_uniform for every
  decoder weight matrix (PETRTemporalTransformer.init_weights, nn.MultiheadAttention's packed
  in_proj_weight), xavier_uniform for the lane head's reg_branches and reference_points_lane
  (PETRHeadM.init_weights), U(0, 1) reference points, the focal-loss prior bias on both class
  layers. With discriminative=True (spec Appendix C) on top of that: LayerNorm/MLN/constant
  biases get noise, decoder q/k rows x2, and the class layers a spread-out weight + noisy bias.
* The EVA backbone keeps its own scheme (every Linear/Conv weight ~ N(0, 1/fan_in), residual
  output projections halved, biases ~ N(0, 0.02^2)); with discriminative=True q/k x3, q_bias and
  v_bias ~ N(0, 0.1^2), pos_embed std 0.1.
Fixed (non-learned) tensors are recomputed from the config, never randomised.

The backbone and the heads draw from two generators (seeded `seed` and `seed + _HEADS_STREAM`),
so either part can change its scheme without changing the other's weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .vision import OmniDriveVision, lid_depth_bins

_PRIOR_BIAS = -math.log((1 - 0.01) / 0.01)  # mmcv bias_init_with_prob(0.01) = -4.595
_HEADS_STREAM = 1_000_003
_BIAS_NOISE = 0.02  # discriminative noise on biases the original sets to a constant (0)


class _Draw:
    def __init__(self, seed: int):
        self.g = torch.Generator(device="cpu").manual_seed(int(seed))

    def normal_(self, t: torch.Tensor, std: float, mean: float = 0.0) -> None:
        t.copy_(torch.randn(t.shape, generator=self.g, dtype=torch.float32).mul_(std).add_(mean)
                .to(t.device))

    def uniform_(self, t: torch.Tensor, lo: float, hi: float) -> None:
        t.copy_((torch.rand(t.shape, generator=self.g, dtype=torch.float32) * (hi - lo) + lo)
                .to(t.device))

    # torch.nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) == U(+-1/sqrt(fan_in)) for the
    # weight, U(+-1/sqrt(fan_in)) for the bias.
    def torch_default_weight_(self, w: torch.Tensor) -> None:
        b = 1.0 / math.sqrt(w[0].numel())
        self.uniform_(w, -b, b)

    def torch_default_bias_(self, bias: torch.Tensor, fan_in: int) -> None:
        b = 1.0 / math.sqrt(fan_in)
        self.uniform_(bias, -b, b)

    # nn.init.xavier_uniform_ (gain 1) of a 2-D [fan_out, fan_in] matrix.
    def xavier_uniform_(self, w: torch.Tensor) -> None:
        fan_out, fan_in = w.shape[0], w[0].numel()
        b = math.sqrt(6.0 / (fan_in + fan_out))
        self.uniform_(w, -b, b)

    def constant_or_noise_(self, t: torch.Tensor, value: float, std: float,
                           discriminative: bool) -> None:
        if discriminative:
            self.normal_(t, std, mean=value)
        else:
            t.fill_(value)


def _init_backbone(vit: nn.Module, d: _Draw, discriminative: bool) -> None:
    for name, mod in vit.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            std = 1.0 / math.sqrt(mod.weight[0].numel())
            if name.endswith("attn.proj") or name.endswith("mlp.w3"):
                std *= 0.5  # residual-branch outputs
            d.normal_(mod.weight, std)
            if mod.bias is not None:
                if discriminative:
                    d.normal_(mod.bias, _BIAS_NOISE)
                else:
                    mod.bias.zero_()
        elif isinstance(mod, nn.LayerNorm) and mod.weight is not None:
            if discriminative:
                d.normal_(mod.weight, 0.1, mean=1.0)
                d.normal_(mod.bias, 0.05)
            else:
                mod.weight.fill_(1.0)
                mod.bias.zero_()
    d.normal_(vit.pos_embed, 0.1 if discriminative else 0.02)
    for blk in vit.blocks:
        a = blk.attn
        if discriminative:
            a.q_proj.weight.mul_(3.0)
            a.k_proj.weight.mul_(3.0)
            d.normal_(a.q_bias, 0.1)
            d.normal_(a.v_bias, 0.1)
        else:
            a.q_bias.zero_()
            a.v_bias.zero_()


def _init_heads(model: OmniDriveVision, d: _Draw, discriminative: bool) -> None:
    """Everything but the backbone, as the original's init_weights leave it (see module doc)."""
    seen = set()
    for name, mod in model.named_modules():
        if name == "img_backbone" or name.startswith("img_backbone.") or id(mod) in seen:
            continue
        seen.add(id(mod))  # shared modules (query_pos, cls/reg branches, ...) are drawn once
        in_decoder = ".transformer." in f".{name}."
        if hasattr(mod, "in_proj_weight"):
            # nn.MultiheadAttention / FlashMHA _reset_parameters: xavier on the packed [3E, E]
            # matrix, zero in_proj_bias (out_proj is met below as a Linear).
            e = mod.embed_dim
            d.xavier_uniform_(mod.in_proj_weight)
            if discriminative:
                mod.in_proj_weight[: 2 * e].mul_(2.0)  # q and k x2 (Appendix C)
            d.constant_or_noise_(mod.in_proj_bias, 0.0, _BIAS_NOISE, discriminative)
        elif isinstance(mod, nn.Linear):
            fan_in = mod.weight.shape[1]
            xavier = in_decoder or name.startswith("map_head.reg_branches.") or \
                name == "map_head.reference_points_lane"
            if xavier:
                d.xavier_uniform_(mod.weight)
            else:
                d.torch_default_weight_(mod.weight)
            if name.endswith("out_proj") or name == "map_head.reference_points_lane":
                # MHA resets out_proj.bias to 0; xavier_init(..., bias=0.) for the lane points.
                d.constant_or_noise_(mod.bias, 0.0, _BIAS_NOISE, discriminative)
            else:
                d.torch_default_bias_(mod.bias, fan_in)
        elif isinstance(mod, nn.LayerNorm) and mod.weight is not None:
            if discriminative:
                d.normal_(mod.weight, 0.1, mean=1.0)
                d.normal_(mod.bias, 0.05)
            else:
                mod.weight.fill_(1.0)
                mod.bias.zero_()
        elif isinstance(mod, nn.Embedding):
            d.normal_(mod.weight, 1.0)  # nn.Embedding's default N(0, 1)

    # MLN (reset_parameters): gamma = identity scale, beta = 0, i.e. weights zero; discriminative:
    # make it depend on the ego motion.
    mln = model.ego_pose_pe
    if discriminative:
        f = mln.f_dim
        d.normal_(mln.gamma.weight, 0.5 / math.sqrt(f))
        d.normal_(mln.gamma.bias, 0.1, mean=1.0)
        d.normal_(mln.beta.weight, 0.5 / math.sqrt(f))
        d.normal_(mln.beta.bias, 0.1)
    else:
        mln.gamma.weight.zero_()
        mln.beta.weight.zero_()
        mln.gamma.bias.fill_(1.0)
        mln.beta.bias.zero_()

    # Reference points U(0, 1) (StreamPETRHead.init_weights); box reference points are used raw.
    box = model.pts_bbox_head
    d.uniform_(box.reference_points.weight, 0.0, 1.0)
    d.uniform_(box.pseudo_reference_points.weight, 0.0, 1.0)

    # Class layers: focal-loss prior bias; discriminative: wide weight + noisy bias so scores are
    # well separated (top-k margins far above float noise).
    for head in (model.pts_bbox_head, model.map_head):
        last = head.cls_branches[0][-1]
        fan_in = last.weight.shape[1]
        if discriminative:
            d.normal_(last.weight, 3.0 / math.sqrt(fan_in))
            d.normal_(last.bias, 0.5, mean=_PRIOR_BIAS)
        else:
            last.bias.fill_(_PRIOR_BIAS)


def init_random(model: OmniDriveVision, seed: int, discriminative: bool = True) -> OmniDriveVision:
    cfg = model.cfg
    with torch.no_grad():
        _init_backbone(model.img_backbone, _Draw(seed), discriminative)
        _init_heads(model, _Draw(int(seed) + _HEADS_STREAM), discriminative)
        # Non-learned tensors: recompute from the config (never random).
        model.position_range.copy_(torch.tensor(list(cfg.position_range)))
        model.coords_d.copy_(lid_depth_bins(cfg))
        model.pts_bbox_head.pc_range.copy_(torch.tensor(list(cfg.pc_range)))
        model.map_head.pc_range.copy_(torch.tensor(list(cfg.pc_range)))
    return model
