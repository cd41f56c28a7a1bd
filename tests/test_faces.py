import json

import numpy as np
import pytest

from minitalker.data import faces
from minitalker.data.faces import FACES, carphone_video, detect_bundled_faces, load_face
from minitalker.landmarks import scheme


@pytest.mark.parametrize("name", FACES)
def test_load_face_gives_a_real_photo_and_its_landmarks(name):
    image, lm = load_face(name)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.std() > 20
    assert lm.shape == (68, 2) and lm.dtype == np.float32
    H, W = image.shape[:2]
    assert (lm >= 0).all() and (lm[:, 0] < W).all() and (lm[:, 1] < H).all()
    assert 40 < scheme.inter_ocular(lm) < 200  # faces of similar size in all three photos
    meta = json.loads((faces.FACES_DIR / f"{name}.json").read_text())
    assert meta["backend"].startswith("dlib") and meta["source"] and meta["name"] == name


def test_the_carphone_face_is_an_upscaled_closed_mouth_frame():
    frames, fps = carphone_video()
    assert frames.shape == (120, 144, 176, 3) and fps == pytest.approx(29.97, abs=0.01)
    image, lm = load_face("carphone")
    frame = json.loads((faces.FACES_DIR / "carphone.json").read_text())["frame"]
    assert image.shape == (3 * 144, 3 * 176, 3)
    small = image.reshape(144, 3, 176, 3, 3).mean((1, 3))  # back to the clip's size
    assert np.abs(small - frames[frame]).mean() < 3
    assert scheme.mouth_opening(lm) < 0.1


def test_unknown_names_and_missing_files_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="choose one of"):
        load_face("mona_lisa")
    monkeypatch.setattr(faces, "FACES_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m minitalker.data.faces"):
        load_face("astronaut")


def test_a_changed_package_image_is_detected(monkeypatch):
    monkeypatch.setattr(faces, "load_image", lambda name, frame=None: np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="the package changed"):
        load_face("astronaut")


def test_detect_bundled_faces_reproduces_the_shipped_files(tmp_path):
    paths = detect_bundled_faces(tmp_path)
    assert sorted(paths) == sorted(FACES)
    for name, path in paths.items():
        new, shipped = json.loads(path.read_text()), json.loads((faces.FACES_DIR / f"{name}.json").read_text())
        assert new.get("frame") == shipped.get("frame") and new["image_shape"] == shipped["image_shape"]
        np.testing.assert_allclose(new["landmarks"], shipped["landmarks"], atol=1.0)
