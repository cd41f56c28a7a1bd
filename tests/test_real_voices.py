"""Real voices for agent 1's training (data.real_voices): human speech with the rig's mouths on its phones."""

import numpy as np
import pytest

from conftest import tiny_config
from minitalker.audio import n_video_frames
from minitalker.data import real_speech as rs
from minitalker.data import real_voices as rv
from minitalker.landmarks.scheme import mouth_opening, normalise
from minitalker.train.landmarks import LandmarkTrainConfig


def test_training_voices_are_apart_from_what_agent_1_is_scored_on():
    """The manifest's recordings are none of the scored ones, and every one has aligned phones the rig knows,
    with speech in them (pocketsphinx aligned each to its text; labels rewritten by the module's main)."""
    assert len(rs.TRAINING_VOICES) >= 50
    assert {r.package for r in rs.TRAINING_VOICES.values()} == {rs.TRAINING_SDIST}
    scored = {r.locator for r in (*rs.RECORDINGS.values(), *rs.TALKING_FACES.values())}
    assert not scored & {r.locator for r in rs.TRAINING_VOICES.values()}
    for name in rs.TRAINING_VOICES:
        phones = rs.load_phones(name)
        assert all(p in rs.ARPABET_TO_ESPEAK and start < end for p, start, end in phones), name
        assert sum(end - start for p, start, end in phones if p != "sil") > 0.3, name


@pytest.fixture
def three_voices(monkeypatch):
    """Three of the training voices (fetched by `make install`), so the build takes a second."""
    names = ["mfa_thoughts", "61-70968-0000", "multilingual_ipa_us_5"]
    if not all(rs.TRAINING_VOICES[n].fetched.is_file() for n in names):
        pytest.skip("training voices not fetched: python -m minitalker.data.real_speech --fetch")
    monkeypatch.setattr(rv, "TRAINING_VOICES", {n: rs.TRAINING_VOICES[n] for n in names})
    return names


def test_the_corpus_puts_the_rig_mouth_under_the_real_voice(three_voices, tmp_path):
    """Each voice on ``copies`` training faces in turn (never the held-out one; mirrored ones too), its
    audio as recorded, one frame per 40 ms of it, and a mouth that is shut in silence and on p, b, m
    and open on open vowels."""
    base = tiny_config()
    corpus = rv.Corpus(rv.build_real_voice_corpus(base, 2, tmp_path / "rv", progress=False))
    clips = corpus.split("train")
    assert [c.id for c in clips] == [f"{n}-{k}" for n in three_voices for k in range(2)]
    assert base.heldout not in {c.identity for c in clips} and {c.mirrored for c in clips} == {False, True}
    for clip in clips:  # a mirrored clip has a mirrored reference: the outer eye corners swap sides in both
        assert np.sign(np.diff(clip.landmarks[0, [36, 45], 0])) == np.sign(np.diff(clip.reference()[1][[36, 45], 0]))
    assert not corpus.split("val") and not corpus.split("test")
    opening = {"sil": [], "bilabial": [], "open": []}
    for clip in clips:
        wav = rs.TRAINING_VOICES[clip.id.rsplit("-", 1)[0]].audio()
        np.testing.assert_array_equal(clip.audio, wav)
        T = n_video_frames(len(wav))
        assert clip.landmarks.shape == (T, 68, 2)
        op = mouth_opening(normalise(clip.landmarks)[0])  # (T,)
        for t, phone in enumerate(rs.frame_phones(rs.load_phones(clip.id.rsplit("-", 1)[0]), T)):
            kind = ("sil" if phone == "sil" else "bilabial" if phone in rs.BILABIALS
                    else "open" if phone in rs.OPEN_VOWELS else None)
            if kind:
                opening[kind].append(op[t])
    sil, bilabial, open_ = (float(np.mean(opening[k])) for k in ("sil", "bilabial", "open"))
    assert open_ > 0.05 and sil < 0.2 * open_ and bilabial < 0.5 * open_, (sil, bilabial, open_)


def test_the_corpus_is_built_once_per_faces_and_copies(three_voices, tmp_path, monkeypatch):
    """real_voice_corpus builds into the cache on first use and reads it after; other copies, another folder."""
    monkeypatch.setattr(rv, "cache_dir", lambda: tmp_path)  # (the voices stay where they were fetched)
    built = []
    build = rv.build_real_voice_corpus
    monkeypatch.setattr(rv, "build_real_voice_corpus", lambda *a, **k: built.append(a[1]) or build(*a, **k))
    first = rv.real_voice_corpus(tiny_config(), 1, progress=False)
    again = rv.real_voice_corpus(tiny_config(), 1, progress=False)
    other = rv.real_voice_corpus(tiny_config(), 2, progress=False)
    unmirrored = rv.real_voice_corpus(tiny_config(mirror=False), 1, progress=False)
    assert built == [1, 2, 1] and first.root == again.root != other.root != unmirrored.root != first.root
    assert len(other) == 2 * len(first) == 6 and not any(c.mirrored for c in unmirrored.clips)


def test_without_every_voice_fetched_the_build_says_what_to_run(three_voices, tmp_path, monkeypatch):
    """One voice missing is an error (a corpus of fewer voices than the manifest's would pass unnoticed)."""
    missing = rs.Recording(rs.TRAINING_SDIST, "nowhere/missing.flac", "no words", "sdist")
    monkeypatch.setattr(rv, "TRAINING_VOICES", {**rv.TRAINING_VOICES, "missing": missing})
    with pytest.raises(FileNotFoundError, match=r"real_speech --fetch"):
        rv.build_real_voice_corpus(tiny_config(), 1, tmp_path / "rv", progress=False)
    assert not (tmp_path / "rv").exists()


def test_real_voices_must_be_a_count():
    with pytest.raises(ValueError, match="real_voices"):
        LandmarkTrainConfig(real_voices=-1)


def test_agent_1_trains_on_espeak_and_the_real_voices(three_voices, tiny_corpus, tmp_path, monkeypatch):
    """With ``real_voices`` = N, agent 1's training split is the corpus's plus every voice on N faces
    (the validation split stays espeak's); the voices' clips are the corpus real_voice_corpus makes."""
    import dataclasses

    from minitalker.nn.landmark_transformer import LandmarkTransformerConfig
    from minitalker.train import landmarks as L

    monkeypatch.setattr(rv, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(L, "real_voice_corpus", lambda base, n: rv.real_voice_corpus(tiny_config(), n, progress=False))
    seen = []

    class Clips(L.LandmarkClips):
        def __init__(self, clips, audio_cfg=None):
            seen.append([c.id for c in clips])
            super().__init__(clips, audio_cfg)

    monkeypatch.setattr(L, "LandmarkClips", Clips)
    model = dataclasses.replace(LandmarkTransformerConfig.fast(), d_model=32, n_layers=1, clip_frames=8)
    train = dataclasses.replace(LandmarkTrainConfig.fast(), steps=2, batch_size=2, eval_every=2, ckpt_every=2,
                                real_voices=2)
    L.train_landmarks("fast", tmp_path / "run", model_cfg=model, train_cfg=train, corpus=tiny_corpus)
    espeak = [c.id for c in L.splits(tiny_corpus)["train"]]
    assert seen[0] == espeak + [f"{n}-{k}" for n in three_voices for k in range(2)]
    assert seen[1] == [c.id for c in L.splits(tiny_corpus)["val"]]


def test_every_added_pronunciation_is_one_the_dictionary_lacks():
    from minitalker.phones import _decoder

    decoder = _decoder(16000, "align", "FATAL")
    assert all(decoder.lookup_word(word) is None for word in rs.PRONOUNCE)
