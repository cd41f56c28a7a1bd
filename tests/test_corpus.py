"""The built-in corpus: contents, splits, mirroring, byte-identical rebuilds, broken folders."""

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config
from minitalker.data.corpus import (
    MIRROR,
    CorpusConfig,
    _landmarks_only,
    build_corpus,
    load_corpus,
    mirror_frames,
    mirror_landmarks,
    plan_clips,
    reference_face,
)
from minitalker.data.render import render_clip
from minitalker.data.speech import Voice, synthesize
from minitalker.landmarks.scheme import mouth_opening


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


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


def test_landmark_only_clips_move_as_rendered_ones_would():
    speech = synthesize("bin blue at F two now", Voice("en-us", 190, 50))
    rendered = render_clip(speech, "carphone", size=32, seed=3)
    np.testing.assert_allclose(_landmarks_only(speech, "carphone", 32, seed=3), rendered.landmarks, atol=1e-4)
    frame, lm = reference_face("carphone", 32)
    assert np.array_equal(frame, rendered.reference_frame) and np.allclose(lm, rendered.reference_landmarks)


def test_splits_by_sentence_and_held_out_identity(tiny_corpus):
    splits = {s: tiny_corpus.split(s) for s in ("train", "val", "test")}
    assert [len(v) for v in splits.values()] == [4, 1, 1]
    texts = {s: {c.text for c in v} for s, v in splits.items()}
    assert not (texts["train"] & texts["val"] or texts["train"] & texts["test"] or texts["val"] & texts["test"])
    assert tiny_corpus.heldout == ["grace_hopper"]
    assert {c.identity for c in splits["test"]} == {"grace_hopper"}
    assert {c.identity for c in splits["train"] + splits["val"]} == {"astronaut", "carphone"}
    assert {c.mirrored for c in splits["train"]} == {False, True}, "mirror images augment the training faces"
    assert not any(c.mirrored for c in splits["val"] + splits["test"])
    with pytest.raises(ValueError, match="unknown split"):
        tiny_corpus.split("dev")


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


def test_byte_identical_rebuild_with_two_workers(tiny_corpus, tmp_path):
    """Same config and seed → the same bytes, whether rendered in one process or two."""
    again = build_corpus(tiny_config(), tmp_path / "again", progress=False, workers=2)
    assert _hashes(again) == _hashes(tiny_corpus.root)


def test_plan_depends_on_seed_and_is_balanced():
    a, b = plan_clips(tiny_config()), plan_clips(tiny_config(seed=1))
    assert [c["text"] for c in a] != [c["text"] for c in b] or [c["voice"] for c in a] != [c["voice"] for c in b]
    assert plan_clips(tiny_config()) == a
    big = plan_clips(CorpusConfig.fast())
    train = [(c["identity"], c["mirrored"]) for c in big if c["split"] == "train"]
    counts = {k: train.count(k) for k in set(train)}
    assert len(counts) == 4 and max(counts.values()) - min(counts.values()) <= 1
    assert len({c["voice"]["name"] for c in big}) == len(CorpusConfig.fast().voices)


def test_config_hash_names_the_folder():
    fast = CorpusConfig.fast()
    assert fast.folder_name().startswith("corpus-fast-") and fast.hash() == CorpusConfig.fast().hash()
    assert dataclasses.replace(fast, image_size=256).hash() != fast.hash()
    assert CorpusConfig.full().image_size == 128 and fast.image_size == 64
    assert CorpusConfig.from_dict(json.loads(json.dumps(fast.to_dict()))) == fast


@pytest.mark.parametrize("changes, message", [
    ({"identities": ("astronaut", "lena")}, "unknown identities"),
    ({"heldout": "lena"}, "heldout"),
    ({"splits": (0.5, 0.2, 0.2)}, "summing to 1"),
    ({"n_sentences": 2}, "at least 3"),
])
def test_bad_configs(changes, message):
    with pytest.raises(ValueError, match=message):
        plan_clips(tiny_config(**changes))


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        load_corpus("medium")


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


def test_half_written_folder_is_rebuilt(tmp_path):
    cfg = tiny_config(identities=("astronaut",), heldout="", n_sentences=3, image_size=16)
    root = tmp_path / cfg.folder_name()
    root.mkdir()
    (root / "shard-000.safetensors").write_bytes(b"cut short")  # an interrupted build, by an older version
    corpus = load_corpus(cfg, root, progress=False)
    assert len(corpus) == 3 and corpus.clips[0].frames.shape[1:] == (16, 16, 3)
    assert [p.name for p in tmp_path.iterdir()] == [root.name], "no temporary folders left behind"


def test_other_config_in_folder_is_refused(tiny_corpus):
    with pytest.raises(ValueError, match="another config"):
        load_corpus(tiny_config(seed=7), tiny_corpus.root, build_if_missing=False)
