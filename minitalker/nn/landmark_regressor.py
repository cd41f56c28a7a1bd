"""A small CNN that reads the 68 landmarks off a face crop: our ruler for frames too small for dlib.

To score generated 64×64 frames on mouth shape we must measure their landmarks, and dlib misses
faces that small. So we train a regressor on ground-truth corpus frames only (never on generated
ones, which would let it learn the generator's mistakes), and check on held-out true frames that
its error is far below the differences we want to measure.

It reads a frame *next to a reference frame of the same face whose landmarks are known* (the photo
the generator animates), and predicts how the landmarks moved. A plain regressor trained on our two
training faces learned those faces: on the held-out face it was worse than copying the reference
landmarks. Comparing two
images of one face is the same task for every face, so it transfers. In training the reference is
the clip's rest-pose reference or a random other frame of the same face, so the network cannot
memorise one reference.

Architecture (a plain "conv net + fully connected head", as in early facial-landmark regressors,
e.g. Sun et al. 2013, Zhang et al. 2014, with the two images stacked as in FlowNet-S)::

    frame, reference (B, 3, S, S) each, in [-1, 1] → stacked (B, 6, S, S)
      → per width w: [3×3 conv stride 2 → BN → SiLU → 3×3 conv → BN → SiLU]   (S/2, S/4, ...)
      → adaptive average pool to 4×4 → flatten → Linear → SiLU → Linear(136) = displacement
      → + reference landmarks → landmarks (B, 68, 2) in [-1, 1] of the crop (scheme.crop_to_unit)

The head keeps the 4×4 layout (no global pooling): *where* a feature is carries the coordinate.
The last layer starts at zero, so an untrained model returns the reference landmarks.
BatchNorm rather than GroupNorm: on CPU, GroupNorm made a training step about 5× slower here.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from minitalker.config import DATA_DIR, PresetConfig, check_positive
from minitalker.io import load_checkpoint, model_weights, suffixed
from minitalker.landmarks.scheme import check_landmarks, crop_to_unit, unit_to_crop
from minitalker.pixels import to_tensor

CHECKPOINT = DATA_DIR / "checkpoints" / "landmark_regressor_fast"  # the shipped one (64 px corpus frames)


@dataclasses.dataclass
class RegressorConfig(PresetConfig):
    image_size: int = 64  # the crop side it is trained on (and refuses others)
    widths: tuple[int, ...] = (16, 32, 64, 128)  # one stride-2 stage each: 64 → 32 → 16 → 8 → 4
    hidden: int = 256  # width of the fully connected layer

    @classmethod
    def full(cls) -> "RegressorConfig":
        return cls(widths=(32, 64, 128, 256), hidden=512)

    def __post_init__(self):
        check_positive(self, "image_size", "hidden")
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be one or more positive channel counts, e.g. (16, 32, 64, 128); got {self.widths}")


class LandmarkRegressor(nn.Module):
    """``frame, reference (B, 3, S, S)``, ``ref_landmarks (B, 68, 2)`` → landmarks ``(B, 68, 2)``; all in [-1, 1]."""

    def __init__(self, cfg: RegressorConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        for c_in, c_out in zip((6, *cfg.widths[:-1]), cfg.widths):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.SiLU(),
                       nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.SiLU()]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(16 * cfg.widths[-1], cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, 136))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, frame: torch.Tensor, reference: torch.Tensor, ref_landmarks: torch.Tensor) -> torch.Tensor:
        moved = self.head(self.features(torch.cat([frame, reference], 1)))  # (B, 136)
        return ref_landmarks + moved.view(-1, 68, 2)

    @torch.no_grad()
    def predict(self, frames: np.ndarray, reference: np.ndarray, ref_landmarks: np.ndarray,
                batch_size: int = 256) -> np.ndarray:
        """Landmarks of ``frames (T, S, S, 3)`` uint8, given a ``reference (S, S, 3)`` uint8 frame of the same
        face and its ``ref_landmarks (68, 2)`` in pixels → ``(T, 68, 2)`` float32 in crop pixels."""
        frames, reference, S = np.asarray(frames), np.asarray(reference), self.cfg.image_size
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (S, S, 3) or reference.shape != (S, S, 3):
            raise ValueError(f"this regressor reads ({S}x{S}) crops: expected frames (T, {S}, {S}, 3) uint8 and a "
                             f"reference ({S}, {S}, 3), got {frames.shape} {frames.dtype} and {reference.shape}; "
                             "train one for your size (minitalker train regressor --size N)")
        device = self.head[-1].weight.device
        ref = to_tensor(reference, device)
        ref_lm = crop_to_unit(check_landmarks(ref_landmarks, "ref_landmarks").reshape(1, 68, 2), S)
        ref_lm = torch.as_tensor(ref_lm, device=device)
        was_training = self.training
        self.eval()
        out = []
        for i in range(0, len(frames), batch_size):
            x = to_tensor(frames[i:i + batch_size], device)
            out.append(self(x, ref.expand(len(x), -1, -1, -1), ref_lm.expand(len(x), -1, -1)).float().cpu())
        self.train(was_training)
        return unit_to_crop(torch.cat(out).numpy(), S).astype(np.float32)


def load_landmark_regressor(size: int | None = None, path: str | os.PathLike = CHECKPOINT) -> LandmarkRegressor:
    """Load a regressor saved by :func:`minitalker.train.landmark_regressor.save_regressor` (fp16 → fp32).

    ``size``: the frame side it must read (an error if it was trained on another). Default path:
    the shipped ``data/checkpoints/landmark_regressor_fast``.
    """
    path = Path(path)
    if not suffixed(path, ".json").exists():
        raise FileNotFoundError(f"no landmark regressor at {path}.json: train it with "
                                "`minitalker train regressor` (about 3 minutes on one CPU core)")
    tensors, meta = load_checkpoint(path)
    cfg = RegressorConfig.from_dict(meta["model_config"])
    if size is not None and size != cfg.image_size:
        raise ValueError(f"the landmark regressor at {path} reads {cfg.image_size}px crops, but these frames are "
                         f"{size}px: train one with `minitalker train regressor --size {size}` "
                         "and pass it as regressor=")
    model = LandmarkRegressor(cfg)
    model.load_state_dict(model_weights(tensors))
    return model.eval()
