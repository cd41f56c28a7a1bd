"""Find the 68 iBUG landmarks in a photo or in every frame of a video.

Two backends, both giving the exact iBUG-68 scheme of :mod:`minitalker.landmarks.scheme`:

* ``"dlib"`` (the default, works offline): dlib's HOG face detector plus its 68-point shape
  predictor (an ensemble of regression trees), whose weights ship in the ``face-recognition-models``
  package. About 11 ms a frame on one CPU core. Where HOG finds nothing (blur, heavy compression,
  dim light), dlib's CNN face detector (MMOD, same package; ~1 s a frame) gets a second look, and
  the predictor runs on its box. Photos over ``DETECT_SIDE`` px are searched shrunk (bounded cost),
  the landmarks then fitted on the full image (face_alignment: fitted shrunk, scaled back).
* ``"face_alignment"``: the S3FD detector plus the 2D-FAN network (Bulat & Tzimiropoulos 2017), the
  detector the DiffTalker design card names. More accurate on turned or small faces, but
  face-alignment downloads its two weight files on first use; without network, put them in place
  yourself (:func:`face_alignment_weights` says where) or use ``"dlib"``.

A video rarely has a face in every frame (motion blur, a hand, a turned head). Missing frames are
filled by linear interpolation between their found neighbours (nearest found frame at the ends),
and marked in :attr:`Detection.found` (which detector found each frame: :attr:`Detection.source`),
so one bad frame never breaks a whole clip.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import warnings
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

from minitalker.landmarks.scheme import N_POINTS

BACKENDS = ("dlib", "face_alignment")
DETECT_SIDE = 1024  # HOG searches images shrunk to this longer side (upsampled 2x inside): ~0.5 s a photo
CNN_SIDE = 512  # the CNN (~4x slower per pixel) searches at most this; images under half of it are upsampled
CNN_PATIENCE = 8  # in a video, the CNN stops looking after this many looks that all found nothing


class NoFaceError(ValueError):
    """No face was found in any frame, so there is nothing to interpolate from."""


@dataclasses.dataclass
class Detection:
    """Landmarks of one face per frame.

    ``landmarks (T, 68, 2)`` float32, (x, y) in pixels of the input frames, gaps filled;
    ``found (T,)`` bool, False where the frame's landmarks were interpolated;
    ``n_faces (T,)`` int, how many faces the detector saw in each frame (we keep one);
    ``source (T,)`` str, the detector that found each frame ("hog", "cnn", "s3fd"; "" where interpolated).
    A single image gives ``T = 1``: use ``det.landmarks[0]``.
    """

    landmarks: np.ndarray
    found: np.ndarray
    n_faces: np.ndarray
    backend: str
    source: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.landmarks)

    def report(self) -> str:
        """One line for humans: how many frames had a face, which were filled, where several faces were."""
        T, n = len(self), int(self.found.sum())
        text = f"{self.backend}: a face in {n} of {T} frame{'s' * (T != 1)}"
        if self.source is not None and (self.source == "cnn").any():
            text += f"; by the CNN detector (HOG found none) in frames {_ranges(self.source == 'cnn')}"
        if n < T:
            text += f"; interpolated frames {_ranges(~self.found)}"
        if (self.n_faces > 1).any():
            text += f"; several faces (kept one) in frames {_ranges(self.n_faces > 1)}"
        return text

    __str__ = report


def _ranges(mask: np.ndarray) -> str:
    """``[F, T, T, T, F, T]`` → ``"1-3, 5"``: compact frame lists for reports."""
    idx, parts = np.flatnonzero(mask), []
    for run in np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1):
        parts.append(f"{run[0]}" if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ", ".join(parts)


def as_rgb_frames(frames: np.ndarray) -> np.ndarray:
    """Any image or video → ``(T, H, W, 3)`` uint8.

    Accepts one image ``(H, W)`` grey, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA (alpha dropped), or a
    video of those ``(T, H, W[, C])``. An ``(H, W, 3)`` array is always read as one RGB image.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise TypeError(f"frames must be uint8 in 0-255, got {frames.dtype}: "
                        "convert floats in [0, 1] with (x * 255).round().astype(np.uint8)")
    if frames.ndim == 2 or (frames.ndim == 3 and frames.shape[-1] in (3, 4)):
        frames = frames[None]  # one image
    if frames.ndim == 3:  # (T, H, W) grey video
        frames = frames[..., None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3, 4) or 0 in frames.shape:
        raise ValueError(f"expected an image (H, W[, 1|3|4]) or a video (T, H, W[, 1|3|4]); got shape {frames.shape}")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return np.ascontiguousarray(frames[..., :3])


# ---------------------------------------------------------------------------------- dlib backend

def dlib_model_path() -> Path:
    """dlib's 68-point predictor inside the ``face-recognition-models`` package (found without importing it,
    since importing it warns about ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the dlib backend needs `pip install dlib-bin face-recognition-models` "
                                  "(or `pip install minitalker[dlib]`); or use backend='face_alignment'")
    return Path(spec.submodule_search_locations[0]) / "models" / "shape_predictor_68_face_landmarks.dat"


@functools.cache
def _dlib_models():
    """Load dlib's HOG face detector, its CNN (MMOD) face detector and the 68-point shape predictor once per process."""
    import dlib

    cnn = dlib.cnn_face_detection_model_v1(str(dlib_model_path().parent / "mmod_human_face_detector.dat"))
    return dlib.get_frontal_face_detector(), cnn, dlib.shape_predictor(str(dlib_model_path()))


def shrink(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``(H, W, 3)`` uint8 → (the image with its longer side at most ``max_side``, the scale ``k`` ≤ 1).

    Pillow's bilinear resize, which widens its filter when shrinking (anti-aliased), on uint8:
    a 12 MP photo costs no float copy."""
    from PIL import Image

    k = min(1.0, max_side / max(img.shape[:2]))
    if k == 1:
        return img, k
    size = (max(1, round(img.shape[1] * k)), max(1, round(img.shape[0] * k)))
    return np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR)), k


def _dlib_faces(img: np.ndarray, cnn: bool = True) -> tuple[np.ndarray, np.ndarray, str]:
    """All faces in one RGB image → ``boxes (K, 5)`` as (x0, y0, x1, y1, score), ``landmarks (K, 68, 2)``,
    and which detector found them ("hog" or "cnn").

    HOG first, on the image shrunk to ``DETECT_SIDE``, upsampled once (``run(img, 1)``): dlib's HOG
    window is 80 px, so this finds faces down to about 40 px wide there. Where it finds none (and
    ``cnn``), the CNN detector on the image shrunk to ``CNN_SIDE``. The predictor always fits the
    68 points on the full image, in the box scaled back.
    """
    import dlib

    hog, mmod, predictor = _dlib_models()
    small, k = shrink(img, DETECT_SIDE)
    rects, scores, _ = hog.run(small, 1, 0.0)
    source = "hog"
    if not rects and cnn:
        small, k = shrink(img, CNN_SIDE)
        found = mmod(small, int(max(small.shape[:2]) <= CNN_SIDE // 2))
        rects, scores, source = [d.rect for d in found], [d.confidence for d in found], "cnn"
    rects = [dlib.rectangle(*(round(v / k) for v in (r.left(), r.top(), r.right(), r.bottom()))) for r in rects]
    boxes = np.array([[r.left(), r.top(), r.right(), r.bottom(), s] for r, s in zip(rects, scores)], np.float32)
    lms = [[(p.x, p.y) for p in predictor(img, r).parts()] for r in rects]
    return boxes.reshape(-1, 5), np.array(lms, np.float32).reshape(-1, N_POINTS, 2), source


# ------------------------------------------------------------------------ face_alignment backend

def face_alignment_weights() -> dict[str, tuple[str, Path]]:
    """The two files face-alignment needs: ``{file name: (download URL, local path)}``.

    URLs are read from the installed face-alignment package; the folder is
    ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``), where face-alignment looks.
    """
    import torch.hub
    from face_alignment import api
    from face_alignment.detection.sfd import sfd_detector

    folder = Path(torch.hub.get_dir()) / "checkpoints"
    urls = (sfd_detector.models_urls["s3fd"], api.models_urls["2DFAN-4"])
    return {url.rsplit("/", 1)[-1]: (url, folder / url.rsplit("/", 1)[-1]) for url in urls}


@functools.cache
def _face_alignment_model(device: str):
    """Build face-alignment's S3FD + 2D-FAN once per device, refusing to download.

    ``compile=False``: face-alignment 1.5 would otherwise ``torch.compile`` the FAN on first use, a
    long one-time cost that needs a C compiler; eager mode is fast enough for clips of a few hundred
    frames. (Its first image still takes ~15 s on a small CPU: numba compiles two helpers.)
    """
    weights = face_alignment_weights()
    missing = {name: (url, path) for name, (url, path) in weights.items() if not path.exists()}
    if missing:
        folder = next(iter(weights.values()))[1].parent
        lines = "\n".join(f"  {name}  <-  {url}" for name, (url, _) in missing.items())
        raise FileNotFoundError(
            f"the face_alignment backend needs its weights, and these are missing from {folder}:\n{lines}\n"
            f"Download them into that folder (e.g. `curl -L -o {folder}/<name> <url>`; it is "
            "torch.hub.get_dir()/checkpoints, set TORCH_HOME to move it), or use backend='dlib', which works offline.")
    import face_alignment

    return face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device,
                                        face_detector="sfd", compile=False)


def _face_alignment_faces(img: np.ndarray, device: str) -> tuple[np.ndarray, np.ndarray, str]:
    """All faces in one RGB image → ``boxes (K, 5)`` as (x0, y0, x1, y1, score), ``landmarks (K, 68, 2)``, "s3fd".

    Images over ``DETECT_SIDE`` are searched and fitted shrunk, the results scaled back (bounded cost)."""
    model = _face_alignment_model(device)
    small, k = shrink(img, DETECT_SIDE)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="No faces were detected")
        lms, _, boxes = model.get_landmarks_from_image(small, return_bboxes=True)
    if lms is None:
        return np.zeros((0, 5), np.float32), np.zeros((0, N_POINTS, 2), np.float32), "s3fd"
    boxes, lms = np.array(boxes, np.float32).reshape(-1, 5), np.array(lms, np.float32)[..., :2].reshape(-1, N_POINTS, 2)
    boxes[:, :4] /= k
    return boxes, lms / k, "s3fd"


# ---------------------------------------------------------------------------- choosing and filling

def choose_face(boxes: np.ndarray, previous: np.ndarray | None = None) -> int:
    """Pick one face among ``boxes (K, 5)`` (x0, y0, x1, y1, score); return its index.

    Without a previous face: the largest box (a false detection in the background is usually
    smaller), ties broken by detector score (HOG boxes come in a few fixed sizes, so ties happen).
    In a video, ``previous`` is the box kept in the last frame with a face: we take the box whose
    centre is nearest to it, so the track does not jump to another person. (Our choice; the paper
    works on single-speaker footage and does not say.)
    """
    centres = (boxes[:, :2] + boxes[:, 2:4]) / 2
    if previous is not None:
        return int(np.argmin(np.linalg.norm(centres - (previous[:2] + previous[2:4]) / 2, axis=1)))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return int(np.lexsort((boxes[:, 4], area))[-1])  # last key sorts first: area, then score


def fill_gaps(landmarks: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill the frames where ``found`` is False by linear interpolation in time.

    ``landmarks (T, 68, 2)`` (values at missing frames are ignored) → ``(T, 68, 2)``. Frames before
    the first or after the last found frame copy the nearest found one.
    """
    if not found.any():
        raise NoFaceError("cannot fill gaps: no frame has a face")
    t, flat = np.arange(len(found)), landmarks.reshape(len(found), -1)  # (T, 136)
    filled = np.stack([np.interp(t, t[found], col[found]) for col in flat.T], axis=1)
    return filled.reshape(landmarks.shape).astype(np.float32)


def smooth_landmarks(landmarks: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing over time (``sigma`` in frames), to remove the detector's frame-to-frame jitter.

    ``(T, 68, 2)`` → ``(T, 68, 2)``. A Gaussian rather than Savitzky–Golay because it never overshoots;
    at 25 fps, ``sigma`` ≤ 1 keeps mouth movements (a syllable lasts about 5 frames).
    """
    if sigma <= 0:
        return landmarks
    return gaussian_filter1d(landmarks, sigma, axis=0, mode="nearest").astype(np.float32)


def detect_landmarks(frames: np.ndarray, backend: str = "dlib", smooth: float = 0.0,
                     device: str | None = None, cnn: bool = True) -> Detection:
    """Landmarks of the main face in an image or in every frame of a video.

    ``frames``: ``(T, H, W, 3)`` uint8 video, or one ``(H, W)``, ``(H, W, 3)``, ``(H, W, 4)`` image
    (see :func:`as_rgb_frames`). ``backend``: ``"dlib"`` (offline) or ``"face_alignment"``.
    ``smooth``: sigma in frames of a temporal Gaussian (0 = none). ``device`` (face_alignment only):
    default ``minitalker.config.default_device()``. ``cnn`` (dlib only): ask the CNN detector where
    HOG finds nothing, until it has looked :data:`CNN_PATIENCE` times without ever finding a face (so
    a video with no face costs a few CNN looks, not one a frame). The cascade per frame: detector(s),
    then interpolation over the frames still missing.
    Returns a :class:`Detection` with ``landmarks (T, 68, 2)``; raises :class:`NoFaceError` if no
    frame has a face.
    """
    frames = as_rgb_frames(frames)  # (T, H, W, 3)
    if backend == "dlib":
        faces = _dlib_faces
    elif backend == "face_alignment":
        from minitalker.config import default_device

        device = device or str(default_device())
        faces = lambda img, cnn: _face_alignment_faces(img, device)  # noqa: E731 (one detector: no second look)
    else:
        raise ValueError(f"unknown backend {backend!r}: choose one of {BACKENDS}")
    T = len(frames)
    landmarks = np.zeros((T, N_POINTS, 2), np.float32)
    found, n_faces, source, previous = np.zeros(T, bool), np.zeros(T, int), np.full(T, "", "<U4"), None
    looks = finds = 0  # the CNN's, so far
    for t, img in enumerate(frames):
        boxes, lms, detector = faces(img, cnn=cnn and (finds > 0 or looks < CNN_PATIENCE))
        looks, finds = looks + (detector == "cnn"), finds + (detector == "cnn" and len(boxes) > 0)
        n_faces[t] = len(boxes)
        if len(boxes):
            k = choose_face(boxes, previous)
            landmarks[t], found[t], source[t], previous = lms[k], True, detector, boxes[k]
    if not found.any():
        searched = "S3FD detector" if backend == "face_alignment" else "HOG and CNN detectors" if cnn else "HOG detector"
        raise NoFaceError(_no_face_message(frames.shape, backend, searched))
    landmarks = smooth_landmarks(fill_gaps(landmarks, found), smooth)
    return Detection(landmarks, found, n_faces, backend, source)


def _no_face_message(shape: tuple[int, ...], backend: str, searched: str) -> str:
    """What went wrong and what to try, for images of this ``(T, H, W, 3)`` shape: small, large or in between."""
    T, H, W = shape[:3]
    what = "the image" if T == 1 else f"any of the {T} frames"
    if max(H, W) > DETECT_SIDE:
        todo = (f"it was searched shrunk to {DETECT_SIDE} px a side, where faces under about 40 px (here "
                f"{40 * max(H, W) // DETECT_SIDE} px of the original) are missed: crop it around the face")
    elif max(H, W) < 320:
        todo = "faces under about 40 px wide are missed: if the face is that small, use a larger image or upscale it"
    else:
        todo = "use a frontal, well-lit, unhidden face"
    other = "backend 'face_alignment' copes better with turned heads" if backend == "dlib" else "or try backend 'dlib'"
    return f"no face found in {what} ({W}x{H} px, {searched}) — {todo}; {other}"
