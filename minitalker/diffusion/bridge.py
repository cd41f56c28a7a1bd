"""Our schedule and samplers next to diffusers' schedulers: the same settings, both ways.

A diffusers scheduler config names our :class:`~minitalker.diffusion.schedule.DiffusionConfig`'s
fields one level deep (``timestep_spacing``, ``clip_sample``, ...); only the cosine schedule is
named differently (``"squaredcos_cap_v2"``). :func:`diffusion_config_from_scheduler` reads a
pre-trained checkpoint's ``scheduler/`` config into ours; :func:`diffusers_ddim` and
:func:`diffusers_ddpm` build diffusers' schedulers for one of ours, so that the two can be run
side by side (``tests/test_diffusion_parity.py``, notebooks 03 and 07); :func:`diffusers_ddim_sample`
is the sampling loop of every diffusers pipeline.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from minitalker.diffusion.schedule import DiffusionConfig

BETA_NAMES = {"squaredcos_cap_v2": "cosine"}  # diffusers' names -> ours, where they differ


def diffusion_config_from_scheduler(scheduler: dict[str, Any]) -> DiffusionConfig:
    """Our :class:`DiffusionConfig` for a diffusers scheduler config (missing keys: SD 1.x's values).

    Stable Diffusion 1.x: 1000 steps, ``scaled_linear`` betas from 0.00085 to 0.012, eps-prediction,
    no clipping (latents are not confined to [-1, 1]), "leading" spacing with ``steps_offset = 1``.
    The loss is plain MSE (no Min-SNR weighting) like the pre-training's; steps land where
    ``DDIMScheduler`` lands them (``prev_rule="diffusers"``), so our DDIM samples as diffusers' does.
    """
    sd = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
              prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
              timestep_spacing="leading")
    if scheduler.get("trained_betas") is not None:
        raise ValueError("this checkpoint's scheduler lists explicit trained_betas, which DiffusionConfig cannot hold: "
                         "use a checkpoint with a named beta_schedule")
    given = {k: scheduler[k] for k in sd if k in scheduler}
    given["beta_schedule"] = BETA_NAMES.get(given.get("beta_schedule"), given.get("beta_schedule", sd["beta_schedule"]))
    return DiffusionConfig.from_flat(sd | given | {"min_snr_gamma": None, "prev_rule": "diffusers"})


def _scheduler_kwargs(cfg: DiffusionConfig) -> dict[str, Any]:
    """The settings DDPMScheduler and DDIMScheduler share, in diffusers' names."""
    s, p = cfg.schedule, cfg.sampling
    names = {v: k for k, v in BETA_NAMES.items()}
    return dict(num_train_timesteps=s.num_train_timesteps, beta_schedule=names.get(s.beta_schedule, s.beta_schedule),
                beta_start=s.beta_start, beta_end=s.beta_end, prediction_type=s.prediction_type,
                clip_sample=p.clip_sample, clip_sample_range=p.clip_sample_range, steps_offset=p.steps_offset,
                timestep_spacing=p.spacing)


def diffusers_ddim(cfg: DiffusionConfig) -> DDIMScheduler:
    """diffusers' ``DDIMScheduler`` for the same schedule and sampling settings as ``cfg``."""
    return DDIMScheduler(**_scheduler_kwargs(cfg), set_alpha_to_one=cfg.sampling.set_alpha_to_one)


def diffusers_ddpm(cfg: DiffusionConfig, variance_type: str = "fixed_small") -> DDPMScheduler:
    """diffusers' ``DDPMScheduler`` for the same schedule and sampling settings as ``cfg``."""
    return DDPMScheduler(**_scheduler_kwargs(cfg), variance_type=variance_type)


@torch.no_grad()
def diffusers_ddim_sample(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], scheduler: DDIMScheduler,
                          x_T: torch.Tensor, steps: int, eta: float = 0.0, generator: torch.Generator | None = None
                          ) -> torch.Tensor:
    """Sample with diffusers' scheduler: the loop of every diffusers pipeline. x_T (B, c, h, w) -> (B, c, h, w).

    ``model(x_t, t (B,)) -> prediction`` is the same callable our :func:`~minitalker.diffusion.samplers.ddim_sample`
    takes; with ``prev_rule="diffusers"`` the two give the same samples."""
    scheduler.set_timesteps(steps, device=x_T.device)
    x = x_T * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        out = model(x, t.expand(len(x)))  # (B, c, h, w)
        x = scheduler.step(out, t, x, eta=eta, generator=generator).prev_sample
    return x
