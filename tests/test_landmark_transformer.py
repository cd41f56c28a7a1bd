"""Agent 1's network on synthetic tensors: shapes, pass-through, clip mode, gradients, bad input, loading."""

import dataclasses

import numpy as np
import pytest
import torch

from minitalker.io import save_checkpoint
from minitalker.nn.landmark_transformer import (
    HIDDEN,
    VISIBLE,
    LandmarkCompletionTransformer,
    LandmarkTransformerConfig,
    model_from_checkpoint,
    predict_landmarks,
)

CFG = dataclasses.replace(LandmarkTransformerConfig.fast(), d_model=32, n_layers=2, clip_frames=8)


def inputs(B=2, T=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, 20, 80, generator=g) * 4 - 7, torch.randn(B, 68, 2, generator=g) * 0.3


def face_pixels():
    """A plausible face in pixels: the canonical mean shape, scaled, rotated and moved."""
    rng = np.random.default_rng(0)
    lm = rng.normal(0, 0.3, (68, 2)).astype(np.float32)
    lm[36], lm[45] = (-0.5, 0), (0.5, 0)
    return lm


def test_shapes_and_visible_points_pass_through_exactly():
    torch.manual_seed(0)
    model = LandmarkCompletionTransformer(CFG)
    mel, ref = inputs()
    out = model(mel, ref)
    assert out.shape == (2, 8, 68, 2) and len(HIDDEN) == 31 and len(VISIBLE) == 37
    assert torch.equal(out[:, :, VISIBLE], ref[:, None, VISIBLE].expand(-1, 8, -1, -1))
    assert not torch.allclose(out[:, :, HIDDEN], ref[:, None, HIDDEN])
    # the hidden reference points are masked inputs: moving them only moves the anchor of the answer
    ref2 = ref.clone()
    ref2[:, HIDDEN] += 1.0
    torch.testing.assert_close(model(mel, ref2)[:, :, HIDDEN], out[:, :, HIDDEN] + 1.0)


def test_clip_mode_attends_over_time_and_frame_mode_does_not():
    torch.manual_seed(0)
    clip = LandmarkCompletionTransformer(CFG).eval()
    mel, ref = inputs()
    mel2 = mel.clone()
    mel2[:, 0] += 3.0  # change the audio of frame 0 only
    assert not torch.allclose(clip(mel, ref)[:, 5], clip(mel2, ref)[:, 5])  # frame 5 hears it
    frame = LandmarkCompletionTransformer(dataclasses.replace(CFG, clip_frames=1)).eval()
    assert not hasattr(frame.blocks[0], "time_attn") or frame.blocks[0].time_attn is None
    one = torch.cat([frame(mel[:, t:t + 1], ref) for t in range(8)], 1)  # frame by frame
    seq = frame.predict_sequence(mel[0].numpy(), ref[0].numpy())
    np.testing.assert_allclose(seq, one[0].detach().numpy(), atol=1e-5)


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = LandmarkCompletionTransformer(CFG)
    mel, ref = inputs()
    model(mel, ref)[:, :, HIDDEN].square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_predict_sequence_any_length_and_cross_fade():
    torch.manual_seed(0)
    model = LandmarkCompletionTransformer(CFG).eval()
    mel, ref = inputs(B=1, T=8)
    direct = model(mel, ref)[0].detach().numpy()
    np.testing.assert_allclose(model.predict_sequence(mel[0].numpy(), ref[0].numpy()), direct, atol=1e-5)
    with torch.no_grad():  # the reference's tokens, encoded once by the caller (as predict_sequence does)
        assert torch.equal(model(mel, ref, model.encode_reference(ref)), model(mel, ref))
        assert not torch.allclose(model(mel, ref, model.encode_reference(-ref)), model(mel, ref))
    long = torch.randn(50, 20, 80) * 4 - 7
    out = model.predict_sequence(long.numpy(), ref[0].numpy())  # 50 frames in overlapping clips of 8
    assert out.shape == (50, 68, 2) and np.isfinite(out).all()
    batched = model.predict_sequence(long.numpy(), ref[0].numpy(), batch=1)
    np.testing.assert_allclose(batched, out, atol=1e-5)  # batching is only speed
    assert model.predict_sequence(long[:3].numpy(), ref[0].numpy()).shape == (3, 68, 2)
    # 53 frames: clips start at 0, 7, ..., 42 and one more at 45, which ends at the last frame (no padding)
    tail = model(long[None, 45:53], ref[:1])[0].detach().numpy()
    np.testing.assert_allclose(model.predict_sequence(long[:53].numpy(), ref[0].numpy())[50:], tail[5:], atol=1e-5)


def test_bad_inputs_are_clear_errors():
    model = LandmarkCompletionTransformer(CFG)
    mel, ref = inputs()
    with pytest.raises(ValueError, match="mel must be"):
        model(mel[..., :40], ref)
    with pytest.raises(ValueError, match="clip_frames=8"):
        model(torch.cat([mel, mel], 1), ref)
    with pytest.raises(ValueError, match="reference must be"):
        model(mel, ref[:, :60])
    face = face_pixels() * 50 + 100
    with pytest.raises(ValueError, match="too short"):
        predict_landmarks(model, np.zeros(1000, np.float32), face)  # 62 ms < one 200 ms window
    with pytest.raises(ValueError, match="68, 2"):
        predict_landmarks(model, np.zeros(16000, np.float32), face[:67])
    bad = face.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        predict_landmarks(model, np.zeros(16000, np.float32), bad)
    with pytest.raises(ValueError, match="mono"):
        predict_landmarks(model, np.zeros((16000, 2), np.float32), face)


def test_predict_landmarks_works_in_the_reference_pixel_frame():
    """Moving, scaling and rotating the reference photo moves the prediction the same way."""
    torch.manual_seed(0)
    model = LandmarkCompletionTransformer(CFG).eval()
    wav = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)  # 1 s → 25 frames
    face = face_pixels()
    a, s, t = 0.3, 80.0, np.array([200.0, 150.0], np.float32)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], np.float32)
    face2 = face @ rot.T * s + t
    p1, p2 = predict_landmarks(model, wav, face), predict_landmarks(model, wav, face2)
    assert p1.shape == (25, 68, 2)
    np.testing.assert_allclose(p2[:, VISIBLE], np.broadcast_to(face2[VISIBLE], (25, 37, 2)), atol=1e-3)
    np.testing.assert_allclose(p2, p1 @ rot.T * s + t, atol=1e-2)  # pixels: 1e-2 of 80 px eye distance


def test_checkpoint_with_another_config_is_refused(tmp_path):
    model = LandmarkCompletionTransformer(CFG)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    save_checkpoint(tmp_path / "ck", tensors, {"model_class": "LandmarkCompletionTransformer", "model_config": CFG.to_dict()})
    loaded = model_from_checkpoint(tmp_path / "ck", config=CFG)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    with pytest.raises(ValueError, match=r"another LandmarkTransformerConfig.*d_model"):
        model_from_checkpoint(tmp_path / "ck", config=dataclasses.replace(CFG, d_model=64))
    old = {k.replace(".attn.", ".frame_attn."): v for k, v in tensors.items()}  # the earlier layout's names
    save_checkpoint(tmp_path / "old", old, {"model_class": "LandmarkCompletionTransformer", "model_config": CFG.to_dict()})
    with pytest.raises(ValueError, match="another LandmarkCompletionTransformer layout.*retrain"):
        model_from_checkpoint(tmp_path / "old")
    save_checkpoint(tmp_path / "unet", tensors, {"model_class": "LandmarkUNet", "model_config": CFG.to_dict()})
    with pytest.raises(ValueError, match="neither agent's weights, not those of agent 1"):
        model_from_checkpoint(tmp_path / "unet")
    with pytest.raises(FileNotFoundError, match="train one"):
        model_from_checkpoint(tmp_path / "missing")


def test_linear_path_starts_as_the_given_linear_model():
    """init_linear(w, mx, my): with the transformer's head silenced, the model is y = (x - mx) w + my."""
    torch.manual_seed(0)
    model = LandmarkCompletionTransformer(CFG).eval()
    rng = np.random.default_rng(0)
    w = rng.normal(0, 1e-3, (20 * 80, 62)).astype(np.float32)
    mx, my = rng.normal(-8, 1, 20 * 80).astype(np.float32), rng.normal(0, 0.01, 62).astype(np.float32)
    model.init_linear(w, mx, my)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    mel, ref = inputs()
    out = model(mel, ref).detach().numpy()
    expect = ((mel.numpy().reshape(2, 8, -1) - mx) @ w + my).reshape(2, 8, 31, 2) + ref.numpy()[:, None, HIDDEN]
    np.testing.assert_allclose(out[:, :, HIDDEN], expect, atol=1e-5)
    with pytest.raises(ValueError, match="no linear path"):
        LandmarkCompletionTransformer(dataclasses.replace(CFG, linear_path=False)).init_linear(w, mx, my)
