"""A landmark puppet: move the mouth of a 68-point face by a few named controls.

Agent 2 draws whatever mouth its target landmarks ask for, so editing the landmarks by hand is the
quickest way to see whether it obeys (notebook 06's sliders). The controls act in the face's own
frame, so a tilted face opens its mouth along its own vertical:

* ``u`` = unit vector from the outer eye corner 36 to 45 (the face's "right" in the image),
  ``v`` = ``u`` turned 90° (the face's "down"); ``d`` = inter-ocular distance ‖p45 - p36‖;
* amounts are in units of ``d``, the unit of :func:`~minitalker.landmarks.scheme.mouth_opening` and
  :func:`~minitalker.landmarks.scheme.mouth_width`, so ``jaw=0.1`` opens the inner lips by 0.1 (exactly
  for an upright face; ``mouth_opening`` measures image rows, so a face tilted by θ gets 0.1 cos θ)
  and ``spread=0.1`` widens the mouth by 0.1.

Landmarks are float ``(68, 2)`` (x, y) pixels of any image (y down); only mouth and jaw points move.
"""

from __future__ import annotations

import numpy as np

from minitalker.landmarks.scheme import check_landmarks, inter_ocular

LOWER_LIP = [55, 56, 57, 58, 59, 65, 66, 67]  # outer 55-59 and inner 65-67: they ride on the jaw
CORNERS = [48, 54, 60, 64]  # outer and inner mouth corners: half the jaw's drop
JAW = np.arange(2, 15)  # jaw points that follow the chin, by a weight that falls off towards the ears
LIPS = np.arange(48, 68)


def face_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(u, v, d)``: the face's horizontal and vertical unit vectors ``(2,)`` and its inter-ocular distance."""
    lm = check_landmarks(landmarks)
    if lm.shape != (68, 2):
        raise ValueError(f"one face (68, 2) at a time; got {lm.shape}")
    d = float(inter_ocular(lm))
    if d <= 0:
        raise ValueError("the outer eye corners (36, 45) coincide: not a face")
    u = (lm[45] - lm[36]) / d
    return u, np.array([-u[1], u[0]]), d


def pose_mouth(landmarks: np.ndarray, jaw: float = 0.0, spread: float = 0.0, rounding: float = 0.0,
               point: int | None = None, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Move the mouth of ``landmarks (68, 2)`` → a new ``(68, 2)`` float32 array (the input is not changed).

    Applied in this order, each in the face's frame (module docstring):

    1. ``spread`` (units of d, may be negative): lip points move along ``u`` away from the mouth's
       centre ``c`` (mean of 48 and 54) by ``spread / 2 · (u·(p - c)) / (u·(p54 - c))``, so the corners
       move by ``spread / 2`` each and the width grows by exactly ``spread``.
    2. ``rounding`` in [0, 1] (an "oo"): lips narrow about ``c`` to ``1 - 0.4 rounding`` of their
       width, and every lip point moves along ``v`` away from the mouth's centre line by 30%·rounding
       of its distance from it (the lips purse outward; the opening grows by that factor).
    3. ``jaw`` (units of d, ≥ -opening): the lower lip (outer 55-59, inner 65-67) moves by ``jaw · v``,
       so the inner-lip gap grows by ``jaw`` (along ``v``); the mouth corners by half of it; jaw points
       2-14 by ``jaw · w`` with ``w = cos(π/2 · |i - 8| / 7)``: 1 at the chin (8), 0.22 at points 2 and 14.
    4. ``point``/``offset``: one landmark moved by ``offset`` = (dx, dy) **image pixels** (a free drag).
    """
    lm = check_landmarks(landmarks).astype(np.float32).copy()
    u, v, d = face_axes(lm)
    c = (lm[48] + lm[54]) / 2
    along = (lm[LIPS] - c) @ u  # (20,) signed distance along the face's horizontal
    half = float((lm[54] - c) @ u)
    if spread:
        lm[LIPS] += np.outer(spread * d / 2 * along / half, u)
    if rounding:
        if not 0 <= rounding <= 1:
            raise ValueError(f"rounding must be in [0, 1]; got {rounding}")
        along = (lm[LIPS] - c) @ u
        across = (lm[LIPS] - c) @ v
        lm[LIPS] += np.outer(-0.4 * rounding * along, u) + np.outer(0.3 * rounding * across, v)
    if jaw:
        lm[LOWER_LIP] += jaw * d * v
        lm[CORNERS] += jaw * d / 2 * v
        w = np.cos((JAW - 8) / 7 * np.pi / 2)  # (13,) 1 at the chin, 0.22 at points 2 and 14
        lm[JAW] += np.outer(jaw * d * w, v)
    if point is not None:
        if not 0 <= point < 68:
            raise ValueError(f"point must be a landmark index 0-67; got {point}")
        lm[point] += np.asarray(offset, np.float32)
    return lm
