"""One convention each: configs check their fields where they are given, weights are keyed one way,
crop pixels map to [-1, 1] one way."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minitalker.audio import AudioConfig
from minitalker.data.datasets import MelAugment
from minitalker.diffusion.toy import ToyConfig
from minitalker.face_agent import FaceAgentConfig
from minitalker.io import export_weights, model_weights
from minitalker.landmarks.scheme import crop_to_unit, unit_to_crop
from minitalker.nn.landmark_regressor import RegressorConfig
from minitalker.nn.landmark_transformer import LandmarkTransformerConfig
from minitalker.nn.unet import UNetConfig
from minitalker.train.faces import FaceTrainConfig
from minitalker.train.landmark_regressor import Augment, RegressorTrainConfig
from minitalker.train.landmarks import LandmarkTrainConfig
from minitalker.train.loop import TrainConfig

CONFIGS = [AudioConfig, UNetConfig, LandmarkTransformerConfig, RegressorConfig, FaceAgentConfig, ToyConfig,
           TrainConfig, LandmarkTrainConfig, FaceTrainConfig, RegressorTrainConfig]


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("preset", ["fast", "full"])
def test_every_preset_passes_its_own_checks(cls, preset):
    cfg = cls.preset(preset)
    assert cls.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("make, match", [
    (lambda: UNetConfig(widths=(32, 48), norm_groups=32), "norm_groups=32 must divide every width"),
    (lambda: UNetConfig(heads=5), "heads=5 must divide the width of every attention level"),
    (lambda: UNetConfig(dropout=1.5), r"UNetConfig.dropout is a fraction: give a number in \[0, 1\]"),
    (lambda: UNetConfig(token_dim=0), "UNetConfig.token_dim must be > 0"),
    (lambda: LandmarkTransformerConfig(window=20, mel_patch=3), "mel_patch=3 must divide window=20"),
    (lambda: LandmarkTransformerConfig(d_model=64, n_heads=5), "n_heads=5 must divide d_model=64"),
    (lambda: AudioConfig(fmax=9000.0), r"fmax ≤ sample_rate / 2"),
    (lambda: AudioConfig(n_mels=0), "AudioConfig.n_mels must be > 0"),
    (lambda: FaceAgentConfig(mask="full"), r"FaceAgentConfig.mask must be one of \('face', 'half'\)"),
    (lambda: FaceAgentConfig(p_uncond=-0.1), r"FaceAgentConfig.p_uncond is a fraction"),
    (lambda: FaceAgentConfig(guidance_scale=-1.0), "guidance_scale must be ≥ 0"),
    (lambda: RegressorConfig(widths=()), "widths must be one or more positive channel counts"),
    (lambda: TrainConfig(batch_size=0), "TrainConfig.batch_size must be > 0"),
    (lambda: TrainConfig(steps=-1), "TrainConfig.steps must be ≥ 0"),
    (lambda: TrainConfig(lr=1e-4, min_lr=1e-3), "min_lr 0.001 is above lr 0.0001"),
    (lambda: TrainConfig(ema_decay=1.0), r"ema_decay must be in \(0, 1\), e.g. 0.999, or None"),
    (lambda: TrainConfig(eval_every=0), "TrainConfig.eval_every must be > 0"),
    (lambda: TrainConfig(amp="fp8"), "TrainConfig.amp must be one of"),
    (lambda: LandmarkTrainConfig(corpus="medium"), "LandmarkTrainConfig.corpus must be one of"),
    (lambda: LandmarkTrainConfig(rates=(500,)), "espeak-ng speaks 80 to 450"),
    (lambda: LandmarkTrainConfig(teacher_weight=1.5), "LandmarkTrainConfig.teacher_weight is a fraction"),
    (lambda: MelAugment(p_pause=2.0), "MelAugment.p_pause is a fraction"),
    (lambda: MelAugment(band_hz=(6000.0, 3400.0)), "MelAugment.band_hz is a range"),
    (lambda: MelAugment(rt60_s=(0.8, 0.2)), "MelAugment.rt60_s is a range"),
    (lambda: Augment(scale=1.0), "Augment.scale and .gain draw factors 1 ± value"),
    (lambda: ToyConfig(hidden=0), "ToyConfig.hidden must be > 0"),
])
def test_bad_values_fail_where_they_are_given_and_say_what_to_give(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_subclass_may_give_zero_intervals_a_meaning():
    assert LandmarkTrainConfig(eval_every=0, ckpt_every=0).eval_every == 0  # once per epoch
    with pytest.raises(ValueError, match="eval_every must be ≥ 0"):
        LandmarkTrainConfig(eval_every=-1)


def test_weights_are_the_ema_copy_when_there_is_one_and_exports_keep_their_prefix():
    raw, avg = torch.ones(2), torch.full((2,), 0.5)
    tensors = {"model.w": raw, "ema.w": avg, "model.n": torch.tensor(3), "ema.n": torch.tensor(3),
               "optim.0.exp_avg": torch.zeros(2), "trainer.step": torch.tensor(7)}
    assert torch.equal(model_weights(tensors)["w"], avg) and set(model_weights(tensors)) == {"w", "n"}
    assert torch.equal(model_weights(tensors, ema=False)["w"], raw)
    shipped = export_weights(tensors)
    assert set(shipped) == {"ema.w", "ema.n"} and shipped["ema.w"].dtype == torch.float16
    assert shipped["ema.n"].dtype == torch.int64  # integer buffers stay integers
    assert model_weights(shipped)["w"].dtype == torch.float32
    assert set(export_weights({"model.w": raw})) == {"model.w"}  # no EMA: the trained weights, under their name
    with pytest.raises(ValueError, match="no model.\\* or ema.\\* weights"):
        model_weights({"w": raw})


def test_crop_units_put_pixel_centres_at_the_ends_as_grid_sample_with_align_corners():
    S = 8
    assert crop_to_unit(np.float32(0), S) == -1 and crop_to_unit(np.float32(S - 1), S) == 1
    x = np.random.default_rng(0).uniform(0, S - 1, (5, 68, 2)).astype(np.float32)
    np.testing.assert_allclose(unit_to_crop(crop_to_unit(x, S), S), x, atol=1e-5)
    image = torch.zeros(1, 1, S, S)
    image[0, 0, 5, 2] = 1.0  # the pixel at x = 2, y = 5
    where = torch.as_tensor(crop_to_unit(np.float32([[[[2, 5]]]]), S))  # (1, 1, 1, 2)
    assert float(F.grid_sample(image, where, align_corners=True)) == pytest.approx(1.0)
