"""Seeded random weights for OmniDriveVision (test checkpoints; no trained weights exist here).

Exactly what is done is listed in python/README.md ("Random test checkpoints"). In short: every
Linear/Conv weight ~ N(0, 1/fan_in) (residual output projections halved), biases ~ N(0, 0.02^2),
embeddings as the original initialises them; with discriminative=True additionally (Appendix C):
LayerNorm/MLN/bias tensors get noise instead of their constants, EVA q/k x3 and decoder q/k x2,
pos_embed std 0.1, and the class layers get a spread-out weight and a noisy focal-loss bias.
Fixed (non-learned) tensors are recomputed from the config, never randomised.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .vision import OmniDriveVision, lid_depth_bins

_PRIOR_BIAS = -math.log((1 - 0.01) / 0.01)  # mmcv bias_init_with_prob(0.01) = -4.595


def init_random(model: OmniDriveVision, seed: int, discriminative: bool = True) -> OmniDriveVision:
    cfg = model.cfg
    g = torch.Generator(device="cpu").manual_seed(int(seed))

    def normal_(t: torch.Tensor, std: float, mean: float = 0.0) -> None:
        t.copy_(torch.randn(t.shape, generator=g, dtype=torch.float32).mul_(std).add_(mean)
                .to(t.device))

    def uniform_(t: torch.Tensor, lo: float, hi: float) -> None:
        t.copy_((torch.rand(t.shape, generator=g, dtype=torch.float32) * (hi - lo) + lo)
                .to(t.device))

    bias_std = 0.02
    seen = set()
    with torch.no_grad():
        # Walk modules in a fixed order; shared modules (cls/reg branches, query_pos, ...) are
        # initialised once (the first time they are met).
        for name, mod in model.named_modules(remove_duplicate=True):
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                fan_in = mod.weight[0].numel()
                std = 1.0 / math.sqrt(fan_in)
                if name.endswith("attn.proj") or name.endswith("mlp.w3") or \
                        name.endswith("out_proj") or name.endswith("_layers.3"):
                    std *= 0.5  # residual-branch outputs
                normal_(mod.weight, std)
                if mod.bias is not None:
                    if discriminative:
                        normal_(mod.bias, bias_std)
                    else:
                        mod.bias.zero_()
            elif isinstance(mod, nn.LayerNorm) and mod.weight is not None:
                if discriminative:
                    normal_(mod.weight, 0.1, mean=1.0)
                    normal_(mod.bias, 0.05)
                else:
                    mod.weight.fill_(1.0)
                    mod.bias.zero_()
            elif isinstance(mod, nn.Embedding):
                normal_(mod.weight, 1.0)

        # MultiheadAttention packed projections (not nn.Linear).
        for name, mod in model.named_modules():
            if hasattr(mod, "in_proj_weight") and id(mod.in_proj_weight) not in seen:
                seen.add(id(mod.in_proj_weight))
                e = mod.embed_dim
                normal_(mod.in_proj_weight, 1.0 / math.sqrt(e))
                if discriminative:
                    mod.in_proj_weight[: 2 * e].mul_(2.0)  # q and k x2
                    normal_(mod.in_proj_bias, bias_std)
                else:
                    mod.in_proj_bias.zero_()

        vit = model.img_backbone
        normal_(vit.pos_embed, 0.1 if discriminative else 0.02)
        for blk in vit.blocks:
            a = blk.attn
            if discriminative:
                a.q_proj.weight.mul_(3.0)
                a.k_proj.weight.mul_(3.0)
                normal_(a.q_bias, 0.1)
                normal_(a.v_bias, 0.1)
            else:
                a.q_bias.zero_()
                a.v_bias.zero_()

        # MLN: the original starts at gamma = 1, beta = 0 (weights zero); make it depend on c.
        mln = model.ego_pose_pe
        if discriminative:
            f = mln.f_dim
            normal_(mln.gamma.weight, 0.5 / math.sqrt(f))
            normal_(mln.gamma.bias, 0.1, mean=1.0)
            normal_(mln.beta.weight, 0.5 / math.sqrt(f))
            normal_(mln.beta.bias, 0.1)
        else:
            mln.gamma.weight.zero_()
            mln.beta.weight.zero_()
            mln.gamma.bias.fill_(1.0)
            mln.beta.bias.zero_()

        # Reference points as the original (uniform [0,1]); box reference points are used raw.
        box = model.pts_bbox_head
        uniform_(box.reference_points.weight, 0.0, 1.0)
        uniform_(box.pseudo_reference_points.weight, 0.0, 1.0)

        # Class layers: focal-loss prior bias; discriminative: wide weight + noisy bias so scores
        # are well separated (top-k margins far above float noise).
        for head in (model.pts_bbox_head, model.map_head):
            last = head.cls_branches[0][-1]
            fan_in = last.weight.shape[1]
            if discriminative:
                normal_(last.weight, 3.0 / math.sqrt(fan_in))
                normal_(last.bias, 0.5, mean=_PRIOR_BIAS)
            else:
                last.bias.fill_(_PRIOR_BIAS)

        # Non-learned tensors: recompute from the config (never random).
        model.position_range.copy_(torch.tensor(list(cfg.position_range)))
        model.coords_d.copy_(lid_depth_bins(cfg))
        box.pc_range.copy_(torch.tensor(list(cfg.pc_range)))
        model.map_head.pc_range.copy_(torch.tensor(list(cfg.pc_range)))
    return model
