"""Fetch real face photos that ship inside PyPI packages, for agent 2's unseen-face evaluation.

    python benchmarks/real_photos.py            # -> data/cache/real_photos/*.png (git-ignored)
    MINITALKER_REAL_PHOTOS=data/cache/real_photos minitalker evaluate faces --real

Only ``pip download`` from PyPI (nothing is installed, nothing is committed):

* ``face_recognition==1.3.0`` (sdist, MIT; its wheel has no tests): ``tests/test_images/`` holds
  portraits of Barack Obama and Joe Biden. Kept: ``obama``,
  ``obama3``, ``biden``. Skipped: ``obama2`` (the face crop leaves the photo), ``32bit.png`` (obama2
  again, with alpha), ``obama_partial_face*.jpg`` (obama cut through the face).
* ``insightface==2.1`` (wheel): ``data/images/t1.jpg``, a group photo of six people, is cut into one
  photo per face (``t1_face0`` … ``t1_face5``). Skipped: ``Tom_Hanks_54745.png`` (112×112 and
  already cropped tight, so the face crop leaves the image) and the ``mask_*`` images (no face).

A photo (or a face cut from a group) is kept when dlib finds exactly one face in it, the face's
square crop (:func:`minitalker.landmarks.scheme.face_box`) lies inside the image, and the face is
not turned far (yaw proxy of :func:`minitalker.data.faces.frontal_closed_score` <= 0.5: t1_face4 and
t1_face5 are near profiles, where dlib cannot even read the mouth of the photo warped to the driving
landmarks). Photos are scaled so that crop is at most 256 px (agent 2 works at 64) and written as
PNG: 7 photos of 6 people (with grace_hopper, 8 unseen photos).
(The dlib sdist holds no photos; checked for dlib 20.0.1.)
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from minitalker.config import cache_dir
from minitalker.data.faces import frontal_closed_score
from minitalker.landmarks.detect import as_rgb_frames, detect_landmarks
from minitalker.landmarks.scheme import face_box, mouth_opening

SOURCES = {  # pip requirement -> {member path suffix: name}
    "face_recognition==1.3.0": {"tests/test_images/obama.jpg": "obama", "tests/test_images/obama2.jpg": "obama2",
                                "tests/test_images/obama3.jpg": "obama3", "tests/test_images/biden.jpg": "biden"},
    "insightface==2.1": {"insightface/data/images/t1.jpg": "t1"},
}
MAX_CROP = 256  # px: photos are scaled down until the face crop is at most this
MAX_YAW = 0.5  # |a - b| / (a + b), a, b = nose tip to the two jaw ends: 0 frontal, ~0.55 and up near profile


def download(requirement: str, dest: Path) -> Path:
    """``pip download --no-deps`` one requirement from PyPI (the sdist for face_recognition, which has no wheel)."""
    dest.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0]
    found = [p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(name.replace("-", "_"))]
    if not found:
        sdist = ["--no-binary", ":all:"] if name == "face_recognition" else []  # its wheel has no tests/
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", *sdist, "-d", str(dest), requirement],
                       check=True)
        found = [p for p in dest.iterdir() if p.name.lower().replace("-", "_").startswith(name.replace("-", "_"))]
    return found[0]


def members(archive: Path, wanted: dict[str, str]) -> dict[str, np.ndarray]:
    """Read the wanted images out of a .tar.gz or .whl without unpacking it: ``{name: (H, W, 3) uint8}``."""
    out = {}
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            for path in z.namelist():
                for suffix, name in wanted.items():
                    if path.endswith(suffix):
                        out[name] = as_rgb_frames(iio.imread(io.BytesIO(z.read(path))))[0]
    else:
        with tarfile.open(archive) as t:
            for m in t.getmembers():
                for suffix, name in wanted.items():
                    if m.name.endswith(suffix):
                        out[name] = as_rgb_frames(iio.imread(io.BytesIO(t.extractfile(m).read())))[0]
    return out


def scaled(image: np.ndarray, side: float) -> np.ndarray:
    """Scale ``image`` down (area-averaging) so a face crop of ``side`` px becomes at most :data:`MAX_CROP`."""
    from PIL import Image

    f = min(1.0, MAX_CROP / side)
    if f == 1.0:
        return image
    H, W = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((round(W * f), round(H * f)), Image.LANCZOS))


def single_faces(name: str, image: np.ndarray) -> dict[str, np.ndarray]:
    """One photo per face: the photo itself if it holds one face, else a square cut round each face."""
    det = detect_landmarks(image, backend="dlib")
    if det.n_faces[0] == 1:
        candidates = {name: image}
    else:  # a group photo: find every face, cut 1.6 crop sides round each
        from minitalker.landmarks.detect import _dlib_faces

        H, W = image.shape[:2]
        candidates = {}
        for k, lm in enumerate(_dlib_faces(image)[1]):
            cx, cy, side = face_box(lm)
            r = 0.8 * side
            x0, y0, x1, y1 = (int(max(0, cx - r)), int(max(0, cy - r)), int(min(W, cx + r)), int(min(H, cy + r)))
            candidates[f"{name}_face{k}"] = image[y0:y1, x0:x1]
    kept = {}
    for key, img in candidates.items():
        det = detect_landmarks(img, backend="dlib")
        lm = det.landmarks[0]
        cx, cy, side = face_box(lm)
        H, W = img.shape[:2]
        inside = cx - side / 2 >= 0 and cy - side / 2 >= 0 and cx + side / 2 <= W and cy + side / 2 <= H
        yaw = float(frontal_closed_score(lm) - mouth_opening(lm))
        if det.n_faces[0] == 1 and inside and yaw <= MAX_YAW:
            kept[key] = scaled(img, side)
        else:
            print(f"skip {key}: {det.n_faces[0]} faces, face crop inside the image: {inside}, yaw {yaw:.2f}")
    return kept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(cache_dir() / "real_photos"), help="folder for the photos")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):  # the folder is ours: start clean, so rules changed here take effect
        old.unlink()
    for requirement, wanted in SOURCES.items():
        archive = download(requirement, out / "_downloads")
        for name, image in members(archive, wanted).items():
            for key, img in single_faces(name, image).items():
                iio.imwrite(out / f"{key}.png", img)
                print(f"{out / key}.png  {img.shape[1]}x{img.shape[0]}  (from {archive.name})")
    print(f"\nnow: MINITALKER_REAL_PHOTOS={out} minitalker evaluate faces --real")


if __name__ == "__main__":
    main()
