"""uint8 frames ↔ the networks' float images in [-1, 1]: the one converter, both ways.

Frames on disk, in videos and in the corpus are uint8 ``(..., S, S, 3)`` (height, width, RGB);
every network here (the face UNet, the diffusers adapter's VAE, the landmark regressor) reads and
writes float ``(B, 3, S, S)`` in [-1, 1]: ``x = u / 127.5 - 1``, so grey 127.5 is 0 and the
data are centred as the diffusion noise is.
"""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(frames: np.ndarray, device=None) -> torch.Tensor:
    """uint8 ``(B, S, S, 3)`` (or one ``(S, S, 3)``) → float ``(B, 3, S, S)`` in [-1, 1]: ``x = u / 127.5 - 1``."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (..., S, S, 3); got {frames.dtype} {frames.shape}")
    x = torch.from_numpy(np.ascontiguousarray(frames.reshape(-1, *frames.shape[-3:]))).to(device)
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float ``(B, 3, S, S)`` in [-1, 1] → uint8 ``(B, S, S, 3)``: ``u = round((clamp(x) + 1) · 127.5)``."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
