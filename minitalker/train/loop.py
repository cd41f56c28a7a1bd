"""The one training loop both agents share: AdamW, warm-up + cosine, EMA, resumable checkpoints, DDP.

A ``Trainer`` knows nothing about landmarks or faces. An agent hands it three functions:

* ``batch_fn(seeds) -> batch``: builds the samples named by ``seeds`` (a list of ints, one per
  sample). Sample ``i`` of step ``s`` always gets the seed ``sample_seeds(cfg.seed, s, B)[i]``, so
  the data is a pure function of (seed, step): a run resumed after a crash sees exactly the batches
  of an uninterrupted run, and ``k`` DDP ranks (each building its slice of the seeds) see exactly
  the global batch of one process. ``batch`` is a tensor, or a dict/tuple/list of them. With
  ``cfg.workers`` > 0, forked processes build the next steps' batches while the model trains (the
  same batches: a GPU need not wait for augmentation that runs on one CPU core).
* ``loss_fn(model, batch) -> {"loss": tensor, ...}``: the training objective; every entry is logged.
  Any torch randomness inside (dropout, diffusion noise) is re-seeded from (seed, step, rank) at
  every step: resumption stays exact; to be independent of the number of ranks too, draw it in
  ``batch_fn`` from the per-sample seeds instead.
* ``eval_fn(model) -> {"name": float, ...}`` (optional): validation, run on rank 0 every
  ``eval_every`` steps with the EMA weights when EMA is on. The metric named ``best_metric``
  (lower is better) chooses the ``best`` checkpoint.

Files in ``out_dir``: ``last.{safetensors,json}`` (everything needed to resume: weights ``model.*``,
EMA ``ema.*`` as :mod:`minitalker.io` names them, AdamW moments; never pickled),
``best.{safetensors,json}`` (weights only), ``metrics.jsonl`` (one JSON object per logged step).
Launched by ``torchrun``, the same code runs data-parallel: gloo on CPU, nccl on GPU, gradients
averaged by ``DistributedDataParallel``; only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from ..config import PresetConfig, check_choice, check_non_negative, check_positive, default_device
from ..io import atomic_path, load_checkpoint, model_weights, save_checkpoint, suffixed

#: Batch-building processes of the full presets (a GPU box): 0.1-0.2 s of augmentation per batch of 64 on
#: one core would otherwise cap agent 1 at 5-10 steps/s, whatever the GPU.
FULL_WORKERS = 8


@dataclass
class TrainConfig(PresetConfig):
    steps: int = 1000  # optimiser steps in the whole run (the cosine schedule ends here)
    batch_size: int = 16  # global batch: split evenly across DDP ranks
    lr: float = 1e-3  # peak learning rate, reached after warm-up
    min_lr: float = 1e-5  # end of the cosine decay
    weight_decay: float = 0.01  # AdamW on all weights of 2+ dims, embeddings too; none on biases and norms
    warmup_steps: int = 50  # linear warm-up from lr/warmup_steps to lr
    grad_clip: float | None = 1.0  # max global gradient norm (None = no clipping)
    ema_decay: float | None = None  # e.g. 0.999; None = no EMA copy
    eval_every: int = 100  # validation (and maybe a new `best`) every so many steps and at the end
    ckpt_every: int = 100  # `last` checkpoint every so many steps and at the end
    log_every: int = 10  # a metrics.jsonl line every so many steps
    seed: int = 0
    amp: str | None = "bf16"  # autocast dtype on CUDA ("bf16", "fp16" or None); CPU always runs fp32
    workers: int = 0  # processes that build upcoming batches ahead of the model (0: in the loop); not in resume's check

    def __post_init__(self):
        check_positive(self, "batch_size", "lr", "log_every")
        check_non_negative(self, "steps", "min_lr", "weight_decay", "warmup_steps", "workers")  # 0 steps: just the initial weights
        self.check_intervals()
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr {self.min_lr} is above lr {self.lr}: the cosine decays from lr down to min_lr")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 (a gradient norm), or None for no clipping; got {self.grad_clip}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1), e.g. 0.999, or None for no EMA; got {self.ema_decay}")
        check_choice(self, "amp", ("bf16", "fp16", None))

    def check_intervals(self) -> None:
        """``eval_every``, ``ckpt_every`` > 0 (a subclass may give 0 a meaning)."""
        check_positive(self, "eval_every", "ckpt_every")

    @classmethod
    def full(cls) -> "TrainConfig":
        return cls(steps=20_000, batch_size=64, lr=3e-4, warmup_steps=500, ema_decay=0.999, eval_every=1000, ckpt_every=1000,
                   log_every=50, workers=FULL_WORKERS)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then half a cosine down to ``min_lr`` at ``cfg.steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def ship_training_log(run: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Copy a run's ``metrics.jsonl`` to ``<dest>.metrics.jsonl`` (atomically), beside an exported checkpoint."""
    with atomic_path(suffixed(dest, ".metrics.jsonl")) as tmp:
        tmp.write_text((Path(run) / "metrics.jsonl").read_text())


def sample_seeds(seed: int, step: int, n: int, stream: int = 0) -> list[int]:
    """``n`` seeds for one step: a pure function of (seed, step, stream). Stream 0 names the samples
    of the global batch; stream ``1 + rank`` seeds torch's RNG for that rank's ``loss_fn``."""
    return [int(s) for s in np.random.SeedSequence([seed, step, stream]).generate_state(n, np.uint64) >> 1]


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device). Joins the process group when launched by ``torchrun``."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", 1)) == 1:
        return 0, 1, default_device()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device("cpu")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


class StepBatches(torch.utils.data.Dataset):
    """Steps ``start … end - 1`` as a dataset: item ``i`` is the batch of step ``start + i``, so a
    DataLoader's worker processes can build batches ahead of the loop (forked: ``batch_at`` may be a closure)."""

    def __init__(self, batch_at: Callable[[int], Any], start: int, end: int):
        self.batch_at, self.start, self.end = batch_at, start, end

    def __len__(self) -> int:
        return self.end - self.start

    def __getitem__(self, i: int) -> Any:
        return self.batch_at(self.start + i)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move a tensor, or the tensors inside a dict/list/tuple, to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _jsonable(d: Any) -> Any:
    return json.loads(json.dumps(d))  # tuples -> lists, as they come back from a checkpoint


class Trainer:
    """Train ``model`` with ``loss_fn`` on batches from ``batch_fn``; see the module docstring."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, out_dir: str | os.PathLike,
                 batch_fn: Callable[[list[int]], Any], loss_fn: Callable[[nn.Module, Any], dict],
                 eval_fn: Callable[[nn.Module], dict] | None = None, model_config: dict | None = None,
                 best_metric: str = "val_loss", meta: dict | None = None,
                 read_config: Callable[[dict], dict] | None = None):
        self.cfg, self.batch_fn, self.loss_fn, self.eval_fn = cfg, batch_fn, loss_fn, eval_fn
        self.read_config = read_config or (lambda stored: stored)  # a stored model_config in today's layout
        self.out_dir, self.best_metric, self.extra_meta = Path(out_dir), best_metric, meta or {}
        self.model_config = _jsonable(model_config or {})
        self.rank, self.world, self.device = setup_distributed()
        if cfg.batch_size % self.world:
            raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the {self.world} ranks")
        self.model = model.to(self.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False) if cfg.ema_decay else None
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.99))
        self.ddp = nn.parallel.DistributedDataParallel(self.model) if self.world > 1 else self.model
        cuda = self.device.type == "cuda"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, None: None}[cfg.amp] if cuda else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step, self.best, self.train_seconds, self.metrics = 0, math.inf, 0.0, {}
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)

    @property
    def eval_model(self) -> nn.Module:
        """The weights we evaluate and ship: the EMA copy when there is one."""
        return self.ema if self.ema is not None else self.model

    # --- batches ---------------------------------------------------------------------------------
    def batch_at(self, step: int) -> Any:
        """This rank's slice of the global batch of ``step``, as ``batch_fn`` builds it (on the CPU)."""
        seeds = sample_seeds(self.cfg.seed, step, self.cfg.batch_size)
        per = self.cfg.batch_size // self.world
        return self.batch_fn(seeds[self.rank * per:(self.rank + 1) * per])

    def batches(self, start: int, end: int) -> Iterator[Any]:
        """The batches of steps ``start … end - 1`` in order: built in the loop, or with ``cfg.workers`` > 0
        by that many forked processes (at most one per core), two steps ahead each (a DataLoader over
        :class:`StepBatches`)."""
        workers = min(self.cfg.workers, os.cpu_count() or 1)
        if workers == 0 or end <= start:
            return (self.batch_at(s) for s in range(start, end))
        loader = torch.utils.data.DataLoader(StepBatches(self.batch_at, start, end), batch_size=None,
                                             num_workers=workers, prefetch_factor=2,
                                             multiprocessing_context="fork", pin_memory=self.device.type == "cuda")
        return iter(loader)

    # --- one step -------------------------------------------------------------------------------
    def train_step(self, batch: Any = None) -> dict[str, float]:
        """One optimiser step on the global batch of step ``self.step`` (``batch``: that step's, if built
        already, as :meth:`batches` yields it); returns the logged losses."""
        cfg, step = self.cfg, self.step
        batch = to_device(self.batch_at(step) if batch is None else batch, self.device)
        torch.manual_seed(sample_seeds(cfg.seed, step, 1, stream=1 + self.rank)[0])  # dropout/noise in loss_fn
        for g in self.opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        self.model.train()
        autocast = torch.autocast("cuda", self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()
        with autocast:
            logs = self.loss_fn(self.ddp, batch)
        self.scaler.scale(logs["loss"]).backward()
        self.scaler.unscale_(self.opt)
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip or math.inf)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        if self.ema is not None:  # decay warms up ((1+n)/(10+n)) so early EMA is not stuck at init
            d = min(cfg.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in zip(self.ema.parameters(), self.model.parameters()):
                    e.lerp_(p, 1 - d)
                for e, b in zip(self.ema.buffers(), self.model.buffers()):
                    e.copy_(b)
        self.step += 1
        out = {k: v.detach().float() for k, v in logs.items()} | {"grad_norm": grad_norm.detach().float()}
        if self.world > 1 and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
            vals = torch.stack(list(out.values())).to(self.device)
            dist.all_reduce(vals)
            out = dict(zip(out, vals / self.world))
        return {k: float(v) for k, v in out.items()} | {"lr": lr_at(step, cfg)}

    # --- the loop -------------------------------------------------------------------------------
    def fit(self, resume: bool = False, stop_at: int | None = None) -> dict[str, float]:
        """Train to ``cfg.steps`` (from ``out_dir/last`` if ``resume`` and it exists); return the last metrics.

        ``stop_at``: pause after that step, with a ``last`` checkpoint; the learning-rate schedule still
        spans ``cfg.steps``, so a later ``fit(resume=True)`` goes on exactly as if never paused.
        """
        cfg = self.cfg
        end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
        if resume and (self.out_dir / "last.json").exists():
            self.load(self.out_dir / "last")
        log = self.out_dir / "metrics.jsonl"
        if self.rank == 0:  # drop lines from steps after the checkpoint we resume from (a crash's leftovers)
            old = log.read_text().splitlines() if log.exists() else []
            log.write_text("".join(line + "\n" for line in old if json.loads(line)["step"] <= self.step))
        bar = tqdm(total=cfg.steps, initial=self.step, disable=self.rank != 0, desc="train")
        batches = self.batches(self.step, end)
        while self.step < end:
            t0 = time.perf_counter()
            logs = self.train_step(next(batches))
            self.train_seconds += time.perf_counter() - t0
            bar.update(1)
            record = {}
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                record = {"step": self.step, "time": round(self.train_seconds, 2)} | logs
                bar.set_postfix(loss=f"{logs['loss']:.4f}")
            if self.eval_fn and (self.step % cfg.eval_every == 0 or self.step == end) and self.rank == 0:
                self.metrics = self.evaluate()
                record = {"step": self.step, "time": round(self.train_seconds, 2)} | logs | self.metrics
                value = self.metrics[self.best_metric]
                if value < self.best:
                    self.best = value
                    self.save(self.out_dir / "best", full=False)
                bar.set_postfix(loss=f"{logs['loss']:.4f}", **{self.best_metric: f"{value:.4f}"})
            if record and self.rank == 0:
                with log.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            if self.step % cfg.ckpt_every == 0 or self.step == end:
                self.save(self.out_dir / "last")
        bar.close()
        if self.world > 1:
            dist.barrier()
        return self.metrics

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        model = self.eval_model
        was_training = model.training
        model.eval()
        try:
            return {k: float(v) for k, v in self.eval_fn(model).items()}
        finally:
            model.train(was_training)

    # --- checkpoints ----------------------------------------------------------------------------
    def save(self, path: Path, full: bool = True) -> None:
        """Write a checkpoint (rank 0 only). ``full`` adds the AdamW moments needed to resume."""
        if self.rank != 0:
            return
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.ema is not None:
            tensors |= {f"ema.{k}": v for k, v in self.ema.state_dict().items()}
        tensors["trainer.step"] = torch.tensor(self.step)  # to catch a torn pair (new tensors, old JSON)
        meta = {"model_config": self.model_config, "train_config": _jsonable(self.cfg.to_dict()), "step": self.step,
                "metrics": self.metrics, "best": {"metric": self.best_metric, "value": None if self.best == math.inf else self.best},
                "train_seconds": round(self.train_seconds, 2), "world_size": self.world} | self.extra_meta
        if full:
            opt = self.opt.state_dict()
            for i, state in opt["state"].items():
                tensors |= {f"optim.{i}.{k}": torch.as_tensor(v) for k, v in state.items()}
            meta |= {"optim_param_groups": opt["param_groups"], "scaler": self.scaler.state_dict()}
        save_checkpoint(path, tensors, meta)

    def load(self, path: Path) -> None:
        """Restore everything :meth:`save` wrote; refuse a checkpoint made with another config."""
        tensors, meta = load_checkpoint(path)
        meta["model_config"] = _jsonable(self.read_config(meta["model_config"]))
        stored = meta["train_config"] | {"workers": self.cfg.workers}  # who builds the batches changes none of them
        for name, mine, theirs in (("model_config", self.model_config, meta["model_config"]),
                                   ("train_config", _jsonable(self.cfg.to_dict()), stored)):
            if theirs != mine:
                diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
                raise ValueError(f"{path} was trained with another {name} (differs in {diff}): resume with the "
                                 "same preset and settings, or train into a new --out folder")
        if int(tensors["trainer.step"]) != meta["step"]:
            raise RuntimeError(f"{path} is torn (weights of step {int(tensors['trainer.step'])}, JSON of step "
                               f"{meta['step']}): the run was killed while saving; delete it and restart")
        self.model.load_state_dict(model_weights(tensors, ema=False))
        if self.ema is not None:
            self.ema.load_state_dict(model_weights(tensors))
        state: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("optim."):
                _, i, name = k.split(".", 2)
                state.setdefault(int(i), {})[name] = v
        self.opt.load_state_dict({"state": state, "param_groups": meta["optim_param_groups"]})
        self.scaler.load_state_dict(meta["scaler"])
        self.step, self.metrics, self.train_seconds = meta["step"], meta["metrics"], meta["train_seconds"]
        self.best = math.inf if meta["best"]["value"] is None else meta["best"]["value"]
