"""The forward process and its algebra, checked against first principles (no diffusers here)."""

import math

import pytest
import torch

from minitalker.diffusion.schedule import (
    BETA_SCHEDULES,
    PREDICTION_TYPES,
    DiffusionConfig,
    NoiseSchedule,
    SamplingConfig,
    ScheduleConfig,
)


def sched(dtype=torch.float64, **kw) -> NoiseSchedule:
    return NoiseSchedule(DiffusionConfig(ScheduleConfig(**kw)), dtype=dtype)


@pytest.mark.parametrize("beta_schedule", BETA_SCHEDULES)
def test_schedule_shapes_and_monotonicity(beta_schedule):
    s = sched(beta_schedule=beta_schedule, num_train_timesteps=500)
    for name in ("betas", "alphas", "alphas_cumprod"):
        assert getattr(s, name).shape == (500,)
    assert ((s.betas > 0) & (s.betas < 1)).all()
    assert (s.alphas_cumprod.diff() < 0).all()  # strictly more noise at every step
    assert (s.snr(torch.arange(500)).diff() < 0).all()
    assert torch.allclose(s.alphas_cumprod, torch.cumprod(s.alphas, 0))
    assert s.alphas_cumprod[0] > 0.99  # almost clean after one step


def test_cosine_ends_in_pure_noise_and_is_cos_squared():
    s = sched(beta_schedule="cosine")
    assert s.alphas_cumprod[-1] < 1e-8  # terminal SNR ~ 0: x_T carries no signal
    u = torch.arange(1, 1000, dtype=torch.float64) / 1000  # Nichol & Dhariwal eq. 17, away from the capped end
    f = lambda u: torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    assert torch.allclose(s.alphas_cumprod[:-1], f(u) / f(torch.zeros(1, dtype=torch.float64)), rtol=1e-10)


def test_dtype_device_and_presets():
    s = NoiseSchedule(DiffusionConfig.fast())
    assert s.alphas_cumprod.dtype == torch.float32
    s64 = s.to(dtype=torch.float64)
    assert s64.alphas_cumprod.dtype == torch.float64
    assert (s64.alphas_cumprod.float() == s.alphas_cumprod).all()  # recomputed from float64, then rounded
    assert DiffusionConfig.full().sampling.steps >= DiffusionConfig.fast().sampling.steps
    assert DiffusionConfig.from_dict(DiffusionConfig.full().to_dict()) == DiffusionConfig.full()


def test_the_flat_layout_of_earlier_checkpoints_reads_into_the_split_configs():
    """The shipped face checkpoint holds ``model_config.diffusion`` as one flat dict; it reads as the fast preset."""
    import json

    from minitalker.config import DATA_DIR

    flat = json.loads((DATA_DIR / "checkpoints" / "faces_fast.json").read_text())["model_config"]["diffusion"]
    assert "sampling_steps" in flat and "schedule" not in flat
    assert DiffusionConfig.from_dict(flat) == DiffusionConfig.fast()
    cfg = DiffusionConfig.from_flat(dict(beta_schedule="linear", timestep_spacing="leading", sampling_steps=7, eta=0.5,
                                         min_snr_gamma=None))
    assert cfg == DiffusionConfig(ScheduleConfig(beta_schedule="linear"), SamplingConfig(steps=7, spacing="leading", eta=0.5),
                                  min_snr_gamma=None)
    with pytest.raises(ValueError, match=r"no fields \['sampling_step'\]"):
        DiffusionConfig.from_flat({"sampling_step": 3})


def test_q_sample_matches_running_the_chain_step_by_step():
    """Eq. 4 (closed form) against eq. 2 iterated: x_s = sqrt(1 - beta_s) x_{s-1} + sqrt(beta_s) eps_s."""
    s, t, n = sched(beta_schedule="linear"), 300, 10000
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    x = x0.clone()
    for beta in s.betas[: t + 1]:
        x = (1 - beta).sqrt() * x + beta.sqrt() * torch.randn(x.shape, generator=g, dtype=x.dtype)
    closed = s.q_sample(x0, t, torch.randn(x0.shape, generator=g, dtype=x0.dtype))
    a = s.alphas_cumprod[t]
    for sample in (x, closed):  # mean sqrt(a) x0, std sqrt(1 - a), within Monte-Carlo error
        assert abs(sample.mean() - a.sqrt() * 0.7) < 4 * (1 - a).sqrt() / math.sqrt(n)
        assert abs(sample.std() / (1 - a).sqrt() - 1) < 0.03  # 4 standard errors of a std


def brute_force_posterior(s, x0, x_t, t, t_prev):
    """q(x_prev | x_t, x0) by conditioning the joint Gaussian built step by step from the betas."""
    c_prev, v_prev = 1.0, 0.0  # x_prev = c_prev x0 + N(0, v_prev), composing eq. 2 from step 0
    for beta in s.betas[: t_prev + 1].tolist():
        c_prev, v_prev = math.sqrt(1 - beta) * c_prev, (1 - beta) * v_prev + beta
    c, v = 1.0, 0.0  # x_t = c x_prev + N(0, v)
    for beta in s.betas[t_prev + 1 : t + 1].tolist():
        c, v = math.sqrt(1 - beta) * c, (1 - beta) * v + beta
    var_t = c * c * v_prev + v  # Var x_t given x0;  Cov(x_prev, x_t) = c v_prev
    mean = c_prev * x0 + c * v_prev / var_t * (x_t - c * c_prev * x0)
    return mean, v_prev - (c * v_prev) ** 2 / var_t


@pytest.mark.parametrize("beta_schedule", BETA_SCHEDULES)
def test_posterior_matches_gaussian_conditioning(beta_schedule):
    s = sched(beta_schedule=beta_schedule)
    x0, x_t = torch.tensor([[0.3], [-0.8], [0.5]], dtype=torch.float64), torch.tensor([[1.1], [0.2], [-2.0]], dtype=torch.float64)
    for t, t_prev in [(1, 0), (10, 9), (500, 499), (999, 998), (700, 350), (900, 0)]:
        mean, var = s.posterior_mean_variance(x0, x_t, torch.tensor([t] * 3), t_prev)
        for i in range(3):
            m, v = brute_force_posterior(s, x0[i, 0].item(), x_t[i, 0].item(), t, t_prev)
            assert mean[i, 0].item() == pytest.approx(m, rel=1e-8, abs=1e-10)
            assert var[i, 0].item() == pytest.approx(v, rel=1e-8, abs=1e-12)
    mean, var = s.posterior_mean_variance(x0, x_t, 5, -1)  # landing on the clean sample
    assert torch.allclose(mean, x0) and (var == 0).all()


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_conversions_round_trip(prediction_type):
    s = sched(prediction_type=prediction_type)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64), torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 998])
    x_t = s.q_sample(x0, t, eps)
    target = s.training_target(x0, eps, t)
    x0_hat, eps_hat = s.predict_x0_eps(target, x_t, t)
    assert torch.allclose(x0_hat, x0, atol=1e-8) and torch.allclose(eps_hat, eps, atol=1e-8)
    assert torch.allclose(s.predict_x0(target, x_t, t), x0_hat) and torch.allclose(s.predict_eps(target, x_t, t), eps_hat)
    # v, eps, x0 tie together: x_t = sqrt(a) x0 + sqrt(1-a) eps and v = sqrt(a) eps - sqrt(1-a) x0 rotate (x0, eps)
    v = s.velocity(x0, eps, t)
    assert torch.allclose(v**2 + x_t**2, x0**2 + eps**2)


def test_diffusion_loss_weightings():
    g = torch.Generator().manual_seed(2)
    x0, eps, out = (torch.randn(3, 1, 4, 4, generator=g) for _ in range(3))
    t = torch.tensor([5, 400, 990])
    for kind in PREDICTION_TYPES:
        s = sched(dtype=torch.float32, prediction_type=kind)
        target = s.training_target(x0, eps, t)
        assert s.diffusion_loss(target, x0, eps, t) == 0
        per = ((out - target) ** 2).mean(dim=(1, 2, 3))
        assert torch.allclose(s.diffusion_loss(out, x0, eps, t), per.mean())
        snr = s.snr(t)
        w = {"epsilon": snr.clamp(max=5) / snr, "v_prediction": snr.clamp(max=5) / (snr + 1), "sample": snr.clamp(max=5)}[kind]
        assert torch.allclose(s.diffusion_loss(out, x0, eps, t, min_snr_gamma=5.0), (w * per).mean())
        mask = torch.zeros(1, 1, 4, 4)
        mask[..., 2:, 1:3] = 1  # a "mouth" box: the loss becomes the MSE inside it
        inside = ((out - target) ** 2)[..., 2:, 1:3].mean(dim=(1, 2, 3)).mean()
        assert torch.allclose(s.diffusion_loss(out, x0, eps, t, weight=mask), inside)


def test_bad_inputs_name_the_argument():
    s = sched()
    x = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="t must lie in"):
        s.q_sample(x, torch.tensor([0, 1000]), x)
    with pytest.raises(ValueError, match="t must lie in"):
        s.q_sample(x, -1, x)
    with pytest.raises(ValueError, match="integer"):
        s.q_sample(x, torch.tensor([0.5, 1.0]), x)
    with pytest.raises(ValueError, match=r"t must be an int or have shape \(2,\)"):
        s.q_sample(x, torch.tensor([1, 2, 3]), x)
    with pytest.raises(ValueError, match="noise must have the shape of x0"):
        s.q_sample(x, 3, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="model_out must have the shape"):
        s.predict_x0(torch.zeros(3, 3), x, 3)
    with pytest.raises(ValueError, match="t_prev"):
        s.posterior_mean_variance(x, x, 3, 3)
    with pytest.raises(ValueError, match="weight"):
        s.diffusion_loss(x, x, x, torch.tensor([1, 2]), weight=torch.ones(5))
    with pytest.raises(ValueError, match="weight must be non-negative"):
        s.diffusion_loss(x, x, x, torch.tensor([1, 2]), weight=-torch.ones(1, 3))
    with pytest.raises(ValueError, match="min_snr_gamma"):
        s.diffusion_loss(x, x, x, torch.tensor([1, 2]), min_snr_gamma=0)
    for part, bad in [(ScheduleConfig, dict(beta_schedule="cosine_v3")), (ScheduleConfig, dict(prediction_type="eps")),
                      (SamplingConfig, dict(spacing="even")), (SamplingConfig, dict(eta=1.5)),
                      (ScheduleConfig, dict(num_train_timesteps=0)), (SamplingConfig, dict(prev_rule="paper"))]:
        with pytest.raises(ValueError, match=next(iter(bad))):
            part(**bad)
