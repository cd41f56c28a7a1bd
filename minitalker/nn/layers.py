"""The building blocks of the denoising UNet, each one idea from the diffusion literature.

* :func:`timestep_embedding`: the sinusoidal position encoding of Vaswani et al. (2017), applied to
  the diffusion step ``t`` as in DDPM (Ho et al. 2020);
* :class:`ResBlock`: a GroupNorm/SiLU/conv residual block whose second norm is modulated by the
  timestep (scale-shift / FiLM, "adaptive group norm" of improved DDPM, Nichol & Dhariwal 2021);
* :func:`attention`: multi-head scaled dot-product attention, fused (``F.scaled_dot_product_attention``)
  or explicit (when the attention probabilities are wanted for plotting);
* :func:`fourier_features`: ``[p, sin(2^k π p), cos(2^k π p)]`` of coordinates (Tancik et al. 2020),
  shared by the landmark tokens and the positions of the image queries;
* :class:`CrossAttention`, :class:`SelfAttention2d` and :class:`SpatialTransformer`: attention over
  image positions and from image positions to condition tokens, as in Stable Diffusion's
  ``SpatialTransformer`` (Rombach et al. 2022): the slot where our 68 landmark tokens enter.

Images are ``(B, C, H, W)``; token sequences are ``(B, N, C)``. Blocks that end in a residual
addition zero-initialise their last projection so that each starts as the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..landmarks.scheme import crop_to_unit


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, Vaswani et al. (2017) section 3.5.

    ``emb[:, i] = cos(t * f_i)`` for the first half and ``sin(t * f_i)`` for the second, with
    ``f_i = max_period ** (-i / (dim / 2))``.  t: (B,) -> (B, dim).
    """
    if t.ndim != 1:
        raise ValueError(f"t must have shape (B,); got {tuple(t.shape)}")
    if dim % 2:
        raise ValueError(f"dim must be even (half cosines, half sines); got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, dim)


def fourier_features(p: torch.Tensor, n_freqs: int, include_input: bool = True) -> torch.Tensor:
    """``[p, sin(2^k π p), cos(2^k π p) for k < n_freqs]``: (..., 2) -> (..., 2 + 4 n_freqs).

    An MLP fed raw coordinates learns smooth functions only; sines of growing frequency let it
    resolve a lip moving by a pixel (the finest period is 2 / 2^(n_freqs - 1) in [-1, 1] units).
    ``include_input=False`` leaves out ``p`` itself: (..., 4 n_freqs), the sines and cosines alone.
    Order: ``p``, then the sines of x at every frequency, of y, then the cosines likewise.
    """
    freqs = 2.0 ** torch.arange(n_freqs, device=p.device, dtype=p.dtype) * math.pi  # (F,)
    args = (p[..., None] * freqs).flatten(-2)  # (..., 2F)
    return torch.cat([p, args.sin(), args.cos()] if include_input else [args.sin(), args.cos()], dim=-1)


def cell_centres(h: int, w: int, factor: int, device=None) -> torch.Tensor:
    """Centres of the cells of an ``h x w`` feature map that is ``factor`` times coarser than its
    ``(h f) x (w f)`` image, as (x, y) in the landmark tokens' [-1, 1] convention: ``(h*w, 2)``.

    Cell ``j`` covers image pixels ``j f … (j + 1) f - 1``; its centre ``u = j f + (f - 1) / 2`` maps to
    ``u / (S - 1) * 2 - 1`` like a landmark at pixel ``u`` (:func:`minitalker.landmarks.scheme.crop_to_unit`).
    """
    def axis(n):
        return crop_to_unit(torch.arange(n, device=device, dtype=torch.float32) * factor + (factor - 1) / 2, n * factor)
    y, x = torch.meshgrid(axis(h), axis(w), indexing="ij")
    return torch.stack([x, y], -1).reshape(-1, 2)


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm (Wu & He 2018) with a clear error when ``groups`` does not divide ``channels``."""
    if channels % groups:
        raise ValueError(f"norm_groups={groups} must divide every width; {channels} channels is not divisible")
    return nn.GroupNorm(groups, channels)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero the weights and bias so that a residual branch starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, HW, C); a free view when ``x`` is channels_last."""
    return x.permute(0, 2, 3, 1).flatten(1, 2)


def to_image(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, HW, C) -> (B, C, H, W) as a view with channels_last strides (no copy)."""
    return x.unflatten(1, (h, w)).permute(0, 3, 1, 2)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, twice, with timestep scale-shift (FiLM) on the second norm.

    ``h = conv2(dropout(SiLU(GN(h) * (1 + scale(t)) + shift(t))))`` as in improved DDPM's
    ``use_scale_shift_norm``; a 1x1 conv matches channels on the skip path when they differ.
    """

    def __init__(self, in_ch: int, out_ch: int, temb_dim: int, groups: int = 32, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.conv1 = group_norm(in_ch, groups), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.temb = nn.Linear(temb_dim, 2 * out_ch)
        self.norm2, self.drop = group_norm(out_ch, groups), nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        # x (B, in_ch, H, W), temb (B, temb_dim) -> (B, out_ch, H, W)
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.temb(F.silu(temb))[:, :, None, None].chunk(2, dim=1)  # (B, out_ch, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(self.drop(F.silu(h)))


def attention(q, k, v, heads: int, return_probs: bool = False, dropout: float = 0.0):
    """Multi-head scaled dot-product attention, ``softmax(q k^T / sqrt(d)) v`` per head (Vaswani et al.).

    q (B, N, C), k and v (B, M, C) -> out (B, N, C) and, when ``return_probs``, the attention
    probabilities (B, heads, N, M), which sum to 1 over the M keys. Without probabilities we call
    the fused kernel (``F.scaled_dot_product_attention``, which never builds the N x M matrix);
    with them, the same computation written out. ``dropout``: on the probabilities (pass 0 at eval).
    """
    B, N, C = q.shape
    q, k, v = (z.unflatten(-1, (heads, -1)).transpose(1, 2) for z in (q, k, v))  # (B, heads, N|M, d)
    if return_probs:
        probs = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(dim=-1)  # (B, heads, N, M)
        out = (F.dropout(probs, dropout) if dropout else probs) @ v
    else:
        probs, out = None, F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)  # (B, heads, N, d)
    return out.transpose(1, 2).reshape(B, N, C), probs


class CrossAttention(nn.Module):
    """Multi-head attention from ``x`` (queries) to ``context`` (keys and values), as in Stable Diffusion.

    Queries come from image features (B, HW, C), keys and values from condition tokens
    (B, M, context_dim): here the 68 landmark tokens. With ``context=None`` it attends ``x`` to
    itself (self-attention), so one class serves both.
    """

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads={heads} must divide the attention width {dim}")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(context_dim or dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, return_probs: bool = False):
        # x (B, N, C), context (B, M, D) -> (B, N, C) [, probs (B, heads, N, M)]
        k, v = self.to_kv(x if context is None else context).chunk(2, dim=-1)  # (B, M, C) each
        out, probs = attention(self.to_q(x), k, v, self.heads, return_probs)
        out = self.to_out(out)
        return (out, probs) if return_probs else out


class SelfAttention2d(nn.Module):
    """Residual self-attention over the H*W positions of a feature map (DDPM's AttnBlock)."""

    def __init__(self, channels: int, heads: int, groups: int = 32):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.attn = CrossAttention(channels, heads)
        zero_init(self.attn.to_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x (B, C, H, W) -> (B, C, H, W)
        h = self.attn(to_tokens(self.norm(x)))  # (B, HW, C)
        return x + to_image(h, *x.shape[-2:])


class GEGLU(nn.Module):
    """Feed-forward with a GELU-gated linear unit (Shazeer 2020), as in Stable Diffusion: C -> 4C -> C."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * mult * dim)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(mult * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(h * F.gelu(gate))


class SpatialTransformer(nn.Module):
    """Stable Diffusion's SpatialTransformer: how the condition tokens reach the image features.

    GroupNorm -> linear in -> [LN -> self-attention]? -> LN -> cross-attention to the tokens ->
    LN -> GEGLU MLP -> linear out (zero-initialised), each sub-layer residual, and the whole block
    residual around the feature map.

    ``grounded`` (our addition): the cross-attention *queries* also carry the Fourier features of
    their own position (:func:`cell_centres`), in the coordinates the landmark tokens use, so
    ``q·k`` can measure "is that landmark near me?". Without it a pixel knows its place only through
    what the convolutions make of the image, and a landmark's position is hard to act on locally.
    """

    def __init__(self, channels: int, context_dim: int, heads: int, groups: int = 32,
                 self_attn: bool = True, dropout: float = 0.0, grounded: bool = False, n_freqs: int = 6):
        super().__init__()
        self.n_freqs = n_freqs
        self.pos = nn.Linear(2 + 4 * n_freqs, channels) if grounded else None
        self.norm = group_norm(channels, groups)
        self.proj_in = nn.Linear(channels, channels)
        self.self_attn = nn.Sequential(nn.LayerNorm(channels), CrossAttention(channels, heads)) if self_attn else None
        self.norm_cross, self.cross_attn = nn.LayerNorm(channels), CrossAttention(channels, heads, context_dim)
        self.ff = nn.Sequential(nn.LayerNorm(channels), GEGLU(channels, dropout=dropout))
        self.proj_out = zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, context: torch.Tensor, return_attention: bool = False, factor: int = 1):
        """x (B, C, H, W), context (B, M, D) -> (B, C, H, W) [, cross-attention maps (B, heads, H, W, M)].

        ``factor``: how many image pixels one cell of ``x`` spans (for the grounded queries)."""
        H, W = x.shape[-2:]
        h = self.proj_in(to_tokens(self.norm(x)))  # (B, HW, C)
        if self.self_attn is not None:
            h = h + self.self_attn(h)
        q = self.norm_cross(h)
        if self.pos is not None:
            q = q + self.pos(fourier_features(cell_centres(H, W, factor, x.device), self.n_freqs)).to(q.dtype)  # (HW, C)
        if return_attention:
            a, probs = self.cross_attn(q, context, return_probs=True)  # probs (B, heads, HW, M)
        else:
            a = self.cross_attn(q, context)
        h = h + a
        h = h + self.ff(h)
        out = x + to_image(self.proj_out(h), H, W)
        return (out, probs.unflatten(2, (H, W))) if return_attention else out
