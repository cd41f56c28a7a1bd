"""Agent 2 at inference and training time: how a frame is posed to the landmark-conditioned UNet.

DiffTalker's face network denoises the target frame given a reference image of the speaker; the
target's 68 landmarks enter through cross-attention. What the paper leaves open, and what we chose:

* **What the UNet sees besides x_t** (``cond``, 6 channels): the reference frame (identity, texture)
  and a *masked copy of the target*: everything above the nose tip kept, everything below zeroed.
  The network therefore only has to invent the part that moves when one speaks (mouth, jaw, chin),
  as inpainting-style talking-face models do (Wav2Lip, and the measurements in shared notes: this
  trains ~2x faster on CPU and follows the mouth far better than generating the whole face).
  At inference the target is unknown, but agent 1 keeps every visible (upper-face) landmark of the
  reference, so the target's upper face *is* the reference's: the masked copy is made from the
  reference. The head stays still; the mouth and jaw move. A soft band blends the generated lower
  face into the reference's upper face (:func:`compose`).
* **Landmark tokens**: crop pixels mapped to [-1, 1] of the crop (``x / (S - 1) * 2 - 1``), so a
  token's position is where it is in the image the UNet draws.
* **Loss**: v-prediction MSE with min-SNR weighting, and ``mouth_weight`` extra weight on the
  mouth's box (the mouth is ~8% of the pixels but all of the speech).
* **Guidance**: landmarks dropped to the learned null tokens with probability ``p_uncond`` in
  training, so classifier-free guidance can push samples toward the landmarks at sampling time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from minitalker.config import PresetConfig
from minitalker.diffusion.samplers import ddim_sample, ddpm_sample, guided
from minitalker.diffusion.schedule import NoiseSchedule
from minitalker.landmarks.scheme import check_landmarks
from minitalker.nn.unet import LandmarkUNet

NOSE_TIP = 30  # rows below this landmark's y are masked (the part of the face that speech moves)


@dataclass
class FaceAgentConfig(PresetConfig):
    """How frames are posed to the UNet and weighted in the loss (sizes live in ``UNetConfig``)."""

    mask_margin: float = 0.02  # the mask starts this fraction of the crop *above* the nose tip
    blend: float = 0.04  # soft band (fraction of the crop) where generated and reference halves meet
    mouth_weight: float = 3.0  # extra loss weight inside the mouth box (0 = plain MSE)
    p_uncond: float = 0.1  # landmark dropout for classifier-free guidance
    p_neutral_reference: float = 0.5  # reference = the neutral photo (else another frame of the speaker)
    colour_jitter: float = 0.1  # per-sample gain per channel, same for target and reference
    guidance_scale: float = 1.5  # default at sampling time (1 = no guidance)


def to_tensor(frames: np.ndarray, device=None) -> torch.Tensor:
    """uint8 ``(B, S, S, 3)`` (or one ``(S, S, 3)``) → float ``(B, 3, S, S)`` in [-1, 1]."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (..., S, S, 3); got {frames.dtype} {frames.shape}")
    x = torch.from_numpy(np.ascontiguousarray(frames.reshape(-1, *frames.shape[-3:]))).to(device)
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float ``(B, 3, S, S)`` in [-1, 1] → uint8 ``(B, S, S, 3)``."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def landmark_tokens_input(landmarks: np.ndarray | torch.Tensor, size: int, device=None) -> torch.Tensor:
    """Crop pixels ``(B, 68, 2)`` → the UNet's landmark input in [-1, 1]: ``x / (S - 1) * 2 - 1``."""
    lm = torch.as_tensor(check_landmarks(np.asarray(landmarks)).reshape(-1, 68, 2), device=device)
    return lm / (size - 1) * 2 - 1


def lower_face_mask(landmarks: np.ndarray, size: int, cfg: FaceAgentConfig, soft: bool = False) -> torch.Tensor:
    """1 below the nose tip (minus a margin), 0 above: ``(B, 1, S, S)`` float.

    With ``soft`` the step becomes a linear ramp ``cfg.blend * S`` rows tall, centred on the cut.
    """
    lm = check_landmarks(np.asarray(landmarks)).reshape(-1, 68, 2)
    cut = torch.as_tensor(lm[:, NOSE_TIP, 1] - cfg.mask_margin * size)[:, None]  # (B, 1)
    rows = torch.arange(size, dtype=torch.float32)[None]  # (1, S)
    if soft:
        width = max(cfg.blend * size, 1.0)
        m = ((rows - cut) / width + 0.5).clamp(0, 1)
    else:
        m = (rows >= cut).float()
    return m[:, None, :, None].expand(-1, 1, size, size).contiguous()  # (B, 1, S, S)


def mouth_box_mask(landmarks: np.ndarray, size: int, margin: float = 0.05) -> torch.Tensor:
    """1 inside the box around the 20 mouth points (plus ``margin`` of the crop), else 0: ``(B, 1, S, S)``."""
    lm = check_landmarks(np.asarray(landmarks)).reshape(-1, 68, 2)[:, 48:68]
    lo = torch.as_tensor(lm.min(1) - margin * size)  # (B, 2)
    hi = torch.as_tensor(lm.max(1) + margin * size)
    r = torch.arange(size, dtype=torch.float32)
    inside_x = (r[None] >= lo[:, :1]) & (r[None] <= hi[:, :1])  # (B, S)
    inside_y = (r[None] >= lo[:, 1:]) & (r[None] <= hi[:, 1:])
    return (inside_y[:, :, None] & inside_x[:, None, :]).float()[:, None]


def condition(reference: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The UNet's ``cond`` ``(B, 6, S, S)``: the reference and the source with its lower face zeroed."""
    return torch.cat([reference, source * (1 - mask)], dim=1)


def compose(generated: torch.Tensor, reference: torch.Tensor, soft_mask: torch.Tensor) -> torch.Tensor:
    """Generated lower face under the reference's upper face: ``m g + (1 - m) r``."""
    return soft_mask * generated + (1 - soft_mask) * reference


@torch.no_grad()
def generate_frames(unet: LandmarkUNet, schedule: NoiseSchedule, reference: np.ndarray, ref_landmarks: np.ndarray,
                    landmarks: np.ndarray, cfg: FaceAgentConfig | None = None, steps: int | None = None,
                    guidance: float | None = None, sampler: str = "ddim", seed: int = 0, batch_size: int = 32,
                    progress: bool = True) -> np.ndarray:
    """Frames of one speaker: reference ``(S, S, 3)`` uint8 + landmarks ``(T, 68, 2)`` → ``(T, S, S, 3)`` uint8.

    Every frame starts from the *same* noise image x_T (seeded), so with DDIM (deterministic) frames
    differ only where their landmarks differ: the first defence against flicker. Frames go through
    the UNet in batches of ``batch_size`` (memory stays bounded for long clips).
    ``sampler``: "ddim" (``steps`` default from the schedule's config) or "ddpm" (every training step).
    """
    cfg = cfg or FaceAgentConfig()
    guidance = cfg.guidance_scale if guidance is None else guidance
    device = next(unet.parameters()).device
    size = unet.cfg.image_size
    if reference.shape[:2] != (size, size):
        raise ValueError(f"reference is {reference.shape[:2]} but this model makes {size}x{size} frames: "
                         "crop the face to that size first (video.aligned_crops)")
    lm = check_landmarks(landmarks, "landmarks").reshape(-1, 68, 2)
    ref = to_tensor(reference, device)  # (1, 3, S, S)
    hard = lower_face_mask(ref_landmarks, size, cfg).to(device)  # (1, 1, S, S)
    soft = lower_face_mask(ref_landmarks, size, cfg, soft=True).to(device)
    cond_one = condition(ref, ref, hard)  # (1, 6, S, S): the upper face is the reference's
    x_T = torch.randn((1, 3, size, size), generator=torch.Generator().manual_seed(seed)).to(device)
    out = []
    for i in range(0, len(lm), batch_size):
        chunk = landmark_tokens_input(lm[i:i + batch_size], size, device)  # (b, 68, 2)
        b = len(chunk)
        keep, drop = torch.zeros(b, dtype=torch.bool, device=device), torch.ones(b, dtype=torch.bool, device=device)
        cond = {"cond": cond_one.expand(b, -1, -1, -1), "landmarks": chunk, "drop": keep}
        model = guided(unet, cond, cond | {"drop": drop}, guidance)  # null branch: the learned null tokens
        if sampler == "ddim":
            x0 = ddim_sample(model, schedule, x_T.expand(b, -1, -1, -1).clone(), steps=steps, progress=progress)
        elif sampler == "ddpm":
            x0 = ddpm_sample(model, schedule, x_T.expand(b, -1, -1, -1).clone(), progress=progress,
                             generator=torch.Generator(device).manual_seed(seed))
        else:
            raise ValueError(f"sampler must be 'ddim' or 'ddpm'; got {sampler!r}")
        out.append(to_uint8(compose(x0, ref, soft)))
    return np.concatenate(out)
