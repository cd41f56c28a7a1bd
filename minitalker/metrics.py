"""How good is a generated talking face? Pixels, structure, mouth shape, smoothness and realism.

* :func:`psnr`: peak signal-to-noise ratio, ``10 log10(R² / MSE)`` per frame (R = data range).
* :func:`ssim`: structural similarity of Wang et al. (2004), Gaussian 11×11 window (σ = 1.5),
  ``K1 = 0.01``, ``K2 = 0.03``, population (co)variances, averaged over the "valid" positions
  (the window fully inside the image) and over colour channels. It equals
  ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, channel_axis=-1)``.
* both take ``region=`` (a box from :func:`mouth_box`) to score the mouth area only.
* :func:`landmark_jitter`: mean frame-to-frame acceleration ``‖x[t+1] - 2x[t] + x[t-1]‖`` of the
  20 mouth points, over the inter-ocular distance: 0 for a still or uniformly moving mouth.
* :func:`frechet_distance` (Heusel et al. 2017) and :func:`fid`, with Inception features from a
  local TorchScript file (never downloaded).
* :func:`measure_landmarks` and :func:`evaluate_frames`: landmarks re-measured on generated frames
  (dlib at 128 px and above; below, our :class:`~minitalker.nn.landmark_regressor.LandmarkRegressor`,
  trained on true frames only) and every number above for one clip.

Frames are uint8 ``(..., H, W, 3)``, landmarks float ``(..., 68, 2)`` in pixels of those frames.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from scipy import linalg
from scipy.ndimage import correlate1d

from minitalker.config import cache_dir
from minitalker.landmarks.scheme import MOUTH, check_landmarks, inter_ocular, mouth_error

PSNR_CAP = 100.0  # dB reported for identical images (MSE = 0), so means over frames stay finite
DLIB_MIN_SIZE = 128  # below this, dlib misses faces: landmarks come from the regressor instead
INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/" + INCEPTION_FILE


# ------------------------------------------------------------------------------- pixel metrics

def _pair(a: np.ndarray, b: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    """Check two image stacks ``(..., H, W, C)`` against each other → float64 copies."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images must have the same shape; got {a.shape} and {b.shape}")
    if a.ndim < 3 or a.shape[-1] not in (1, 3):
        raise ValueError(f"expected images (..., H, W, 3) (or 1 channel); got shape {a.shape}")
    for x in (a, b):
        if x.dtype == np.uint8:
            if data_range != 255:
                raise ValueError(f"uint8 images span 0-255, but data_range={data_range}: use data_range=255")
        elif not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"images must be uint8 or float, got {x.dtype}")
        elif x.size and (x.min() < 0 or x.max() > data_range):
            raise ValueError(f"float images must lie in [0, data_range={data_range}], found [{x.min():.3g}, "
                             f"{x.max():.3g}]: map network outputs in [-1, 1] with (x + 1) / 2 * data_range")
    return a.astype(np.float64), b.astype(np.float64)


def crop(frames: np.ndarray, region: tuple[int, int, int, int] | None) -> np.ndarray:
    """``frames (..., H, W, C)`` → the box ``region = (x0, y0, x1, y1)`` (x1, y1 exclusive), or all."""
    frames = np.asarray(frames)
    if region is None:
        return frames
    x0, y0, x1, y1 = region
    H, W = frames.shape[-3:-1]
    if not (0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H):
        raise ValueError(f"region {region} does not fit in {W}x{H} frames (x0, y0, x1, y1 with x1, y1 exclusive)")
    return frames[..., y0:y1, x0:x1, :]


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0,
         region: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Peak signal-to-noise ratio per image: ``10 log10(R² / MSE)`` dB, ``(..., H, W, C)`` → ``(...,)``.

    ``R = data_range`` (255 for uint8). Identical images give :data:`PSNR_CAP` (100 dB) instead of inf.
    """
    a, b = _pair(crop(a, region), crop(b, region), data_range)
    mse = ((a - b) ** 2).mean(axis=(-3, -2, -1))
    return np.minimum(10 * np.log10(data_range**2 / np.maximum(mse, 1e-300)), PSNR_CAP)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """The normalised 1-D Gaussian ``g[i] ∝ exp(-i² / 2σ²)``, ``i = -(size//2) … size//2``; the 2-D window is g gᵀ."""
    i = np.arange(size) - size // 2
    g = np.exp(-(i**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0,
         region: tuple[int, int, int, int] | None = None, win: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Mean SSIM per image (Wang et al. 2004), ``(..., H, W, C)`` → ``(...,)``.

    With local Gaussian-weighted means μ, variances σ² and covariance σ_ab::

        SSIM = (2 μa μb + C1)(2 σ_ab + C2) / ((μa² + μb² + C1)(σa² + σb² + C2)),  C_i = (K_i R)²

    averaged over every position where the ``win × win`` window lies inside the image and over channels.
    """
    a, b = _pair(crop(a, region), crop(b, region), data_range)
    H, W = a.shape[-3:-1]
    if min(H, W) < win:
        raise ValueError(f"SSIM needs images of at least {win}x{win} pixels (its window); got {W}x{H}: "
                         "use a larger region (mouth_box's min_side) or larger frames")
    g = gaussian_window(win, sigma)

    def blur(x):  # Gaussian-weighted local mean over the valid positions: (..., H, W, C) → (..., H-win+1, W-win+1, C)
        x = correlate1d(correlate1d(x, g, axis=-3), g, axis=-2)
        r = win // 2
        return x[..., r:H - r, r:W - r, :]

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean(axis=(-3, -2, -1))


def mouth_box(landmarks: np.ndarray, size: int, margin: float = 0.3, min_side: int = 16) -> tuple[int, int, int, int]:
    """A square box ``(x0, y0, x1, y1)`` (x1, y1 exclusive) round the mouth, inside a ``size × size`` frame.

    ``landmarks (68, 2)`` or ``(T, 68, 2)``: one box for the whole clip, round the 20 mouth points of
    every frame, so all frames are scored on the same pixels (pass the *true* landmarks). The side is
    the larger extent of those points plus ``margin`` of it on each side, at least ``min_side`` (SSIM
    needs 11); the box is shifted, not shrunk, to stay inside the frame.
    """
    pts = check_landmarks(landmarks)[..., MOUTH, :].reshape(-1, 2)  # (T*20, 2)
    lo, hi = pts.min(0), pts.max(0)
    side = int(np.ceil(max(hi - lo) * (1 + 2 * margin)))
    side = min(max(side, min_side), size)
    x0, y0 = np.clip(np.round((lo + hi) / 2 - side / 2).astype(int), 0, size - side)
    return int(x0), int(y0), int(x0) + side, int(y0) + side


# ---------------------------------------------------------------------------- landmark metrics

def landmark_jitter(landmarks: np.ndarray) -> float:
    """Mean acceleration of the mouth, ``mean_t,i ‖x_i[t+1] - 2 x_i[t] + x_i[t-1]‖ / IOD[t]``.

    ``landmarks (T, 68, 2)``, ``T ≥ 3``; ``i`` runs over the 20 mouth points and IOD is the
    inter-ocular distance of frame ``t``. Zero for a still or uniformly moving mouth; flicker from
    frame to frame raises it. Compare it with the truth's (speech itself accelerates the lips).
    """
    lm = check_landmarks(landmarks)
    if lm.ndim != 3 or len(lm) < 3:
        raise ValueError(f"jitter needs a clip of landmarks (T, 68, 2) with T >= 3; got {lm.shape}")
    acc = lm[2:, MOUTH] - 2 * lm[1:-1, MOUTH] + lm[:-2, MOUTH]  # (T-2, 20, 2)
    return float((np.linalg.norm(acc, axis=-1) / inter_ocular(lm[1:-1])[:, None]).mean())


def jitter_ratio(landmarks: np.ndarray, truth: np.ndarray) -> float:
    """``landmark_jitter(landmarks) / landmark_jitter(truth)``: 1 = as smooth as the truth, > 1 = shakier."""
    return landmark_jitter(landmarks) / max(landmark_jitter(truth), 1e-12)


# ---------------------------------------------------------------------------------------- FID

def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between Gaussians N(μ1, Σ1) and N(μ2, Σ2) (Heusel et al. 2017)::

        d² = ‖μ1 - μ2‖² + Tr(Σ1 + Σ2 - 2 (Σ1 Σ2)^½)

    ``(Σ1 Σ2)^½`` by ``scipy.linalg.sqrtm``; if the product is singular (fewer samples than feature
    dimensions) we add 1e-6 to the diagonals first, and drop the round-off imaginary part.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"need means (D,) and covariances (D, D) of one D; "
                         f"got {mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}")
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        eps = 1e-6 * np.eye(len(mu1))
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def inception_path(path: str | os.PathLike | None = None) -> Path:
    """The local Inception file: ``path``, else ``$MINITALKER_CACHE/inception-2015-12-05.pt``; it must exist."""
    path = Path(path) if path is not None else cache_dir() / INCEPTION_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"FID needs the TorchScript Inception feature extractor {INCEPTION_FILE} (StyleGAN2-ADA / clean-fid), "
            f"and {path} does not exist. minitalker never downloads it: fetch it once with\n"
            f"  curl -L -o {cache_dir() / INCEPTION_FILE} {INCEPTION_URL}\n"
            "(that is $MINITALKER_CACHE, default data/cache) or pass its path as inception_path.")
    return path


def inception_features(frames: np.ndarray, path: str | os.PathLike | None = None, batch_size: int = 32) -> np.ndarray:
    """``frames (N, H, W, 3)`` uint8 → Inception pool features ``(N, D)`` (D = 2048 for the real file).

    The TorchScript model takes float ``(B, 3, 299, 299)`` in 0–255 and ``return_features=True``;
    we resize bilinearly to 299 ourselves.
    """
    import torch
    import torch.nn.functional as F

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames (N, H, W, 3) uint8; got {frames.shape} {frames.dtype}")
    with warnings.catch_warnings():  # torch 2.9+ deprecates TorchScript, but that is the file's format
        warnings.simplefilter("ignore", DeprecationWarning)
        model = torch.jit.load(str(inception_path(path)), map_location="cpu").eval()
    feats = []
    with torch.no_grad():
        for i in range(0, len(frames), batch_size):
            x = torch.from_numpy(frames[i:i + batch_size]).permute(0, 3, 1, 2).float()  # (B, 3, H, W) 0-255
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            feats.append(model(x, return_features=True).reshape(len(x), -1).double().numpy())
    return np.concatenate(feats)


def fid(real_frames: np.ndarray, fake_frames: np.ndarray, inception_path: str | os.PathLike | None = None) -> float:
    """Fréchet Inception distance between two sets of frames ``(N, H, W, 3)`` uint8 (lower is better).

    Inception features of each set → mean and covariance → :func:`frechet_distance`. With fewer frames
    than feature dimensions (2048) the estimate is biased upwards: compare FIDs of equal-sized sets only.
    """
    real = inception_features(real_frames, inception_path)
    fake = inception_features(fake_frames, inception_path)
    if len(real) < 2 or len(fake) < 2:
        raise ValueError("FID needs at least 2 frames in each set (a covariance)")
    return frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))


# ----------------------------------------------------------------------- measuring and evaluating

def measure_landmarks(frames: np.ndarray, reference: tuple[np.ndarray, np.ndarray] | None = None,
                      regressor=None) -> tuple[np.ndarray, str]:
    """Landmarks of generated (or true) frames ``(T, S, S, 3)`` uint8 → ``(landmarks (T, 68, 2), method)``.

    ``S >= 128``: re-detected by dlib's HOG detector (``method = "dlib"``; frames without a face are
    interpolated; no CNN second look, so a frame too poor for HOG counts as a miss, as it always did).
    ``S < 128``, where dlib misses faces: the :class:`~minitalker.nn.landmark_regressor.LandmarkRegressor`,
    trained on ground-truth frames only (``method = "regressor"``). It reads each frame against
    ``reference = (frame (S, S, 3) uint8, landmarks (68, 2))``, a frame of the same face with known
    landmarks: the photo the generator animated. ``regressor``: default the shipped one.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] != frames.shape[2]:
        raise ValueError(f"expected square frames (T, S, S, 3) uint8; got {frames.shape} {frames.dtype}")
    if frames.shape[1] >= DLIB_MIN_SIZE:
        from minitalker.landmarks.detect import detect_landmarks

        return detect_landmarks(frames, backend="dlib", cnn=False).landmarks, "dlib"
    if reference is None:
        raise ValueError(f"{frames.shape[1]}px frames are too small for dlib; the landmark regressor that measures "
                         "them reads each frame against a reference of the same face: pass reference=(frame (S, S, 3), "
                         "landmarks (68, 2)), the photo the generator animated (e.g. clip.reference())")
    from minitalker.nn.landmark_regressor import load_landmark_regressor

    model = regressor if regressor is not None else load_landmark_regressor(frames.shape[1])
    return model.predict(frames, *reference), "regressor"


def evaluate_frames(generated: np.ndarray, truth: np.ndarray, truth_landmarks: np.ndarray,
                    reference: tuple[np.ndarray, np.ndarray] | None = None, regressor=None) -> dict[str, float | str]:
    """Every metric for one clip: ``generated``, ``truth`` ``(T, S, S, 3)`` uint8, ``truth_landmarks (T, 68, 2)``.

    Returns means over frames: ``psnr``, ``ssim`` (whole frame), ``mouth_psnr``, ``mouth_ssim`` (in the
    :func:`mouth_box` of the true landmarks); ``lmd``: mouth landmark distance (:func:`mouth_error`,
    fraction of the inter-ocular distance) between landmarks measured on the generated frames and the
    true ones, next to ``lmd_floor``, the same measured on the true frames (the measuring tool's own
    error: nothing can score below it); ``jitter`` of the generated frames' measured landmarks against
    ``jitter_truth`` of the true frames' measured ones (same tool, so its noise cancels), and their
    ``jitter_ratio``; ``landmarks_by`` names the tool. ``reference`` and ``regressor``: see
    :func:`measure_landmarks` (needed below 128 px).
    """
    generated, truth = np.asarray(generated), np.asarray(truth)
    if generated.shape != truth.shape or generated.ndim != 4:
        raise ValueError(f"generated and truth must both be (T, S, S, 3); got {generated.shape} and {truth.shape}")
    lm_true = check_landmarks(truth_landmarks, "truth_landmarks")
    if lm_true.shape != (len(truth), 68, 2):
        raise ValueError(f"truth_landmarks must be ({len(truth)}, 68, 2), one per frame; got {lm_true.shape}")
    box = mouth_box(lm_true, truth.shape[1])
    out: dict[str, float | str] = {
        "psnr": psnr(generated, truth).mean(), "ssim": ssim(generated, truth).mean(),
        "mouth_psnr": psnr(generated, truth, region=box).mean(), "mouth_ssim": ssim(generated, truth, region=box).mean()}
    lm_gen, method = measure_landmarks(generated, reference, regressor)
    lm_meas, _ = measure_landmarks(truth, reference, regressor)
    out |= {"lmd": mouth_error(lm_gen, lm_true).mean(), "lmd_floor": mouth_error(lm_meas, lm_true).mean()}
    if len(truth) >= 3:
        out |= {"jitter": landmark_jitter(lm_gen), "jitter_truth": landmark_jitter(lm_meas),
                "jitter_ratio": jitter_ratio(lm_gen, lm_meas)}
    return {k: float(v) for k, v in out.items()} | {"landmarks_by": method}
