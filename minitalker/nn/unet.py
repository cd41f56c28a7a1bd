"""The denoiser of agent 2: a UNet that sees the 68 landmarks through cross-attention.

    x_t (B, 3, H, W) noisy target ┐
    cond (B, 6, H, W) reference + │ concat -> conv_in -> down levels -> mid -> up levels -> conv_out
    masked target                 ┘               ▲ skip connections ▲
    t (B,) ─ sinusoidal -> MLP ──────────────────► every ResBlock (scale-shift)
    landmarks (B, 68, 2) ─ LandmarkTokenizer ────► SpatialTransformer cross-attention (chosen levels)

The layout follows DDPM / Stable Diffusion: each level has ``blocks_per_level`` ResBlocks (each
optionally followed by attention) and a stride-2 downsample; the way up mirrors it with one more
block per level, each eating a skip connection; the middle is ResBlock -> SpatialTransformer ->
ResBlock. Level ``i`` works at ``image_size / 2**i`` pixels with ``widths[i]`` channels.

Where a text-to-image UNet cross-attends to text tokens, ours cross-attends to landmark tokens;
with ``return_attention=True`` it also returns, per layer, where each image position looked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PresetConfig, check_fraction, check_non_negative, check_positive
from .layers import ResBlock, SelfAttention2d, SpatialTransformer, group_norm, timestep_embedding, zero_init
from .tokenizer import LandmarkTokenizer


@dataclass
class UNetConfig(PresetConfig):
    image_size: int = 64  # training crop side; any H, W divisible by 2**(len(widths) - 1) runs
    in_channels: int = 3  # the noisy target x_t
    cond_channels: int = 10  # concatenated to x_t: reference (3) + masked target (3) + warped reference (3) + sketch (1)
    out_channels: int = 3  # the prediction (eps, x0 or v: the diffusion schedule decides)
    widths: tuple[int, ...] = (32, 64, 128, 128)  # channels per level
    blocks_per_level: int = 1  # ResBlocks per level going down (one more going up)
    cross_attn_levels: tuple[int, ...] = (1, 2, 3)  # levels whose blocks cross-attend to the landmark tokens
    self_attn_levels: tuple[int, ...] = (3,)  # levels that also self-attend over positions
    grounded: bool = True  # cross-attention queries carry the Fourier features of their position
    token_dim: int = 128  # landmark token width D
    heads: int = 4
    norm_groups: int = 32  # GroupNorm groups: must divide every width
    dropout: float = 0.0
    channels_last: bool = True  # NHWC memory format: ~1.5x faster training on CPU

    def __post_init__(self):
        self.widths, self.cross_attn_levels, self.self_attn_levels = (
            tuple(self.widths), tuple(self.cross_attn_levels), tuple(self.self_attn_levels))
        n = len(self.widths)
        check_positive(self, "image_size", "in_channels", "out_channels", "blocks_per_level", "token_dim", "heads",
                       "norm_groups")
        check_non_negative(self, "cond_channels")
        check_fraction(self, "dropout")
        if not self.widths or any(w % self.norm_groups for w in self.widths):
            raise ValueError(f"norm_groups={self.norm_groups} must divide every width (GroupNorm splits channels into "
                             f"that many groups); widths {self.widths} do not all divide: give e.g. widths (32, 64, 128, "
                             "128) with norm_groups 32, or norm_groups 8 for narrow widths")
        for name in ("cross_attn_levels", "self_attn_levels"):
            bad = [lv for lv in getattr(self, name) if not 0 <= lv < n]
            if bad:
                raise ValueError(f"{name} {bad} out of range: there are {n} levels, give levels in 0..{n - 1}")
        heads_misfit = [self.widths[lv] for lv in {*self.cross_attn_levels, *self.self_attn_levels}
                        if self.widths[lv] % self.heads]
        if heads_misfit:
            raise ValueError(f"heads={self.heads} must divide the width of every attention level; {heads_misfit} "
                             "is not divisible: choose heads that divide it (e.g. 4 for widths 64, 128)")
        if self.image_size % 2 ** (n - 1):
            raise ValueError(f"image_size={self.image_size} must be divisible by 2**(levels-1) = {2 ** (n - 1)}: "
                             f"give a multiple of {2 ** (n - 1)}, or fewer widths")

    @classmethod
    def fast(cls) -> "UNetConfig":
        """Lean, CPU-trainable: 64x64, widths 32/64/128/128, one block, cross-attention at 32x32, 16x16 and 8x8
        (at 32x32 the mouth spans ~10 cells, so a query can tell which lip is near it)."""
        return cls()

    @classmethod
    def full(cls) -> "UNetConfig":
        """GPU-sized: 128x128, widths 64/128/256/256, two blocks, cross-attention at 64..16."""
        return cls(image_size=128, widths=(64, 128, 256, 256), blocks_per_level=2, cross_attn_levels=(1, 2, 3),
                   self_attn_levels=(2, 3), token_dim=256, heads=8, dropout=0.1)


class Block(nn.Module):
    """A ResBlock, then (by level) a SpatialTransformer or a SelfAttention2d, or nothing."""

    def __init__(self, name: str, in_ch: int, out_ch: int, cfg: UNetConfig, cross_attn: bool, self_attn: bool,
                 factor: int = 1):
        super().__init__()
        self.name, self.factor, temb_dim, g = name, factor, 4 * cfg.widths[0], cfg.norm_groups
        self.res = ResBlock(in_ch, out_ch, temb_dim, g, cfg.dropout)
        if cross_attn:
            self.attn = SpatialTransformer(out_ch, cfg.token_dim, cfg.heads, g, self_attn, cfg.dropout, cfg.grounded)
        else:
            self.attn = SelfAttention2d(out_ch, cfg.heads, g) if self_attn else None

    def forward(self, h, temb, tokens, maps: dict | None):
        # h (B, in_ch, h, w), temb (B, 4*widths[0]), tokens (B, 68, D) -> (B, out_ch, h, w)
        h = self.res(h, temb)
        if isinstance(self.attn, SpatialTransformer):
            if maps is None:
                return self.attn(h, tokens, factor=self.factor)
            h, maps[self.name] = self.attn(h, tokens, return_attention=True, factor=self.factor)
            return h
        return h if self.attn is None else self.attn(h)


class Level(nn.Module):
    """The blocks of one resolution and the resampling conv that leaves it (None at the ends)."""

    def __init__(self, blocks: list[Block], resample: nn.Module | None):
        super().__init__()
        self.blocks, self.resample = nn.ModuleList(blocks), resample


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv (avoids the checkerboard of transposed convs)."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class LandmarkUNet(nn.Module):
    """Denoising UNet conditioned on concatenated images and, through cross-attention, on 68 landmarks."""

    def __init__(self, cfg: UNetConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or UNetConfig.fast()
        W, n, temb_dim = cfg.widths, len(cfg.widths), 4 * cfg.widths[0]
        self.tokenizer = LandmarkTokenizer(cfg.token_dim)
        self.time_mlp = nn.Sequential(nn.Linear(W[0], temb_dim), nn.SiLU(), nn.Linear(temb_dim, temb_dim))
        self.conv_in = nn.Conv2d(cfg.in_channels + cfg.cond_channels, W[0], 3, padding=1)

        def attn(level):  # (cross-attention?, self-attention?) for the blocks of a level
            return level in cfg.cross_attn_levels, level in cfg.self_attn_levels

        skips, ch, self.down = [W[0]], W[0], nn.ModuleList()  # skips: channels of each saved activation
        for i, w in enumerate(W):
            blocks = []
            for j in range(cfg.blocks_per_level):
                blocks.append(Block(f"down{i}.{j}", ch, w, cfg, *attn(i), 2 ** i))
                ch = w
                skips.append(ch)
            down = nn.Conv2d(ch, ch, 3, stride=2, padding=1) if i < n - 1 else None
            if down is not None:
                skips.append(ch)
            self.down.append(Level(blocks, down))

        self.mid = nn.ModuleList([Block("mid", ch, ch, cfg, True, attn(n - 1)[1], 2 ** (n - 1)),
                                  ResBlock(ch, ch, temb_dim, cfg.norm_groups, cfg.dropout)])

        self.up = nn.ModuleList()
        for i, w in reversed(list(enumerate(W))):
            blocks = []
            for j in range(cfg.blocks_per_level + 1):
                blocks.append(Block(f"up{i}.{j}", ch + skips.pop(), w, cfg, *attn(i), 2 ** i))
                ch = w
            self.up.append(Level(blocks, Upsample(ch) if i > 0 else None))

        self.norm_out = group_norm(ch, cfg.norm_groups)
        self.conv_out = zero_init(nn.Conv2d(ch, cfg.out_channels, 3, padding=1))
        if cfg.channels_last:
            self.to(memory_format=torch.channels_last)

    # -- the denoiser interface of minitalker.face_agent (shared with pretrained.PretrainedLandmarkUNet) ----
    @property
    def image_size(self) -> int:
        """Side S of the square frames it makes."""
        return self.cfg.image_size

    @property
    def channels(self) -> int:
        """Channels c of the space diffusion runs in: the image's own (pixels)."""
        return self.cfg.in_channels

    @property
    def latent_size(self) -> int:
        """Side of the space diffusion runs in: the image's (pixels)."""
        return self.cfg.image_size

    @property
    def cond_channels(self) -> int:
        """Channels of the posed condition, in pixels (before :meth:`encode`)."""
        return self.cfg.cond_channels

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Identity: this UNet diffuses pixels. (B, k, H, W) -> the same."""
        return images

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Identity: the sample is the image. (B, 3, H, W) -> the same (not clamped: compositing comes first)."""
        return z

    def check_inputs(self, x_t, t, cond, landmarks):
        """Raise ValueError naming the argument whose shape does not fit the config; return t as (B,)."""
        cfg, B = self.cfg, len(x_t)
        if x_t.ndim != 4 or x_t.shape[1] != cfg.in_channels:
            raise ValueError(f"x_t must be (B, in_channels={cfg.in_channels}, H, W); got {tuple(x_t.shape)}")
        H, W = x_t.shape[-2:]
        f = 2 ** (len(cfg.widths) - 1)
        if H % f or W % f:
            raise ValueError(f"x_t size {H}x{W} must be divisible by 2**(levels-1) = {f} (levels = len(widths))")
        want = (B, cfg.cond_channels, H, W)
        if (cfg.cond_channels or cond is not None) and (cond is None or tuple(cond.shape) != want):
            raise ValueError(f"cond must be (B, cond_channels, H, W) = {want}; got {None if cond is None else tuple(cond.shape)}")
        if landmarks is not None and len(landmarks) != B:
            raise ValueError(f"landmarks must have batch size {B} like x_t; got {tuple(landmarks.shape)}")
        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim == 0:
            t = t.expand(B)
        if tuple(t.shape) != (B,):
            raise ValueError(f"t must be a scalar or have shape ({B},); got {tuple(t.shape)}")
        return t

    def forward(self, x_t, t, cond, landmarks, drop=None, return_attention: bool = False):
        """Predict the denoising target.

        x_t (B, in_channels, H, W) noisy target in [-1, 1] scale; t (B,) or scalar diffusion step;
        cond (B, cond_channels, H, W) images concatenated to the input (None if cond_channels=0);
        landmarks (B, 68, 2) in [-1, 1] of the crop, or None for the null condition in every row;
        drop (B,) bool: rows that get the null condition (classifier-free guidance dropout).
        Returns out (B, out_channels, H, W) and, with ``return_attention``, a dict
        ``{layer name: cross-attention probabilities (B, heads, h, w, 68)}`` (sum to 1 over tokens).
        """
        t = self.check_inputs(x_t, t, cond, landmarks)
        tokens = self.tokenizer.null(len(x_t)) if landmarks is None else self.tokenizer(landmarks, drop)  # (B, 68, D)
        temb = self.time_mlp(timestep_embedding(t, self.cfg.widths[0]).to(x_t.dtype))  # (B, 4*widths[0])
        x = torch.cat([x_t, cond], dim=1) if self.cfg.cond_channels else x_t  # (B, in+cond, H, W)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        maps = {} if return_attention else None

        h = self.conv_in(x)  # (B, widths[0], H, W)
        skips = [h]
        for level in self.down:
            for block in level.blocks:
                h = block(h, temb, tokens, maps)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)  # (B, w, h/2, w/2)
                skips.append(h)
        h = self.mid[1](self.mid[0](h, temb, tokens, maps), temb)
        for level in self.up:
            for block in level.blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), temb, tokens, maps)
            if level.resample is not None:
                h = level.resample(h)  # (B, w, 2h, 2w)
        out = self.conv_out(F.silu(self.norm_out(h)))  # (B, out_channels, H, W)
        return (out, maps) if return_attention else out


def mean_attention(maps: dict[str, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
    """Average cross-attention over heads and layers, upsampled to ``size``: {name: (B, heads, h, w, 68)} -> (B, 68, H, W).

    ``mean_attention(maps, (64, 64))[b, i]`` is a heatmap of the image positions that looked at
    landmark ``i`` (each layer's map is bilinearly resized before averaging).
    """
    per_layer = [F.interpolate(m.mean(1).permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False)
                 for m in maps.values()]  # each (B, 68, H, W)
    return torch.stack(per_layer).mean(0)
