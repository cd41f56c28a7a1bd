"""Drawing landmarks: on matplotlib axes, into images (a sketch a network can read), onto video frames.

All functions take landmarks as ``(68, 2)`` or ``(T, 68, 2)`` (x, y) in pixels, y pointing down,
and draw each group of :data:`~minitalker.landmarks.scheme.GROUPS` as a polyline; eyes and lips
are closed polygons.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.draw import disk, line_aa

from minitalker.landmarks.scheme import CLOSED_GROUPS, GROUPS, check_landmarks

GROUP_COLOURS = dict(zip(GROUPS, ("#7f7f7f", "#8c564b", "#8c564b", "#2ca02c", "#2ca02c",
                                  "#1f77b4", "#1f77b4", "#d62728", "#ff7f0e")))


def group_polylines(lm: np.ndarray) -> dict[str, np.ndarray]:
    """``(68, 2)`` → ``{group: (n, 2)}`` vertices in drawing order; closed groups repeat their first point."""
    lines = {}
    for name, (a, b) in GROUPS.items():
        pts = lm[a:b]
        lines[name] = np.concatenate([pts, pts[:1]]) if name in CLOSED_GROUPS else pts
    return lines


def plot_landmarks(ax, lm: np.ndarray, groups: bool = True, labels: bool | Sequence[int] = False,
                   color: str | None = None, markersize: float = 2.0, linewidth: float = 1.0,
                   fontsize: float = 6, **kwargs):
    """Draw one face's landmarks ``(68, 2)`` on a matplotlib ``ax`` (over ``ax.imshow(image)`` if any).

    ``groups``: connect each group with a line in its own colour (else dots only); ``labels``:
    write the index of every point (True) or of the listed points, in ``fontsize`` points, pushed off
    the point away from its group's centre (towards it for the inner lips, so they clear the outer
    lips' labels) and outlined in white to read on a photo; where points crowd, label a subset or
    zoom in. ``color``: one colour for everything instead of per group. Extra ``kwargs`` go to
    ``ax.plot``. Without an image on the axes, we flip y so faces stand upright.
    """
    from matplotlib.patheffects import withStroke

    lm = check_landmarks(lm)
    if lm.shape != (68, 2):
        raise ValueError(f"plot_landmarks draws one face (68, 2); got {lm.shape}: index a frame first")
    for name, pts in group_polylines(lm).items():
        c = color or GROUP_COLOURS[name]
        ax.plot(pts[:, 0], pts[:, 1], "-o" if groups else "o", color=c, markersize=markersize,
                linewidth=linewidth, **kwargs)
    if not ax.images:
        ax.set_aspect("equal")
        if not ax.yaxis_inverted():
            ax.invert_yaxis()
    show = range(68) if labels is True else [] if labels is False else labels
    for i in show:
        dx, dy = _label_direction(lm, int(i))  # y down, as in the image
        ax.annotate(str(i), lm[i], xytext=(1.2 * fontsize * dx, -1.2 * fontsize * dy), textcoords="offset points",
                    fontsize=fontsize, ha="center", va="center", path_effects=[withStroke(linewidth=2, foreground="w")])
    return ax


def _label_direction(lm: np.ndarray, i: int) -> np.ndarray:
    """Unit vector ``(2,)`` from point ``i``'s group centre to the point (reversed for the inner lips)."""
    name, (a, b) = next((n, g) for n, g in GROUPS.items() if g[0] <= i < g[1])
    d = (lm[i] - lm[a:b].mean(0)) * (-1 if name == "inner_lips" else 1)
    n = np.hypot(*d)
    return d / n if n > 0 else np.array([0.0, -1.0])


def rasterise(lm: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Draw the landmark groups as anti-aliased 1-px lines: ``(..., 68, 2)`` → ``(..., H, W)`` float32 in [0, 1].

    ``size``: ``S`` for ``(S, S)`` or ``(H, W)``; landmarks are in pixels of that image (parts
    outside it are clipped). This is the "sketch" form of the landmarks, an image a convolutional
    network can take as extra input channels.
    """
    lm = check_landmarks(lm)
    H, W = (size, size) if np.isscalar(size) else size
    if lm.ndim > 2:
        return np.stack([rasterise(x, (H, W)) for x in lm])
    img = np.zeros((H, W), np.float32)
    for pts in group_polylines(np.round(lm).astype(int)).values():
        for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
            rr, cc, val = line_aa(y0, x0, y1, x1)
            ok = (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
            np.maximum.at(img, (rr[ok], cc[ok]), val[ok].astype(np.float32))
    return img


def draw_on_frames(frames: np.ndarray, landmarks: np.ndarray, color=(0, 255, 0), radius: int = 1) -> np.ndarray:
    """Landmarks drawn over video frames: ``(T, H, W, 3)`` uint8 + ``(T, 68, 2)`` → new ``(T, H, W, 3)`` uint8.

    Lines from :func:`rasterise` are alpha-blended in ``color``; each point gets a dot of ``radius`` px
    (0 for none). A single image ``(H, W, 3)`` with ``(68, 2)`` works too.
    """
    frames, lm = np.asarray(frames), check_landmarks(landmarks)
    if frames.dtype != np.uint8 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 RGB (..., H, W, 3); got {frames.dtype} {frames.shape}")
    if frames.shape[:-3] != lm.shape[:-2]:
        raise ValueError(f"one (68, 2) face per frame is needed: frames {frames.shape}, landmarks {lm.shape}")
    H, W = frames.shape[-3:-1]
    alpha = rasterise(lm, (H, W))[..., None]  # (..., H, W, 1)
    if radius > 0:
        for idx in np.ndindex(lm.shape[:-2]):
            for x, y in lm[idx]:
                alpha[idx][disk((y, x), radius + 0.5, shape=(H, W))] = 1.0
    out = frames * (1 - alpha) + np.asarray(color, np.float32) * alpha
    return np.round(out).astype(np.uint8)


def frame_grid(frames: np.ndarray, landmarks: np.ndarray | None = None, ncols: int = 8,
               titles: list[str] | None = None, size: float = 1.6, fontsize: float = 7):
    """A matplotlib figure of frames ``(T, H, W, 3)`` in a grid, optionally with landmarks ``(T, 68, 2)`` on top.

    ``titles`` default to frame indices (in ``fontsize`` points); ``size`` is inches per panel. Returns the figure.
    """
    import matplotlib.pyplot as plt

    T = len(frames)
    if landmarks is not None and len(landmarks) != T:
        raise ValueError(f"{T} frames but {len(landmarks)} landmark sets: give one (68, 2) per frame")
    ncols = min(ncols, T)
    nrows = -(-T // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < T:
            ax.imshow(frames[i])
            if landmarks is not None:
                plot_landmarks(ax, landmarks[i], markersize=1.0, linewidth=0.6)
            ax.set_title(titles[i] if titles else str(i), fontsize=fontsize)
    fig.tight_layout()
    return fig
