"""A 2-D toy world in which diffusion can be watched end to end in seconds on a CPU.

Data: two interleaved half-moons in ``[-1, 1]^2``. Model: a small MLP that sees ``(x_t, t)``.
Metric: the energy distance between point clouds (Szekely & Rizzo 2013), zero iff the two
distributions are equal. Notebook 03 and ``tests/test_diffusion_toy.py`` train and sample with these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from minitalker.config import PresetConfig
from minitalker.diffusion.schedule import DiffusionConfig, NoiseSchedule


@dataclass
class ToyConfig(PresetConfig):
    """Size of the toy MLP and its training run; ``diffusion`` is the schedule it is trained for."""

    hidden: int = 64
    layers: int = 3
    train_steps: int = 2000  # about 10 s on 2 CPU cores
    batch_size: int = 256
    lr: float = 2e-3
    seed: int = 0
    diffusion: DiffusionConfig = field(default_factory=lambda: DiffusionConfig(clip_sample=False, min_snr_gamma=None))

    def __post_init__(self) -> None:
        if isinstance(self.diffusion, dict):  # from_dict / JSON
            self.diffusion = DiffusionConfig.from_dict(self.diffusion)

    @classmethod
    def fast(cls) -> ToyConfig:
        return cls()

    @classmethod
    def full(cls) -> ToyConfig:
        return cls(hidden=128, train_steps=6000)


def two_moons(n: int, noise: float = 0.05, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points ``(n, 2)`` on two interleaved half circles (radius 1), scaled into about ``[-1, 1]^2``."""
    upper = torch.rand(n, generator=generator) < 0.5
    angle = torch.rand(n, generator=generator) * math.pi
    x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
    y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
    pts = torch.stack([x - 0.5, y - 0.25], dim=1) + noise * torch.randn(n, 2, generator=generator)
    return pts / torch.tensor([1.6, 1.0])  # x in about [-1, 1], y in about [-0.8, 0.8]


class ToyDenoiser(nn.Module):
    """MLP ``(x_t (B, 2), t (B,)) -> (B, 2)``; ``t`` enters as sinusoidal features (Vaswani et al. 2017)."""

    def __init__(self, cfg: ToyConfig | None = None):
        super().__init__()
        cfg = cfg or ToyConfig.preset()
        self.num_train_timesteps = cfg.diffusion.num_train_timesteps
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(1000), 16)), persistent=False)  # (16,)
        dims = [2 + 32] + [cfg.hidden] * cfg.layers
        blocks = [m for a, b in zip(dims, dims[1:]) for m in (nn.Linear(a, b), nn.SiLU())]
        self.net = nn.Sequential(*blocks, nn.Linear(cfg.hidden, 2))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        phase = (t.float() / self.num_train_timesteps)[:, None] * self.freqs  # (B, 16)
        return self.net(torch.cat([x, phase.sin(), phase.cos()], dim=1))


def train_toy(cfg: ToyConfig | None = None, progress: bool = False) -> tuple[ToyDenoiser, NoiseSchedule, list[float]]:
    """Train a :class:`ToyDenoiser` on fresh two-moons batches with :meth:`NoiseSchedule.diffusion_loss`.

    Each step: ``t ~ U{0..T-1}``, ``eps ~ N(0, I)``, ``x_t = q_sample(x0, t, eps)``, regress the
    network on the target of the schedule's prediction type (DDPM Algorithm 1). Returns the model,
    its schedule and the loss per step. Seeded: the same config gives the same model.
    """
    cfg = cfg or ToyConfig.preset()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    schedule = NoiseSchedule(cfg.diffusion)
    model = ToyDenoiser(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.train_steps, pct_start=0.05)
    losses = []
    for _ in tqdm(range(cfg.train_steps), desc="toy training", disable=not progress):
        x0 = two_moons(cfg.batch_size, generator=gen)  # (B, 2)
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, schedule.num_train_timesteps, (cfg.batch_size,), generator=gen)
        loss = schedule.diffusion_loss(model(schedule.q_sample(x0, t, noise), t), x0, noise, t,
                                       min_snr_gamma=cfg.diffusion.min_snr_gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return model.eval(), schedule, losses


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` between samples ``a (N, D)`` and ``b (M, D)``.

    Unbiased (U-statistic) within-sample terms, so two samples of one distribution score about 0.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must be (N, D) and (M, D) point clouds; got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.double(), b.double()
    n, m = len(a), len(b)
    within_a = torch.cdist(a, a).sum() / (n * (n - 1))
    within_b = torch.cdist(b, b).sum() / (m * (m - 1))
    return float(2 * torch.cdist(a, b).mean() - within_a - within_b)
