"""The built-in corpus's recipe: plan, splits by sentence and held-out face, landmark-only clips,
byte-identical rebuilds, config hash and checks, rebuilding half-written folders."""

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config
from minitalker.data.render import render_clip
from minitalker.data.speech import Voice, synthesize
from minitalker.data.synthetic import (
    CorpusConfig,
    build_corpus,
    landmarks_only,
    load_corpus,
    plan_clips,
    reference_face,
)


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_landmark_only_clips_move_as_rendered_ones_would():
    speech = synthesize("bin blue at F two now", Voice("en-us", 190, 50))
    rendered = render_clip(speech, "carphone", size=32, seed=3)
    np.testing.assert_allclose(landmarks_only(speech.phonemes, len(speech.wav), "carphone", 32, seed=3), rendered.landmarks, atol=1e-4)
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
