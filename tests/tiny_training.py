"""A tiny regression problem for the trainer's tests; run as a script it trains under torchrun.

``torchrun --standalone --nproc_per_node 2 tests/tiny_training.py OUT`` trains with DDP (gloo on
CPU) into OUT; tests/test_trainer.py compares the result with one process on the same batches.
"""

import sys

import numpy as np
import torch
from torch import nn

from minitalker.train.loop import TrainConfig, Trainer

W_TRUE = np.array([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0], [-1.0, 1.0]], np.float32)  # y = x @ W


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))


def batch_fn(seeds: list[int]) -> dict[str, torch.Tensor]:
    x = np.stack([np.random.default_rng(s).normal(size=4) for s in seeds]).astype(np.float32)  # (B, 4)
    return {"x": torch.from_numpy(x), "y": torch.from_numpy(x @ W_TRUE)}


def loss_fn(model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
    loss = (model(batch["x"]) - batch["y"]).pow(2).mean()
    return {"loss": loss, "l1": (model(batch["x"]) - batch["y"]).abs().mean()}


def eval_fn(model: nn.Module) -> dict[str, float]:
    batch = batch_fn(list(range(10_000, 10_064)))
    return {"val_loss": float(loss_fn(model, batch)["loss"])}


def make_trainer(out_dir, batch_fn=batch_fn, seed=0, **cfg) -> Trainer:
    cfg = TrainConfig(**{"steps": 12, "batch_size": 8, "lr": 3e-2, "warmup_steps": 3, "eval_every": 4,
                         "ckpt_every": 5, "log_every": 1} | cfg)
    return Trainer(make_model(seed), cfg, out_dir, batch_fn, loss_fn, eval_fn, model_config={"hidden": 16})


if __name__ == "__main__":
    import json
    import os
    from pathlib import Path

    torch.set_num_threads(1)
    seen = []  # the sample seeds this rank built, to check that ranks split each global batch

    def recording_batch_fn(seeds):
        seen.append(seeds)
        return batch_fn(seeds)

    make_trainer(sys.argv[1], batch_fn=recording_batch_fn, ema_decay=0.9).fit()
    (Path(sys.argv[1]) / f"seeds-rank{os.environ['RANK']}.json").write_text(json.dumps(seen))
