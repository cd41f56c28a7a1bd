"""A 2-D toy world in which diffusion can be watched end to end in seconds on a CPU.

Data: two interleaved half-moons (unit variance). Model: a small residual MLP that sees ``(x_t, t)``.
Measures: the energy distance between point clouds (Szekely & Rizzo 2013), zero iff the two
distributions are equal, and the mean distance from samples to the data. Notebook 03 and
``tests/test_diffusion_toy.py`` train and sample with these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from minitalker.config import PresetConfig, check_positive
from minitalker.diffusion.schedule import DiffusionConfig, NoiseSchedule, SamplingConfig


@dataclass
class ToyConfig(PresetConfig):
    """Size of the toy MLP and its training run; ``diffusion`` is the schedule it is trained for."""

    hidden: int = 64
    blocks: int = 2
    train_steps: int = 2000  # about 10 s on one CPU core
    batch_size: int = 256
    lr: float = 5e-3
    seed: int = 0
    diffusion: DiffusionConfig = field(
        default_factory=lambda: DiffusionConfig(sampling=SamplingConfig(clip_sample=False), min_snr_gamma=None))

    def __post_init__(self) -> None:
        if isinstance(self.diffusion, dict):  # from_dict / JSON
            self.diffusion = DiffusionConfig.from_dict(self.diffusion)
        check_positive(self, "hidden", "blocks", "train_steps", "batch_size", "lr")

    @classmethod
    def fast(cls) -> ToyConfig:
        return cls()

    @classmethod
    def full(cls) -> ToyConfig:
        return cls(hidden=128, blocks=3, train_steps=6000, lr=2e-3)


def two_moons(n: int, noise: float = 0.05, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points ``(n, 2)`` on two interleaved half circles of radius 1 (plus ``noise``), centred and
    scaled to about unit variance per axis, like the Gaussian noise they will be mixed with."""
    upper = torch.rand(n, generator=generator) < 0.5
    angle = torch.rand(n, generator=generator) * math.pi
    x = torch.where(upper, torch.cos(angle), 1 - torch.cos(angle))
    y = torch.where(upper, torch.sin(angle), 0.5 - torch.sin(angle))
    pts = torch.stack([x - 0.5, y - 0.25], dim=1) + noise * torch.randn(n, 2, generator=generator)
    return pts / torch.tensor([0.87, 0.5])  # the two axes' standard deviations


class ToyBlock(nn.Module):
    """``h + W silu(h + U e)``: a residual block that sees the time embedding ``e`` (like DDPM's ResBlocks)."""

    def __init__(self, dim: int):
        super().__init__()
        self.time, self.lin = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:  # (B, D), (B, D) -> (B, D)
        return h + self.lin(F.silu(h + self.time(e)))


class ToyDenoiser(nn.Module):
    """Residual MLP ``(x_t (B, 2), t (B,)) -> (B, 2)``; ``t`` enters every block as an embedding of
    sinusoidal features (Vaswani et al. 2017). Feeding ``t`` once, at the input, learned far slower."""

    def __init__(self, cfg: ToyConfig | None = None):
        super().__init__()
        cfg = cfg or ToyConfig.preset()
        self.num_train_timesteps = cfg.diffusion.schedule.num_train_timesteps
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(1000), 16)), persistent=False)  # (16,)
        self.embed_t = nn.Sequential(nn.Linear(32, cfg.hidden), nn.SiLU())
        self.embed_x = nn.Linear(2, cfg.hidden)
        self.blocks = nn.ModuleList(ToyBlock(cfg.hidden) for _ in range(cfg.blocks))
        self.out = nn.Linear(cfg.hidden, 2)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        phase = (t.float() / self.num_train_timesteps)[:, None] * self.freqs  # (B, 16)
        e = self.embed_t(torch.cat([phase.sin(), phase.cos()], dim=1))  # (B, D)
        h = self.embed_x(x)  # (B, D)
        for block in self.blocks:
            h = block(h, e)
        return self.out(F.silu(h))


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


def distance_to_data(samples: torch.Tensor, data: torch.Tensor) -> float:
    """Mean distance from each sample ``(N, D)`` to its nearest point of ``data`` ``(M, D)``.

    Do samples lie on the data, or in a haze around it? Blind to missing modes (which the energy
    distance catches), so the two are used together.
    """
    return float(torch.cdist(samples.double(), data.double()).min(dim=1).values.mean())
