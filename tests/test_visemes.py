"""Visemes, co-articulation and the landmark animation."""

import numpy as np
import pytest

from minitalker.audio import frame_times
from minitalker.data.faces import load_face
from minitalker.data.speech import synthesize
from minitalker.data.visemes import (
    COARSE_CLASSES,
    PARAMS,
    animate_landmarks,
    articulate,
    base_phoneme,
    blink_curve,
    phoneme_class,
    rest_landmarks,
)
from minitalker.landmarks import scheme


@pytest.fixture(scope="module")
def speech():
    return synthesize("bin blue at F two now please")


@pytest.fixture(scope="module")
def face():
    return load_face("grace_hopper")[1]


def _frame_at(t: float, n: int) -> int:
    return int(np.argmin(np.abs(frame_times(n) - t)))


def test_phoneme_names_and_classes():
    assert base_phoneme("'aU") == "aU" and base_phoneme("t#") == "t" and base_phoneme("r-") == "r"
    assert base_phoneme("_:") == "_" and base_phoneme(";") is None
    assert [phoneme_class(p) for p in ("m", "b", "p", "'a", "aI", "'u:", "oU", "s", "_")] == [
        "bilabial", "bilabial", "bilabial", "open_vowel", "open_vowel", "rounded_vowel", "rounded_vowel",
        "other", "other"]
    assert phoneme_class("unknown!") in COARSE_CLASSES


def test_articulation_ranges_and_closures(speech):
    n = int(speech.duration * 25)
    params = articulate(speech.phonemes, n)
    assert params.shape == (n, len(PARAMS)) and params.dtype == np.float32
    assert params.min() >= 0 and params.max() <= 1
    for name, start, end in speech.phonemes:  # every bilabial is fully closed at its nearest frame
        if phoneme_class(name) == "bilabial":
            assert params[_frame_at((start + end) / 2, n), PARAMS.index("closure")] == 1.0


def test_rest_pose_closes_the_mouth(face):
    rest = rest_landmarks(face)
    np.testing.assert_array_equal(rest[[61, 62, 63]], rest[[67, 66, 65]])
    assert scheme.mouth_opening(rest) == 0
    np.testing.assert_allclose(rest[:48], face[:48], atol=0.05 * scheme.inter_ocular(face))  # mouth and chin only


def test_mouth_follows_phonemes(speech, face):
    n = int(speech.duration * 25)
    lms = animate_landmarks(rest_landmarks(face), articulate(speech.phonemes, n), seed=0)
    assert lms.shape == (n, 68, 2) and lms.dtype == np.float32
    opening = scheme.mouth_opening(lms)
    at = {}
    for name, start, end in speech.phonemes:
        at.setdefault(phoneme_class(name), []).append(opening[_frame_at((start + end) / 2, n)])
    assert max(abs(o) for o in at["bilabial"]) < 1e-5  # b, b, p: lips exactly shut
    assert np.mean(at["open_vowel"]) > 0.06  # "at", "now": clearly open
    assert opening.min() >= -1e-5


def test_head_motion_small_and_smooth(speech, face):
    rest = rest_landmarks(face)
    params = articulate(speech.phonemes, 100)  # 4 s, the last frames silent
    still = animate_landmarks(rest, params, seed=3, head_motion=False)
    moving = animate_landmarks(rest, params, seed=3)
    iod = scheme.inter_ocular(rest)
    shift = np.linalg.norm(moving[:, 27:36] - still[:, 27:36], axis=-1).max()  # the nose
    assert 0.005 * iod < shift < 0.15 * iod
    roll = np.degrees(np.arctan2(*(moving[:, 45] - moving[:, 36]).T[::-1]) - np.arctan2(*(rest[45] - rest[36])[::-1]))
    assert 0.2 < np.abs(roll).max() < 3.5
    step = np.linalg.norm(np.diff(moving[:, 27:36], axis=0), axis=-1).max()
    assert step < 0.02 * iod  # smooth: a small fraction of the motion per frame
    again = animate_landmarks(rest, params, seed=3)
    np.testing.assert_array_equal(moving, again)


def test_blinks_close_the_eyes(face):
    rest = rest_landmarks(face)
    n = 150  # 6 s: at least one blink
    b = blink_curve(n, np.random.default_rng(0))
    assert b.max() > 0.8 and np.median(b) < 0.05
    lms = animate_landmarks(rest, np.zeros((n, len(PARAMS)), np.float32), seed=0, head_motion=False)
    eye = np.linalg.norm(lms[:, [37, 38]] - lms[:, [41, 40]], axis=-1).mean(-1)  # (T,) right eye opening
    assert eye.min() < 0.3 * eye.max()
    no_blink = animate_landmarks(rest, np.zeros((n, len(PARAMS)), np.float32), seed=0, head_motion=False, blinks=False)
    np.testing.assert_allclose(no_blink, np.broadcast_to(rest, no_blink.shape), atol=1e-3)


def test_every_phoneme_is_glossed_with_a_word_espeak_speaks_with_it():
    from minitalker.data.speech import synthesize
    from minitalker.data.visemes import DIPHTHONGS, GLOSS, VISEMES, gloss

    assert set(GLOSS) == set(VISEMES) | set(DIPHTHONGS)
    assert gloss("'aU") == "ˈaʊ as in mouth" and gloss("t#") == "t as in ten" and gloss("_:") == "a pause"
    assert gloss(";") == "?"
    for key, (_, word) in GLOSS.items():
        if key != "_":
            assert key in {base_phoneme(p) for p, _, _ in synthesize(word).phonemes}, (key, word)
