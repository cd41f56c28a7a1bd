"""The forward (noising) process of a diffusion model, and everything derived from its schedule.

Notation follows DDPM (Ho et al. 2020): ``beta_t`` is the noise added at step ``t``,
``alpha_t = 1 - beta_t`` and ``alpha_bar_t = prod_{s<=t} alpha_s``, so that a clean sample ``x0``
noised ``t`` steps is ``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps`` (eq. 4).
Timesteps are 0-based integers ``0 .. T-1`` as in diffusers (the paper counts ``1 .. T``).

A network can be trained to predict one of three equivalent quantities from ``(x_t, t)``:

* ``"epsilon"``: the noise ``eps`` (DDPM eq. 14);
* ``"sample"``: the clean sample ``x0``;
* ``"v_prediction"``: the velocity ``v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0``
  (Salimans & Ho 2022, "Progressive distillation", section 4).

Given ``x_t`` any one of them determines the other two; :class:`NoiseSchedule` converts between them.

A model's settings come in three parts (:class:`DiffusionConfig`): what it was trained with
(:class:`ScheduleConfig`, fixed once trained), how it samples (:class:`SamplingConfig`, free to
change at every call) and the loss weighting (``min_snr_gamma``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from minitalker.config import PresetConfig, check_choice, check_fraction, check_positive

BETA_SCHEDULES = ("linear", "scaled_linear", "cosine")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
SPACINGS = ("leading", "trailing", "linspace")
PREV_RULES = ("sequence", "diffusers")


@dataclass
class ScheduleConfig(PresetConfig):
    """What a checkpoint was trained with: the noise schedule and what the network predicts.

    ``beta_start``/``beta_end`` are used by the linear schedules only; ``cosine`` is diffusers'
    ``"squaredcos_cap_v2"`` (betas capped at ``max_beta``).
    """

    num_train_timesteps: int = 1000
    beta_schedule: str = "cosine"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    max_beta: float = 0.999
    prediction_type: str = "v_prediction"

    def __post_init__(self) -> None:
        check_choice(self, "beta_schedule", BETA_SCHEDULES)
        check_choice(self, "prediction_type", PREDICTION_TYPES)
        check_positive(self, "num_train_timesteps")


@dataclass
class SamplingConfig(PresetConfig):
    """How a model samples by default: the samplers' keyword arguments of the same names.

    ``steps`` DDIM steps visited with ``spacing`` (see :func:`~minitalker.diffusion.samplers.sampling_timesteps`;
    ``steps_offset`` is added to "leading" ones), landing by ``prev_rule``
    (:func:`~minitalker.diffusion.samplers.previous_timesteps`); ``eta`` is DDIM's noise (0: deterministic).
    ``set_alpha_to_one``, ``steps_offset`` and the clipping fields mirror diffusers' ``DDIMScheduler``
    options of the same names.
    """

    steps: int = 10
    spacing: str = "trailing"
    eta: float = 0.0
    clip_sample: bool = True  # clip predicted x0 to [-r, r] while sampling (images live in [-1, 1])
    clip_sample_range: float = 1.0
    set_alpha_to_one: bool = True  # DDIM's alpha_bar "before step 0": 1 (the paper) or alpha_bar_0
    steps_offset: int = 0  # added to "leading" timesteps (Stable Diffusion uses 1)
    prev_rule: str = "sequence"  # where a DDIM step lands: the next visited timestep, or diffusers' t - T // steps

    def __post_init__(self) -> None:
        check_choice(self, "spacing", SPACINGS)
        check_choice(self, "prev_rule", PREV_RULES)
        check_fraction(self, "eta")

    @classmethod
    def fast(cls) -> SamplingConfig:
        return cls(steps=10)  # 10 DDIM steps: as good as 25 (docs/design_notes.md)

    @classmethod
    def full(cls) -> SamplingConfig:
        return cls(steps=25)


#: Names of the one-level layout (checkpoints saved before the split) that differ from the split configs'.
FLAT_NAMES = {"sampling_steps": "steps", "timestep_spacing": "spacing"}


@dataclass
class DiffusionConfig(PresetConfig):
    """The noise schedule a model was trained with, how it samples, and the loss weighting.

    Defaults (both presets): a cosine schedule with v-prediction, sampled with few DDIM steps spaced
    "trailing". Why, for 64x64 faces:

    * cosine (Nichol & Dhariwal 2021) destroys information evenly; the linear schedule of DDPM was
      tuned for 256 px and leaves 64 px images nearly pure noise for the last third of its steps;
    * its ``alpha_bar`` ends near 0 (terminal SNR ~ 1e-9), so sampling really starts from noise;
      there ``eps``-prediction is ill-posed (``x0 = (x_t - sqrt(1-a) eps) / sqrt(a)`` divides by
      ~0) while v-prediction stays well conditioned at every noise level (Salimans & Ho 2022) and
      is what lets few-step DDIM work;
    * "trailing" spacing starts sampling at ``t = T-1``, the only step the model saw at that noise
      level (Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed").

    ``min_snr_gamma``: the loss weighting of Hang et al. 2023 (see :meth:`NoiseSchedule.diffusion_loss`);
    None = plain MSE. One number needs no config class of its own.
    """

    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    min_snr_gamma: float | None = 5.0

    @classmethod
    def fast(cls) -> DiffusionConfig:
        return cls(sampling=SamplingConfig.fast())

    @classmethod
    def full(cls) -> DiffusionConfig:
        return cls(sampling=SamplingConfig.full())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiffusionConfig:
        """From :meth:`to_dict`'s nested layout, or from the flat one of earlier checkpoints (:meth:`from_flat`)."""
        if not {"schedule", "sampling"} & d.keys():
            return cls.from_flat(d)
        parts = {"schedule": ScheduleConfig, "sampling": SamplingConfig}
        return super().from_dict({k: parts[k].from_dict(v) if k in parts else v for k, v in d.items()})

    @classmethod
    def from_flat(cls, d: dict[str, Any]) -> DiffusionConfig:
        """From one level of names: what checkpoints saved before the split hold (``model_config.diffusion``).

        Every field at the top, with ``sampling_steps`` for ``steps`` and ``timestep_spacing`` for
        ``spacing`` (:data:`FLAT_NAMES`): diffusers' scheduler names, so a scheduler config reads the
        same way. Fields not given take their defaults.
        """
        d = {FLAT_NAMES.get(k, k): v for k, v in d.items()}
        names = {c: {f.name for f in dataclasses.fields(c)} for c in (ScheduleConfig, SamplingConfig)}
        unknown = set(d) - names[ScheduleConfig] - names[SamplingConfig] - {"min_snr_gamma"}
        if unknown:
            raise ValueError(f"DiffusionConfig has no fields {sorted(unknown)}: was this saved by another version?")
        part = {c: c(**{k: v for k, v in d.items() if k in names[c]}) for c in names}
        return cls(part[ScheduleConfig], part[SamplingConfig], **{k: d[k] for k in ("min_snr_gamma",) if k in d})


def make_betas(cfg: ScheduleConfig) -> torch.Tensor:
    """``beta_t`` for ``t = 0 .. T-1`` in float64, shape ``(T,)``.

    * linear: DDPM section 4, ``beta`` from ``beta_start`` to ``beta_end``;
    * scaled_linear: linear in ``sqrt(beta)`` (latent diffusion / Stable Diffusion);
    * cosine: Nichol & Dhariwal 2021 eq. 17, ``alpha_bar(t) = cos^2((t/T + s)/(1 + s) pi/2)`` with
      ``s = 0.008``, ``beta_t = min(1 - alpha_bar(t+1)/alpha_bar(t), max_beta)``.
    """
    T = cfg.num_train_timesteps
    if cfg.beta_schedule == "linear":
        return torch.linspace(cfg.beta_start, cfg.beta_end, T, dtype=torch.float64)
    if cfg.beta_schedule == "scaled_linear":
        return torch.linspace(cfg.beta_start**0.5, cfg.beta_end**0.5, T, dtype=torch.float64) ** 2

    def alpha_bar(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), cfg.max_beta) for i in range(T)]
    return torch.tensor(betas, dtype=torch.float64)


class NoiseSchedule:
    """``betas``, ``alphas``, ``alphas_cumprod`` (each ``(T,)``), computed in float64, kept in ``dtype``.

    ``config`` is the whole :class:`DiffusionConfig`: the samplers take their defaults from ``config.sampling``.
    Every method takes a batch of integer timesteps ``t`` of shape ``(B,)`` (or one int for the whole
    batch) and samples of shape ``(B, ...)``; per-timestep coefficients broadcast over ``...``.
    """

    def __init__(self, config: DiffusionConfig | None = None, dtype: torch.dtype = torch.float32, device=None):
        self.config = config or DiffusionConfig.preset()
        betas = make_betas(self.config.schedule)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.betas = betas.to(dtype=dtype, device=device)
        self.alphas = (1.0 - betas).to(dtype=dtype, device=device)
        self.alphas_cumprod = alphas_cumprod.to(dtype=dtype, device=device)
        # alpha_bar "at t = -1", where DDIM's last step lands (DDIM section 4.1 sets alpha_0 := 1)
        self.final_alpha_cumprod = 1.0 if self.config.sampling.set_alpha_to_one else float(alphas_cumprod[0])

    @property
    def num_train_timesteps(self) -> int:
        return self.config.schedule.num_train_timesteps

    def to(self, device=None, dtype: torch.dtype | None = None) -> NoiseSchedule:
        """A copy on ``device`` / in ``dtype`` (recomputed from float64, not re-rounded)."""
        dtype = dtype or self.alphas_cumprod.dtype
        return NoiseSchedule(self.config, dtype=dtype, device=device or self.alphas_cumprod.device)

    # -- indexing ---------------------------------------------------------------------------
    def _timesteps(self, t: torch.Tensor | int, batch: int) -> torch.Tensor:
        """Validate ``t`` (int or ``(B,)`` integers in ``[0, T)``) and return it as a ``(B,)`` long tensor."""
        t = torch.as_tensor(t, device=self.alphas_cumprod.device)
        if t.is_floating_point() or t.is_complex():
            raise ValueError(f"t must hold integer timesteps; got dtype {t.dtype}")
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must be an int or have shape ({batch},) to match the batch; got {tuple(t.shape)}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_train_timesteps):
            raise ValueError(
                f"t must lie in [0, {self.num_train_timesteps - 1}]; got values in [{int(t.min())}, {int(t.max())}]"
            )
        return t.long()

    def _at(self, values: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """``values[t]`` shaped ``(B, 1, ..., 1)`` to broadcast against ``like`` ``(B, ...)``."""
        t = self._timesteps(t, like.shape[0])
        out = values[t].to(device=like.device, dtype=like.dtype)
        return out.reshape(-1, *([1] * (like.ndim - 1)))

    @staticmethod
    def _same_shape(**tensors: torch.Tensor) -> None:
        (first, ref), *rest = tensors.items()
        for name, x in rest:
            if x.shape != ref.shape:
                raise ValueError(f"{name} must have the shape of {first} {tuple(ref.shape)}; got {tuple(x.shape)}")

    # -- forward process --------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor | int, noise: torch.Tensor) -> torch.Tensor:
        """Sample ``q(x_t | x0)``: ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` (DDPM eq. 4). ``(B, ...)``."""
        self._same_shape(x0=x0, noise=noise)
        a = self._at(self.alphas_cumprod, t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def posterior_mean_variance(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int, t_prev: torch.Tensor | int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(B, ...)`` and variance ``(B, 1, ..)`` of ``q(x_prev | x_t, x0)`` (DDPM eq. 6-7).

        ``mean = sqrt(abar_prev) beta / (1 - abar_t) x0 + sqrt(alpha) (1 - abar_prev) / (1 - abar_t) x_t``,
        ``var = (1 - abar_prev) / (1 - abar_t) beta``, with ``alpha = abar_t / abar_prev`` and
        ``beta = 1 - alpha``. By default ``t_prev = t - 1`` (then ``alpha, beta`` are the step's own); a
        larger jump (strided sampling) uses the same formulas with the jump's ``alpha``. ``t_prev = -1``
        means "the clean sample" (``abar_prev = 1``, so mean ``= x0`` and var ``= 0``).
        """
        self._same_shape(x_t=x_t, x0=x0)
        a_t = self._at(self.alphas_cumprod, t, x_t)
        a_prev = self._alpha_bar_prev(t, t_prev, x_t)
        alpha = a_t / a_prev
        beta = 1 - alpha
        mean = a_prev.sqrt() * beta / (1 - a_t) * x0 + alpha.sqrt() * (1 - a_prev) / (1 - a_t) * x_t
        return mean, (1 - a_prev) / (1 - a_t) * beta

    def _alpha_bar_prev(self, t, t_prev, like: torch.Tensor) -> torch.Tensor:
        """``abar`` at ``t_prev`` (default ``t - 1``), with ``abar = 1`` where ``t_prev == -1``. ``(B, 1, ..)``."""
        t = self._timesteps(t, like.shape[0])
        t_prev = t - 1 if t_prev is None else torch.as_tensor(t_prev, device=t.device).long().expand_as(t)
        if (t_prev >= t).any() or (t_prev < -1).any():
            raise ValueError(f"t_prev must satisfy -1 <= t_prev < t; got t_prev={t_prev.tolist()} for t={t.tolist()}")
        a = torch.where(t_prev >= 0, self.alphas_cumprod[t_prev.clamp(min=0)], 1.0)
        return a.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))

    # -- what the network predicts ----------------------------------------------------------
    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """``v = sqrt(abar) eps - sqrt(1 - abar) x0`` (Salimans & Ho 2022, sec. 4). ``(B, ...)``."""
        self._same_shape(x0=x0, noise=noise)
        a = self._at(self.alphas_cumprod, t, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """What the network should output for ``x_t = q_sample(x0, t, noise)``: eps, x0 or v. ``(B, ...)``."""
        self._same_shape(x0=x0, noise=noise)
        kind = self.config.schedule.prediction_type
        return noise if kind == "epsilon" else x0 if kind == "sample" else self.velocity(x0, noise, t)

    def predict_x0_eps(
        self, model_out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both ``x0`` and ``eps`` from a network output, by inverting eq. 4 (and the v definition).

        * epsilon: ``x0 = (x_t - sqrt(1-a) eps) / sqrt(a)`` (DDPM eq. 15);
        * sample:  ``eps = (x_t - sqrt(a) x0) / sqrt(1-a)``;
        * v:       ``x0 = sqrt(a) x_t - sqrt(1-a) v``, ``eps = sqrt(a) v + sqrt(1-a) x_t`` (Salimans & Ho).
        """
        self._same_shape(x_t=x_t, model_out=model_out)
        a = self._at(self.alphas_cumprod, t, x_t)
        kind = self.config.schedule.prediction_type
        if kind == "epsilon":
            return (x_t - (1 - a).sqrt() * model_out) / a.sqrt(), model_out
        if kind == "sample":
            return model_out, (x_t - a.sqrt() * model_out) / (1 - a).sqrt()
        return a.sqrt() * x_t - (1 - a).sqrt() * model_out, a.sqrt() * model_out + (1 - a).sqrt() * x_t

    def predict_x0(self, model_out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """The clean sample implied by a network output (see :meth:`predict_x0_eps`). ``(B, ...)``."""
        return self.predict_x0_eps(model_out, x_t, t)[0]

    def predict_eps(self, model_out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """The noise implied by a network output (see :meth:`predict_x0_eps`). ``(B, ...)``."""
        return self.predict_x0_eps(model_out, x_t, t)[1]

    def snr(self, t: torch.Tensor | int) -> torch.Tensor:
        """Signal-to-noise ratio ``abar_t / (1 - abar_t)`` (Kingma et al. 2021, "Variational diffusion
        models"), in the shape of ``t``."""
        t = torch.as_tensor(t)
        a = self.alphas_cumprod[self._timesteps(t.reshape(-1), t.numel())]
        return (a / (1 - a)).reshape(t.shape)

    # -- the loss ---------------------------------------------------------------------------
    def diffusion_loss(
        self,
        model_out: torch.Tensor,
        x0: torch.Tensor,
        noise: torch.Tensor,
        t: torch.Tensor,
        min_snr_gamma: float | None = None,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean squared error to :meth:`training_target` (DDPM eq. 14, "L_simple"), a scalar.

        ``min_snr_gamma``: Min-SNR weighting (Hang et al. 2023, "Min-SNR-gamma"): each sample's loss is scaled so
        that in x0-space it weighs ``min(SNR_t, gamma)``; for eps-prediction that is
        ``min(SNR, gamma) / SNR``, for v-prediction ``min(SNR, gamma) / (SNR + 1)``, for x0 ``min(SNR, gamma)``.
        ``weight``: a non-negative map broadcastable to ``x0`` (e.g. ``(B, 1, H, W)`` emphasising the
        mouth); each sample's error is then the ``weight``-weighted mean over its elements.
        """
        self._same_shape(x0=x0, model_out=model_out, noise=noise)
        t = self._timesteps(t, x0.shape[0])
        err = (model_out - self.training_target(x0, noise, t)) ** 2  # (B, ...)
        dims = tuple(range(1, x0.ndim))
        if weight is None:
            per_sample = err.mean(dim=dims)  # (B,)
        else:
            try:
                weight = torch.broadcast_to(weight.to(err), err.shape)
            except RuntimeError as e:
                raise ValueError(f"weight {tuple(weight.shape)} must broadcast to x0 {tuple(x0.shape)}") from e
            if (weight < 0).any():
                raise ValueError("weight must be non-negative")
            per_sample = (weight * err).sum(dim=dims) / weight.sum(dim=dims).clamp(min=1e-12)
        if min_snr_gamma is not None:
            if min_snr_gamma <= 0:
                raise ValueError(f"min_snr_gamma must be > 0 (or None); got {min_snr_gamma}")
            snr = self.snr(t).to(err)
            clipped = snr.clamp(max=min_snr_gamma)
            kind = self.config.schedule.prediction_type
            w = clipped / snr if kind == "epsilon" else clipped / (snr + 1) if kind == "v_prediction" else clipped
            per_sample = w * per_sample
        return per_sample.mean()
