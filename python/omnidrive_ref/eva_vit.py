"""EVA-02 ViT backbone (`img_backbone`, class EVAViT in the original; spec §2).

State-dict names match the original module tree:
  pos_embed, patch_embed.proj.{weight,bias}, rope_win.freqs_{cos,sin}, rope_glb.freqs_{cos,sin},
  blocks.{i}.norm1/norm2.{weight,bias}, blocks.{i}.attn.{q_bias,v_bias},
  blocks.{i}.attn.{q_proj,k_proj,v_proj}.weight, blocks.{i}.attn.rope.freqs_{cos,sin} (an alias of
  rope_win or rope_glb: the same module object is registered twice),
  blocks.{i}.attn.proj.{weight,bias}, blocks.{i}.mlp.{w1,w2,w3,ffn_ln}.{weight,bias}.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import OmniDriveConfig
from .layers import attention


class VisionRotaryEmbeddingFast(nn.Module):
    """2-D RoPE tables [ft*ft, 4*dim] (dim = head_dim/2 in the original's naming: half_head_dim).

    Positions t = arange(ft) / ft * pt (float32): window blocks (ft == pt) 0..pt-1, global blocks
    compressed to the pre-training grid (0, 0.4, ..., 15.6 in the full model). Per token (r, c) the
    angle vector is [theta_r0, theta_r0, theta_r1, theta_r1, ..., theta_c0, theta_c0, ...].
    """

    def __init__(self, dim: int, pt_seq_len: int, ft_seq_len: int, theta: float = 10000.0):
        super().__init__()
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        t = torch.arange(ft_seq_len) / ft_seq_len * pt_seq_len
        f = torch.einsum("i,f->if", t, freqs)  # [ft, dim/2]
        f = f.repeat_interleave(2, dim=-1)  # [ft, dim] (each angle twice: adjacent pairs)
        rows = f[:, None, :].expand(ft_seq_len, ft_seq_len, dim)
        cols = f[None, :, :].expand(ft_seq_len, ft_seq_len, dim)
        table = torch.cat([rows, cols], dim=-1).reshape(ft_seq_len * ft_seq_len, 2 * dim)
        self.register_buffer("freqs_cos", table.cos())
        self.register_buffer("freqs_sin", table.sin())

    @staticmethod
    def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
        """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...): adjacent-pair (GPT-J) rotation."""
        pairs = x.unflatten(-1, (-1, 2))
        return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t * self.freqs_cos + self.rotate_pairs(t) * self.freqs_sin


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # NCHW -> NHWC


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, rope: VisionRotaryEmbeddingFast):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.rope = rope  # shared module: its buffers appear under blocks.{i}.attn.rope.* too
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        n = h * w
        x = x.reshape(b, n, c)
        q = F.linear(x, self.q_proj.weight, self.q_bias)
        k = F.linear(x, self.k_proj.weight)  # k has no bias
        v = F.linear(x, self.v_proj.weight, self.v_bias)
        q = q.reshape(b, n, self.num_heads, -1).permute(0, 2, 1, 3)
        k = k.reshape(b, n, self.num_heads, -1).permute(0, 2, 1, 3)
        v = v.reshape(b, n, self.num_heads, -1).permute(0, 2, 1, 3)
        q = self.rope(q)  # RoPE after q_bias
        k = self.rope(k)
        out = attention(q * self.scale, k, v)  # non-flash path: q scaled, fp32 softmax
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.proj(out).view(b, h, w, c)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int, eps: float):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(dim, hidden)
        self.ffn_ln = nn.LayerNorm(hidden, eps=eps)  # Block always builds SwiGLU with subln=True
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))


def window_partition(x: torch.Tensor, ws: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """Zero-pad bottom/right to a multiple of ws, split into [B*nw, ws, ws, C] (row-major windows)."""
    b, h, w, c = x.shape
    pad_h = (ws - h % ws) % ws
    pad_w = (ws - w % ws) % ws
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws, ws, c), (hp, wp)


def window_unpartition(win: torch.Tensor, ws: int, pad_hw: Tuple[int, int],
                       hw: Tuple[int, int]) -> torch.Tensor:
    hp, wp = pad_hw
    h, w = hw
    b = win.shape[0] // ((hp // ws) * (wp // ws))
    x = win.view(b, hp // ws, wp // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(b, hp, wp, -1)
    return x[:, :h, :w, :].contiguous()


class Block(nn.Module):
    def __init__(self, cfg: OmniDriveConfig, window_size: int, rope: VisionRotaryEmbeddingFast):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.vit_ln_eps)
        self.attn = Attention(cfg.embed_dim, cfg.heads, rope)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.vit_ln_eps)
        self.mlp = SwiGLU(cfg.embed_dim, cfg.mlp_hidden, cfg.vit_ln_eps)
        self.window_size = window_size  # 0 = global attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            h, w = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)  # LN first, then zero pad (unmasked)
        x = self.attn(x)
        if self.window_size > 0:
            x = window_unpartition(x, self.window_size, pad_hw, (h, w))
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


def resize_abs_pos(pos_embed: torch.Tensor, size: int, hw: Tuple[int, int]) -> torch.Tensor:
    """Drop the cls slot, bicubic-resize (align_corners=False, float32) the size x size grid to hw.
    Returns [1, H, W, C]. (`size` comes from the config, not from the tensor's shape, so that
    tracing for ONNX sees Python ints.)"""
    abs_pos = pos_embed[:, 1:]
    h, w = hw
    if size == h and size == w:
        return abs_pos.reshape(1, h, w, -1)
    grid = abs_pos.reshape(1, size, size, -1).permute(0, 3, 1, 2).float()
    out = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
    return out.to(pos_embed.dtype).permute(0, 2, 3, 1)


class EVAViT(nn.Module):
    def __init__(self, cfg: OmniDriveConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg.patch, 3, cfg.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.pretrain_grid ** 2 + 1, cfg.embed_dim))
        if cfg.grid_h != cfg.grid_w:
            raise ValueError("EVAViT: the global RoPE table assumes a square patch grid")
        half_head_dim = cfg.vit_head_dim // 2
        self.rope_win = VisionRotaryEmbeddingFast(half_head_dim, cfg.pt_hw_seq_len,
                                                  cfg.window_size, cfg.rope_theta)
        self.rope_glb = VisionRotaryEmbeddingFast(half_head_dim, cfg.pt_hw_seq_len, cfg.grid_h,
                                                  cfg.rope_theta)
        self.blocks = nn.ModuleList()
        for i in range(cfg.depth):
            is_win = i in cfg.window_block_indexes
            self.blocks.append(Block(cfg, cfg.window_size if is_win else 0,
                                     self.rope_win if is_win else self.rope_glb))

    def forward(self, img: torch.Tensor, taps: Optional[Dict[str, torch.Tensor]] = None
                ) -> torch.Tensor:
        """img [BN, 3, H, W] -> features [BN, C, H/16, W/16]. `taps` (optional) receives
        'patch_embed' (NHWC, before pos_embed), 'abs_pos' and 'block{i}' (NHWC) tensors."""
        x = self.patch_embed(img)
        cfg = self.cfg
        abs_pos = resize_abs_pos(self.pos_embed, cfg.pretrain_grid, (cfg.grid_h, cfg.grid_w))
        if taps is not None:
            taps["patch_embed"] = x
            taps["abs_pos"] = abs_pos
        x = x + abs_pos
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if taps is not None:
                taps[f"block{i}"] = x
        return x.permute(0, 3, 1, 2)
