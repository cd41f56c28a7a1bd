"""Our schedule and samplers against diffusers' DDPMScheduler and DDIMScheduler.

The sampling loops are compared in float64 with both sides using the same float64 ``alphas_cumprod``
(we hand ours to the diffusers scheduler): diffusers accumulates ``cumprod`` in float32, which near
the end of the cosine schedule (abar ~ 1e-9) differs from the exact value by ~1e-5 relative, and
eps-prediction divides by sqrt(abar). The schedules themselves are compared separately, and one
end-to-end float32 run with the default config checks the untouched diffusers scheduler.
"""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from minitalker.diffusion.bridge import diffusers_ddim, diffusers_ddpm, diffusion_config_from_scheduler
from minitalker.diffusion.samplers import ddim_sample, ddim_step, ddpm_sample, ddpm_step, sampling_timesteps
from minitalker.diffusion.schedule import BETA_SCHEDULES, DiffusionConfig, NoiseSchedule

SHAPE = (2, 3, 6, 6)


def dummy_model(x, t):
    """A deterministic, smooth stand-in for a network: a fixed function of x and t."""
    tt = t.to(x.dtype).reshape(-1, *[1] * (x.ndim - 1)) / 1000
    return 0.8 * torch.sin(2 * x + 3 * tt) + 0.3 * torch.cos(x * tt)


def pair(cls, dtype=torch.float64, share=True, variance_type="fixed_small", **kw):
    """Our schedule and a diffusers scheduler built from the same settings (given in the flat, diffusers-named layout)."""
    ours = NoiseSchedule(DiffusionConfig.from_flat(kw), dtype=dtype)
    theirs = diffusers_ddim(ours.config) if cls is DDIMScheduler else diffusers_ddpm(ours.config, variance_type)
    if share:
        theirs.alphas_cumprod = ours.alphas_cumprod.to(torch.float64)
        theirs.one = torch.tensor(1.0, dtype=torch.float64)
        theirs.final_alpha_cumprod = torch.tensor(ours.final_alpha_cumprod, dtype=torch.float64)
    return ours, theirs


def diffusers_loop(scheduler, steps, dtype=torch.float64, seed=0, **step_kw):
    """The standard diffusers sampling loop; x_T and every step's noise come from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=g, dtype=dtype)
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        x = scheduler.step(dummy_model(x, t.expand(SHAPE[0])), t, x, generator=g, **step_kw).prev_sample
    return x


@pytest.mark.parametrize("beta_schedule", BETA_SCHEDULES)
def test_schedule_and_add_noise(beta_schedule):
    ours, theirs = pair(DDPMScheduler, dtype=torch.float32, share=False, beta_schedule=beta_schedule)
    assert torch.allclose(ours.betas, theirs.betas, rtol=1e-6, atol=0)
    assert torch.allclose(ours.alphas_cumprod, theirs.alphas_cumprod, rtol=3e-5, atol=0)  # float32 cumprod drift
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(SHAPE, generator=g) * 2 - 1, torch.randn(SHAPE, generator=g)
    t = torch.tensor([3, 990])
    # float32 1 - abar near t = 0 loses digits on both sides (abar ~ 0.99998): agree to 1e-5, not 1e-6
    assert torch.allclose(ours.q_sample(x0, t, noise), theirs.add_noise(x0, noise, t), atol=1e-5)
    assert torch.allclose(ours.velocity(x0, noise, t), theirs.get_velocity(x0, noise, t), atol=1e-5)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_timesteps(spacing):
    for steps in (1, 7, 10, 50, 333, 1000):
        for offset in (0, 1):
            theirs = DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
            theirs.set_timesteps(steps)
            assert sampling_timesteps(1000, steps, spacing, offset) == theirs.timesteps.tolist()


CASES = [(b, p, c) for b in BETA_SCHEDULES for p in ("epsilon", "v_prediction", "sample") for c in (True, False)]


@pytest.mark.parametrize("beta_schedule,prediction_type,clip", CASES)
def test_ddpm_loop(beta_schedule, prediction_type, clip):
    kw = dict(beta_schedule=beta_schedule, prediction_type=prediction_type, clip_sample=clip)
    for variance in ("fixed_small", "fixed_large"):
        for steps, spacing in [(50, "leading"), (13, "linspace")] + [(7, "trailing")] * (variance == "fixed_small"):
            ours, theirs = pair(DDPMScheduler, timestep_spacing=spacing, variance_type=variance, **kw)
            expected = diffusers_loop(theirs, steps)
            got = ddpm_sample(dummy_model, ours, SHAPE, steps=steps, spacing=spacing, variance=variance,
                              generator=torch.Generator().manual_seed(0), progress=False)
            assert (got - expected).abs().max() < 1e-9 * max(1.0, expected.abs().max()), (variance, steps, spacing)


def test_ddpm_full_chain():
    ours, theirs = pair(DDPMScheduler, beta_schedule="linear", prediction_type="epsilon", clip_sample=True)
    expected = diffusers_loop(theirs, 1000)
    got = ddpm_sample(dummy_model, ours, SHAPE, generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.allclose(got, expected, atol=1e-9)


@pytest.mark.parametrize("beta_schedule,prediction_type,clip", CASES)
def test_ddim_loop(beta_schedule, prediction_type, clip):
    for spacing in ("leading", "trailing", "linspace"):
        for steps, eta, alpha_one in [(10, 0.0, True), (7, 0.5, True), (25, 1.0, False)]:
            ours, theirs = pair(DDIMScheduler, beta_schedule=beta_schedule, prediction_type=prediction_type,
                                clip_sample=clip, timestep_spacing=spacing, set_alpha_to_one=alpha_one)
            expected = diffusers_loop(theirs, steps, eta=eta)
            got = ddim_sample(dummy_model, ours, SHAPE, steps=steps, eta=eta, prev_rule="diffusers",
                              generator=torch.Generator().manual_seed(0), progress=False)
            assert (got - expected).abs().max() < 1e-9 * max(1.0, expected.abs().max()), (spacing, steps, eta)


def test_ddim_sequence_rule_is_diffusers_for_leading_and_ddpm_at_eta_one():
    """Our default "sequence" rule: same as DDIMScheduler where the rules agree (leading spacing), and at
    eta = 1 it is exactly DDPMScheduler on the same timesteps (DDIM eq. 16), for every spacing."""
    kw = dict(beta_schedule="cosine", prediction_type="v_prediction", clip_sample=False)
    ours, theirs = pair(DDIMScheduler, timestep_spacing="leading", **kw)
    got = ddim_sample(dummy_model, ours, SHAPE, steps=10, eta=0.0, progress=False, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(got, diffusers_loop(theirs, 10), atol=1e-9)
    for spacing in ("leading", "trailing", "linspace"):
        ours, ddpm = pair(DDPMScheduler, timestep_spacing=spacing, **kw)
        got = ddim_sample(dummy_model, ours, SHAPE, steps=9, eta=1.0, spacing=spacing,
                          generator=torch.Generator().manual_seed(0), progress=False)
        assert torch.allclose(got, diffusers_loop(ddpm, 9), atol=1e-8), spacing  # diffusers adds 1e-10 z at the end
    ours, ddim = pair(DDIMScheduler, timestep_spacing="linspace", **kw)  # where the rules differ, so do the samples
    got = ddim_sample(dummy_model, ours, SHAPE, steps=9, eta=0.0, progress=False)
    assert (got - diffusers_loop(ddim, 9)).abs().max() > 1e-3


def test_ddim_from_an_image_is_diffusers_img2img():
    """``init``/``strength``: the timesteps diffusers' img2img pipelines keep, from ``add_noise(init)``."""
    for spacing in ("leading", "trailing"):
        for steps, strength in [(10, 0.6), (10, 0.8), (7, 0.5), (4, 0.1)]:
            ours, theirs = pair(DDIMScheduler, beta_schedule="cosine", prediction_type="v_prediction",
                                timestep_spacing=spacing)
            g = torch.Generator().manual_seed(0)
            init, noise = torch.rand(SHAPE, generator=g, dtype=torch.float64) * 2 - 1, torch.randn(SHAPE, generator=g,
                                                                                                   dtype=torch.float64)
            theirs.set_timesteps(steps)
            kept = theirs.timesteps[steps - max(1, min(int(steps * strength), steps)):]  # img2img's get_timesteps
            x = theirs.add_noise(init, noise, kept[:1])
            for t in kept:
                x = theirs.step(dummy_model(x, t.expand(SHAPE[0])), t, x).prev_sample
            got = ddim_sample(dummy_model, ours, noise.clone(), steps=steps, prev_rule="diffusers", init=init,
                              strength=strength, progress=False)
            assert (got - x).abs().max() < 1e-9 * max(1.0, x.abs().max()), (spacing, steps, strength)


def test_default_config_float32_end_to_end():
    """The untouched float32 diffusers scheduler, with our default config (cosine, v, clip, trailing)."""
    ours, theirs = pair(DDIMScheduler, dtype=torch.float32, share=False)
    expected = diffusers_loop(theirs, ours.config.sampling.steps, dtype=torch.float32)
    got = ddim_sample(dummy_model, ours, SHAPE, prev_rule="diffusers", generator=torch.Generator().manual_seed(0),
                      progress=False)
    assert got.dtype == torch.float32 and torch.allclose(got, expected, atol=1e-5)


def test_ddpm_last_step_quirk_with_trailing_spacing():
    """Documented in ddpm_sample: with "trailing" spacing the last step starts at t = 99 > 0, where diffusers
    still adds noise (sqrt(beta) of the jump for fixed_large); we return its x0 prediction, as DDPM's z = 0."""
    ours, theirs = pair(DDPMScheduler, variance_type="fixed_large", timestep_spacing="trailing", clip_sample=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    theirs.set_timesteps(10)
    for t in theirs.timesteps:
        out = theirs.step(dummy_model(x, t.expand(SHAPE[0])), t, x, generator=g)
        x = out.prev_sample
    got = ddpm_sample(dummy_model, ours, SHAPE, steps=10, variance="fixed_large", generator=torch.Generator().manual_seed(0),
                      progress=False)
    assert theirs.timesteps[-1] == 99
    assert torch.allclose(got, out.pred_original_sample, atol=1e-9)
    assert (x - got).std() == pytest.approx((1 - ours.alphas_cumprod[99]).sqrt().item(), rel=0.15)  # the extra noise


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_one_ddpm_step_is_ddpm_scheduler_step(prediction_type):
    """ddpm_step on the same inputs (model output, x_t, t, the noise z diffusers draws) gives DDPMScheduler.step's
    prev_sample and pred_original_sample, for both variances, clipped or not, and on the last step (no noise)."""
    for variance, clip in [("fixed_small", True), ("fixed_large", False)]:
        ours, theirs = pair(DDPMScheduler, variance_type=variance, beta_schedule="linear", prediction_type=prediction_type,
                            clip_sample=clip, timestep_spacing="leading")
        theirs.set_timesteps(10)
        visit = theirs.timesteps.tolist()
        for t, t_prev in [(visit[0], visit[1]), (visit[5], visit[6]), (visit[-1], -1)]:
            g = torch.Generator().manual_seed(t)
            x_t, out = torch.randn(SHAPE, generator=g, dtype=torch.float64), torch.randn(SHAPE, generator=g, dtype=torch.float64)
            z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64) if t_prev >= 0 else None
            expected = theirs.step(out, t, x_t, generator=torch.Generator().manual_seed(1))
            got = ddpm_step(ours, out, x_t, t, t_prev, variance=variance, clip=1.0 if clip else None, noise=z)
            torch.testing.assert_close(got.x0, expected.pred_original_sample, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(got.x_prev, expected.prev_sample, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_one_ddim_step_is_ddim_scheduler_step(prediction_type):
    """ddim_step gives DDIMScheduler.step's outputs at eta 0 and 1 (the same z as its variance_noise), clipped or not,
    and on the last step, which lands on final_alpha_cumprod (1, or abar_0)."""
    for eta, clip, alpha_one in [(0.0, True, True), (1.0, False, False), (0.5, True, False)]:
        ours, theirs = pair(DDIMScheduler, beta_schedule="cosine", prediction_type=prediction_type, clip_sample=clip,
                            timestep_spacing="leading", set_alpha_to_one=alpha_one)
        theirs.set_timesteps(10)
        for t in (theirs.timesteps[0].item(), theirs.timesteps[4].item(), theirs.timesteps[-1].item()):
            t_prev = t - 100 if t >= 100 else -1  # DDIMScheduler's t - T // steps
            g = torch.Generator().manual_seed(t)
            x_t, out, z = (torch.randn(SHAPE, generator=g, dtype=torch.float64) for _ in range(3))
            expected = theirs.step(out, t, x_t, eta=eta, variance_noise=z)
            got = ddim_step(ours, out, x_t, t, t_prev, eta=eta, clip=1.0 if clip else None, noise=z if eta else None)
            torch.testing.assert_close(got.x0, expected.pred_original_sample, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(got.x_prev, expected.prev_sample, rtol=1e-12, atol=1e-12)


def test_stochastic_steps_ask_for_their_noise():
    ours = NoiseSchedule(DiffusionConfig(), dtype=torch.float64)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.raises(ValueError, match="DDPM step above t_prev = -1 is stochastic: give noise"):
        ddpm_step(ours, x, x, 500, 400)
    with pytest.raises(ValueError, match="eta > 0 is stochastic: give noise"):
        ddim_step(ours, x, x, 500, 400, eta=0.5, noise=x[:1])
    last = ddpm_step(ours, x, x, 500, -1)
    torch.testing.assert_close(last.x_prev, last.x0, rtol=0, atol=1e-15)  # the last step lands on x̂0, no noise


def test_a_scheduler_config_reads_into_ours_and_back():
    """diffusers -> ours -> diffusers keeps every setting both sides have; SD 1.x's values fill what is missing."""
    theirs = DDIMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction", timestep_spacing="trailing",
                           clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    cfg = diffusion_config_from_scheduler(dict(theirs.config))
    assert cfg.schedule.beta_schedule == "cosine" and cfg.sampling.spacing == "trailing" and cfg.min_snr_gamma is None
    again = diffusers_ddim(cfg).config
    assert {k: v for k, v in again.items() if not k.startswith("_")} == {k: v for k, v in theirs.config.items()
                                                                        if not k.startswith("_")}
    sd = diffusion_config_from_scheduler({})
    assert (sd.schedule.beta_schedule, sd.sampling.spacing, sd.sampling.steps_offset) == ("scaled_linear", "leading", 1)
