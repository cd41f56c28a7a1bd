"""The corpus format: clips hold aligned speech, landmarks and frames; landmark-only clips, references,
mirroring, broken folders. (Read from the tiny built corpus; how it is built: test_synthetic.py.)"""

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config
from minitalker.data.corpus import MIRROR, mirror_frames, mirror_landmarks
from minitalker.data.synthetic import load_corpus
from minitalker.landmarks.scheme import mouth_opening


def test_clips_hold_aligned_speech_landmarks_and_frames(tiny_corpus):
    assert len(tiny_corpus) == 6 and tiny_corpus.image_size == 32 and tiny_corpus.fps == 25
    for clip in tiny_corpus.clips:
        T = clip.n_frames
        assert clip.landmarks.shape == (T, 68, 2) and clip.landmarks.dtype == np.float32
        assert clip.audio.dtype == np.float32 and abs(len(clip.audio) / 640 - T) <= 1  # 640 samples a frame
        assert 25 <= T <= 100, "GRID-like sentences last 1-4 s"
        assert np.abs(clip.audio).max() > 0.01, "speech, not silence"
        assert (clip.landmarks > -1).all() and (clip.landmarks < 33).all(), "the face lies inside its crop"
        starts = [p[1] for p in clip.phonemes]
        assert starts == sorted(starts) and clip.phonemes[-1][2] <= len(clip.audio) / 16000 + 1e-3
        assert clip.text and len(clip.text.split()) == len(clip.words)
        assert np.ptp(mouth_opening(clip.landmarks)) > 0.02, "the mouth moves"
    for clip in tiny_corpus.split("train", frames=True) + tiny_corpus.split("test", frames=True):
        assert clip.frames.shape == (clip.n_frames, 32, 32, 3) and clip.frames.dtype == np.uint8
        assert np.abs(np.diff(clip.frames.astype(int), axis=0)).mean() > 0.1, "the frames move"


def test_some_training_clips_are_landmark_only(tiny_corpus):
    """frames_fraction of the training clips have frames; val and test clips always do."""
    train = tiny_corpus.split("train")
    assert 0 < len(tiny_corpus.split("train", frames=True)) < len(train)
    assert all(c.has_frames for c in tiny_corpus.split("val") + tiny_corpus.split("test"))
    clip = next(c for c in train if not c.has_frames)
    with pytest.raises(ValueError, match="landmark-only"):
        clip.frames


def test_references_match_their_clips(tiny_corpus):
    for identity in tiny_corpus.identities:
        frame, lm = tiny_corpus.reference(identity)
        assert frame.shape == (32, 32, 3) and lm.shape == (68, 2)
    for clip in [c for c in tiny_corpus.clips if c.has_frames]:
        frame, lm = clip.reference()
        assert np.abs(frame.astype(int) - clip.frames[0]).mean() < 40, "reference looks like the clip's face"
        assert np.linalg.norm(lm - clip.landmarks[0], axis=-1).mean() < 4, "and has its landmarks"
    with pytest.raises(KeyError, match="no identity"):
        tiny_corpus.reference("lena")


def test_mirror_is_an_involution_that_keeps_point_meaning(tiny_corpus):
    clip = tiny_corpus.split("val")[0]
    frames, lm = clip.frames, clip.landmarks
    assert np.array_equal(mirror_frames(mirror_frames(frames)), frames)
    assert np.allclose(mirror_landmarks(mirror_landmarks(lm, 32), 32), lm)
    assert sorted(MIRROR) == list(range(68)) and (MIRROR[MIRROR] == np.arange(68)).all()
    lm_m = mirror_landmarks(lm, 32)
    assert (lm_m[:, 36, 0] < lm_m[:, 45, 0]).all(), "point 36 stays the image-left eye corner"
    assert np.allclose(mouth_opening(lm_m), mouth_opening(lm), atol=1e-5), "mirroring keeps the mouth's motion"
    frame, ref = tiny_corpus.reference(clip.identity, mirrored=True)  # the mirrored reference is the flipped photo
    assert np.array_equal(frame, tiny_corpus.reference(clip.identity)[0][:, ::-1])


def _copy(tiny_corpus, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_corpus.root, tmp_path / tiny_corpus.root.name))


@pytest.mark.parametrize("damage, message", [
    (lambda root: (root / "meta.json").unlink(), "no meta.json"),
    (lambda root: (root / "meta.json").write_text('{"format": "minitalker-corpus", "clips": [{'), "corrupt"),
    (lambda root: (root / "meta.json").write_text('{"format": "something-else"}'), "holds no minitalker-corpus"),
    (lambda root: (root / "shard-000.safetensors").unlink(), "lacks"),
])
def test_broken_folder_is_a_clear_error(tiny_corpus, tmp_path, damage, message):
    root = _copy(tiny_corpus, tmp_path)
    damage(root)
    with pytest.raises(ValueError, match=message):
        load_corpus(tiny_config(), root, build_if_missing=False)
