"""Train the landmark regressor (our ruler for 64 px frames) on ground-truth corpus frames only.

    minitalker train regressor --preset fast     # → data/checkpoints/landmark_regressor_fast

Training frames: the corpus ``train`` split (seen faces, mirrored ones included), each paired with a
reference of the same face, with small random shifts and colour changes. Judged on true frames it
never saw: the ``val`` split (seen faces, unseen sentences) and the ``test`` split
(unseen sentences, plus the held-out face). Its mouth error there is compared with the error of
copying the reference landmarks (a closed, neutral mouth): the differences the face metrics must
resolve are of that size, so the ruler must be much finer than that.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from minitalker.config import cache_dir, check_non_negative
from minitalker.io import export_weights, save_checkpoint
from minitalker.landmarks.scheme import MOUTH, crop_to_unit, inter_ocular, mouth_error
from minitalker.nn.landmark_regressor import CHECKPOINT, LandmarkRegressor, RegressorConfig
from minitalker.pixels import to_tensor
from minitalker.train.loop import TrainConfig, Trainer


@dataclasses.dataclass
class RegressorTrainConfig(TrainConfig):
    """The shared loop's settings for the regressor."""

    @classmethod
    def fast(cls) -> "RegressorTrainConfig":
        """Batch 64, AdamW at 2e-3 with 50 warm-up steps and a cosine decay over 1 200 steps, no EMA."""
        return cls(steps=1200, batch_size=64, lr=2e-3, warmup_steps=50, eval_every=250, ckpt_every=500, log_every=50)

    @classmethod
    def full(cls) -> "RegressorTrainConfig":
        """The same run: the full preset's wider network (:meth:`RegressorConfig.full`) is what grows."""
        return cls.fast()


class TrueFrames:
    """The true frames of one split, grouped by appearance (identity, mirrored), with their references.

    ``frames (N, S, S, 3)`` uint8 · ``landmarks (N, 68, 2)`` crop px · ``group (N,)`` appearance index ·
    ``references``: per appearance, the corpus's rest-pose (frame (S, S, 3), landmarks (68, 2)).
    """

    def __init__(self, corpus, split: str, identity: str | None = None):
        clips = [c for c in corpus.split(split, frames=True) if identity is None or c.identity == identity]
        if not clips:
            raise ValueError(f"the corpus has no {split!r} clips with frames{f' of {identity}' if identity else ''}")
        looks = sorted({(c.identity, c.mirrored) for c in clips})
        self.references = [corpus.reference(*look) for look in looks]
        self.frames = np.concatenate([c.frames for c in clips])
        self.landmarks = np.concatenate([c.landmarks for c in clips])
        self.group = np.concatenate([np.full(c.n_frames, looks.index((c.identity, c.mirrored))) for c in clips])
        self.members = [np.flatnonzero(self.group == g) for g in range(len(looks))]

    def predict(self, model: LandmarkRegressor) -> np.ndarray:
        """The model's landmarks for every frame, each read against its appearance's rest-pose reference."""
        out = np.zeros_like(self.landmarks)
        for g, idx in enumerate(self.members):
            out[idx] = model.predict(self.frames[idx], *self.references[g])
        return out

    def copy_reference(self) -> np.ndarray:
        """The baseline: every frame gets its reference's landmarks ``(N, 68, 2)``."""
        return np.stack([self.references[g][1] for g in self.group])


@dataclasses.dataclass
class Augment:
    """Random look and geometry, drawn once per training pair and applied to both images (they show one
    face), plus a small shift of each image alone. With only two training faces, new face shapes
    (aspect, size) and colourings are what let the ruler read a face it never saw."""

    scale: float = 0.15  # x and y each scaled by 1 ± scale (size and aspect of the face)
    rotate: float = 5.0  # degrees
    shift: float = 3.0  # px, both images
    jitter: float = 1.0  # px, each image on its own
    gain: float = 0.2  # per colour channel, 1 ± gain
    offset: float = 20.0  # grey levels
    saturation: tuple[float, float] = (0.0, 1.3)  # 0 = grey, 1 = unchanged

    def __post_init__(self):
        check_non_negative(self, "scale", "rotate", "shift", "jitter", "gain", "offset")
        if self.scale >= 1 or self.gain >= 1:
            raise ValueError(f"Augment.scale and .gain draw factors 1 ± value, which must stay positive: give values "
                             f"below 1 (e.g. 0.15, 0.2); got scale={self.scale}, gain={self.gain}")
        lo, hi = self.saturation
        if not 0 <= lo <= hi:
            raise ValueError(f"Augment.saturation is a range (low, high) with 0 ≤ low ≤ high; got {(lo, hi)}")

    def draw(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """→ ``theta (2, 2, 3)`` affine maps (frame, reference) for ``F.affine_grid`` in [-1, 1] crop units
        (:func:`~minitalker.landmarks.scheme.crop_to_unit`: a pixel is ``2 / (S - 1)``), ``look (5,)``
        = (gain r, g, b, offset, saturation)."""
        sx, sy = 1 + rng.uniform(-self.scale, self.scale, 2)
        a = np.deg2rad(rng.uniform(-self.rotate, self.rotate))
        A = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ np.diag([sx, sy])
        t = rng.uniform(-self.shift, self.shift, 2) + rng.uniform(-self.jitter, self.jitter, (2, 2))  # (2, 2) px
        theta = np.concatenate([np.broadcast_to(A, (2, 2, 2)), (t * 2 / (size - 1))[:, :, None]], -1)
        look = np.array([*(1 + rng.uniform(-self.gain, self.gain, 3)), rng.uniform(-self.offset, self.offset),
                         rng.uniform(*self.saturation)])
        return theta, look


def recolour(images: torch.Tensor, look: torch.Tensor) -> torch.Tensor:
    """``images (B, 3, S, S)`` in [-1, 1], ``look (B, 5)`` (gain ×3, offset in grey levels, saturation) → same
    shape, clipped: ``x = grey + saturation · (x - grey)``, then the intensity ``x + 1`` times gain, plus
    ``offset / 127.5``."""
    grey = images.mean(1, keepdim=True)
    x = grey + look[:, 4, None, None, None] * (images - grey)
    return ((x + 1) * look[:, :3, None, None] + look[:, 3, None, None, None] / 127.5 - 1).clamp(-1, 1)


def warp(images: torch.Tensor, landmarks: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample ``images (B, C, S, S)`` with ``theta (B, 2, 3)`` (output pixel p reads input at ``A p + t``,
    bilinear, edges repeated) and move ``landmarks (B, 68, 2)`` with them: ``p = A⁻¹ (q - t)``. Both in
    [-1, 1] crop units (:func:`~minitalker.landmarks.scheme.crop_to_unit`), which are grid_sample's
    with ``align_corners=True``."""
    grid = F.affine_grid(theta, list(images.shape), align_corners=True)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
    A, t = theta[:, :, :2], theta[:, :, 2]
    return out, torch.linalg.solve(A, (landmarks - t[:, None]).transpose(1, 2)).transpose(1, 2)


def mouth_weighted_l1(pred: torch.Tensor, target: torch.Tensor, mouth_weight: float = 2.0) -> torch.Tensor:
    """L1 over all 68 points, the 20 mouth points counting ``mouth_weight`` times (they are what we measure)."""
    w = torch.ones(68, device=pred.device)
    w[torch.as_tensor(MOUTH)] = mouth_weight
    return ((pred - target).abs().sum(-1) * w).mean() / w.mean()


def evaluate_regressor(model: LandmarkRegressor, corpus) -> dict[str, float]:
    """Mean mouth error (fraction of the inter-ocular distance) on held-out true frames, next to the
    copy-the-reference baseline: ``{val,test,heldout}_{mouth_error,copy_reference}`` and ``val_all_points``."""
    out = {}
    sets = [("val", "val", None), ("test", "test", None)] + [("heldout", "test", i) for i in corpus.heldout]
    for name, split, identity in sets:
        data = TrueFrames(corpus, split, identity)
        pred = data.predict(model)
        out[f"{name}_mouth_error"] = float(mouth_error(pred, data.landmarks).mean())
        out[f"{name}_copy_reference"] = float(mouth_error(data.copy_reference(), data.landmarks).mean())
        if name == "val":
            err = np.linalg.norm(pred - data.landmarks, axis=-1).mean(-1) / inter_ocular(data.landmarks)
            out["val_all_points"] = float(err.mean())
    return out


def train_landmark_regressor(corpus, cfg: RegressorConfig | None = None, train_cfg: TrainConfig | None = None,
                             out_dir: str | os.PathLike | None = None, augment: Augment | None = None,
                             p_rest_reference: float = 0.5) -> tuple[LandmarkRegressor, dict[str, float]]:
    """Train on the corpus ``train`` split with the shared :class:`~minitalker.train.loop.Trainer`.

    Each sample: a true frame, and as reference either its appearance's rest-pose reference (with
    probability ``p_rest_reference``) or a random other frame of the same appearance; both changed
    by one draw of ``augment`` (see :class:`Augment`). ``out_dir`` (default
    ``cache_dir()/runs/landmark_regressor_<S>px``) gets the trainer's files. Returns the model (eval
    mode, weights rounded to fp16 as :func:`save_regressor` ships them) and a report: ``train_seconds``
    and :func:`evaluate_regressor` on held-out true frames.
    """
    S = corpus.image_size
    cfg = dataclasses.replace(cfg or RegressorConfig.preset(), image_size=S)
    train_cfg, augment = train_cfg or RegressorTrainConfig.preset(), augment or Augment()
    data, val = TrueFrames(corpus, "train"), TrueFrames(corpus, "val")
    model = LandmarkRegressor(cfg)

    def batch_fn(seeds: list[int]) -> dict[str, torch.Tensor]:
        samples = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            i = rng.integers(len(data.frames))
            g = data.group[i]
            if rng.random() < p_rest_reference:  # the face's rest pose, or another frame of the same face
                ref, ref_lm = data.references[g]
            else:
                j = rng.choice(data.members[g])
                ref, ref_lm = data.frames[j], data.landmarks[j]
            samples.append((data.frames[i], data.landmarks[i], ref, ref_lm, *augment.draw(rng, S)))
        frames, lms, refs, ref_lms, theta, look = (np.stack(a) for a in zip(*samples))
        theta, look = torch.tensor(theta, dtype=torch.float32), torch.tensor(look, dtype=torch.float32)

        def prepare(img, lm, k):  # uint8 (B, S, S, 3), px (B, 68, 2) → (B, 3, S, S), (B, 68, 2), both in [-1, 1]
            return warp(recolour(to_tensor(img), look), torch.from_numpy(crop_to_unit(lm, S)), theta[:, k])

        (x, y), (ref, ref_lm) = prepare(frames, lms, 0), prepare(refs, ref_lms, 1)
        return {"x": x, "y": y, "ref": ref, "ref_lm": ref_lm}

    def loss_fn(net, batch) -> dict[str, torch.Tensor]:
        return {"loss": mouth_weighted_l1(net(batch["x"], batch["ref"], batch["ref_lm"]), batch["y"])}

    def eval_fn(net) -> dict[str, float]:
        return {"val_mouth_error": float(mouth_error(val.predict(net), val.landmarks).mean())}

    out_dir = Path(out_dir) if out_dir is not None else cache_dir() / "runs" / f"landmark_regressor_{S}px"
    trainer = Trainer(model, train_cfg, out_dir, batch_fn, loss_fn, eval_fn, model_config=cfg.to_dict(),
                      best_metric="val_mouth_error")
    trainer.fit()
    model = trainer.eval_model.cpu().half().float().eval()  # rounded to fp16, exactly as shipped
    return model, {"train_seconds": round(trainer.train_seconds, 1), **evaluate_regressor(model, corpus)}


def save_regressor(model: LandmarkRegressor, path: str | os.PathLike, meta: dict) -> None:
    """Ship the weights in fp16 (safetensors, ``model.*`` keys) with ``meta`` (config, command, metrics...) as JSON."""
    tensors = export_weights({f"model.{k}": v for k, v in model.state_dict().items()})
    save_checkpoint(path, tensors, {"model_config": model.cfg.to_dict(), **meta})


def train_and_save_regressor(preset: str | None = None, size: int | None = None, steps: int | None = None,
                             seed: int = 0, out: str | os.PathLike = CHECKPOINT, command: str = "") -> dict[str, float]:
    """What ``minitalker train regressor`` runs: train on the ``preset`` corpus (``size``: its crop side, default
    the preset's) with :class:`RegressorTrainConfig` (``steps``: default the preset's), save at ``out`` with
    its provenance (``command``, configs, times, threads); returns the metrics on held-out true frames."""
    from minitalker.data.synthetic import CorpusConfig, load_corpus

    corpus_cfg = CorpusConfig.preset(preset)
    corpus = load_corpus(dataclasses.replace(corpus_cfg, image_size=size) if size else corpus_cfg)
    train_cfg = dataclasses.replace(RegressorTrainConfig.preset(preset), seed=seed, **({"steps": steps} if steps else {}))
    torch.manual_seed(seed)  # the initial weights
    t0 = time.time()
    model, report = train_landmark_regressor(corpus, RegressorConfig.preset(preset), train_cfg)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_regressor(model, out, {
        "command": command, "seed": seed, "train_config": train_cfg.to_dict(), "corpus": corpus.root.name,
        "train_seconds": report.pop("train_seconds"), "wall_seconds": round(time.time() - t0, 1),
        "torch_threads": torch.get_num_threads(), "metrics_on_true_frames": report})
    return report
