"""Agent 2 at inference and training time: how a frame is posed to the landmark-conditioned UNet.

DiffTalker's face network denoises the target frame given a reference image of the speaker; the
target's 68 landmarks enter through cross-attention. What the paper leaves open, and what we chose:

* **Where the network paints** (``mask="face"``): a feathered mask over the jaw and cheeks below the
  eyes (the hull of jaw points 1-15 and nose point 29, for the target's landmarks *and* the
  reference's in the target's pose, so a dropping chin is covered). Background, hair, clothes and
  the upper face come from the reference untouched, so no seam crosses the face and no training
  colours bleed in; generating only what speech moves is also what makes CPU training feasible
  (inpainting-style, as Wav2Lip). ``mask="half"`` is the earlier layout: every row below the nose tip.
* **What the UNet sees besides x_t** (``cond``): the reference frame (identity, teeth, lighting), a
  *masked copy of the target* (at inference: of the reference, since agent 1 keeps every upper-face
  landmark), and (``warp=True``) **the reference warped to the target landmarks** (piecewise-affine
  over a triangulation of the 68 points, the head points and the crop border, exactly the corpus
  renderer's warp, :func:`warp_reference`). The warp puts the photo's own skin and lips where the
  target wants them, pixel-aligned, so texture is transported rather than memorised (IP_LAP's
  alignment idea); the network must still paint what no photo holds, the inside of the mouth, and
  clean the warp's stretch. ``sketch=True`` adds the target landmarks drawn as lines (1 channel):
  the second route for geometry, for the ablation against cross-attention alone.
* **Landmark tokens**: crop pixels mapped to [-1, 1] of the crop (``x / (S - 1) * 2 - 1``, ``scheme.crop_to_unit``), so a
  token's position is where it is in the image the UNet draws.
* **Loss**: v-prediction MSE with min-SNR weighting, and ``mouth_weight`` extra weight on the
  mouth's box (the mouth is ~8% of the pixels but all of the speech).
* **Guidance**: landmarks dropped to the learned null tokens with probability ``p_uncond`` in
  training, so classifier-free guidance can push samples toward the landmarks at sampling time.
* **Where sampling starts** (``strength``, with ``warp``): DDIM runs only the last half of its steps,
  from the warped reference noised to that level (SDEdit): the warp already has the photo's skin
  where the landmarks want it, so the sampler keeps its layout and repaints what the warp cannot
  give (the inside of the mouth, the stretch). The paper samples from pure noise (``strength=1``);
  starting from the warp follows the landmarks more closely on real photos, at 5 UNet passes a
  frame instead of 10 (docs/design_notes.md has the measurement).

The posing, the loss and the sampler work on any :class:`Denoiser`: our :class:`LandmarkUNet` (pixels)
or a pre-trained diffusers UNet behind :class:`minitalker.pretrained.PretrainedLandmarkUNet` (VAE latents).
:func:`load_face_agent` reads one of our checkpoints back: UNet, noise schedule, posing config.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from minitalker.config import DATA_DIR, PresetConfig, check_choice, check_fraction, check_non_negative
from minitalker.diffusion.samplers import ddim_sample, ddpm_sample, guided
from minitalker.diffusion.schedule import DiffusionConfig, NoiseSchedule
from minitalker.io import check_kind, load_checkpoint, load_meta, model_weights
from minitalker.landmarks.draw import rasterise
from minitalker.landmarks.scheme import check_landmarks, crop_to_unit, denormalise, normalise
from minitalker.nn.unet import LandmarkUNet, UNetConfig
from minitalker.pixels import to_tensor, to_uint8

NOSE_TIP = 30  # mask="half": rows below this landmark's y are masked
FACE_HULL = [*range(1, 16), 29]  # mask="face": jaw from below the ears round the chin, closed over the nose
FOLD_LIMIT = 0.15  # largest fraction of the face's area the warp may fold (noisy real tracks: up to ~4%)
SHIPPED = DATA_DIR / "checkpoints" / "faces_fast"
SAMPLERS = ("ddim", "ddpm", "diffusers")


@dataclass
class FaceAgentConfig(PresetConfig):
    """How frames are posed to the UNet and weighted in the loss (sizes live in ``UNetConfig``)."""

    mask: str = "face"  # "face": feathered jaw/cheek hull; "half": every row below the nose tip (earlier layout)
    mask_margin: float = 0.02  # mask="half": the cut lies this fraction of the crop above the nose tip
    blend: float = 0.04  # width (fraction of the crop) of the feather where generated and reference pixels meet
    warp: bool = True  # give the UNet the reference warped to the target landmarks (3 more channels)
    sketch: bool = True  # give the UNet the target landmarks drawn as lines (1 more channel)
    mouth_weight: float = 3.0  # extra loss weight inside the mouth box (0 = plain MSE)
    p_uncond: float = 0.1  # landmark dropout for classifier-free guidance
    p_neutral_reference: float = 0.5  # reference = the neutral photo (else another frame of the speaker)
    colour_jitter: float = 0.2  # per-sample gain per channel (uniform ±), same on every image of a sample
    hue_jitter: float = 0.5  # per-sample hue rotation (radians, uniform ±), same on every image of a sample
    p_reshape: float = 0.0  # training: a sample takes (part of) another identity's face shape (texture swap)
    colour_match: float = 0.08  # with warp: σ (fraction of the crop) of the low frequencies taken from the warp; 0 = off
    guidance_scale: float = 1.0  # default at sampling time (1 = no guidance: one UNet pass per step)
    strength: float = 0.5  # with warp, DDIM: start from the warp noised to this fraction of the steps (1 = noise)

    @classmethod
    def full(cls) -> "FaceAgentConfig":
        return cls(guidance_scale=1.5)  # a GPU can afford the second UNet pass of guidance

    def __post_init__(self):
        check_choice(self, "mask", ("face", "half"))
        check_fraction(self, "mask_margin", "blend", "p_uncond", "p_neutral_reference", "colour_jitter", "colour_match",
                       "p_reshape")
        check_non_negative(self, "mouth_weight", "hue_jitter", "guidance_scale")
        if not 0 < self.strength <= 1:
            raise ValueError(f"strength must be in (0, 1] (1 = sample from pure noise); got {self.strength}")

    @property
    def cond_channels(self) -> int:
        """Channels of ``cond``: reference (3) + masked copy (3) [+ warped reference (3)] [+ sketch (1)]."""
        return 6 + 3 * self.warp + self.sketch


class Denoiser(Protocol):
    """What the face agent needs of a denoising network: :class:`LandmarkUNet` and
    :class:`minitalker.pretrained.PretrainedLandmarkUNet` both have it.

    Diffusion runs in a space of ``channels`` x ``latent_size``² (pixels: 3 x S²; SD's VAE: 4 x (S/8)²);
    ``encode``/``decode`` go there and back (identity for a pixel model). The posed condition has
    ``cond_channels`` channels in pixels, before ``encode``.
    """

    image_size: int  # S, the side of the frames it makes
    channels: int
    latent_size: int
    cond_channels: int

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3k, S, S) in [-1, 1], k stacked images -> (B, c·k, h, h)."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, c, h, h) -> (B, 3, S, S) images."""

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, landmarks: torch.Tensor | None,
                 drop: torch.Tensor | None = None) -> torch.Tensor:
        """x_t (B, c, h, h), t (B,), cond (B, encoded cond, h, h), landmarks (B, 68, 2) in [-1, 1] -> (B, c, h, h)."""


def check_channels(model_channels: int, agent: FaceAgentConfig) -> None:
    """Raise ValueError unless a denoiser reading ``model_channels`` condition channels gets as many from the posing."""
    if model_channels != agent.cond_channels:
        raise ValueError(f"the denoiser reads {model_channels} condition channels but the agent config makes "
                         f"{agent.cond_channels} (warp={agent.warp}, sketch={agent.sketch}): set "
                         f"UNetConfig(cond_channels={agent.cond_channels}), or pose with a FaceAgentConfig that makes "
                         f"{model_channels} (a pretrained adapter reads reference + masked target: warp=False, sketch=False)")


def landmark_tokens_input(landmarks: np.ndarray | torch.Tensor, size: int, device=None) -> torch.Tensor:
    """Crop pixels ``(B, 68, 2)`` → the UNet's landmark input in [-1, 1]: ``x / (S - 1) * 2 - 1`` (:func:`crop_to_unit`)."""
    lm = torch.as_tensor(check_landmarks(np.asarray(landmarks)).reshape(-1, 68, 2), device=device)
    return crop_to_unit(lm, size)


def lower_face_mask(landmarks: np.ndarray, size: int, cfg: FaceAgentConfig, soft: bool = False) -> torch.Tensor:
    """mask="half": 1 below the nose tip (minus a margin), 0 above: ``(B, 1, S, S)`` float.

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


def face_region(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The polygon of :data:`FACE_HULL` filled at pixel centres: ``(B, 68, 2)`` → ``(B, S, S)`` bool."""
    from skimage.draw import polygon

    lm = check_landmarks(np.asarray(landmarks)).reshape(-1, 68, 2)
    out = np.zeros((len(lm), size, size), bool)
    for b, pts in enumerate(lm[:, FACE_HULL]):
        rr, cc = polygon(pts[:, 1], pts[:, 0], (size, size))
        out[b, rr, cc] = True
    return out


def face_masks(landmarks: np.ndarray, ref_landmarks: np.ndarray, size: int,
               cfg: FaceAgentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the UNet paints: ``(hard, soft)``, each ``(B, 1, S, S)`` float, for target landmarks ``(B, 68, 2)``.

    mask="face": ``R`` = the :data:`FACE_HULL` polygon of the target ∪ that of the reference moved to
    the target's pose (similarity on the eye corners), so both the open and the closed chin are inside.
    ``soft = min(1, 2 G_σ * R)`` with ``σ = blend S / 2``: 1 on ``R``, falling to 0 within ~2σ outside;
    ``hard = soft > 0`` is what the condition hides (a superset of where generated pixels are kept).
    mask="half": :func:`lower_face_mask` of the target.
    """
    from scipy.ndimage import gaussian_filter

    lm = check_landmarks(np.asarray(landmarks)).reshape(-1, 68, 2)
    if cfg.mask == "half":
        return lower_face_mask(lm, size, cfg), lower_face_mask(lm, size, cfg, soft=True)
    ref = check_landmarks(np.asarray(ref_landmarks)).reshape(-1, 68, 2)
    ref_c, _ = normalise(ref)
    _, pose = normalise(lm)
    region = face_region(lm, size) | face_region(denormalise(np.broadcast_to(ref_c, lm.shape), pose), size)
    sigma = max(cfg.blend * size / 2, 0.5)
    soft = np.clip(2 * gaussian_filter(region.astype(np.float32), (0, sigma, sigma), truncate=3.0), 0, 1)
    soft = torch.from_numpy(soft)[:, None]  # (B, 1, S, S)
    return (soft > 0).float(), soft


def warp_reference(reference: np.ndarray, ref_landmarks: np.ndarray, landmarks: np.ndarray,
                   mouth: bool = False) -> np.ndarray:
    """The reference crop ``(S, S, 3)`` uint8 warped to each target ``(T, 68, 2)`` → ``(T, S, S, 3)`` uint8.

    The corpus renderer's piecewise-affine warp (:func:`minitalker.data.render.render_frames`) with
    the crop itself as the image (box centre ``(S - 1) / 2``, side ``S``: crop pixel = image pixel)
    and no painted mouth: where the lips part, the warp stretches the lip line, and the UNet paints
    (``mouth=True`` paints the renderer's mouth, as :mod:`minitalker.face_eval` does for its ceiling).
    """
    from minitalker.data.render import render_frames

    size = reference.shape[0]
    lm = check_landmarks(np.asarray(landmarks)).reshape(-1, 68, 2)
    box = np.array([(size - 1) / 2, (size - 1) / 2, size])
    return render_frames(reference, check_landmarks(ref_landmarks), lm, size, box, mouth=mouth)[0]


def sketch(landmarks: np.ndarray, size: int, device=None) -> torch.Tensor:
    """The target landmarks drawn as anti-aliased lines, in [-1, 1]: ``(B, 68, 2)`` → ``(B, 1, S, S)``."""
    lines = rasterise(check_landmarks(np.asarray(landmarks)).reshape(-1, 68, 2), size)  # (B, S, S) in [0, 1]
    return torch.from_numpy(lines)[:, None].to(device) * 2 - 1


def mouth_box_mask(landmarks: np.ndarray, size: int, margin: float = 0.05) -> torch.Tensor:
    """1 inside the box around the 20 mouth points (plus ``margin`` of the crop), else 0: ``(B, 1, S, S)``."""
    lm = check_landmarks(np.asarray(landmarks)).reshape(-1, 68, 2)[:, 48:68]
    lo = torch.as_tensor(lm.min(1) - margin * size)  # (B, 2)
    hi = torch.as_tensor(lm.max(1) + margin * size)
    r = torch.arange(size, dtype=torch.float32)
    inside_x = (r[None] >= lo[:, :1]) & (r[None] <= hi[:, :1])  # (B, S)
    inside_y = (r[None] >= lo[:, 1:]) & (r[None] <= hi[:, 1:])
    return (inside_y[:, :, None] & inside_x[:, None, :]).float()[:, None]


def condition(reference: torch.Tensor, source: torch.Tensor, mask: torch.Tensor, warped: torch.Tensor | None = None,
              lines: torch.Tensor | None = None) -> torch.Tensor:
    """The UNet's ``cond`` ``(B, cond_channels, S, S)``: reference, source with the mask's area zeroed
    ``source (1 - hard)``, then the warped reference ``(B, 3, S, S)`` and the sketch ``(B, 1, S, S)`` if given."""
    extra = [x for x in (warped, lines) if x is not None]
    return torch.cat([reference, source * (1 - mask), *extra], dim=1)


def match_colour(generated: torch.Tensor, warped: torch.Tensor, landmarks: np.ndarray, soft: torch.Tensor,
                 sigma: float) -> torch.Tensor:
    """The skin's low frequencies from the warped photo: ``g + G_σ * (m (w - g)) / G_σ * m`` ``(B, 3, S, S)``.

    ``m``: the painted skin (``soft > 0.5``) without the inside of the mouth (inner-lip polygon of the
    target ``(B, 68, 2)``, grown by a pixel), where the photo has nothing to say. The correction is a
    smooth colour offset (``σ`` in pixels), so it moves shading and tint, never the mouth's shape.
    Why (our addition): trained on two faces, the UNet reproduces an unseen photo's skin with a slight
    colour cast (a warm or grey lower face); the warp holds the photo's own colours, pixel-aligned.
    """
    from scipy.ndimage import binary_dilation, gaussian_filter
    from skimage.draw import polygon

    lm = check_landmarks(np.asarray(landmarks)).reshape(-1, 68, 2)
    S = generated.shape[-1]
    mouth = np.zeros((len(lm), S, S), bool)
    for b, pts in enumerate(lm[:, 60:68]):
        mouth[b][polygon(pts[:, 1], pts[:, 0], (S, S))] = True
    mouth = binary_dilation(mouth, np.ones((1, 3, 3), bool))
    m = ((soft[:, 0].cpu().numpy() > 0.5) & ~mouth).astype(np.float32)[:, None]  # (B, 1, S, S)
    diff = (warped - generated).cpu().numpy() * m
    blur = lambda x: gaussian_filter(x, (0, 0, sigma, sigma), mode="nearest")  # noqa: E731
    offset = blur(diff) / np.maximum(blur(m), 1e-3)  # (B, 3, S, S): mean of w - g over the nearby skin
    return generated + torch.from_numpy(offset).to(generated)


def compose(generated: torch.Tensor, reference: torch.Tensor, soft_mask: torch.Tensor) -> torch.Tensor:
    """Generated lower face under the reference's upper face: ``m g + (1 - m) r``."""
    return soft_mask * generated + (1 - soft_mask) * reference


def check_warp(ref_landmarks: np.ndarray, landmarks: np.ndarray, size: int, limit: float = FOLD_LIMIT) -> None:
    """Raise ValueError when the warp from the reference to some target folds over more than ``limit``
    of the face's area (:func:`minitalker.data.render.folded_area`): a face turned too far."""
    from minitalker.data.render import folded_area

    box = np.array([(size - 1) / 2, (size - 1) / 2, size])
    f = folded_area(ref_landmarks, landmarks, size, box)  # (T,)
    if (f > limit).any():
        raise ValueError(f"the warp from the photo to the landmarks folds over {f.max():.0%} of the face in frame "
                         f"{int(f.argmax())}: the face is turned too far from the camera, or the landmarks are "
                         "tangled; use a photo that faces the camera")


def resize_crop(reference: np.ndarray, ref_landmarks: np.ndarray, landmarks: np.ndarray,
                size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A reference crop ``(s, s, 3)`` uint8 resized to ``(size, size, 3)``, with its landmarks ``(68, 2)`` and
    the targets' ``(T, 68, 2)`` moved along: ``(x + 0.5) k - 0.5`` with ``k = size / s`` (pixel centres).

    E.g. a 128 px corpus reference for Stable Diffusion at 256 px (bilinear, antialiased); unchanged at ``size``."""
    if reference.shape[0] == size:
        return reference, np.asarray(ref_landmarks, np.float32), np.asarray(landmarks, np.float32)
    k = size / reference.shape[0]
    ref = F.interpolate(to_tensor(reference), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return to_uint8(ref)[0], *((np.asarray(a, np.float32) + 0.5) * k - 0.5 for a in (ref_landmarks, landmarks))


def generate_frames(unet: Denoiser, schedule: NoiseSchedule, reference: np.ndarray, ref_landmarks: np.ndarray,
                    landmarks: np.ndarray, cfg: FaceAgentConfig | None = None, steps: int | None = None,
                    guidance: float | None = None, sampler: str = "ddim", seed: int = 0, batch_size: int = 32,
                    progress: bool = True, strength: float | None = None) -> np.ndarray:
    """Frames of one speaker: reference ``(S, S, 3)`` uint8 + landmarks ``(T, 68, 2)`` → ``(T, S, S, 3)`` uint8.

    All of :func:`iter_frames`'s batches at once (for a long clip, stream them instead)."""
    return np.concatenate(list(iter_frames(unet, schedule, reference, ref_landmarks, landmarks, cfg, steps, guidance,
                                           sampler, seed, batch_size, progress, strength)))


@torch.no_grad()
def iter_frames(unet: Denoiser, schedule: NoiseSchedule, reference: np.ndarray, ref_landmarks: np.ndarray,
                landmarks: np.ndarray, cfg: FaceAgentConfig | None = None, steps: int | None = None,
                guidance: float | None = None, sampler: str = "ddim", seed: int = 0, batch_size: int = 32,
                progress: bool = True, strength: float | None = None) -> Iterator[np.ndarray]:
    """Frames of one speaker, made ``batch_size`` at a time: yields ``(b, S, S, 3)`` uint8 batches in order.

    Every frame starts from the *same* noise image x_T (seeded), so with DDIM (deterministic) frames
    differ only where their landmarks differ: the first defence against flicker (and how batches
    join seamlessly). Memory stays bounded for any length; ``progress``: one bar (frames, with an
    ETA) for the whole clip. Outside the mask (:func:`face_masks`) every frame is the reference,
    pixel for pixel. ``sampler``: "ddim" (``steps`` default from the schedule's ``config.sampling``;
    ``strength`` default from ``cfg``: with the warp, start from it, see :func:`ddim_sample`'s ``init``),
    "ddpm" (every training step, from noise) or "diffusers" (diffusers' ``DDIMScheduler`` on the same
    schedule, from noise, :mod:`minitalker.diffusion.bridge`). The condition and the sample live in the
    denoiser's space (``encode``/``decode``). Every argument is checked before the first batch is sampled.
    """
    from tqdm.auto import tqdm

    cfg = cfg or FaceAgentConfig()
    guidance = cfg.guidance_scale if guidance is None else guidance
    strength = cfg.strength if strength is None else strength
    device = next(unet.parameters()).device
    size = unet.image_size
    if reference.shape[:2] != (size, size):
        raise ValueError(f"reference is {reference.shape[:2]} but this model makes {size}x{size} frames: "
                         "crop the face to that size first (video.aligned_crops, or resize_crop)")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}; got {sampler!r}")
    check_sampling(schedule, steps, guidance, strength)
    check_channels(unet.cond_channels, cfg)
    lm = check_landmarks(landmarks, "landmarks").reshape(-1, 68, 2)
    ref = to_tensor(reference, device)  # (1, 3, S, S)
    if cfg.warp:
        check_warp(ref_landmarks, lm, size)
    h = unet.latent_size
    x_T = torch.randn((1, unet.channels, h, h), generator=torch.Generator().manual_seed(seed)).to(device)
    with tqdm(total=len(lm), desc="agent 2", unit="frame", disable=not progress) as bar:
        for i in range(0, len(lm), batch_size):
            chunk = lm[i:i + batch_size]  # (b, 68, 2)
            b = len(chunk)
            hard, soft = (m.to(device) for m in face_masks(chunk, ref_landmarks, size, cfg))  # (b, 1, S, S) each
            refs = ref.expand(b, -1, -1, -1)
            warped = to_tensor(warp_reference(reference, ref_landmarks, chunk), device) if cfg.warp else None
            lines = sketch(chunk, size, device) if cfg.sketch else None
            keep = torch.zeros(b, dtype=torch.bool, device=device)
            cond = {"cond": unet.encode(condition(refs, refs, hard, warped, lines)),  # the upper face is the reference's
                    "landmarks": landmark_tokens_input(chunk, size, device), "drop": keep}
            model = guided(unet, cond, cond | {"drop": ~keep}, guidance)  # null branch: the learned null tokens
            if sampler == "ddim":
                init = unet.encode(warped) if cfg.warp and strength < 1 else None  # SDEdit: from the noised warp
                z = ddim_sample(model, schedule, x_T.expand(b, -1, -1, -1).clone(), steps=steps, progress=False,
                                init=init, strength=strength)
            elif sampler == "ddpm":
                z = ddpm_sample(model, schedule, x_T.expand(b, -1, -1, -1).clone(), progress=False,
                                generator=torch.Generator(device).manual_seed(seed))
            else:
                from minitalker.diffusion.bridge import diffusers_ddim, diffusers_ddim_sample

                z = diffusers_ddim_sample(model, diffusers_ddim(schedule.config), x_T.expand(b, -1, -1, -1),
                                          steps or schedule.config.sampling.steps)
            x0 = unet.decode(z)  # (b, 3, S, S)
            if cfg.warp and cfg.colour_match > 0:
                x0 = match_colour(x0, warped, chunk, soft, cfg.colour_match * size)
            bar.update(b)
            yield to_uint8(compose(x0, refs, soft))


def check_sampling(schedule: NoiseSchedule, steps: int | None, guidance: float, strength: float = 1.0) -> None:
    """Raise ValueError unless ``1 ≤ steps ≤`` the schedule's training steps (None: its default),
    ``guidance`` is finite and ≥ 0 and ``0 < strength ≤ 1``: checked before any work, not deep inside the sampler."""
    T = schedule.num_train_timesteps
    if steps is not None and not 1 <= steps <= T:
        raise ValueError(f"steps {steps} is out of range — give 1 to {T} DDIM steps (this checkpoint was trained "
                         f"with {T}; {schedule.config.sampling.steps} is its default)")
    if not (np.isfinite(guidance) and guidance >= 0):
        raise ValueError(f"guidance {guidance} is not a finite number ≥ 0 — give e.g. 1 (no guidance, one UNet pass "
                         "per step) or 1.5 (stronger pull toward the landmarks, twice the cost)")
    if not (np.isfinite(strength) and 0 < strength <= 1):
        raise ValueError(f"strength {strength} is not in (0, 1] — give e.g. 0.5 (start from the warped photo, half of "
                         "the steps) or 1 (start from pure noise)")


# -- training ---------------------------------------------------------------------------------------
def pose(b: dict[str, torch.Tensor]) -> torch.Tensor:
    """A training batch's ``cond`` in pixels: the reference, the target with the mask's area hidden, [warp], [sketch]."""
    return condition(b["reference"], b["x0"], b["mask"], b.get("warped"), b.get("sketch"))


def make_loss_fn(schedule: NoiseSchedule):
    """``loss_fn(model, batch) -> {"loss"}`` for the Trainer, for any :class:`Denoiser`: DDPM's L_simple
    on the schedule's target (v for ours, eps for SD 1.x), min-SNR weighted (``config.min_snr_gamma``)
    and mouth weighted, in the space the model diffuses in.

    ``batch``: :func:`minitalker.train.faces.make_batch_fn`'s. Images of another size than the model's are
    resized (Stable Diffusion at 256 px trains on 128 px corpus frames: at 128 px its VAE would leave the
    mouth 2-3 latent pixels). ``x0`` and the condition go through ``encode`` (identity for pixels); then
    the weight map is average-pooled to the latent size and the latent noise drawn here (the batch's is
    pixel-sized).
    """

    def loss_fn(model: nn.Module, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        core = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        S = core.image_size
        if b["x0"].shape[-1] != S:
            b = b | {k: F.interpolate(b[k], size=(S, S), mode="bilinear", align_corners=False, antialias=True)
                     for k in ("x0", "reference", "mask", "weight", "warped", "sketch") if k in b}
        x0 = core.encode(b["x0"])  # (B, c, h, w)
        cond = core.encode(pose(b))  # (B, encoded cond channels, h, w)
        noise = b["noise"] if b["noise"].shape == x0.shape else torch.randn_like(x0)
        weight = b["weight"] if b["weight"].shape[-2:] == x0.shape[-2:] else F.adaptive_avg_pool2d(b["weight"], x0.shape[-2:])
        out = model(schedule.q_sample(x0, b["t"], noise), b["t"], cond, b["landmarks"], drop=b["drop"])
        return {"loss": schedule.diffusion_loss(out, x0, noise, b["t"], schedule.config.min_snr_gamma, weight)}

    return loss_fn


# -- loading ----------------------------------------------------------------------------------------
#: What a checkpoint saved before a config field existed was trained with (the earlier layout).
EARLIER_LAYOUT = {"unet": {"grounded": False}, "agent": {"mask": "half", "warp": False, "sketch": False, "hue_jitter": 0.0}}


def face_agent_config(path: str | Path | None = None) -> tuple[UNetConfig, NoiseSchedule, FaceAgentConfig]:
    """A face checkpoint's configs (UNet, noise schedule, agent) from its JSON alone, no tensor read: what
    arguments are checked against before the model loads. A checkpoint of the earlier layout (no
    ``grounded``/``mask``/``warp``/``sketch`` fields, a flat ``diffusion`` dict) reads as what it is."""
    meta = load_meta(path or SHIPPED)
    check_kind(path or SHIPPED, meta, "faces")
    unet_cfg, diffusion, agent = read_model_config(meta["model_config"])
    return unet_cfg, NoiseSchedule(diffusion), agent


def read_model_config(model_config: dict) -> tuple[UNetConfig, DiffusionConfig, FaceAgentConfig]:
    """A checkpoint's ``model_config`` dict → its configs, in today's layout: fields of the earlier
    layout get :data:`EARLIER_LAYOUT`'s values, fields added since (sampling defaults such as
    ``strength``) their defaults. Used to load a checkpoint and to resume a run started before."""
    mc = {k: EARLIER_LAYOUT.get(k, {}) | v for k, v in model_config.items()}
    unet_cfg, agent = UNetConfig.from_dict(mc["unet"]), FaceAgentConfig.from_dict(mc["agent"])
    check_channels(unet_cfg.cond_channels, agent)
    return unet_cfg, DiffusionConfig.from_dict(mc["diffusion"]), agent


def load_face_agent(path: str | Path | None = None, device=None, ema: bool = True
                    ) -> tuple[LandmarkUNet, NoiseSchedule, FaceAgentConfig]:
    """Load a face checkpoint (``best``/``last`` of a run, or the shipped one) → (unet, schedule, agent cfg).

    Tensors are read from safetensors (no unpickling); the configs from the JSON beside them (:func:`face_agent_config`).
    """
    unet_cfg, schedule, agent = face_agent_config(path)
    tensors, _ = load_checkpoint(path or SHIPPED, device="cpu")
    unet = LandmarkUNet(unet_cfg)
    unet.load_state_dict(model_weights(tensors, ema))
    unet.eval().requires_grad_(False)
    if device is not None:
        unet.to(device)
    return unet, schedule, agent
