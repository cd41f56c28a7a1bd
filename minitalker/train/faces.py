"""Training agent 2: the landmark-conditioned face diffusion model, on the built-in corpus.

One training sample (built from a seed, so the data is a pure function of (seed, step); see
:mod:`minitalker.train.loop`):

* a random frame of a random training clip: the **target** x0 ``(3, S, S)`` and its landmarks;
* a **reference** of the same speaker: the neutral photo (``p_neutral_reference``) or a frame of
  another training clip of the same appearance (so the model learns to take identity from *any*
  frame, as at inference, where the reference is whatever photo the user gives);
* the reference warped to the target's landmarks (``warp``) and the target's sketch (``sketch``);
* (``p_reshape``) the sample's landmarks and images moved toward another identity's face shape
  (:func:`shape_swap`: one photo's texture on another's geometry);
* the same random colour gain and hue rotation on all images of a sample (appearance variety:
  we have few real faces, and the model must take colour from the photo, not from memory);
* noise and a timestep; the loss is the v-prediction MSE with extra weight on the mouth.

``train_faces()`` is what ``minitalker train faces`` runs; ``python -m torch.distributed.run
--nproc_per_node N -m minitalker.cli train faces`` runs the same code data-parallel.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from minitalker.config import preset_name
from minitalker.data.corpus import Corpus
from minitalker.data.synthetic import load_corpus
from minitalker.diffusion.schedule import DiffusionConfig, NoiseSchedule
from minitalker.face_agent import (
    SHIPPED,
    FaceAgentConfig,
    check_channels,
    face_masks,
    generate_frames,
    landmark_tokens_input,
    load_face_agent,
    make_loss_fn,
    mouth_box_mask,
    read_model_config,
    sketch,
    warp_reference,
)
from minitalker.io import export_weights, load_checkpoint, save_checkpoint
from minitalker.landmarks.scheme import denormalise, normalise
from minitalker.nn.unet import LandmarkUNet, UNetConfig
from minitalker.pixels import to_tensor
from minitalker.train.loop import TrainConfig, Trainer, ship_training_log


class FrameBank:
    """All frames of one split in memory, grouped by appearance (identity, mirrored).

    ``frames (N, S, S, 3)`` uint8 · ``landmarks (N, 68, 2)`` · ``clip_of (N,)`` · ``groups``:
    {appearance: frame indices}. At 64 px the fast corpus's training frames take ~100 MB.
    """

    def __init__(self, corpus: Corpus, split: str = "train", identities: list[str] | None = None):
        clips = [c for c in corpus.split(split, frames=True) if identities is None or c.identity in identities]
        if not clips:
            raise ValueError(f"the corpus has no {split!r} clips{' of ' + str(identities) if identities else ''}")
        self.size = corpus.image_size
        self.frames = np.concatenate([c.frames for c in clips])  # (N, S, S, 3)
        self.landmarks = np.concatenate([c.landmarks for c in clips])  # (N, 68, 2)
        self.clip_of = np.concatenate([np.full(c.n_frames, i) for i, c in enumerate(clips)])  # (N,)
        keys = [(c.identity, c.mirrored) for c in clips]
        self.appearance = [keys[i] for i in self.clip_of]
        self.groups = {k: np.flatnonzero([a == k for a in self.appearance]) for k in dict.fromkeys(keys)}
        self.references = {k: corpus.reference(*k) for k in self.groups}  # {appearance: (frame, landmarks)}
        self._neutral_warps: np.ndarray | None = None

    def neutral_warps(self) -> np.ndarray:
        """Each frame's neutral reference warped to its landmarks ``(N, S, S, 3)`` (made once, ~1.5 ms a frame)."""
        if self._neutral_warps is None:
            self._neutral_warps = np.empty_like(self.frames)
            for key, idx in self.groups.items():
                self._neutral_warps[idx] = warp_reference(*self.references[key], self.landmarks[idx])
        return self._neutral_warps

    def __len__(self) -> int:
        return len(self.frames)


def appearance_jitter(x: torch.Tensor, gain: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """A colour gain per channel and a hue rotation, on images ``(B, 3, H, W)`` in [-1, 1].

    Intensities ``y = x + 1`` in [0, 2] are rotated by ``angle (B,)`` about the grey axis
    ``k = (1, 1, 1) / √3`` (Rodrigues: ``R = cos θ I + sin θ [k]× + (1 - cos θ) k kᵀ``, which keeps
    grey grey), then scaled by ``gain (B, 3)``.
    """
    k = torch.full((3,), 3 ** -0.5)
    K = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])  # [k]x
    c, s = angle.cos()[:, None, None], angle.sin()[:, None, None]
    R = c * torch.eye(3) + s * K + (1 - c) * torch.outer(k, k)  # (B, 3, 3)
    y = torch.einsum("bij,bjhw->bihw", R, x + 1) * gain[:, :, None, None]
    return (y - 1).clamp(-1, 1)


def shape_swap(bank: FrameBank, key: tuple, rng: np.random.Generator) -> np.ndarray:
    """A displacement ``(68, 2)`` (crop px) toward another training identity's face shape.

    ``d = α (B→A − A)``, ``α ~ U(0, 1)``: ``A`` is appearance ``key``'s neutral landmarks, ``B→A``
    another identity's neutral landmarks moved by the similarity that puts its eyes on ``A``'s
    (:func:`minitalker.landmarks.scheme.normalise`), so only the shape differs. Added to every
    landmark of a sample and warped into its images, it puts one photo's texture on (part of)
    another's geometry. Why (our choice): with two training faces, texture and shape always come
    together; a texture-swapped sample teaches the UNet that neither predicts the other.
    """
    a = bank.references[key][1]  # (68, 2)
    other = [k for k in bank.references if k[0] != key[0]]
    if not other:
        return np.zeros_like(a)
    b = bank.references[other[int(rng.integers(len(other)))]][1]
    _, params = normalise(a)
    return rng.uniform(0, 1) * (denormalise(normalise(b)[0], params) - a)


def make_batch_fn(bank: FrameBank, cfg: FaceAgentConfig, n_timesteps: int):
    """``batch_fn(seeds) -> dict`` of tensors for the Trainer (one sample per seed)."""

    def batch_fn(seeds: list[int]) -> dict[str, torch.Tensor]:
        x0, lms, ref, ref_lm, warped, gains, angles, noise, t, drop = [], [], [], [], [], [], [], [], [], []
        for seed in seeds:  # everything random comes from the sample's own seed: DDP-invariant
            rng = np.random.default_rng(seed)
            i = int(rng.integers(len(bank)))
            key = bank.appearance[i]
            others = bank.groups[key][bank.clip_of[bank.groups[key]] != bank.clip_of[i]]
            neutral = rng.random() < cfg.p_neutral_reference or len(others) == 0
            if neutral:
                r, r_lm = bank.references[key]
            else:
                j = int(rng.choice(others))
                r, r_lm = bank.frames[j], bank.landmarks[j]
            gains.append(1 + cfg.colour_jitter * rng.uniform(-1, 1, size=3))
            angles.append(cfg.hue_jitter * rng.uniform(-1, 1))
            noise.append(rng.standard_normal((3, bank.size, bank.size), dtype=np.float32))
            t.append(rng.integers(n_timesteps))
            drop.append(rng.random() < cfg.p_uncond)
            frame, lm_i = bank.frames[i], bank.landmarks[i]
            reshaped = cfg.p_reshape > 0 and rng.random() < cfg.p_reshape  # drawn last: p_reshape=0 keeps every draw
            if reshaped:
                d = shape_swap(bank, key, rng)  # (68, 2)
                frame, lm_i = warp_reference(frame, lm_i, lm_i + d)[0], lm_i + d
                r, r_lm = warp_reference(r, r_lm, r_lm + d)[0], r_lm + d
            w = None
            if cfg.warp:  # the reference warped to the target (the neutral one's warps are made once per bank)
                w = bank.neutral_warps()[i] if neutral and not reshaped else warp_reference(r, r_lm, lm_i[None])[0]
            x0.append(frame)
            lms.append(lm_i)
            ref.append(r)
            ref_lm.append(r_lm)
            warped.append(w)
        gain, angle = torch.tensor(np.array(gains), dtype=torch.float32), torch.tensor(angles, dtype=torch.float32)
        jitter = lambda x: appearance_jitter(to_tensor(np.stack(x)), gain, angle)  # noqa: E731  same on every image
        lm = np.stack(lms)  # (B, 68, 2) crop px
        hard, _ = face_masks(lm, np.stack(ref_lm), bank.size, cfg)
        batch = {"x0": jitter(x0), "reference": jitter(ref), "landmarks": landmark_tokens_input(lm, bank.size),
                 "mask": hard, "weight": 1 + cfg.mouth_weight * mouth_box_mask(lm, bank.size),
                 "noise": torch.from_numpy(np.stack(noise)), "t": torch.tensor(t), "drop": torch.tensor(drop)}
        if cfg.warp:
            batch["warped"] = jitter(warped)
        if cfg.sketch:
            batch["sketch"] = sketch(lm, bank.size)
        return batch

    return batch_fn


def make_eval_fn(bank: FrameBank, schedule: NoiseSchedule, cfg: FaceAgentConfig, n: int = 16, steps: int = 10):
    """Validation: DDIM-sample ``n`` fixed val frames from the neutral reference, from pure noise
    (``strength`` 1: the whole model is scored, the same for every run); mouth-box MSE.

    Reports ``val_mouth_mse`` (lower is better: picks the ``best`` checkpoint) and the same for the
    copied reference (the baseline to beat), both in [-1, 1] units.
    """
    idx = np.linspace(0, len(bank) - 1, n).round().astype(int)
    truth = to_tensor(bank.frames[idx])  # (n, 3, S, S)
    box = mouth_box_mask(bank.landmarks[idx], bank.size).bool().expand_as(truth)
    mse = lambda a: float(((a - truth)[box] ** 2).mean())  # noqa: E731
    speakers = {key: [j for j, i in enumerate(idx) if bank.appearance[i] == key]  # rows of each speaker
                for key in dict.fromkeys(bank.appearance[i] for i in idx)}
    refs = torch.empty_like(truth)
    for key, rows in speakers.items():
        refs[rows] = to_tensor(bank.references[key][0])
    copy_mse = mse(refs)  # the baseline does not change during training: computed once

    def eval_fn(unet) -> dict[str, float]:
        gen = torch.empty_like(truth)
        for key, rows in speakers.items():  # one batch per speaker, with its own reference
            ref_frame, ref_lm = bank.references[key]
            gen[rows] = to_tensor(generate_frames(unet, schedule, ref_frame, ref_lm, bank.landmarks[idx[rows]], cfg,
                                                  steps=steps, guidance=1.0, strength=1.0, progress=False))
        return {"val_mouth_mse": mse(gen), "val_mouth_mse_copy_reference": copy_mse}

    return eval_fn


@dataclasses.dataclass
class FaceTrainConfig(TrainConfig):
    """The shared loop's settings for agent 2 (``full``: :meth:`TrainConfig.full`)."""

    @classmethod
    def fast(cls) -> "FaceTrainConfig":
        """~10 img/s on 2 idle CPU cores (1.56 s per step of 16): 2.4k steps take ~1 h, the issue's budget.
        The learning rate decays only to 1e-4, so a run stopped early is still usable."""
        return cls(steps=2_400, batch_size=16, lr=5e-4, min_lr=1e-4, warmup_steps=200, ema_decay=0.995,
                   eval_every=400, ckpt_every=200, log_every=25)


@dataclasses.dataclass
class FaceRun:
    """Everything that defines a face-agent training run (saved with every checkpoint)."""

    unet: UNetConfig
    diffusion: DiffusionConfig
    agent: FaceAgentConfig
    train: TrainConfig

    @classmethod
    def preset(cls, name: str | None = None) -> "FaceRun":
        name = preset_name(name)
        return cls(UNetConfig.preset(name), DiffusionConfig.preset(name), FaceAgentConfig.preset(name),
                   FaceTrainConfig.preset(name))

    def __post_init__(self):
        check_channels(self.unet.cond_channels, self.agent)

    def model_config(self) -> dict:
        return {"unet": self.unet.to_dict(), "diffusion": self.diffusion.to_dict(), "agent": self.agent.to_dict()}

    def read_model_config(self, stored: dict) -> dict:
        """A checkpoint's model_config in today's layout, so a run begun before a field was added resumes."""
        unet, diffusion, agent = read_model_config(stored)
        return FaceRun(unet, diffusion, agent, self.train).model_config()


def train_faces(preset: str | None = None, out: str | Path | None = None, resume: bool = True,
                stop_at: int | None = None, corpus: Corpus | None = None, run: FaceRun | None = None,
                init: str | Path | None = None) -> Trainer:
    """Train (or resume) agent 2; returns the Trainer (``.eval_model`` holds the EMA weights).

    ``stop_at``: pause after this step (the schedule still spans ``run.train.steps``, so a later call
    resumes exactly where this one stopped). ``init``: start a new run from the weights of a
    checkpoint (e.g. the shipped one, to fine-tune it) instead of from scratch; its UNet config must
    be ``run.unet``.
    """
    run = run or FaceRun.preset(preset)
    corpus = corpus or load_corpus(preset)
    if corpus.image_size != run.unet.image_size:
        raise ValueError(f"corpus frames are {corpus.image_size}px but the UNet is for {run.unet.image_size}px: "
                         "use the corpus of the same preset")
    torch.manual_seed(run.train.seed)
    unet = LandmarkUNet(run.unet)
    if init is not None:
        start, _, _ = load_face_agent(init)
        if start.cfg != run.unet:
            raise ValueError(f"{init} holds a UNet with another config than this run's: {start.cfg} vs {run.unet}")
        unet.load_state_dict(start.state_dict())
    schedule = NoiseSchedule(run.diffusion)
    train_ids = [i for i in corpus.identities if i not in corpus.heldout]
    trainer = Trainer(unet, run.train, out or Path("outputs") / f"faces_{preset_name(preset)}",
                      make_batch_fn(FrameBank(corpus, "train"), run.agent, schedule.num_train_timesteps), make_loss_fn(schedule),
                      make_eval_fn(FrameBank(corpus, "val", train_ids), schedule, run.agent),
                      model_config=run.model_config(), read_config=run.read_model_config, best_metric="val_mouth_mse",
                      meta={"corpus": corpus.root.name, "corpus_preset": corpus.meta["config"]["name"]})
    t0 = time.time()
    trainer.fit(resume=resume, stop_at=stop_at)
    print(f"trained to step {trainer.step} in {time.time() - t0:.0f} s; metrics {trainer.metrics}")
    return trainer


def evaluate_faces(checkpoint: str | Path | None = None, corpus: Corpus | str | None = None, clips_per_group: int = 4,
                   steps: int = 25, guidance: float | None = None, ddpm_frames: int = 8, seed: int = 0,
                   regressor=None) -> dict:
    """Agent 2 on held-out sentences and on the held-out identity, against the copied reference.

    Each generated clip is conditioned on the *true* landmarks of its frames (this scores the face
    generator alone; the pipeline's end-to-end quality adds agent 1's error) and scored by
    :func:`minitalker.metrics.evaluate_frames`. ``ddpm_frames`` frames of the first clip are also
    sampled with 1000-step DDPM, to check that ``steps``-step DDIM loses little (PSNR gap in dB).
    ``regressor``: what measures landmarks on frames below 128 px (default: the shipped one).
    Returns ``{group: {"model": metrics, "copy_reference": metrics}, "ddim_vs_ddpm": {...}, ...}``.
    """
    from minitalker.metrics import evaluate_frames, psnr

    unet, schedule, agent = load_face_agent(checkpoint)
    corpus = corpus if isinstance(corpus, Corpus) else load_corpus(corpus)
    test = corpus.split("test", frames=True)
    groups = {"test_sentences": [c for c in test if c.identity not in corpus.heldout][:clips_per_group],
              "heldout_identity": [c for c in test if c.identity in corpus.heldout][:clips_per_group]}
    if not groups["test_sentences"]:
        raise ValueError(f"{corpus.root.name} has no test clips of a training face to score: build a corpus with more "
                         "test sentences (or clips_per_sentence > 1)")
    groups = {name: clips for name, clips in groups.items() if clips}  # a corpus may hold no face out
    results: dict = {"steps": steps, "guidance": agent.guidance_scale if guidance is None else guidance,
                     "strength": agent.strength, "corpus": corpus.root.name}
    for name, clips in groups.items():
        rows = {"model": [], "copy_reference": []}
        for clip in clips:
            (ref, ref_lm), truth, lm = clip.reference(), clip.frames, clip.landmarks
            gen = generate_frames(unet, schedule, ref, ref_lm, lm, agent, steps=steps, guidance=guidance, seed=seed,
                                  progress=False)
            rows["model"].append(evaluate_frames(gen, truth, lm, (ref, ref_lm), regressor))
            rows["copy_reference"].append(evaluate_frames(np.repeat(ref[None], len(truth), 0), truth, lm,
                                                          (ref, ref_lm), regressor))
        results[name] = {k: _mean_rows(v) for k, v in rows.items()} | {"clips": [c.id for c in clips]}
    first = groups["test_sentences"][0]
    (ref, ref_lm), truth, lm = first.reference(), first.frames[:ddpm_frames], first.landmarks[:ddpm_frames]
    results["ddim_vs_ddpm"] = {
        f"ddim_{steps}_psnr": float(psnr(generate_frames(unet, schedule, ref, ref_lm, lm, agent, steps=steps,
                                                         guidance=guidance, seed=seed, progress=False), truth).mean()),
        "ddpm_1000_psnr": float(psnr(generate_frames(unet, schedule, ref, ref_lm, lm, agent, sampler="ddpm",
                                                     guidance=guidance, seed=seed, progress=False), truth).mean()),
        "frames": ddpm_frames, "clip": first.id}
    return results


def _mean_rows(rows: list[dict]) -> dict:
    """Mean of each numeric metric over clips (the measuring method is kept as is)."""
    keys = [k for k, v in rows[0].items() if isinstance(v, float)]
    return {k: float(np.mean([r[k] for r in rows])) for k in keys} | {"landmarks_by": rows[0].get("landmarks_by")}


def format_face_results(results: dict) -> str:
    """A plain-text table of :func:`evaluate_faces` results."""
    cols = ("psnr", "ssim", "mouth_psnr", "mouth_ssim", "lmd", "jitter_ratio")
    lines = [f"{'group':18} {'method':15} " + " ".join(f"{c:>11}" for c in cols)]
    for group in [g for g in ("test_sentences", "heldout_identity") if g in results]:  # a corpus may hold no face out
        for method, m in results[group].items():
            if method != "clips":
                lines.append(f"{group:18} {method:15} " + " ".join(f"{m.get(c, float('nan')):11.4f}" for c in cols))
    d, steps = results["ddim_vs_ddpm"], results["steps"]
    lines.append(f"DDIM {steps} steps vs DDPM 1000 steps on {d['frames']} frames: "
                 f"{d[f'ddim_{steps}_psnr']:.2f} dB vs {d['ddpm_1000_psnr']:.2f} dB PSNR")
    return "\n".join(lines)


def export_face_model(run: str | Path, dest: str | Path = SHIPPED, command: str = "", evaluate: bool | dict = True,
                      which: str = "best") -> dict:
    """Write ``run/<which>`` as a small fp16 checkpoint (EMA weights when kept: :func:`~minitalker.io.export_weights`)
    at ``dest`` with its provenance.

    The JSON records the command, configs, seed, training step and time, the validation metrics and,
    with ``evaluate``, :func:`evaluate_faces` of the fp16 weights we ship (model and baseline; a dict
    gives its arguments, e.g. ``{"clips_per_group": 2}`` on a CPU, where the defaults take long);
    ``<dest>.metrics.jsonl`` keeps the training log.
    """
    tensors, meta = load_checkpoint(Path(run) / which)
    weights = export_weights(tensors)
    info = {k: meta[k] for k in ("model_config", "train_config", "step", "train_seconds", "corpus", "corpus_preset")}
    info |= {"command": command, "seed": meta["train_config"]["seed"], "val_metrics": meta["metrics"],
             "dtype": "float16", "exported": time.strftime("%Y-%m-%d %H:%M:%S")}
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(dest, weights, info)
    ship_training_log(run, dest)  # the training curves, for notebook 05
    if evaluate:  # score exactly what we ship (fp16-rounded weights), then record it beside them
        kwargs = evaluate if isinstance(evaluate, dict) else {}
        info["test_results"] = evaluate_faces(dest, corpus=meta["corpus_preset"], **kwargs)
        save_checkpoint(dest, weights, info)
    return info
