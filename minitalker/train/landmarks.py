"""Training and evaluating agent 1, the landmark completion transformer, on the corpus.

``train_landmarks("fast")`` is what ``minitalker train landmarks --preset fast`` runs: chunks of
``clip_frames`` frames from the training split, loss = L1 on the hidden points' positions plus L1
on their velocities (frame-to-frame differences; it punishes jitter that a position loss alone
averages away), the shared :class:`~minitalker.train.loop.Trainer`, and validation (mouth error on
the ``val`` split) every ``eval_every`` steps choosing the ``best`` checkpoint. The model's linear path is set
to the ridge baseline's closed-form solution and frozen (Adam would only add noise to an optimum),
so training starts where that baseline ends and the transformer learns the residual: what a
linear map of one window cannot do (our choice: a linear path trained from zero left the model
only level with ridge).

``evaluate_landmarks(model)`` scores a model on held-out sentences (test split, training faces)
and on the held-out identity, next to three baselines fitted in the same run on the training
split: the reference copied (a closed, resting mouth), the mean mouth shape, and ridge regression
from the same audio window. All errors are in the normalised frame, where the inter-ocular
distance is 1, so they read as "fraction of the eye-corner distance".

With a ``teacher`` (:class:`LandmarkTrainConfig`), the student learns what a trained agent 1 predicts
on the same chunks instead of (or, by ``teacher_weight``, as well as) the corpus's landmarks:
distillation (Hinton et al. 2015). Why: on the real voices (``real_voices``) the student learns the
teacher's answer to a human voice, where the rig's mouths would teach it only the aligned phones.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..audio import long_term_spectrum
from ..config import PRESETS, check_choice, check_fraction, check_non_negative, check_positive, preset_name
from ..data.corpus import Corpus
from ..data.datasets import LandmarkClips, MelAugment
from ..data.real_voices import real_voice_corpus
from ..data.synthetic import CorpusConfig, load_corpus
from ..data.visemes import base_phoneme, phoneme_class
from ..io import (
    atomic_path,
    export_weights,
    load_checkpoint,
    load_meta,
    model_weights,
    save_checkpoint,
    suffixed,
    write_json,
)
from ..landmarks import scheme
from ..lipsync import evaluate_landmarks_real, format_lipsync
from ..nn.landmark_transformer import (
    HIDDEN,
    SHIPPED,
    LandmarkCompletionTransformer,
    LandmarkTransformerConfig,
    model_from_checkpoint,
)
from .loop import FULL_WORKERS, TrainConfig, Trainer, ship_training_log

CLASSES = ("bilabial", "open_vowel", "rounded_vowel", "other", "silence")


#: More espeak voices for agent 1 (our choice of human-sounding ones): US, British, New York, Caribbean, Scottish
#: and RP accents, male and female variants, and espeak's two synthesisers (klatt is the other one).
MANY_VOICES = ("en-us", "en", *(f"en-us+{v}" for v in ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2",
                                                      "f3", "f4", "f5", "klatt3", "Annie", "Alex")),
               "en+f4", "en+m6", "en-us-nyc+m1", "en-029+f2", "en-gb-scotland+m3", "en-gb-x-rp+f3")
#: Faster espeak speech (words/minute): people reading aloud outpace the preset's 140-190.
FAST_RATES = (150, 180, 210, 240, 270)


@dataclass
class LandmarkTrainConfig(TrainConfig):
    """The shared loop's settings plus what agent 1's data and loss need."""

    corpus: str = "fast"  # corpus preset whose sentences and splits agent 1 uses (see landmark_corpus)
    voices_per_sentence: int = 5  # each sentence spoken this many times, by random voices, rates, pitches
    voices: tuple[str, ...] = ()  # espeak voices to draw from (empty: the corpus preset's six)
    rates: tuple[int, ...] = ()  # espeak speaking rates to draw from, words/minute (empty: the preset's 140-190)
    velocity_weight: float = 1.0  # loss = L1(positions) + velocity_weight · L1(velocities)
    augment: bool = True  # MelAugment on training chunks, with the changes below
    speed: float = 0.0  # MelAugment.speed (e.g. 0.3: clips up to 1.3x faster or slower); off: see the ablation
    freq_warp: float = 0.0  # MelAugment.warp (e.g. 0.15: formants moved by up to 15%); off: see the ablation
    eq_db: float = 0.0  # MelAugment.eq_db (e.g. 4: a smooth random equaliser of 3 x 4 dB); off: see the ablation
    p_band: float = 0.1  # MelAugment.p_band: this fraction of chunks band-limited to 3.4-6 kHz
    p_nonspeech: float = 0.05  # MelAugment.p_nonspeech: this fraction of chunks noise, hum or tunes, mouth at rest
    p_reverb: float = 0.0  # MelAugment.p_reverb: this fraction of clips heard in a random room (reverberation)
    p_true_phones: float = 0.0  # MelAugment.p_true_phones: with the phonetic front end, this fraction of chunks reads the corpus's phones
    real_voices: int = 0  # train on the real voices too (data.real_voices), each on this many faces; 0: espeak only
    teacher: str = ""  # an agent-1 checkpoint whose predictions the model learns (distillation); "": none
    teacher_weight: float = 1.0  # with a teacher: loss = w · loss(teacher's prediction) + (1 - w) · loss(landmarks)
    match_spectrum: bool = True  # measure the training clips' long-term spectrum; the model hears every recording moved to it
    eval_every: int = 0  # 0 = once per epoch (an epoch = as many frames as the training split holds)
    ckpt_every: int = 0  # 0 = once per epoch

    def __post_init__(self):
        super().__post_init__()
        self.voices, self.rates = tuple(self.voices), tuple(self.rates)
        check_choice(self, "corpus", PRESETS)
        check_positive(self, "voices_per_sentence")
        check_non_negative(self, "velocity_weight", "speed", "freq_warp", "eq_db", "real_voices")
        check_fraction(self, "p_band", "p_nonspeech", "p_reverb", "p_true_phones", "teacher_weight")
        if any(not 80 <= r <= 450 for r in self.rates):
            raise ValueError(f"rates {self.rates}: espeak-ng speaks 80 to 450 words/minute; give rates in that range")

    def check_intervals(self) -> None:
        """``eval_every``, ``ckpt_every`` ≥ 0: 0 means once per epoch."""
        check_non_negative(self, "eval_every", "ckpt_every")

    @classmethod
    def fast(cls) -> "LandmarkTrainConfig":
        return cls(voices=MANY_VOICES, steps=3600, batch_size=16, lr=2e-3, min_lr=2e-5, warmup_steps=60, log_every=10,
                   eval_every=120, ckpt_every=120)

    @classmethod
    def full(cls) -> "LandmarkTrainConfig":
        # an epoch of the full corpus is only ~85 steps of 64 clips: validate and save every 500 instead
        return cls(corpus="full", voices=MANY_VOICES, steps=30_000, batch_size=64, lr=5e-4, min_lr=1e-5, warmup_steps=1000,
                   ema_decay=0.999, log_every=50, eval_every=500, ckpt_every=500, workers=FULL_WORKERS)


def landmark_corpus(cfg: LandmarkTrainConfig | dict | None = None) -> Corpus:
    """Agent 1's corpus: the ``cfg.corpus`` preset's sentences and splits, each sentence spoken by
    ``cfg.voices_per_sentence`` voices, training clips as landmarks only (built on first use).

    Agent 1 needs no frames, and landmark-only clips cost little to make, so it can hear every
    sentence several times while agent 2 trains on the preset itself. The sentence splits are the
    preset's (the same seed draws them first), so agent 1 never hears a sentence that either
    agent is tested on. Our choice: more voices per sentence took agent 1 further below ridge's
    error on held-out sentences.
    """
    if not isinstance(cfg, LandmarkTrainConfig):
        cfg = LandmarkTrainConfig.from_dict(cfg) if cfg is not None else LandmarkTrainConfig.preset()
    base = CorpusConfig.preset(cfg.corpus)
    if cfg.voices_per_sentence == base.clips_per_sentence and not cfg.voices and not cfg.rates:
        return load_corpus(base)
    name = (f"{base.name}-voices{cfg.voices_per_sentence}" + (f"of{len(cfg.voices)}" if cfg.voices else "")
            + (f"-rates{max(cfg.rates)}" if cfg.rates else ""))
    return load_corpus(dataclasses.replace(base, name=name, clips_per_sentence=cfg.voices_per_sentence,
                                           frames_fraction=0.0, voices=cfg.voices or base.voices,
                                           rates=cfg.rates or base.rates))


def splits(corpus: Corpus) -> dict[str, list]:
    """train, val, test_sentences (held-out sentences, training faces), test_identity (held-out faces)."""
    test = corpus.split("test")
    return {"train": corpus.split("train"), "val": corpus.split("val"),
            "test_sentences": [c for c in test if c.identity not in corpus.heldout],
            "test_identity": [c for c in test if c.identity in corpus.heldout]}


def landmark_loss(model: torch.nn.Module, batch: dict, velocity_weight: float = 1.0,
                  teacher: LandmarkCompletionTransformer | None = None, teacher_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """L1 position + velocity loss on the hidden points of ``batch`` (see :class:`LandmarkClips`).

    With a ``teacher``, each term is ``w · L1(pred, teacher's prediction) + (1 - w) · L1(pred, target)``,
    ``w = teacher_weight``: the teacher hears the same (augmented) chunk.
    """
    pred = model(batch["mel"], batch["reference"])[:, :, HIDDEN]  # (B, T, 31, 2)
    pos, vel = _l1(pred, batch["target"][:, :, HIDDEN])
    if teacher is not None:
        with torch.no_grad():
            taught = teacher(batch["mel"], batch["reference"])[:, :, HIDDEN]  # (B, T, 31, 2)
        t_pos, t_vel = _l1(pred, taught)
        pos, vel = torch.lerp(pos, t_pos, teacher_weight), torch.lerp(vel, t_vel, teacher_weight)
    return {"loss": pos + velocity_weight * vel, "position": pos, "velocity": vel}


def _l1(pred: torch.Tensor, true: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean L1 of positions ``(B, T, P, 2)`` and of their frame-to-frame velocities."""
    return (pred - true).abs().mean(), ((pred[:, 1:] - pred[:, :-1]) - (true[:, 1:] - true[:, :-1])).abs().mean()


# ------------------------------------------------------------------------------------- scoring

def score(preds: list[np.ndarray], data: LandmarkClips) -> dict:
    """Mouth error (mean over frames), mouth-opening correlation and error per phoneme class."""
    err = np.concatenate([scheme.mouth_error(p, t) for p, t in zip(preds, data.target)])  # (ΣT,)
    op_pred = np.concatenate([scheme.mouth_opening(p) for p in preds])
    op_true = np.concatenate([scheme.mouth_opening(t) for t in data.target])
    corr = float(np.corrcoef(op_pred, op_true)[0, 1]) if np.ptp(op_pred) > 1e-6 else None  # None: a constant (up to fp noise)
    labels = np.array([phoneme_class(p) if p and base_phoneme(p) != "_" else "silence"  # pauses and gaps
                       for i in range(len(data)) for p in data.phonemes(i)])
    per_class = {c: float(err[labels == c].mean()) for c in CLASSES if (labels == c).any()}
    return {"mouth_error": float(err.mean()), "opening_corr": corr, "per_class": per_class, "frames": int(len(err))}


def predict_model(model: LandmarkCompletionTransformer, data: LandmarkClips) -> list[np.ndarray]:
    return [model.predict_sequence(data.features(i), data.reference[i]) for i in range(len(data))]


class Ridge:
    """Baseline: ridge regression from the flattened mel window to the hidden points' displacement.

    ``y = (x - μ_x) W + μ_y`` with ``W = (X_cᵀX_c + λI)⁻¹ X_cᵀY_c``, where x is a frame's window
    (W·80 values, standardised like the model's input) and y the hidden points minus the
    reference's (so each speaker keeps their own mouth). Closed form, in numpy; λ is chosen on
    the validation split from a grid, which makes the baseline as strong as it can be.
    """

    def __init__(self, train: LandmarkClips, val: LandmarkClips, lambdas=(1e0, 1e1, 1e2, 1e3, 1e4, 1e5)):
        xtx, xty, sx, sy, n = 0.0, 0.0, 0.0, 0.0, 0
        for i in range(len(train)):
            x, y = self._xy(train, i)
            xtx, xty, sx, sy, n = xtx + x.T @ x, xty + x.T @ y, sx + x.sum(0), sy + y.sum(0), n + len(x)
        self.mx, self.my = sx / n, sy / n
        xtx, xty = xtx - n * np.outer(self.mx, self.mx), xty - n * np.outer(self.mx, self.my)  # centred
        e, v = np.linalg.eigh(xtx)
        best = np.inf
        for lam in lambdas:  # one eigendecomposition serves every λ
            self.w = v @ ((v.T @ xty) / (e + lam)[:, None])
            err = score(self.predict(val), val)["mouth_error"]
            if err < best:
                best, self.lam, w = err, lam, self.w
        self.w = w

    @staticmethod
    def _xy(data: LandmarkClips, i: int) -> tuple[np.ndarray, np.ndarray]:
        x = data.windows(i).reshape(int(data.n_frames[i]), -1).astype(np.float64)  # (T, W·80)
        y = (data.target[i] - data.reference[i])[:, HIDDEN].reshape(len(x), -1)  # (T, 62)
        return x, y

    def predict(self, data: LandmarkClips) -> list[np.ndarray]:
        out = []
        for i in range(len(data)):
            x, _ = self._xy(data, i)
            pred = np.repeat(data.reference[i][None], len(x), 0)  # (T, 68, 2)
            pred[:, HIDDEN] += ((x - self.mx) @ self.w + self.my).reshape(len(x), -1, 2).astype(np.float32)
            out.append(pred)
        return out


def baselines(train: LandmarkClips, val: LandmarkClips) -> dict:
    """The three baselines as functions ``data -> [(T_i, 68, 2)]``, fitted on ``train``."""
    mean_hidden = np.concatenate([t[:, HIDDEN] for t in train.target]).mean(0)  # (31, 2)

    def copy(data):
        return [np.repeat(r[None], n, 0) for r, n in zip(data.reference, data.n_frames)]

    def mean_shape(data):
        preds = copy(data)
        for p in preds:
            p[:, HIDDEN] = mean_hidden
        return preds

    ridge = Ridge(train, val)
    return {"copy reference": copy, "mean mouth": mean_shape, f"ridge (λ={ridge.lam:g})": ridge.predict}


def evaluate_landmarks(model: LandmarkCompletionTransformer | str | os.PathLike | None = None,
                       corpus: Corpus | str | None = None) -> dict:
    """Score ``model`` (a model, a checkpoint path, or None for the shipped one) and the baselines.

    ``corpus``: a corpus or a preset name; by default the one the model was trained on
    (:func:`landmark_corpus` of its training config), whose training split also fits the baselines.

    Returns ``{set: {method: score(...)}}`` for ``test_sentences`` (held-out sentences, training
    faces) and ``test_identity`` (the held-out face), for those the corpus has, plus
    ``"improvement": {set: 1 - model error / best baseline error}`` (target ≥ 0.3 on held-out sentences).
    """
    if not isinstance(model, LandmarkCompletionTransformer):
        model = model_from_checkpoint(SHIPPED if model is None else model)
    if corpus is None:
        corpus = landmark_corpus(getattr(model, "meta", {}).get("train_config"))
    corpus = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)
    data = {k: LandmarkClips(v, model.cfg.audio_config()) for k, v in splits(corpus).items() if v}
    methods = baselines(data["train"], data["val"])
    results: dict = {"improvement": {}}
    for name in ("test_sentences", "test_identity"):
        if name in data:
            results[name] = {"model": score(predict_model(model, data[name]), data[name])}
            results[name] |= {m: score(f(data[name]), data[name]) for m, f in methods.items()}
            best = min(v["mouth_error"] for k, v in results[name].items() if k != "model")
            results["improvement"][name] = 1 - results[name]["model"]["mouth_error"] / best
    return results


def format_results(results: dict) -> str:
    """Markdown tables: error and opening correlation per set and method; error per phoneme class."""
    lines = ["| set | method | mouth error (/inter-ocular) | opening r |", "|---|---|---|---|"]
    sets = [k for k in ("test_sentences", "test_identity") if k in results]
    for name in sets:
        for method, s in results[name].items():
            corr = "—" if s["opening_corr"] is None else f"{s['opening_corr']:.3f}"
            lines.append(f"| {name} | {method} | {s['mouth_error']:.4f} | {corr} |")
    lines.append("")
    for name, gain in results["improvement"].items():
        lines.append(f"{name}: the model's error is {100 * gain:.1f}% lower than the best baseline's"
                     + (" (target ≥ 30%)" if name == "test_sentences" else ""))
    for name in sets:
        res = results[name]
        lines += ["", f"| phoneme class ({name}) | " + " | ".join(res) + " |", "|---" * (len(res) + 1) + "|"]
        for c in CLASSES:
            if c in res["model"]["per_class"]:
                lines.append(f"| {c} | " + " | ".join(f"{s['per_class'][c]:.4f}" for s in res.values()) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- training

def train_landmarks(preset: str | None = None, out: str | os.PathLike | None = None, resume: bool = False,
                    model_cfg: LandmarkTransformerConfig | None = None, train_cfg: LandmarkTrainConfig | None = None,
                    corpus: Corpus | None = None) -> Path:
    """Train agent 1; returns the run folder (``last``/``best`` checkpoints, ``metrics.jsonl``).

    ``preset`` picks both configs (fast/full; default ``$MINITALKER_PRESET``); ``model_cfg`` and
    ``train_cfg`` override them. ``resume`` continues ``out/last`` exactly where it stopped. With
    ``train_cfg.real_voices`` = N the training split also holds the real voices on N faces of the
    ``train_cfg.corpus`` preset's (:func:`~minitalker.data.real_voices.real_voice_corpus`). With
    ``train_cfg.teacher`` the model hears through the teacher's front end (its spectrum included).
    """
    preset = preset_name(preset)
    model_cfg = model_cfg or LandmarkTransformerConfig.preset(preset)
    cfg = train_cfg or LandmarkTrainConfig.preset(preset)
    out = Path(out or Path("outputs") / f"landmarks_{preset}")
    teacher = _teacher(cfg.teacher, model_cfg) if cfg.teacher else None
    if teacher is not None:
        model_cfg = dataclasses.replace(model_cfg, spectrum=teacher.cfg.spectrum)
    corpus = corpus or landmark_corpus(cfg)
    parts = splits(corpus)
    if cfg.match_spectrum and not model_cfg.spectrum:  # audio.match_spectrum: a voice's colour moved to the corpus's
        model_cfg = dataclasses.replace(model_cfg, spectrum=long_term_spectrum([c.audio for c in parts["train"]],
                                                                                model_cfg.audio_config()))
    if cfg.real_voices:  # (after the spectrum: the voices are moved to espeak's colour, not the other way)
        parts["train"] += real_voice_corpus(CorpusConfig.preset(cfg.corpus), cfg.real_voices).split("train")
    train, val = (LandmarkClips(parts[k], model_cfg.audio_config()) for k in ("train", "val"))
    epoch = max(1, int(train.n_frames.sum()) // (cfg.batch_size * model_cfg.clip_frames))
    cfg = dataclasses.replace(cfg, eval_every=cfg.eval_every or epoch, ckpt_every=cfg.ckpt_every or epoch)
    torch.manual_seed(cfg.seed)
    model = LandmarkCompletionTransformer(model_cfg)
    if model.linear is not None:  # the linear path is the ridge baseline, fitted in closed form and frozen
        ridge = Ridge(train, val)
        model.init_linear(ridge.w, ridge.mx, ridge.my)
        model.linear.requires_grad_(False)
    augment = MelAugment(speed=cfg.speed, warp=cfg.freq_warp, eq_db=cfg.eq_db, p_band=cfg.p_band,
                         p_nonspeech=cfg.p_nonspeech, p_reverb=cfg.p_reverb, p_true_phones=cfg.p_true_phones) \
        if cfg.augment else None

    def batch_fn(seeds):
        return train.batch(seeds, model_cfg.clip_frames, augment)

    def loss_fn(m, batch):
        return landmark_loss(m, batch, cfg.velocity_weight, teacher, cfg.teacher_weight)

    def eval_fn(m):
        s = score(predict_model(m, val), val)
        return {"val_mouth_error": s["mouth_error"], "val_opening_corr": s["opening_corr"]}

    meta = {"model_class": "LandmarkCompletionTransformer", "corpus": corpus.root.name}
    trainer = Trainer(model, cfg, out, batch_fn, loss_fn, eval_fn, model_config=model_cfg.to_dict(),
                      best_metric="val_mouth_error", meta=meta)
    if teacher is not None:
        teacher.to(trainer.device)
    trainer.fit(resume=resume)
    return out


def _teacher(path: str, student: LandmarkTransformerConfig) -> LandmarkCompletionTransformer:
    """The frozen teacher at ``path``; ValueError unless the student can hear what it hears, in its clips."""
    teacher = model_from_checkpoint(path).eval().requires_grad_(False)
    hears = dataclasses.replace(student, spectrum=teacher.cfg.spectrum).audio_config()
    if teacher.cfg.audio_config() != hears or student.clip_frames > teacher.cfg.clip_frames:
        raise ValueError(f"the teacher {path} hears {teacher.cfg.audio_config()} in clips of {teacher.cfg.clip_frames} "
                         f"frames; the student would hear {hears} in clips of {student.clip_frames}: give the student the "
                         "teacher's front end (n_mels, window, lifter, front_end, recogniser) and at most its clip_frames")
    return teacher


def export_landmark_model(run: str | os.PathLike, dest: str | os.PathLike = SHIPPED, command: str = "",
                          corpus: Corpus | None = None, recogniser: str | None = None) -> dict:
    """Write ``run/best`` as a small fp16 checkpoint at ``dest`` with its test metrics and provenance.

    The JSON records the command that trained it, the configs, the seed, the training time, the
    evaluation of :func:`evaluate_landmarks` (model and baselines) and the lip-sync on real speech
    (:func:`minitalker.lipsync.evaluate_landmarks_real`); ``<dest>.metrics.jsonl`` keeps
    the training log and ``<dest>.md`` says it all in words. Returns that JSON.
    ``recogniser``: with phones, the recogniser the shipped model hears with, where it is not the one it
    trained with (:data:`minitalker.phones.RECOGNISERS`): the weights map phones to mouths, whoever
    heard them; the JSON keeps the training's under ``trained_recogniser``.
    """
    tensors, meta = load_checkpoint(Path(run) / "best")
    weights = export_weights(tensors)
    model = model_from_checkpoint(Path(run) / "best")
    trained_recogniser = model.cfg.recogniser
    if recogniser:
        model.cfg = dataclasses.replace(model.cfg, recogniser=recogniser)
    model.load_state_dict(model_weights(weights))  # score what we ship: fp16-rounded
    results = evaluate_landmarks(model, corpus or landmark_corpus(meta["train_config"]))
    real = evaluate_landmarks_real(model)
    info = {k: meta[k] for k in ("model_class", "train_config", "step", "train_seconds", "corpus")}
    info |= {"model_config": model.cfg.to_dict(), "trained_recogniser": trained_recogniser, "command": command,
             "seed": meta["train_config"]["seed"], "val_metrics": meta["metrics"],
             "test_results": results, "real_speech": real,
             "dtype": "float16", "torch_threads": torch.get_num_threads(), "exported": time.strftime("%Y-%m-%d %H:%M:%S")}
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(dest, weights, info)
    ship_training_log(run, dest)  # the training curves, for notebook 02
    _write_card(dest, info)
    return info


def rescore_real_speech(dest: str | os.PathLike = SHIPPED) -> dict:
    """Score a shipped checkpoint on today's real-speech set and inference again (after either changed):
    rewrites the ``real_speech`` of its JSON (dated ``real_speech_scored``) and its ``.md``; the weights,
    the training record and the synthetic evaluation stay as exported. Returns the JSON."""
    info = load_meta(dest)
    info |= {"real_speech": evaluate_landmarks_real(dest), "real_speech_scored": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(suffixed(dest, ".json"), info)  # the weights are not touched
    _write_card(Path(dest), info)
    return info


def _write_card(dest: Path, info: dict) -> None:
    """``<dest>.md``: how the checkpoint was made, and its synthetic and real-speech evaluations, in words."""
    rescored = f"; scored again {info['real_speech_scored']}" if "real_speech_scored" in info else ""
    with atomic_path(suffixed(dest, ".md")) as tmp:
        tmp.write_text(f"# {dest.name}: agent 1, the landmark completion transformer\n\n"
                       f"Made by `{info['command']}` ({info['exported']}): best of {info['step']} steps by validation "
                       f"mouth error, {info['train_seconds'] / 60:.1f} min of training, seed {info['seed']}, corpus "
                       f"`{info['corpus']}`, weights in float16 ({dest.name}.safetensors, configs and metrics in "
                       f"{dest.name}.json, training log in {dest.name}.metrics.jsonl; evaluated with "
                       f"{info['torch_threads']} torch thread(s)).\n\n"
                       f"Evaluation (`minitalker evaluate landmarks`; mouth error = mean distance of the 20 mouth "
                       f"points over the inter-ocular distance):\n\n{format_results(info['test_results'])}\n\n"
                       f"Real speech (`minitalker evaluate landmarks --real`{rescored}):\n\n"
                       f"{format_lipsync(info['real_speech'])}\n")

