"""Landmark tokens: how 68 facial points become the "words" the UNet cross-attends to.

A text-to-image model turns a prompt into a sequence of token embeddings; we turn the 68 iBUG
landmarks of the target frame into 68 tokens. Token ``i`` says "point ``i`` is at ``(x, y)``":

    token_i = MLP(fourier(x_i, y_i)) + E[i]

* ``fourier(p) = [p, sin(2^k pi p), cos(2^k pi p) for k < n_freqs]`` (Fourier features, Tancik et
  al. 2020): an MLP fed raw coordinates learns smooth functions only, while sines of growing
  frequency let it resolve a lip moving by a pixel. Coordinates are normalised to the crop,
  ``crop_pixels / (size - 1) * 2 - 1`` (:func:`~minitalker.landmarks.scheme.crop_to_unit`), so [-1, 1]
  spans it; with 6 frequencies the finest period is 1/32 of the crop (2 pixels at 64x64).
* ``E[i]`` is a learned point-index embedding: attention is blind to order, so this is how the
  model knows which token is the upper lip and which the chin.

For classifier-free guidance (Ho & Salimans 2022) the model also learns a *null condition*, 68
learned tokens that replace the landmark tokens of rows dropped during training (and of the
unconditional branch at sampling time).
"""

from __future__ import annotations

import torch
from torch import nn

from ..landmarks.scheme import N_POINTS
from .layers import fourier_features


def check_landmark_tensor(landmarks: torch.Tensor, n_points: int = N_POINTS, name: str = "landmarks") -> None:
    """Raise ValueError unless ``landmarks`` is a finite floating (B, n_points, 2) tensor."""
    if not torch.is_tensor(landmarks) or landmarks.ndim != 3 or tuple(landmarks.shape[1:]) != (n_points, 2):
        shape = tuple(landmarks.shape) if torch.is_tensor(landmarks) else type(landmarks).__name__
        raise ValueError(f"{name} must be a (B, {n_points}, 2) tensor of (x, y) in [-1, 1] of the crop; got {shape}")
    if not landmarks.is_floating_point():
        raise ValueError(f"{name} must be floating point (normalised to [-1, 1]); got {landmarks.dtype}")
    if not torch.isfinite(landmarks).all():
        raise ValueError(f"{name} contains NaN or inf: fill missing detections before the UNet")


class LandmarkTokenizer(nn.Module):
    """(B, 68, 2) landmarks in [-1, 1] -> (B, 68, dim) tokens, with a learned null condition for CFG."""

    def __init__(self, dim: int, n_points: int = N_POINTS, n_freqs: int = 6):
        super().__init__()
        self.n_points, self.n_freqs = n_points, n_freqs
        self.mlp = nn.Sequential(nn.Linear(2 + 4 * n_freqs, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.point_embed = nn.Parameter(torch.randn(n_points, dim) * 0.02)  # E[i]
        self.null_tokens = nn.Parameter(torch.randn(n_points, dim) * 0.02)  # the CFG null condition

    def fourier(self, p: torch.Tensor) -> torch.Tensor:
        """Fourier features ``[p, sin(2^k pi p), cos(2^k pi p)]``: (..., 2) -> (..., 2 + 4F)."""
        return fourier_features(p, self.n_freqs)

    def null(self, batch: int) -> torch.Tensor:
        """The null condition for ``batch`` rows: (batch, 68, dim)."""
        return self.null_tokens.expand(batch, -1, -1)

    def forward(self, landmarks: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        """landmarks (B, 68, 2), drop (B,) bool or None -> tokens (B, 68, dim); dropped rows get the null tokens."""
        check_landmark_tensor(landmarks, self.n_points)
        tokens = self.mlp(self.fourier(landmarks)) + self.point_embed  # (B, 68, dim)
        if drop is None:
            return tokens
        if drop.dtype != torch.bool or tuple(drop.shape) != (len(landmarks),):
            raise ValueError(f"drop must be a bool tensor of shape ({len(landmarks)},); got {drop.dtype} {tuple(drop.shape)}")
        return torch.where(drop[:, None, None], self.null_tokens.to(tokens.dtype), tokens)
