"""The diffusers route: zero-initialised channels, freezing, latents, both DDIM samplers, loading, bad input.

Everything runs on the tiny stand-in of ``make_tiny_pretrained``, saved and loaded back through the
same ``from_pretrained`` path a Stable Diffusion checkpoint takes; nothing touches the network.
"""

import copy

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel, UNet2DModel
from torch import nn

from minitalker.diffusion.bridge import diffusers_ddim, diffusers_ddim_sample, diffusion_config_from_scheduler
from minitalker.diffusion.samplers import ddim_sample
from minitalker.diffusion.schedule import DiffusionConfig, NoiseSchedule, SamplingConfig
from minitalker.face_agent import FaceAgentConfig, face_masks, generate_frames, make_loss_fn, resize_crop
from minitalker.nn.unet import LandmarkUNet, UNetConfig
from minitalker.pretrained import (
    ExpandedConvIn,
    PretrainedConfig,
    PretrainedLandmarkUNet,
    load_diffusers,
    make_tiny_pretrained,
)
from minitalker.train.loop import TrainConfig, Trainer

POSED = FaceAgentConfig(warp=False, sketch=False)  # what the adapter reads: the reference and the masked target


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny SD-shaped checkpoint (unet/, vae/, scheduler/) written by save_pretrained."""
    return make_tiny_pretrained(tmp_path_factory.mktemp("models") / "tiny")


def fake_batch(B, seed=0, size=64):
    """Random tensors in the format of ``train.faces.make_batch_fn`` (the face agent's batches)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(B, 6, size, size, generator=g) * 2 - 1
    mask = (torch.arange(size) >= size // 2).float()[:, None].expand(B, 1, size, size)  # the lower half
    return {"x0": images[:, :3], "reference": images[:, 3:], "mask": mask, "weight": 1 + 3 * mask,
            "landmarks": torch.rand(B, 68, 2, generator=g) * 1.6 - 0.8,
            "noise": torch.randn(B, 3, size, size, generator=g), "t": torch.randint(0, 1000, (B,), generator=g),
            "drop": torch.arange(B) % 2 == 1}


# -- step 0 behaves like the pre-trained network --------------------------------------------------
def test_zero_initialised_channels_leave_the_pretrained_output_unchanged(tiny):
    unet, vae, _ = load_diffusers(tiny)
    original = copy.deepcopy(unet)
    adapter = PretrainedLandmarkUNet(unet, vae)
    g = torch.Generator().manual_seed(0)
    x, cond = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 8, 16, 16, generator=g)
    ctx = torch.randn(2, 7, 64, generator=g)  # any tokens of the UNet's width
    t = torch.tensor([10, 700])
    with torch.no_grad():
        before = original(x, t, encoder_hidden_states=ctx).sample
        after = adapter.unet(torch.cat([x, cond], 1), t, encoder_hidden_states=ctx).sample
        assert torch.equal(before, after)  # the reference channels add exact zeros
        adapter.unet.conv_in.extra.weight.normal_()  # once trained, they do matter
        assert not torch.allclose(before, adapter.unet(torch.cat([x, cond], 1), t, encoder_hidden_states=ctx).sample)


def test_expanded_conv_in_is_one_convolution_over_the_concatenation():
    base = nn.Conv2d(4, 8, 3, padding=1)
    split = ExpandedConvIn(base, 6)
    nn.init.normal_(split.extra.weight)
    whole = nn.Conv2d(10, 8, 3, padding=1)
    with torch.no_grad():
        whole.weight.copy_(torch.cat([base.weight, split.extra.weight], 1))
        whole.bias.copy_(base.bias)
        x = torch.randn(2, 10, 5, 5)
        torch.testing.assert_close(split(x), whole(x))


# -- fine-tuning touches only what the freeze option says -----------------------------------------
def expected_trainable(adapter, freeze):
    new = {n for n, _ in adapter.named_parameters() if n.startswith(("tokenizer.", "proj.", "unet.conv_in.extra."))}
    cross_kv = {n for n, _ in adapter.named_parameters() if ".attn2.to_k." in n or ".attn2.to_v." in n}
    unet = {n for n, _ in adapter.named_parameters() if n.startswith("unet.")}
    return {"none": new | unet, "all_but_attention": new | cross_kv, "new_only": new}[freeze]


@pytest.mark.parametrize("freeze", ["new_only", "all_but_attention", "none"])
def test_one_finetuning_step_changes_only_the_intended_parameters(tiny, tmp_path, freeze):
    adapter = PretrainedLandmarkUNet.from_pretrained(tiny, PretrainedConfig(freeze=freeze))
    before = {n: p.detach().clone() for n, p in adapter.named_parameters()}
    loss_fn = make_loss_fn(NoiseSchedule(adapter.diffusion_config))
    trainer = Trainer(adapter, TrainConfig(steps=1, batch_size=2, warmup_steps=1), tmp_path,
                      lambda seeds: fake_batch(len(seeds), seeds[0] % 1000), loss_fn)
    trainer.train_step()
    changed = {n for n, p in adapter.named_parameters() if not torch.equal(p, before[n])}
    assert changed == expected_trainable(adapter, freeze)
    assert not any(n.startswith("vae.") for n in changed) and all(not p.requires_grad for p in adapter.vae.parameters())


def test_the_loss_resizes_batches_of_another_size(tiny):
    adapter = PretrainedLandmarkUNet.from_pretrained(tiny, PretrainedConfig(image_size=32))  # e.g. SD at 256 px, corpus at 128
    loss_fn, big = make_loss_fn(NoiseSchedule(adapter.diffusion_config)), fake_batch(2, size=64)
    small = big | {k: nn.functional.interpolate(big[k], size=32, mode="bilinear", antialias=True)
                   for k in ("x0", "reference", "mask", "weight")}
    torch.manual_seed(0)
    loss = loss_fn(adapter, big)["loss"]
    torch.manual_seed(0)
    assert loss.ndim == 0 and loss == loss_fn(adapter, small)["loss"]


# -- latents --------------------------------------------------------------------------------------
def test_latent_encode_decode_shapes(tiny):
    adapter = PretrainedLandmarkUNet.from_pretrained(tiny)
    b = fake_batch(3)
    both = torch.cat([b["reference"], b["x0"]], 1)  # (3, 6, 64, 64): two stacked images
    z, c = adapter.encode(b["x0"]), adapter.encode(both)
    assert z.shape == (3, 4, 16, 16) and c.shape == (3, 8, 16, 16) and adapter.latent_size == 16
    torch.testing.assert_close(c[:, 4:], z)  # stacked images are encoded one by one
    images = adapter.decode(z)
    assert images.shape == (3, 3, 64, 64) and images.min() >= -1 and images.max() <= 1
    assert adapter(torch.randn_like(z), 500, c, b["landmarks"]).shape == z.shape


def test_pixel_mode_needs_no_vae(tmp_path):
    adapter = PretrainedLandmarkUNet.from_pretrained(make_tiny_pretrained(tmp_path / "px", latent=False),
                                                     PretrainedConfig(latent=False, image_size=32))
    b = fake_batch(2, size=32)
    cond = torch.cat([b["reference"], b["x0"]], 1)
    assert adapter.vae is None and torch.equal(adapter.encode(cond), cond)
    assert adapter(b["x0"], 3, cond, b["landmarks"]).shape == (2, 3, 32, 32)


# -- our DDIM and diffusers' DDIMScheduler --------------------------------------------------------
@pytest.mark.parametrize("schedule", ["stable_diffusion", "ours"])
def test_our_ddim_and_diffusers_ddim_give_the_same_samples(tiny, schedule):
    adapter = PretrainedLandmarkUNet.from_pretrained(tiny).eval()
    # SD 1.x's schedule (scaled_linear, eps, leading + offset) and our default (cosine, v, trailing)
    ours_cfg = DiffusionConfig(sampling=SamplingConfig(clip_sample=False))
    cfg = adapter.diffusion_config if schedule == "stable_diffusion" else ours_cfg
    b = fake_batch(2)
    cond = adapter.encode(torch.cat([b["reference"], b["x0"]], 1))
    model = lambda x, t: adapter(x, t, cond, b["landmarks"])  # noqa: E731
    x_T = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    ours = ddim_sample(model, NoiseSchedule(cfg), x_T, steps=8, eta=0.0, prev_rule="diffusers", progress=False)
    theirs = diffusers_ddim_sample(model, diffusers_ddim(cfg), x_T, steps=8)
    assert not torch.allclose(ours, x_T, atol=0.1)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_generated_frames_agree_between_samplers_and_keep_the_reference_outside_the_face_mask(tiny):
    adapter = PretrainedLandmarkUNet.from_pretrained(tiny).eval()
    g = torch.Generator().manual_seed(0)
    reference = torch.randint(0, 256, (64, 64, 3), dtype=torch.uint8, generator=g).numpy()
    ref_lm = (torch.rand(68, 2, generator=g) * 40 + 12).numpy()
    lm = ref_lm[None] + torch.randn(3, 68, 2, generator=g).numpy()
    schedule = NoiseSchedule(adapter.diffusion_config)
    ours = generate_frames(adapter, schedule, reference, ref_lm, lm, POSED, steps=4, guidance=1.5, progress=False)
    theirs = generate_frames(adapter, schedule, reference, ref_lm, lm, POSED, steps=4, guidance=1.5, sampler="diffusers",
                             progress=False)
    assert ours.shape == (3, 64, 64, 3) and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - theirs).max() <= 1  # equal up to rounding to uint8
    painted = face_masks(lm, ref_lm, 64, POSED)[1][:, 0].numpy() > 0  # (3, 64, 64)
    reference3 = np.repeat(reference[None], 3, 0)
    assert (ours[~painted] == reference3[~painted]).all() and not (ours[painted] == reference3[painted]).all()
    fitted = resize_crop(reference[::2, ::2].copy(), (ref_lm + 0.5) / 2 - 0.5, (lm + 0.5) / 2 - 0.5, 64)
    small = generate_frames(adapter, schedule, *fitted, POSED, steps=2, progress=False)
    assert small.shape == (3, 64, 64, 3)  # a smaller reference is resized to the model's size
    np.testing.assert_allclose(fitted[1], ref_lm, atol=1e-5)  # its landmarks move along (pixel centres)


# -- one face agent for both denoisers -------------------------------------------------------------
def test_the_face_agents_loss_and_sampler_run_our_unet_and_the_adapter_alike(tiny):
    """The same make_loss_fn and generate_frames serve our pixel UNet and the latent adapter (the Denoiser interface)."""
    torch.manual_seed(0)
    ours = LandmarkUNet(UNetConfig(image_size=64, widths=(16, 32), cross_attn_levels=(1,), self_attn_levels=(),
                                   token_dim=32, heads=2, norm_groups=8, cond_channels=POSED.cond_channels)).eval()
    adapter = PretrainedLandmarkUNet.from_pretrained(tiny).eval()
    g = torch.Generator().manual_seed(0)
    reference = torch.randint(0, 256, (64, 64, 3), dtype=torch.uint8, generator=g).numpy()
    ref_lm = (torch.rand(68, 2, generator=g) * 40 + 12).numpy()
    lm = ref_lm[None] + torch.randn(2, 68, 2, generator=g).numpy()
    for model, config in [(ours, DiffusionConfig()), (adapter, adapter.diffusion_config)]:
        schedule = NoiseSchedule(config)
        loss = make_loss_fn(schedule)(model, fake_batch(2))["loss"]
        assert loss.ndim == 0 and torch.isfinite(loss) and loss.requires_grad
        frames = generate_frames(model, schedule, reference, ref_lm, lm, POSED, steps=2, progress=False)
        assert frames.shape == (2, 64, 64, 3) and frames.dtype == np.uint8
        assert model.encode(fake_batch(1)["x0"]).shape == (1, model.channels, model.latent_size, model.latent_size)
        with pytest.raises(ValueError, match=f"reads {model.cond_channels} condition channels but the agent config makes 10"):
            generate_frames(model, schedule, reference, ref_lm, lm, FaceAgentConfig(), steps=2, progress=False)
    assert torch.equal(ours.encode(fake_batch(1)["x0"]), fake_batch(1)["x0"])  # pixels: encode is the identity


# -- loading --------------------------------------------------------------------------------------
def test_from_pretrained_loads_what_save_pretrained_wrote(tiny):
    adapter = PretrainedLandmarkUNet.from_pretrained(tiny)
    saved = UNet2DConditionModel.from_pretrained(tiny / "unet").state_dict()
    mine = {k.replace("conv_in.base.", "conv_in."): v for k, v in adapter.unet.state_dict().items()
            if not k.startswith("conv_in.extra.")}
    assert mine.keys() == saved.keys() and all(torch.equal(mine[k], saved[k]) for k in saved)
    assert adapter.diffusion_config == diffusion_config_from_scheduler({})  # scheduler/ of SD 1.x
    assert adapter.diffusion_config.schedule.beta_schedule == "scaled_linear"
    assert adapter.diffusion_config.schedule.prediction_type == "epsilon"


def test_the_tiny_default_is_built_once_and_a_finetuned_adapter_reloads_from_its_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("MINITALKER_CACHE", str(tmp_path))
    adapter = PretrainedLandmarkUNet.from_pretrained()  # cfg.model None: the tiny stand-in, built in the cache
    assert (tmp_path / "pretrained-tiny" / "unet" / "config.json").exists() and adapter.vae is not None
    with pytest.raises(FileExistsError, match="delete it first"):
        make_tiny_pretrained(tmp_path / "pretrained-tiny")
    trainer = Trainer(adapter, TrainConfig(steps=1, batch_size=2, warmup_steps=1), tmp_path / "run",
                      lambda seeds: fake_batch(len(seeds)), make_loss_fn(NoiseSchedule(adapter.diffusion_config)),
                      model_config=adapter.cfg.to_dict())
    trainer.fit()
    again, fresh = PretrainedLandmarkUNet.from_checkpoint(tmp_path / "run" / "last"), PretrainedLandmarkUNet.from_pretrained()
    trained, reloaded, base = adapter.state_dict(), again.state_dict(), fresh.state_dict()
    assert all(torch.equal(trained[k], reloaded[k]) for k in trained)
    assert not all(torch.equal(trained[k], base[k]) for k in trained)  # the step did change something


def test_presets():
    full = PretrainedConfig.full()
    assert full.model and full.cross_attention_dim == 768 and full.latent and full.image_size % 8 == 0
    assert PretrainedConfig.fast().model is None
    assert PretrainedConfig.from_dict(full.to_dict()) == full
    with pytest.raises(ValueError, match="freeze must be one of"):
        PretrainedConfig(freeze="attention")


# -- bad input ------------------------------------------------------------------------------------
def test_missing_or_incomplete_folders_say_what_is_expected(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        PretrainedLandmarkUNet.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="unet/config.json is missing.*diffusers layout"):
        PretrainedLandmarkUNet.from_pretrained(tmp_path / "empty")
    bare = tmp_path / "bare"
    UNet2DConditionModel.from_pretrained(tiny / "unet").save_pretrained(bare)
    with pytest.raises(FileNotFoundError, match="bare model folder: move its files into unet/"):
        PretrainedLandmarkUNet.from_pretrained(bare)
    no_weights = tmp_path / "no_weights" / "unet"
    no_weights.mkdir(parents=True)
    (no_weights / "config.json").write_text((tiny / "unet" / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no weights"):
        PretrainedLandmarkUNet.from_pretrained(no_weights.parent, PretrainedConfig(latent=False))
    no_vae = tmp_path / "no_vae"
    UNet2DConditionModel.from_pretrained(tiny / "unet").save_pretrained(no_vae / "unet")
    with pytest.raises(FileNotFoundError, match="vae/config.json is missing"):
        PretrainedLandmarkUNet.from_pretrained(no_vae)


def test_unets_without_cross_attention_are_refused(tiny, tmp_path):
    plain = UNet2DModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 32), norm_num_groups=8,
                        down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2, layers_per_block=1)
    plain.save_pretrained(tmp_path / "plain" / "unet")
    with pytest.raises(TypeError, match="UNet2DModel, which has no cross-attention"):
        PretrainedLandmarkUNet.from_pretrained(tmp_path / "plain", PretrainedConfig(latent=False))
    with pytest.raises(TypeError, match="UNet2DModel has no cross-attention"):
        PretrainedLandmarkUNet(plain, None, PretrainedConfig(latent=False))
    no_attn = UNet2DConditionModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 32),
                                   norm_num_groups=8, down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2,
                                   mid_block_type=None, layers_per_block=1)
    with pytest.raises(ValueError, match="no cross-attention layers"):
        PretrainedLandmarkUNet(no_attn, None, PretrainedConfig(latent=False))


def test_a_cross_attention_width_that_does_not_match_names_the_fix(tiny):
    with pytest.raises(ValueError, match=r"cross_attention_dim is 64 but the config expects 768.*cross_attention_dim=64"):
        PretrainedLandmarkUNet.from_pretrained(tiny, PretrainedConfig(cross_attention_dim=768))
    unet, vae, _ = load_diffusers(tiny)
    with pytest.raises(ValueError, match="latent=True needs the VAE"):
        PretrainedLandmarkUNet(unet, None)
    with pytest.raises(ValueError, match="pixel mode .* needs a UNet on 3 channels"):
        PretrainedLandmarkUNet(unet, None, PretrainedConfig(latent=False))


def test_an_uncached_hub_id_offline_says_what_to_download():
    with pytest.raises(OSError, match=r"not in the Hugging Face cache.*HF_HUB_OFFLINE.*hf download minitalker-tests/absent"):
        PretrainedLandmarkUNet.from_pretrained("minitalker-tests/absent")


def test_forward_checks_the_conditioning_shape(tiny):
    adapter = PretrainedLandmarkUNet.from_pretrained(tiny)
    x = torch.randn(2, 4, 16, 16)
    with pytest.raises(ValueError, match=r"cond must be \(2, 8, 16, 16\)"):
        adapter(x, 10, torch.randn(2, 4, 16, 16), None)
    with pytest.raises(ValueError, match=r"x_t must be \(B, 4, h, w\) latents"):
        adapter(torch.randn(2, 3, 64, 64), 10, None, None)
