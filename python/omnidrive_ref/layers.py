"""Small building blocks shared by the backbone and the heads (float32 math, no fused kernels)."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

# Upper bound on the number of attention-score elements materialised at once. Attention rows are
# independent, so computing them in chunks of queries gives the same per-row arithmetic while keeping
# the full model on CPU within a few hundred MB.
_MAX_SCORE_ELEMS = 48 * 1024 * 1024


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """mmdet 2.x `inverse_sigmoid`: clamp to [0,1], then log(max(x,eps) / max(1-x,eps))."""
    x = x.clamp(min=0, max=1)
    x1 = x.clamp(min=eps)
    x2 = (1 - x).clamp(min=eps)
    return torch.log(x1 / x2)


def nerf_positional_encoding(t: torch.Tensor, num_freqs: int = 6) -> torch.Tensor:
    """[sin(2^0 t), cos(2^0 t), sin(2^1 t), cos(2^1 t), ...], each block over all input dims.

    Frequencies are built in the input dtype as 2 ** linspace(0, n-1, n), like the original.
    """
    bands = 2.0 ** torch.linspace(0.0, num_freqs - 1, num_freqs, dtype=t.dtype, device=t.device)
    parts = []
    for f in bands:
        parts.append(torch.sin(t * f))
        parts.append(torch.cos(t * f))
    return torch.cat(parts, dim=-1)


def pos2posemb1d(pos: torch.Tensor, num_pos_feats: int = 256, temperature: float = 10000.0
                 ) -> torch.Tensor:
    """Sinusoidal embedding of pos[..., 0]: out[2m] = sin(2*pi*p / T^(2m/F)), out[2m+1] = cos(...).

    dim_t is float32 as in the original; a float64 `pos` therefore gives a float64 result (the
    memory timestamps are float64, Appendix C "Time embedding").
    """
    p = pos * (2 * math.pi)
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=pos.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)
    px = p[..., 0, None] / dim_t
    return torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=-1).flatten(-2)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              blocked: Optional[torch.Tensor] = None) -> torch.Tensor:
    """softmax(q k^T [+ -inf where blocked]) v for q [..., Lq, d], k/v [..., Lk, d].

    `q` must already be scaled. `blocked` is a bool [Lq, Lk] (True = not allowed), turned into an
    additive -inf mask like nn.MultiheadAttention does. Computed in chunks of query rows.
    """
    lq, lk = q.shape[-2], k.shape[-2]
    lead = 1
    for s in q.shape[:-2]:
        lead *= s
    chunk = max(1, min(lq, _MAX_SCORE_ELEMS // max(1, lead * lk)))
    kt = k.transpose(-2, -1)
    outs = []
    for s in range(0, lq, chunk):
        e = min(lq, s + chunk)
        scores = q[..., s:e, :] @ kt
        if blocked is not None:
            add = torch.zeros(blocked[s:e].shape, dtype=scores.dtype, device=scores.device)
            add.masked_fill_(blocked[s:e], float("-inf"))
            scores = scores + add
        outs.append(scores.softmax(dim=-1) @ v)
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-2)


class MultiheadAttention(nn.Module):
    """Parameter layout of nn.MultiheadAttention / OmniDrive's FlashMHA (in_proj_weight [3E,E],
    in_proj_bias [3E], out_proj), batch-first, explicit float32 math (the export path's maths)."""

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                blocked: Optional[torch.Tensor] = None) -> torch.Tensor:
        e, h, d = self.embed_dim, self.num_heads, self.head_dim
        w, b = self.in_proj_weight, self.in_proj_bias
        q = F.linear(query, w[:e], b[:e])
        k = F.linear(key, w[e:2 * e], b[e:2 * e])
        v = F.linear(value, w[2 * e:], b[2 * e:])
        bsz, lq, lk = query.shape[0], query.shape[1], key.shape[1]
        q = q.view(bsz, lq, h, d).transpose(1, 2) * math.sqrt(1.0 / float(d))  # as torch's MHA
        k = k.view(bsz, lk, h, d).transpose(1, 2)
        v = v.view(bsz, lk, h, d).transpose(1, 2)
        out = attention(q, k, v, blocked)  # [B, h, Lq, d]
        out = out.transpose(1, 2).reshape(bsz, lq, e)
        return self.out_proj(out)


class MLN(nn.Module):
    """Motion-aware layer norm: gamma(c) * LN(x) + beta(c), LN without affine (eps 1e-5).

    The checkpoint has no `ln.*` keys (741-key count, Appendix C), so the LN is affine-free.
    """

    def __init__(self, c_dim: int, f_dim: int):
        super().__init__()
        self.f_dim = f_dim
        self.reduce = nn.Sequential(nn.Linear(c_dim, f_dim), nn.ReLU())
        self.gamma = nn.Linear(f_dim, f_dim)
        self.beta = nn.Linear(f_dim, f_dim)
        # Original reset_parameters(): gamma = identity scale, beta = 0.
        with torch.no_grad():
            self.gamma.weight.zero_()
            self.beta.weight.zero_()
            self.gamma.bias.fill_(1.0)
            self.beta.bias.zero_()

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x, (self.f_dim,), eps=1e-5)
        c = self.reduce(c)
        return self.gamma(c) * x + self.beta(c)


def transform_points(points: torch.Tensor, mat: torch.Tensor) -> torch.Tensor:
    """(mat @ [p; 1])[:3] for points [B, M, ..., 3] and mat [B, 4, 4] (misc.transform_reference_points
    and its _lane variant)."""
    hom = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)
    m = mat
    for _ in range(points.dim() - 2):
        m = m.unsqueeze(1)
    return (m @ hom.unsqueeze(-1)).squeeze(-1)[..., :3]
