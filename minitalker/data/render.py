"""Frames of a talking face from one photo: a piecewise-affine warp, a painted mouth, in the face crop.

The photo's own 68 landmarks and each frame's landmarks are joined into two triangle meshes with the
same triangles; every pixel of a frame lies in one triangle, and the affine map of that triangle
tells where in the photo to read its colour (*inverse* mapping: no holes). Around the 68 points we
add points that move rigidly with the head (forehead, temples, neck) and fixed points just outside
the crop, so the head moves over a still background and nothing tears at the crop's edge.

A photo has no inside of the mouth to warp, so where the lips part we paint one: a dark cavity with
a band of upper teeth, with anti-aliased edges. The result is rendered straight into the square
face crop of :func:`~minitalker.landmarks.scheme.face_box`, fixed for the clip (from the rest pose),
so head motion shows. Pixel convention as in :func:`minitalker.video.aligned_crops`: crop pixel
``u`` reads image ``x = x0 + (u + 0.5) s`` (``x0`` the box's corner, ``s = side / size``).

Our interpretation: the paper trains on recorded video; warping one photo is how we make a corpus
whose landmarks are exactly right. Its limits (no teeth of the person's own, no tongue, no
shading change, no out-of-plane rotation) are what a model trained on it will inherit.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import Delaunay

from minitalker.audio import n_video_frames
from minitalker.data.faces import load_face
from minitalker.data.visemes import animate_landmarks, articulate, rest_landmarks
from minitalker.landmarks.scheme import check_landmarks, denormalise, face_box, inter_ocular, normalise

TEETH = (208, 202, 188)  # RGB of the upper teeth (lit from the front)
CAVITY = ((40, 14, 16), (92, 34, 38))  # RGB at the top (behind the teeth) and bottom (tongue) of the mouth
TOOTH_LENGTH = 0.05  # visible length of the upper incisors, in eye distances
MARGIN = 0.1  # fixed anchor points this fraction of the crop outside it


@dataclasses.dataclass
class RenderedClip:
    """A rendered talking clip, all in the pixels of the square face crop.

    ``landmarks (T, 68, 2)`` float32, ``frames (T, S, S, 3)`` uint8, and the rest pose (closed mouth,
    no head motion, open eyes) as ``reference_frame (S, S, 3)`` and ``reference_landmarks (68, 2)``.
    """

    landmarks: np.ndarray
    frames: np.ndarray
    reference_frame: np.ndarray
    reference_landmarks: np.ndarray


def to_crop(lm: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Image pixels → crop pixels for a ``box = (cx, cy, side)``: ``u = (x - x0) / s - 0.5``."""
    s = box[2] / size
    return ((np.asarray(lm) - (box[:2] - box[2] / 2)) / s - 0.5).astype(np.float32)


def from_crop(uv: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Crop pixels → image pixels (inverse of :func:`to_crop`)."""
    s = box[2] / size
    return (np.asarray(uv) + 0.5) * s + (box[:2] - box[2] / 2)


# ------------------------------------------------------------------------------------- the mesh

def _head_points(lm: np.ndarray) -> np.ndarray:
    """Extra points ``(13, 2)``, in the canonical frame, that belong to the head but not the face:
    the forehead above the brows, the temples beside the upper jaw, the neck below the chin."""
    c, _ = normalise(lm)
    forehead = c[[17, 19, 21, 22, 24, 26]] - [0, 0.5]
    centre = c[[0, 16, 8]].mean(0)
    temples = centre + 1.25 * (c[[0, 2, 14, 16]] - centre)
    neck = c[[5, 8, 11]] + [0, 0.45]
    return np.concatenate([forehead, temples, neck])


def _border(size: int) -> np.ndarray:
    """16 fixed anchors ``(16, 2)`` in crop pixels: five a side on a square ``MARGIN`` outside the crop."""
    lo, hi = -0.5 - MARGIN * size, size - 0.5 + MARGIN * size
    side = np.linspace(lo, hi, 5)
    return np.array([(x, lo) for x in side] + [(hi, y) for y in side[1:]] + [(x, hi) for x in side[-2::-1]]
                    + [(lo, y) for y in side[-2:0:-1]], dtype=np.float64)


#: The contours of the outer and inner lips, and the mouth corners joining them: the mesh must have
#: these edges, so that no triangle straddles a lip's edge (it would fold when the mouth moves).
LIP_EDGES = [(a, b) for ring in ([*range(48, 60), 48], [*range(60, 68), 60]) for a, b in zip(ring, ring[1:])]
LIP_EDGES += [(48, 60), (54, 64)]


def _crosses(p: np.ndarray, q: np.ndarray, r: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Do the segments ``pq`` and ``rs`` cross at a point inside both? Points ``(..., 2)`` → ``(...,)``."""
    side = lambda a, b, c: ((b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1])  # noqa: E731
                            - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0]))
    return (side(p, q, r) * side(p, q, s) < 0) & (side(r, s, p) * side(r, s, q) < 0)


def _insert_edge(tris: list[tuple], pts: np.ndarray, a: int, b: int, keep: set) -> None:
    """Flip edges of the triangulation ``tris`` (in place) until it has the edge ``a-b``, if possible.

    An edge ``c-d`` that crosses ``a-b`` is the diagonal of the quadrilateral formed by its two
    triangles ``c-d-e`` and ``d-c-f``; if that quadrilateral is convex we swap the diagonal for
    ``e-f`` (a flip). Repeating this with the crossing edges removes them all (Sloan, 1993), and
    then ``a-b`` is an edge. Edges in ``keep`` (``frozenset`` pairs inserted before) never flip;
    if one of them crosses ``a-b`` (a badly detected, tangled mouth) we give up on ``a-b``: the
    warp stays continuous, only less faithful at that spot.
    """
    for _ in range(10 * len(tris)):
        edges = sorted({tuple(sorted(e)) for t in tris for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2]))}
                       - {tuple(sorted(e)) for e in keep})
        ends = np.array(edges)  # (E, 2)
        crossing = [edges[i] for i in np.nonzero(_crosses(pts[a], pts[b], pts[ends[:, 0]], pts[ends[:, 1]]))[0]]
        if not crossing:
            break
        for c, d in crossing:
            i, j = [k for k, t in enumerate(tris) if c in t and d in t]
            e, f = (next(v for v in tris[k] if v not in (c, d)) for k in (i, j))
            if _crosses(pts[e], pts[f], pts[c], pts[d]):  # convex: flip the diagonal
                tris[i], tris[j] = (c, e, f), (d, f, e)
                break
        else:
            return  # no crossing edge can be flipped


def _triangles(lm: np.ndarray, head_c: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """The triangles ``(N, 3)`` shared by every frame, from a template face.

    The template is ``lm`` with a wide-open mouth: each inner-lip point halfway between the mouth's
    centre and an outer-lip point, so the mouth opening gets triangles of its own (they shrink to
    nothing when the lips close). We take its Delaunay triangulation, then flip edges until the
    lip contours (:data:`LIP_EDGES`) are edges of the mesh (a constrained triangulation, by hand).
    """
    open_lm = np.array(lm, dtype=np.float64)
    centre = open_lm[48:60].mean(0)
    open_lm[60:68] = centre + (open_lm[[48, 50, 51, 52, 54, 56, 57, 58]] - centre) / 2
    pts = _vertices(open_lm[None], head_c, box, size)[0]
    tris = [tuple(t) for t in Delaunay(pts).simplices]
    keep: set = set()
    for a, b in LIP_EDGES:
        _insert_edge(tris, pts, a, b, keep)
        keep.add(frozenset((a, b)))
    return np.array(tris)


def _vertices(lms: np.ndarray, head_c: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Mesh vertices in crop pixels ``(T, 68 + 13 + 16, 2)``: landmarks, head points placed with each
    frame's eye-corner frame (so they follow the head), fixed border anchors."""
    _, frame = normalise(lms)
    head = denormalise(np.broadcast_to(head_c, (len(lms), *head_c.shape)), frame)
    border = np.broadcast_to(_border(size), (len(lms), 16, 2))
    return np.concatenate([to_crop(lms, box, size), to_crop(head, box, size), border], 1).astype(np.float64)


def _barycentric_maps(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangles ``(N, 3, 2)`` → the linear maps ``(N, 2, 3)`` taking ``(x, y, 1)`` to the barycentric
    weights of corners 1 and 2 (corner 0 gets ``1 - w1 - w2``), and ``ok (N,)``: False for degenerate
    triangles (closed lips, shut eyes), which must never be chosen."""
    a, e1, e2 = corners[:, 0], corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]  # (N, 2) each
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]  # (N,) twice the signed area
    ok = np.abs(det) > 1e-6
    det = np.where(ok, det, 1.0)[:, None]
    # w1 = ((p - a) × e2) / det, w2 = (e1 × (p - a)) / det, as linear maps of (x, y, 1)
    w1 = np.stack([e2[:, 1], -e2[:, 0], a[:, 1] * e2[:, 0] - a[:, 0] * e2[:, 1]], 1) / det  # (N, 3)
    w2 = np.stack([-e1[:, 1], e1[:, 0], a[:, 0] * e1[:, 1] - a[:, 1] * e1[:, 0]], 1) / det
    return np.stack([w1, w2], 1), ok


def _candidates(corners: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """For each pixel, the triangles that may hold it in *some* frame: ``(P, C)`` indices, ``-1`` = none.

    ``corners (T, N, 3, 2)``: a triangle can only hold a pixel inside its bounding box, so we take
    each triangle's box over all frames. Searching these few (C is about ten) instead of all
    N ≈ 180 triangles makes the per-frame search cheap.
    """
    lo, hi = corners.min(axis=(0, 2)) - 1e-6, corners.max(axis=(0, 2)) + 1e-6  # (N, 2) each
    x, y = pixels[:, :1], pixels[:, 1:]  # (P, 1) each
    pixel, tri = np.nonzero((x >= lo[:, 0]) & (x <= hi[:, 0]) & (y >= lo[:, 1]) & (y <= hi[:, 1]))  # by pixel
    n_hit = np.bincount(pixel, minlength=len(pixels))  # (P,)
    slot = np.arange(len(pixel)) - np.repeat(np.cumsum(n_hit) - n_hit, n_hit)  # 0, 1, ... within a pixel
    out = np.full((len(pixels), n_hit.max()), -1)
    out[pixel, slot] = tri
    return out


def _weights(maps: np.ndarray, ok: np.ndarray, tris: np.ndarray, homog: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric weights of pixels ``homog (P, 3)`` in triangles ``tris (P, C)`` → ``(w (2, P, C), score (P, C))``.

    ``score`` is the smallest of the three weights: ≥ 0 inside; ``-inf`` for degenerate triangles and ``-1`` slots.
    """
    w = np.einsum("pcij,pj->ipc", maps[tris], homog)  # (2, P, C)
    score = np.minimum(np.minimum(w[0], w[1]), 1 - w[0] - w[1])
    score[(tris < 0) | ~ok[tris]] = -np.inf
    return w, score


def _locate(corners: np.ndarray, pixels: np.ndarray, candidates: np.ndarray,
            guess: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Which triangle holds each pixel, and its barycentric weights.

    ``corners (N, 3, 2)``, ``pixels (P, 2)``, ``candidates (P, C)`` → ``(index (P,), weights (P, 3))``.
    Among a pixel's candidates we take the triangle where its *smallest* barycentric weight is
    largest: ≥ 0 means inside (a pixel on an edge may take either side; both give the same colour).
    ``guess (P,)``: last frame's answer. Faces move little from frame to frame, so we first check
    the guess and search the candidates only for the pixels that left their triangle.
    """
    maps, ok = _barycentric_maps(corners)
    homog = np.concatenate([pixels, np.ones((len(pixels), 1))], 1)  # (P, 3)
    index = np.full(len(pixels), -1) if guess is None else guess.copy()
    w, score = _weights(maps, ok, index[:, None], homog)
    w = w[:, :, 0]  # (2, P)
    redo = score[:, 0] < 0  # (P,)
    w_redo, score_redo = _weights(maps, ok, candidates[redo], homog[redo])
    best = score_redo.argmax(1)
    rows = np.arange(len(best))
    index[redo] = candidates[redo][rows, best]
    w[:, redo] = w_redo[:, rows, best]
    return index, np.stack([1 - w[0] - w[1], w[0], w[1]], 1)


# ------------------------------------------------------------------------------------ the mouth

def _paint_mouth(frame: np.ndarray, lm: np.ndarray, teeth_rgb: np.ndarray) -> None:
    """Paint the inside of the mouth into ``frame (S, S, 3)`` float, in place, from crop landmarks ``(68, 2)``.

    In the mouth's own frame (``u`` along the inner corners 60 → 64, ``v`` across), the opening at
    ``u`` runs from the upper inner lip ``top(u)`` to the lower one ``bottom(u)``. A pixel covers
    ``[v - ½, v + ½]``; the part of that inside the opening is its cavity coverage (exact in 1-D,
    so thin gaps give faint lines, not jagged ones). The teeth are the first ``TOOTH_LENGTH`` eye
    distances below ``top(u)``, tapering towards the corners. Where the lips meet we darken a thin
    line, the shadow between closed lips.
    """
    left, right = lm[60].astype(np.float64), lm[64].astype(np.float64)
    axis = (right - left) / max(np.linalg.norm(right - left), 1e-6)
    normal = np.array([-axis[1], axis[0]])  # points down the face
    to_uv = lambda p: np.stack([(p - left) @ axis, (p - left) @ normal], -1)  # noqa: E731
    top, bottom = to_uv(lm[[60, 61, 62, 63, 64]]), to_uv(lm[[60, 67, 66, 65, 64]])  # (5, 2) each
    lo, hi = np.floor(lm[48:68].min(0)).astype(int) - 1, np.ceil(lm[48:68].max(0)).astype(int) + 2
    lo, hi = np.maximum(lo, 0), np.minimum(hi, frame.shape[:2][::-1])
    if (hi <= lo).any():
        return  # the mouth is outside the crop
    ys, xs = np.mgrid[lo[1]:hi[1], lo[0]:hi[0]]
    uv = to_uv(np.stack([xs, ys], -1).astype(np.float64))  # (h, w, 2)
    u, v = uv[..., 0], uv[..., 1]
    width = top[-1, 0]
    y_top = np.interp(u, np.maximum.accumulate(top[:, 0]), top[:, 1])
    y_bottom = np.interp(u, np.maximum.accumulate(bottom[:, 0]), bottom[:, 1])
    inside = (u >= 0) & (u <= width)
    cover = lambda a, b: np.clip(np.minimum(b, v + 0.5) - np.maximum(a, v - 0.5), 0, 1) * inside  # noqa: E731
    rel = np.clip(2 * u / max(width, 1e-6) - 1, -1, 1)  # -1 … 1 across the mouth
    seam = cover((y_top + y_bottom) / 2 - 0.4, (y_top + y_bottom) / 2 + 0.4) * (1 - rel ** 2)
    tooth = TOOTH_LENGTH * inter_ocular(lm) * np.sqrt(np.clip(1 - (rel / 0.8) ** 2, 0, 1))
    teeth = cover(y_top, np.minimum(y_top + tooth, y_bottom))
    cavity = cover(y_top, y_bottom) - teeth
    depth = np.clip((v - y_top) / np.maximum(y_bottom - y_top, 1e-6), 0, 1)[..., None]  # 0 top … 1 bottom
    cavity_rgb = (1 - depth) * np.array(CAVITY[0]) + depth * np.array(CAVITY[1])
    patch = frame[lo[1]:hi[1], lo[0]:hi[0]]
    patch *= ((1 - teeth - cavity) * (1 - 0.4 * seam))[..., None]  # what is left of the photo: lips
    patch += teeth[..., None] * teeth_rgb * (1 - 0.35 * rel[..., None] ** 2) + cavity[..., None] * cavity_rgb


# ---------------------------------------------------------------------------------- rendering

def _source_patch(image: np.ndarray, box: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The photo around the crop as float32, blurred against aliasing → ``(patch (h, w, 3), corner (2,))``.

    Shrinking by ``s = side / size`` needs a Gaussian blur of ``sigma = (s - 1) / 2`` first (the
    rule of scikit-image and :func:`minitalker.video.aligned_crops`). Pixels outside the photo repeat its edge.
    """
    s = box[2] / size
    sigma = max(0.0, (s - 1) / 2)
    r = int(np.ceil(box[2] * (0.5 + MARGIN) + 3 * sigma + 2))
    corner = np.floor(box[:2]).astype(int) - r  # (x, y) of the patch's first pixel
    h, w = image.shape[:2]
    rows = np.clip(np.arange(corner[1], corner[1] + 2 * r + 1), 0, h - 1)
    cols = np.clip(np.arange(corner[0], corner[0] + 2 * r + 1), 0, w - 1)
    patch = image[rows[:, None], cols[None, :]].astype(np.float32)
    return (gaussian_filter(patch, (sigma, sigma, 0)) if sigma > 0 else patch), corner


def _bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Sample ``image (h, w, 3)`` at ``xy (P, 2)`` (pixel centres at integers) by bilinear interpolation
    → ``(P, 3)``. Points outside take the nearest edge value."""
    h, w = image.shape[:2]
    x, y = np.clip(xy[:, 0], 0, w - 1), np.clip(xy[:, 1], 0, h - 1)
    x0, y0 = np.minimum(x.astype(int), w - 2), np.minimum(y.astype(int), h - 2)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    flat, i = image.reshape(-1, 3), y0 * w + x0
    top = flat[i] * (1 - fx) + flat[i + 1] * fx
    bottom = flat[i + w] * (1 - fx) + flat[i + w + 1] * fx
    return top * (1 - fy) + bottom * fy


def render_frames(image: np.ndarray, src_lm: np.ndarray, frame_lms: np.ndarray, size: int,
                  crop_box: np.ndarray | None = None, mouth: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image (H, W, 3)``, whose face has landmarks ``src_lm (68, 2)``, to each of ``frame_lms (T, 68, 2)``.

    Returns ``(frames (T, size, size, 3) uint8, landmarks (T, 68, 2) in crop pixels)``. The crop is
    ``crop_box`` = (cx, cy, side) in image pixels (default: :func:`face_box` of ``src_lm``).
    ``mouth``: paint the inside of the mouth where the lips part.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (H, W, 3); got {image.dtype} {image.shape}")
    src_lm, frame_lms = check_landmarks(src_lm, "src_lm"), check_landmarks(frame_lms, "frame_lms")
    if src_lm.shape != (68, 2) or frame_lms.ndim != 3:
        raise ValueError(f"need src_lm (68, 2) and frame_lms (T, 68, 2); got {src_lm.shape}, {frame_lms.shape}")
    box = face_box(src_lm) if crop_box is None else np.asarray(crop_box, dtype=np.float64)
    head_c = _head_points(src_lm)
    triangles = _triangles(src_lm, head_c, box, size)  # (N, 3)
    patch, corner = _source_patch(image, box, size)
    src = from_crop(_vertices(src_lm[None], head_c, box, size)[0], box, size) - corner  # (V, 2)
    dst = _vertices(frame_lms, head_c, box, size)  # (T, V, 2) crop px
    ys, xs = np.mgrid[0:size, 0:size]
    pixels = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)  # (P, 2)
    candidates = _candidates(dst[:, triangles], pixels)  # (P, C)
    skin = _bilinear(patch, src_lm[27:36] - corner).mean(0)  # (3,) on the nose
    teeth_rgb = 0.7 * np.array(TEETH) + 0.3 * skin  # teeth in this photo's light
    crop_lms = to_crop(frame_lms, box, size)
    frames = np.empty((len(frame_lms), size, size, 3), dtype=np.uint8)
    k = None
    for t in range(len(frame_lms)):
        k, w = _locate(dst[t][triangles], pixels, candidates, guess=k)
        xy = np.einsum("pc,pcd->pd", w, src[triangles[k]])  # (P, 2) where each pixel reads the photo
        rgb = _bilinear(patch, xy).reshape(size, size, 3)
        if mouth:
            _paint_mouth(rgb, crop_lms[t], teeth_rgb)
        frames[t] = np.clip(np.round(rgb), 0, 255)
    return frames, crop_lms


def folded_area(src_lm: np.ndarray, frame_lms: np.ndarray, size: int, crop_box: np.ndarray | None = None) -> np.ndarray:
    """How much of the face turns over between ``src_lm (68, 2)`` and each of ``frame_lms (T, 68, 2)`` → ``(T,)``.

    A mesh triangle folds when its signed area changes sign; there the warp maps two places of the
    photo onto one. We return the area of the folded triangles over the face's area (the triangles
    between the 68 landmarks, in the frame): a few tiny folds come with noisy detections, a large
    fraction means a face turned far from the camera, or tangled landmarks.
    """
    src_lm, frame_lms = check_landmarks(src_lm, "src_lm"), check_landmarks(frame_lms, "frame_lms").reshape(-1, 68, 2)
    box = face_box(src_lm) if crop_box is None else np.asarray(crop_box, dtype=np.float64)
    head_c = _head_points(src_lm)
    tris = _triangles(src_lm, head_c, box, size)  # (N, 3)

    def area(v):  # vertices (T, V, 2) -> signed areas (T, N)
        a, b, c = (v[:, tris[:, k]] for k in range(3))
        return ((b - a)[..., 0] * (c - a)[..., 1] - (b - a)[..., 1] * (c - a)[..., 0]) / 2

    a0, a1 = area(_vertices(src_lm[None], head_c, box, size)), area(_vertices(frame_lms, head_c, box, size))
    face = (tris < 68).all(1)  # (N,) triangles between landmarks
    folded = (np.sign(a0) != np.sign(a1)) & (a0 != 0)
    return (np.abs(a1) * folded).sum(1) / np.maximum((np.abs(a1) * face).sum(1), 1e-9)


def render_clip(speech, face, size: int = 64, seed: int = 0) -> RenderedClip:
    """Speech + a face → a :class:`RenderedClip`: phonemes → visemes → landmarks → warped frames.

    ``speech``: a :class:`~minitalker.data.speech.Speech`; ``face``: a bundled face's name
    (:data:`~minitalker.data.faces.FACES`) or ``(image (H, W, 3) uint8, landmarks (68, 2))``.
    ``T = n_video_frames(len(speech.wav))``: the whole 25 fps frames the audio covers. ``seed`` fixes
    the blinks and head motion.
    """
    image, lm = load_face(face) if isinstance(face, str) else face
    rest = rest_landmarks(lm)
    n_frames = n_video_frames(len(speech.wav))
    lms = animate_landmarks(rest, articulate(speech.phonemes, n_frames), seed=seed)  # (T, 68, 2)
    frames, crop_lms = render_frames(image, lm, np.concatenate([rest[None], lms]), size, face_box(rest))
    return RenderedClip(landmarks=crop_lms[1:], frames=frames[1:], reference_frame=frames[0],
                        reference_landmarks=crop_lms[0])
