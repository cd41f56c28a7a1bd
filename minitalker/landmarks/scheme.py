"""The iBUG 68-point landmark scheme: named groups, masks, normalisation, crop units and mouth measures.

Point indices (0-based), as in the 300-W / iBUG annotation and dlib's 68-point predictor::

    jaw 0-16 | right brow 17-21 | left brow 22-26 | nose bridge 27-30 | nose base 31-35
    right eye 36-41 | left eye 42-47 | outer lips 48-59 | inner lips 60-67

("right"/"left" are the subject's, i.e. the right eye appears on the left of the image.)
All functions accept any leading batch shape: landmarks are ``(..., 68, 2)`` arrays of (x, y)
in pixels, y pointing down.
"""

from __future__ import annotations

import numpy as np

N_POINTS = 68
GROUPS: dict[str, tuple[int, int]] = {  # name -> [start, stop)
    "jaw": (0, 17),
    "right_brow": (17, 22),
    "left_brow": (22, 27),
    "nose_bridge": (27, 31),
    "nose_base": (31, 36),
    "right_eye": (36, 42),
    "left_eye": (42, 48),
    "outer_lips": (48, 60),
    "inner_lips": (60, 68),
}
CLOSED_GROUPS = ("right_eye", "left_eye", "outer_lips", "inner_lips")  # drawn as closed polygons


def group_indices(name: str) -> np.ndarray:
    """Indices of one named group (see :data:`GROUPS`)."""
    if name not in GROUPS:
        raise KeyError(f"unknown landmark group {name!r}; known: {list(GROUPS)}")
    return np.arange(*GROUPS[name])


MOUTH = np.arange(48, 68)
LOWER_JAW = np.arange(3, 14)  # jaw points from below the cheekbones round the chin: they move with the jaw
#: The completion mask of agent 1: True = hidden (predicted from audio), False = visible.
#: Our interpretation of the paper's "mouth and jaw masked": all 20 lip points plus the 11 lower
#: jaw points, because these are exactly the points whose position depends on speech; the upper
#: jaw (0-2, 14-16) stays visible since it fixes head scale and pose.
COMPLETION_MASK = np.zeros(N_POINTS, dtype=bool)
COMPLETION_MASK[MOUTH] = True
COMPLETION_MASK[LOWER_JAW] = True

_EYE_L, _EYE_R = 36, 45  # outer eye corners: they define the canonical frame


def check_landmarks(lm: np.ndarray, name: str = "landmarks") -> np.ndarray:
    """Validate a ``(..., 68, 2)`` finite array; return it as float32 (raise ValueError otherwise)."""
    lm = np.asarray(lm, dtype=np.float32)
    if lm.ndim < 2 or lm.shape[-2:] != (N_POINTS, 2):
        raise ValueError(f"{name} must have shape (..., 68, 2) (iBUG-68 points as x, y); got {lm.shape}")
    if not np.isfinite(lm).all():
        raise ValueError(f"{name} contains NaN or inf: fill missing frames first (detect_landmarks does)")
    return lm


def similarity_params(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The similarity transform that maps a face to the canonical frame.

    Canonical frame: the midpoint of the outer eye corners (36, 45) at the origin, the line through
    them horizontal, their distance 1. Returns ``(scale (...,), rotation (..., 2, 2), origin (..., 2))``
    with ``canonical = (lm - origin) @ R.T * scale``.
    """
    lm = check_landmarks(lm)
    left, right = lm[..., _EYE_L, :], lm[..., _EYE_R, :]
    d = right - left  # (..., 2)
    dist = np.linalg.norm(d, axis=-1)
    if (dist < 1e-6).any():
        raise ValueError("degenerate landmarks: the outer eye corners coincide")
    c, s = d[..., 0] / dist, d[..., 1] / dist
    rot = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)  # rotates d onto +x
    return 1.0 / dist, rot, (left + right) / 2


def normalise(lm: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Map landmarks ``(..., 68, 2)`` to the canonical frame; return (points, params for :func:`denormalise`).

    ``x_c = s R (x - o)``: removes position, in-plane rotation and scale, keeps expression.
    """
    scale, rot, origin = similarity_params(lm)
    out = np.einsum("...ij,...pj->...pi", rot, lm - origin[..., None, :]) * scale[..., None, None]
    return out.astype(np.float32), {"scale": scale, "rot": rot, "origin": origin}


def denormalise(lm_c: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """Inverse of :func:`normalise`: ``x = R^T x_c / s + o``."""
    lm_c = np.asarray(lm_c, dtype=np.float32)
    back = np.einsum("...ji,...pj->...pi", params["rot"], lm_c / params["scale"][..., None, None])
    return (back + params["origin"][..., None, :]).astype(np.float32)


def crop_to_unit(lm, size: int):
    """Crop pixels → [-1, 1] of an ``S x S`` crop: ``u = x / (S - 1) * 2 - 1`` (numpy or torch, any shape).

    Pixel centres sit at the integers 0 … S - 1, so pixel 0 maps to -1 and pixel S - 1 to +1, as in
    ``F.grid_sample(..., align_corners=True)``. The one convention for every network that reads or
    writes landmarks in crop units (the UNet's tokens and grounded queries, the landmark regressor).
    """
    return lm / (size - 1) * 2 - 1


def unit_to_crop(u, size: int):
    """Inverse of :func:`crop_to_unit`: ``x = (u + 1) / 2 * (S - 1)``."""
    return (u + 1) / 2 * (size - 1)


def inter_ocular(lm: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners (36, 45): the usual normaliser of landmark errors."""
    lm = np.asarray(lm, dtype=np.float32)
    return np.linalg.norm(lm[..., _EYE_R, :] - lm[..., _EYE_L, :], axis=-1)


def mouth_opening(lm: np.ndarray) -> np.ndarray:
    """Inner-lip opening: mean vertical gap of the pairs (61,67), (62,66), (63,65), over inter-ocular distance."""
    lm = np.asarray(lm, dtype=np.float32)
    gap = lm[..., [67, 66, 65], 1] - lm[..., [61, 62, 63], 1]
    return gap.mean(-1) / inter_ocular(lm)


def mouth_width(lm: np.ndarray) -> np.ndarray:
    """Outer mouth-corner distance (48, 54) over inter-ocular distance."""
    lm = np.asarray(lm, dtype=np.float32)
    return np.linalg.norm(lm[..., 54, :] - lm[..., 48, :], axis=-1) / inter_ocular(lm)


def mouth_error(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Mean Euclidean error over the 20 mouth points, over the true inter-ocular distance: ``(...,)``."""
    pred, true = check_landmarks(pred, "pred"), check_landmarks(true, "true")
    err = np.linalg.norm(pred[..., MOUTH, :] - true[..., MOUTH, :], axis=-1).mean(-1)
    return err / inter_ocular(true)


def face_box(lm: np.ndarray, zoom: float = 1.0) -> np.ndarray:
    """The square face crop of a frame: ``(..., 3)`` = (centre x, centre y, side) in pixels.

    Our convention (used by the corpus renderer and by video.aligned_crops alike): the centre is
    the midpoint between the eyes' centre and the mouth's centre, moved up by 10% of that distance
    so the crop holds brows and chin; the side is 4.4 eye-to-mouth distances divided by ``zoom``.
    It depends on the eyes and the *outer mouth corners* only, so it barely moves while speaking.
    """
    lm = check_landmarks(lm)
    eyes = lm[..., 36:48, :].mean(-2)
    mouth = lm[..., [48, 54], :].mean(-2)
    d = np.linalg.norm(mouth - eyes, axis=-1)
    centre = (eyes + mouth) / 2 - np.stack([np.zeros_like(d), 0.1 * d], -1)
    return np.concatenate([centre, (4.4 * d / zoom)[..., None]], -1).astype(np.float32)
