"""First principles on a 2-D toy: a small MLP trained for seconds learns to sample two moons."""

import pytest
import torch

from minitalker.diffusion.samplers import ddim_sample, ddpm_sample
from minitalker.diffusion.toy import ToyConfig, ToyDenoiser, distance_to_data, energy_distance, train_toy, two_moons


@pytest.fixture(scope="module")
def trained():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is faster than two busy ones on a shared 2-core box
    model, schedule, losses = train_toy(ToyConfig.fast())
    yield model, schedule, losses
    torch.set_num_threads(threads)


def test_energy_distance():
    g = torch.Generator().manual_seed(0)
    a, b = two_moons(800, generator=g), two_moons(800, generator=g)
    assert abs(energy_distance(a, b)) < 5e-3  # same distribution: ~0 (unbiased)
    assert energy_distance(a, b + 0.5) > 0.1  # shifted: clearly positive
    assert energy_distance(a, b + 0.5) == pytest.approx(energy_distance(b + 0.5, a))
    with pytest.raises(ValueError, match="point clouds"):
        energy_distance(a, b[:, :1])


def test_training_lowers_the_held_out_loss(trained):
    """At high noise most of the loss is irreducible (x_t says little about x0), so we look at t in [100, 300),
    where x_t still pins x0 to a short stretch of the moons, and compare with an untrained net and with v = 0."""
    model, schedule, _ = trained
    g = torch.Generator().manual_seed(5)
    x0, noise, t = two_moons(4000, generator=g), torch.randn(4000, 2, generator=g), torch.randint(100, 300, (4000,), generator=g)
    x_t = schedule.q_sample(x0, t, noise)
    with torch.no_grad():
        trained_loss = schedule.diffusion_loss(model(x_t, t), x0, noise, t)
        untrained_loss = schedule.diffusion_loss(ToyDenoiser(ToyConfig.fast())(x_t, t), x0, noise, t)
    zero_loss = schedule.diffusion_loss(torch.zeros_like(x0), x0, noise, t)
    assert trained_loss < 0.8 * min(untrained_loss, zero_loss)
    assert ToyConfig.from_dict(ToyConfig.fast().to_dict()) == ToyConfig.fast()


def test_trained_samples_match_the_data(trained):
    """Two measures: the energy distance (whole distributions) and the mean distance from a sample to the
    nearest data point (do samples lie on the moons, or in a blob around them?)."""
    model, schedule, _ = trained
    g = torch.Generator().manual_seed(123)
    data, dense = two_moons(1000, generator=g), two_moons(5000, generator=g)
    x_T = torch.randn(1000, 2, generator=g)
    on_moons = lambda x: distance_to_data(x, dense)
    untrained = ddim_sample(ToyDenoiser(ToyConfig.fast()), schedule, x_T, steps=20, progress=False)
    ed_base = min(energy_distance(x_T, data), energy_distance(untrained, data))
    nn_base = min(on_moons(x_T), on_moons(untrained))
    ddpm = ddpm_sample(model, schedule, x_T, generator=torch.Generator().manual_seed(1), progress=False)
    ddim = ddim_sample(model, schedule, x_T, steps=20, progress=False)
    for x in (ddpm, ddim):
        assert energy_distance(x, data) < ed_base / 10
        assert on_moons(x) < nn_base / 5
    assert energy_distance(ddim, data) < energy_distance(ddim_sample(model, schedule, x_T, steps=2, progress=False), data)
