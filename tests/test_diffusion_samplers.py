"""Samplers from first principles: exact denoisers, noise handling, guidance and errors."""

import pytest
import torch

from minitalker.diffusion.samplers import (
    ddim_sample,
    ddpm_sample,
    guided,
    previous_timesteps,
    sampling_timesteps,
)
from minitalker.diffusion.schedule import PREDICTION_TYPES, DiffusionConfig, NoiseSchedule


def sched(**kw) -> NoiseSchedule:
    return NoiseSchedule(DiffusionConfig.from_flat({"clip_sample": False, **kw}), dtype=torch.float64)


def gaussian_oracle(s: NoiseSchedule, sigma: float):
    """The exact denoiser for data N(0, sigma^2): E[x0 | x_t] = sqrt(a) sigma^2 / (a sigma^2 + 1 - a) x_t."""

    def model(x, t):
        a = s.alphas_cumprod[t].reshape(-1, *[1] * (x.ndim - 1))
        x0 = a.sqrt() * sigma**2 / (a * sigma**2 + 1 - a) * x
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return {"epsilon": eps, "sample": x0, "v_prediction": a.sqrt() * eps - (1 - a).sqrt() * x0}[s.config.schedule.prediction_type]

    return model


def test_exact_denoiser_recovers_the_data_variance():
    """With the true E[x0|x_t], ancestral DDPM and DDIM turn N(0, 1) into N(0, sigma^2) (up to discretisation)."""
    s = sched()
    x_T = torch.randn(8, 1000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # 8000 draws
    ddpm = ddpm_sample(gaussian_oracle(s, 0.5), s, x_T, generator=torch.Generator().manual_seed(1), progress=False)
    ddim = ddim_sample(gaussian_oracle(s, 0.5), s, x_T, steps=50, progress=False)
    assert ddpm.std().item() == pytest.approx(0.5, rel=0.025)  # Monte-Carlo error of a std: 0.8%
    assert ddim.std().item() == pytest.approx(0.5, rel=0.05)
    assert ddim_sample(gaussian_oracle(s, 0.5), s, x_T, steps=1, progress=False).std() < 0.01  # 1 step: the mean


def test_the_three_parameterisations_are_one_sampler():
    """eps-, x0- and v-prediction of the same exact denoiser give the same DDPM and DDIM samples."""
    x_T = torch.randn(4, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    samples = {}
    for kind in PREDICTION_TYPES:
        s = sched(prediction_type=kind)
        samples[kind] = torch.cat([
            ddpm_sample(gaussian_oracle(s, 0.5), s, x_T, steps=100, generator=torch.Generator().manual_seed(1), progress=False),
            ddim_sample(gaussian_oracle(s, 0.5), s, x_T, steps=20, eta=0.3, generator=torch.Generator().manual_seed(1), progress=False),
        ])
    assert torch.allclose(samples["sample"], samples["epsilon"], atol=1e-9)
    assert torch.allclose(samples["v_prediction"], samples["epsilon"], atol=1e-9)


def test_ddim_is_exact_for_a_single_data_point_at_any_step_count():
    """A point mass at x* has the exact denoiser x0_hat = x*: every step count must land on x*."""
    target = torch.tensor([[0.3, -0.7]], dtype=torch.float64)
    for kind in PREDICTION_TYPES:
        s = sched(prediction_type=kind)

        def model(x, t):
            a = s.alphas_cumprod[t][:, None]
            eps = (x - a.sqrt() * target) / (1 - a).sqrt()
            return {"epsilon": eps, "sample": target.expand_as(x), "v_prediction": a.sqrt() * eps - (1 - a).sqrt() * target}[kind]

        for steps in (1, 3, 10):
            for spacing in ("leading", "trailing", "linspace"):
                x = ddim_sample(model, s, (4, 2), steps=steps, spacing=spacing, progress=False)
                assert torch.allclose(x, target.expand(4, 2), atol=1e-7), (kind, steps, spacing)


def smooth(x, t):
    return torch.sin(2 * x + 3 * t.to(x.dtype).reshape(-1, *[1] * (x.ndim - 1)) / 1000)


def test_fixed_noise_batching_and_seeds():
    s = sched()
    x_T = torch.randn(1, 3, 4, 4, dtype=torch.float64).expand(5, 3, 4, 4)  # the same noise for 5 "frames"
    x = ddim_sample(smooth, s, x_T, steps=8, progress=False)
    assert x.shape == (5, 3, 4, 4) and torch.allclose(x, x[:1].expand_as(x))
    single = ddim_sample(smooth, s, x_T[:1], steps=8, progress=False)
    assert torch.allclose(x[:1], single, atol=1e-12)  # batching does not change a sample
    a = ddpm_sample(smooth, s, (2, 3), steps=20, generator=torch.Generator().manual_seed(3), progress=False)
    b = ddpm_sample(smooth, s, (2, 3), steps=20, generator=torch.Generator().manual_seed(3), progress=False)
    c = ddpm_sample(smooth, s, (2, 3), steps=20, generator=torch.Generator().manual_seed(4), progress=False)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    d = ddim_sample(smooth, s, x_T, steps=8, eta=0.5, generator=torch.Generator().manual_seed(3), progress=False)
    assert not torch.allclose(d, x)  # eta > 0 adds fresh noise


def test_intermediates():
    s = sched(prediction_type="v_prediction", clip_sample=True)
    x_T = torch.randn(2, 3, dtype=torch.float64)
    x, traj = ddim_sample(smooth, s, x_T, steps=6, spacing="trailing", return_intermediates=True, progress=False)
    assert traj.timesteps == sampling_timesteps(1000, 6, "trailing") and len(traj.x_t) == len(traj.x0) == 6
    assert torch.equal(traj.x_t[0], x_T)
    assert all(p.abs().max() <= 1 for p in traj.x0)  # clipped x0 predictions
    assert torch.allclose(x, traj.x0[-1])  # the last DDIM step (abar_prev = 1) returns its x0 prediction
    x2, traj2 = ddpm_sample(smooth, s, x_T, steps=4, return_intermediates=True, progress=False)
    assert len(traj2.x_t) == 4 and torch.allclose(x2, traj2.x0[-1])  # no noise on the last step


def test_timesteps_and_previous_timestep_rules():
    assert sampling_timesteps(1000, 4, "leading") == [750, 500, 250, 0]
    assert sampling_timesteps(1000, 4, "leading", steps_offset=1) == [751, 501, 251, 1]
    assert sampling_timesteps(1000, 4, "trailing") == [999, 749, 499, 249]
    assert sampling_timesteps(1000, 10, "linspace")[:3] == [999, 888, 777]
    lead = sampling_timesteps(1000, 10, "leading")
    assert previous_timesteps(lead, 1000, "sequence") == previous_timesteps(lead, 1000, "diffusers")
    lin = sampling_timesteps(1000, 10, "linspace")
    assert previous_timesteps(lin, 1000, "sequence")[:2] == [888, 777]
    assert previous_timesteps(lin, 1000, "diffusers")[:2] == [899, 788]
    assert previous_timesteps(lin, 1000, "diffusers")[-2:] == [11, -1]  # 111 -> 11, then 0 -> clean
    # What the rules mean: with an exact denoiser of a point mass x*, deterministic DDIM keeps x_T's noise, so the
    # sample at noise level k is exactly sqrt(abar_k) x* + sqrt(1 - abar_k) eps, with eps read off x_T at t = 999.
    # "sequence" hands the model at t a sample at level t; "diffusers" (linspace) hands the model at 888 one at 899.
    s, target = sched(prediction_type="sample"), torch.tensor([[0.5]], dtype=torch.float64)
    x_T, a = torch.tensor([[1.5]], dtype=torch.float64), s.alphas_cumprod
    eps = (x_T - a[999].sqrt() * target) / (1 - a[999]).sqrt()
    level = lambda k: a[k].sqrt() * target + (1 - a[k]).sqrt() * eps
    for rule, expected in [("sequence", [level(t) for t in lin]), ("diffusers", [x_T, level(899)])]:
        _, traj = ddim_sample(lambda x, t: target.expand_as(x), s, x_T, steps=10, spacing="linspace", prev_rule=rule,
                              return_intermediates=True, progress=False)
        for got, want in zip(traj.x_t, expected):
            assert torch.allclose(got, want, atol=1e-12), rule
    assert not torch.allclose(level(888), level(899), atol=1e-3)


class Recorder:
    """model(x, t, landmarks, reference=...) returning something that depends on every input; counts calls."""

    def __init__(self):
        self.batches = []

    def __call__(self, x, t, tokens, reference=None):
        self.batches.append(x.shape[0])
        return x * tokens.mean(dim=(1, 2)).reshape(-1, 1, 1, 1) + reference + t.reshape(-1, 1, 1, 1) / 100


def test_classifier_free_guidance():
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(3, 2, 4, 4, generator=g), torch.tensor([10, 10, 10])
    tokens, ref = torch.randn(3, 68, 8, generator=g), torch.randn(3, 2, 4, 4, generator=g)
    null_tokens = torch.zeros(1, 68, 8)  # one learned "no landmarks" token set, broadcast over the batch
    model = Recorder()
    cond, null = ({"tokens": tokens, "reference": ref}, {"tokens": null_tokens, "reference": ref})
    out1 = guided(model, cond, null, 1.0)(x, t)
    assert torch.equal(out1, model(x, t, tokens, reference=ref)) and model.batches[0] == 3  # exact, one pass of B
    model.batches.clear()
    out = guided(model, cond, null, 2.5)(x, t)
    assert model.batches == [6]  # conditional and unconditional halves in one forward
    c, u = model(x, t, tokens, reference=ref), model(x, t, null_tokens.expand_as(tokens), reference=ref)
    assert torch.allclose(out, u + 2.5 * (c - u), atol=1e-6)
    assert torch.allclose(guided(model, (tokens, ref), (null_tokens, ref), 0.0)(x, t), u, atol=1e-6)  # tuple cond
    s = NoiseSchedule(DiffusionConfig())
    sample = ddim_sample(guided(model, cond, null, 2.0), s, torch.randn(3, 2, 4, 4), steps=3, progress=False)
    assert sample.shape == (3, 2, 4, 4)


def test_sampler_errors():
    s = sched()
    with pytest.raises(ValueError, match="steps must be in"):
        ddim_sample(smooth, s, (1, 2), steps=1001, progress=False)
    with pytest.raises(ValueError, match="steps must be in"):
        ddpm_sample(smooth, s, (1, 2), steps=0, progress=False)
    with pytest.raises(ValueError, match="eta must be in"):
        ddim_sample(smooth, s, (1, 2), eta=1.2, progress=False)
    with pytest.raises(ValueError, match="spacing"):
        ddim_sample(smooth, s, (1, 2), spacing="even", progress=False)
    with pytest.raises(ValueError, match="prev_rule"):
        ddim_sample(smooth, s, (1, 2), prev_rule="paper", progress=False)
    with pytest.raises(ValueError, match="variance"):
        ddpm_sample(smooth, s, (1, 2), variance="learned", progress=False)
    with pytest.raises(ValueError, match="x_T"):
        ddim_sample(smooth, s, torch.zeros(1, 2, dtype=torch.long), progress=False)
    with pytest.raises(ValueError, match="model_out must have the shape"):
        ddim_sample(lambda x, t: x[:, :1], s, (1, 2), progress=False)


def test_nan_is_reported_with_its_step():
    s = sched()

    def breaks_at_400(x, t):
        return smooth(x, t) / (t[:, None] > 400)  # divides by 0 (inf) once t <= 400

    with pytest.raises(FloatingPointError, match=r"step 6 of 10 \(t=399\) produced NaN/inf: the model returned"):
        ddim_sample(breaks_at_400, s, (2, 2), steps=10, spacing="trailing", progress=False)
    with pytest.raises(FloatingPointError, match=r"step 599 of 1000 \(t=400\)"):
        ddpm_sample(breaks_at_400, s, (2, 2), progress=False)
