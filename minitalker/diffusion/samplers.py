"""The reverse process: ancestral DDPM sampling, DDIM, and classifier-free guidance.

A ``model`` is any callable ``model(x_t (B, ...), t (B,) long) -> (B, ...)`` that returns the
quantity named by ``schedule.config.schedule.prediction_type`` (eps, x0 or v). Conditioning is closed
over (``lambda x, t: unet(x, t, tokens)``) or added with :func:`guided`.

Both samplers take ``x_T``: either a tensor of starting noise (e.g. one noise image repeated for
every frame of a clip) or a shape, in which case the noise is drawn from ``generator``. Noise is
drawn in the order diffusers draws it (x_T first, then one tensor per stochastic step), so a seeded
``generator`` gives the same samples as diffusers' schedulers with the same seed.

Each sampler is a loop over one pure step, :func:`ddpm_step` or :func:`ddim_step` (the noise is an
argument), the counterpart of diffusers' ``scheduler.step``. Our names and theirs::

    ours                        diffusers
    model_out                   model_output
    x_t, t                      sample, timestep
    t_prev                      prev_timestep (DDIM), previous_timestep(t) (DDPM)
    x̂0: Step.x0                 pred_original_sample
    ε̂ (inside the step)         pred_epsilon
    x_{t_prev}: Step.x_prev     prev_sample
    noise (z)                   variance_noise
    clip (a range, or None)     clip_sample_range if clip_sample else no clipping
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import torch
from tqdm.auto import tqdm

from minitalker.diffusion.schedule import PREV_RULES, SPACINGS, NoiseSchedule

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Trajectory(NamedTuple):
    """What a sampler saw, one entry per model call (tensors on the CPU, for plots)."""

    timesteps: list[int]  # the model was called at these t
    x_t: list[torch.Tensor]  # the sample it was given, x_T first
    x0: list[torch.Tensor]  # its prediction of the clean sample (after clipping)


def sampling_timesteps(num_train_timesteps: int, steps: int, spacing: str = "leading", steps_offset: int = 0) -> list[int]:
    """The ``steps`` training timesteps a sampler visits, descending (diffusers' ``set_timesteps``).

    With ``T = num_train_timesteps`` (Lin et al. 2024, table 2):

    * leading:  ``0, k, 2k, ...`` with ``k = T // steps``, plus ``steps_offset`` (DDIM paper, diffusers' default);
    * trailing: ``round(T - i T / steps) - 1``, so sampling starts at ``T - 1`` (pure noise);
    * linspace: ``round(linspace(0, T - 1, steps))``.
    """
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be in [1, num_train_timesteps={num_train_timesteps}]; got {steps}")
    if spacing == "leading":
        return [i * (num_train_timesteps // steps) + steps_offset for i in reversed(range(steps))]
    if spacing == "trailing":
        ratio = num_train_timesteps / steps
        return [round(num_train_timesteps - i * ratio) - 1 for i in range(steps)]
    if spacing == "linspace":
        return torch.linspace(0, num_train_timesteps - 1, steps, dtype=torch.float64).round().long().flip(0).tolist()
    raise ValueError(f"spacing must be one of {SPACINGS}; got {spacing!r}")


def previous_timesteps(timesteps: Sequence[int], num_train_timesteps: int, rule: str = "sequence") -> list[int]:
    """Where each step lands: ``-1`` means the clean sample.

    * ``"sequence"`` (the DDIM paper): the next timestep of the list, so step ``i`` takes the sample
      exactly to the noise level at which the model is called next;
    * ``"diffusers"``: ``t - T // steps``, what ``DDIMScheduler.step`` computes for every spacing. For
      "leading" spacing (and "trailing" when ``steps`` divides ``T``) this is the same list; for
      "linspace" and other "trailing" cases it is not: e.g. ``T=1000, steps=10, linspace`` visits
      ``999, 888, ...`` but steps ``999 -> 899``, so the model is then called at 888 on a sample whose
      noise level is that of 899; the step from 111 lands at 11, and the model is then called at 0.
      (Not necessarily worse samples: with few steps this mismatch can offset DDIM's own error.)
    """
    if rule == "sequence":
        return [*timesteps[1:], -1]
    if rule == "diffusers":
        return [max(t - num_train_timesteps // len(timesteps), -1) for t in timesteps]
    raise ValueError(f"prev_rule must be one of {PREV_RULES}; got {rule!r}")


def _randn(shape: Sequence[int], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise on ``like``'s device/dtype, drawn on the generator's device (as diffusers does)."""
    device = generator.device if generator is not None else like.device
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=like.dtype).to(like.device)


# -- one step -------------------------------------------------------------------------------------
class Step(NamedTuple):
    """What one reverse step returns; diffusers' ``SchedulerOutput`` has the same two tensors."""

    x_prev: torch.Tensor  # the less noisy sample x_{t_prev} (diffusers: prev_sample)
    x0: torch.Tensor  # the clean sample the step aimed at, x̂0, after clipping (diffusers: pred_original_sample)


def _x0_eps(schedule: NoiseSchedule, model_out: torch.Tensor, x_t: torch.Tensor, t: int,
            clip: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x̂0, ε̂)`` from the network's output at ``t`` (both ``(B, ...)``), ``x̂0`` clipped to ``[-clip, clip]``."""
    x0, eps = schedule.predict_x0_eps(model_out, x_t, torch.full((len(x_t),), t, dtype=torch.long, device=x_t.device))
    return (x0 if clip is None else x0.clamp(-clip, clip)), eps


def _need_noise(noise: torch.Tensor | None, x_t: torch.Tensor, why: str) -> torch.Tensor:
    """``noise``, checked: a stochastic step cannot go without it."""
    if noise is None or noise.shape != x_t.shape:
        raise ValueError(f"{why}: give noise z ~ N(0, I) of x_t's shape {tuple(x_t.shape)}; "
                         f"got {None if noise is None else tuple(noise.shape)}")
    return noise


def ddpm_step(schedule: NoiseSchedule, model_out: torch.Tensor, x_t: torch.Tensor, t: int, t_prev: int, *,
              variance: str = "fixed_small", clip: float | None = None, noise: torch.Tensor | None = None) -> Step:
    """One ancestral step ``t -> t_prev`` (DDPM Algorithm 2), as diffusers' ``DDPMScheduler.step``. ``(B, ...)``.

    ``t_prev = -1`` lands on the clean sample and adds no noise; any other step needs ``noise`` (``z``).
    ``variance``: ``"fixed_small"`` (``beta_tilde``) or ``"fixed_large"`` (``beta``), DDPM section 3.2.
    """
    x0, _ = _x0_eps(schedule, model_out, x_t, t, clip)  # eq. 15: x̂0 = (x_t - sqrt(1 - abar_t) ε̂) / sqrt(abar_t)
    t_batch = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
    mean, var = schedule.posterior_mean_variance(x0, x_t, t_batch, t_prev)  # eq. 7: mu_tilde(x_t, x̂0), beta_tilde
    if t_prev < 0:
        return Step(mean, x0)  # the last step: z = 0
    if variance == "fixed_large":  # beta of the jump t -> t_prev: 1 - abar_t / abar_prev
        var = 1 - float(schedule.alphas_cumprod[t]) / float(schedule.alphas_cumprod[t_prev])
    return Step(mean + var**0.5 * _need_noise(noise, x_t, "a DDPM step above t_prev = -1 is stochastic"), x0)  # + sigma z


def ddim_step(schedule: NoiseSchedule, model_out: torch.Tensor, x_t: torch.Tensor, t: int, t_prev: int, *,
              eta: float = 0.0, clip: float | None = None, noise: torch.Tensor | None = None) -> Step:
    """One DDIM step ``t -> t_prev`` (Song et al. 2021, eq. 12), as diffusers' ``DDIMScheduler.step``. ``(B, ...)``.

    ``t_prev = -1`` lands on ``schedule.final_alpha_cumprod`` (1, or ``abar_0``); ``eta > 0`` needs ``noise`` (``z``).
    ``ε̂`` is the model's own, not recomputed from a clipped ``x̂0`` (diffusers' default too).
    """
    x0, eps = _x0_eps(schedule, model_out, x_t, t, clip)  # "predicted x0" of eq. 12, and ε̂
    a_t = float(schedule.alphas_cumprod[t])
    a_prev = float(schedule.alphas_cumprod[t_prev]) if t_prev >= 0 else schedule.final_alpha_cumprod
    sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5  # eq. 16: eta = 1 is DDPM's posterior std
    x_prev = a_prev**0.5 * x0 + (1 - a_prev - sigma**2) ** 0.5 * eps  # eq. 12: x̂0 scaled + "direction pointing to x_t"
    if eta > 0:
        x_prev = x_prev + sigma * _need_noise(noise, x_t, "a DDIM step with eta > 0 is stochastic")  # + "random noise"
    return Step(x_prev, x0)


# -- the loops ------------------------------------------------------------------------------------
def _loop(model: Model, schedule: NoiseSchedule, x_T: torch.Tensor | Sequence[int], *, timesteps: list[int],
          prevs: list[int], step: Callable[[torch.Tensor, torch.Tensor, int, int], Step],
          generator: torch.Generator | None, return_intermediates: bool, progress: bool, desc: str):
    """The loop both samplers share: from ``x_T``, call the model at each ``t``, then
    ``step(model_out, x_t, t, t_prev) -> Step`` (which draws its own noise, if any)."""
    if isinstance(x_T, torch.Tensor):
        if not x_T.is_floating_point():
            raise ValueError(f"x_T must be a float tensor of noise (or a shape); got dtype {x_T.dtype}")
        x = x_T
    else:
        x = _randn(x_T, generator, schedule.alphas_cumprod)
    trace = Trajectory([], [], [])
    for i, (t, t_prev) in enumerate(tqdm(list(zip(timesteps, prevs)), desc=desc, disable=not progress)):
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)  # (B,)
        out = model(x, t_batch).to(x.dtype)  # (B, ...)
        x_prev, x0 = step(out, x, t, t_prev)
        if return_intermediates:
            trace.timesteps.append(t)
            trace.x_t.append(x.detach().cpu())
            trace.x0.append(x0.detach().cpu())
        x = x_prev
        if not torch.isfinite(x).all():
            why = "the model returned NaN/inf" if not torch.isfinite(out).all() else "the update overflowed"
            raise FloatingPointError(f"sampling step {i} of {len(timesteps)} (t={t}) produced NaN/inf: {why}")
    return (x, trace) if return_intermediates else x


def _clip(schedule: NoiseSchedule, clip_sample: bool | None) -> float | None:
    """The clipping range of x̂0 for the steps: the config's ``clip_sample_range``, or None when not clipping."""
    sampling = schedule.config.sampling
    return sampling.clip_sample_range if (sampling.clip_sample if clip_sample is None else clip_sample) else None


@torch.no_grad()
def ddpm_sample(
    model: Model,
    schedule: NoiseSchedule,
    x_T: torch.Tensor | Sequence[int],
    *,
    steps: int | None = None,
    spacing: str | None = None,
    variance: str = "fixed_small",
    clip_sample: bool | None = None,
    generator: torch.Generator | None = None,
    return_intermediates: bool = False,
    progress: bool = True,
):
    """Ancestral sampling (DDPM Algorithm 2): :func:`ddpm_step` from ``x_T`` to the clean sample. Returns ``(B, ...)``.

    ``steps=None`` runs all ``T`` steps. Fewer steps visit ``sampling_timesteps(T, steps, spacing)``
    (``spacing=None``: the config's ``sampling.spacing``) with the same formulas across each jump, as
    diffusers' ``DDPMScheduler`` does. One difference: when the last visited step is above 0 ("trailing"),
    diffusers still adds noise on it (~1e-10 for fixed_small, ``sqrt(beta)`` of the jump for fixed_large).
    ``clip_sample=None`` takes the schedule's config. With ``return_intermediates`` returns
    ``(sample, Trajectory)``.
    """
    if variance not in ("fixed_small", "fixed_large"):
        raise ValueError(f"variance must be 'fixed_small' or 'fixed_large'; got {variance!r}")
    T, cfg = schedule.num_train_timesteps, schedule.config.sampling
    spacing = cfg.spacing if spacing is None else spacing
    timesteps = list(range(T - 1, -1, -1)) if steps is None else sampling_timesteps(T, steps, spacing, cfg.steps_offset)
    clip = _clip(schedule, clip_sample)

    def step(out, x, t, t_prev):
        z = _randn(x.shape, generator, x) if t_prev >= 0 else None
        return ddpm_step(schedule, out, x, t, t_prev, variance=variance, clip=clip, noise=z)

    return _loop(model, schedule, x_T, timesteps=timesteps, prevs=[*timesteps[1:], -1], step=step, generator=generator,
                 return_intermediates=return_intermediates, progress=progress, desc="DDPM")


@torch.no_grad()
def ddim_sample(
    model: Model,
    schedule: NoiseSchedule,
    x_T: torch.Tensor | Sequence[int],
    *,
    steps: int | None = None,
    eta: float | None = None,
    spacing: str | None = None,
    prev_rule: str | None = None,
    clip_sample: bool | None = None,
    generator: torch.Generator | None = None,
    return_intermediates: bool = False,
    progress: bool = True,
    init: torch.Tensor | None = None,
    strength: float = 1.0,
):
    """DDIM (Song et al. 2021): :func:`ddim_step` from ``x_T`` to the clean sample. Returns ``(B, ...)``.

    ``eta = 0`` is the deterministic DDIM, ``eta = 1`` is ancestral DDPM on the same timesteps.
    ``steps``, ``eta``, ``spacing``, ``prev_rule``, ``clip_sample`` default to the schedule's
    ``config.sampling``; ``prev_rule`` picks where each step lands (see :func:`previous_timesteps`:
    ``"diffusers"`` reproduces ``DDIMScheduler`` exactly, ``"sequence"`` follows the paper).
    With ``return_intermediates`` returns ``(sample, Trajectory)``.

    ``init`` (SDEdit, Meng et al. 2022; diffusers' img2img ``strength``): start from an image instead
    of pure noise. Only the last ``n = max(1, ⌊strength · steps⌋)`` of the timesteps run, from
    ``x_t = q_sample(init, t, x_T)`` at the first of them (``x_T`` is then the noise).
    """
    cfg = schedule.config.sampling
    steps = cfg.steps if steps is None else steps
    eta = cfg.eta if eta is None else eta
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1]; got {eta}")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1]; got {strength}")
    T = schedule.num_train_timesteps
    timesteps = sampling_timesteps(T, steps, cfg.spacing if spacing is None else spacing, cfg.steps_offset)
    prevs = previous_timesteps(timesteps, T, cfg.prev_rule if prev_rule is None else prev_rule)
    if init is not None:
        skip = len(timesteps) - max(1, int(strength * len(timesteps)))
        timesteps, prevs = timesteps[skip:], prevs[skip:]
        noise = x_T if isinstance(x_T, torch.Tensor) else _randn(x_T, generator, init)
        x_T = schedule.q_sample(init, timesteps[0], noise)  # x_t = sqrt(abar_t) init + sqrt(1 - abar_t) noise
    clip = _clip(schedule, clip_sample)

    def step(out, x, t, t_prev):
        z = _randn(x.shape, generator, x) if eta > 0 else None
        return ddim_step(schedule, out, x, t, t_prev, eta=eta, clip=clip, noise=z)

    return _loop(model, schedule, x_T, timesteps=timesteps, prevs=prevs, step=step, generator=generator,
                 return_intermediates=return_intermediates, progress=progress, desc="DDIM")


def guided(model: Callable[..., torch.Tensor], cond: Any, null_cond: Any, scale: float) -> Model:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6) as a model ``(x_t, t) -> output``.

    ``out = out(x_t, null) + scale (out(x_t, cond) - out(x_t, null))``, i.e. the paper's
    ``(1 + w) eps(z, c) - w eps(z)`` with ``scale = 1 + w``. Any of eps/x0/v may be guided this way: each
    is affine in the others for a fixed ``x_t``. ``model`` is called as ``model(x, t, cond)``,
    ``model(x, t, *cond)`` (tuple) or ``model(x, t, **cond)`` (dict) with tensors of batch ``B``;
    ``null_cond`` has the same structure and its tensors may have batch 1 (broadcast). Conditional and
    unconditional halves run as one batch of ``2B``. ``scale == 1`` returns exactly the conditional
    output, in one pass of batch ``B``.
    """

    def call(x, t, c):
        return model(x, t, **c) if isinstance(c, dict) else model(x, t, *c) if isinstance(c, tuple) else model(x, t, c)

    def both(c, n):  # stack cond and null cond along the batch
        if isinstance(c, dict):
            return {k: both(c[k], n[k]) for k in c}
        if isinstance(c, tuple):
            return tuple(both(a, b) for a, b in zip(c, n, strict=True))
        return torch.cat([c, n.expand_as(c)])

    def guided_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if scale == 1:
            return call(x, t, cond)
        out_c, out_u = call(torch.cat([x, x]), torch.cat([t, t]), both(cond, null_cond)).chunk(2)
        return out_u + scale * (out_c - out_u)

    return guided_model
