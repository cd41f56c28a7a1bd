"""Tests of minitalker.nn: layers, landmark tokenizer and the cross-attention UNet."""

import copy

import pytest
import torch

from minitalker.nn.layers import CrossAttention, SpatialTransformer, attention, cell_centres, timestep_embedding
from minitalker.nn.tokenizer import LandmarkTokenizer
from minitalker.nn.unet import LandmarkUNet, UNetConfig, mean_attention

TINY = dict(image_size=32, widths=(16, 32), cross_attn_levels=(1,), self_attn_levels=(1,), token_dim=32, heads=2,
            norm_groups=8)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: a second intra-op thread buys little and, on a shared 2-core
    machine, turns every small op into a wait at an OpenMP barrier (10x slower when loaded)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(**kw) -> LandmarkUNet:
    torch.manual_seed(0)
    return LandmarkUNet(UNetConfig(**{**TINY, **kw}))


def inputs(B=2, size=32, cond_channels=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    return dict(x_t=torch.randn(B, 3, size, size, generator=g), t=torch.randint(0, 1000, (B,), generator=g),
                cond=torch.randn(B, cond_channels, size, size, generator=g),
                landmarks=torch.rand(B, 68, 2, generator=g) * 2 - 1)


def trained_like(model: LandmarkUNet) -> LandmarkUNet:
    """Perturb every weight: zero-initialised output layers otherwise hide the condition at init."""
    torch.manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def test_timestep_embedding():
    e = timestep_embedding(torch.tensor([0, 10, 999]), 32)
    assert e.shape == (3, 32)
    assert torch.allclose(e[0], torch.cat([torch.ones(16), torch.zeros(16)]))  # cos(0) = 1, sin(0) = 0
    assert not torch.allclose(e[1], e[2])


def test_fast_preset_shapes():
    model = LandmarkUNet(UNetConfig.fast())
    out = model(**inputs(B=2, size=64))
    assert out.shape == (2, 3, 64, 64)
    assert torch.all(out == 0)  # zero-initialised final conv: the model starts by predicting 0
    assert UNetConfig.from_dict(UNetConfig.full().to_dict()) == UNetConfig.full()


def test_tiny_shapes_attention_maps_and_rectangular_input():
    model = trained_like(tiny())
    x = inputs(B=3)
    out, maps = model(**x, return_attention=True)
    assert out.shape == (3, 3, 32, 32)
    assert set(maps) == {"down1.0", "mid", "up1.0", "up1.1"}
    for m in maps.values():
        assert m.shape == (3, 2, 16, 16, 68)  # (B, heads, h, w, tokens)
        assert torch.allclose(m.sum(-1), torch.ones(()), atol=1e-5)  # a distribution over the 68 tokens
    assert mean_attention(maps, (32, 32)).shape == (3, 68, 32, 32)
    assert torch.allclose(out, model(**x), atol=1e-5)  # explicit-softmax path == fused SDPA path
    half = {k: v[..., 16:, :] if v.ndim == 4 else v for k, v in x.items()}  # the lower half only: 16 x 32
    out, maps = model(**half, return_attention=True)
    assert out.shape == (3, 3, 16, 32) and maps["mid"].shape == (3, 2, 8, 16, 68)


def test_sdpa_equals_explicit_attention():
    q, k, v = torch.randn(2, 50, 32), torch.randn(2, 68, 32), torch.randn(2, 68, 32)
    fused, none = attention(q, k, v, heads=4)
    explicit, probs = attention(q, k, v, heads=4, return_probs=True)
    assert none is None and probs.shape == (2, 4, 50, 68)
    assert torch.allclose(fused, explicit, atol=1e-5)
    assert torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-6)


def test_cross_attention_is_invariant_to_token_order():
    torch.manual_seed(0)
    attn = CrossAttention(32, heads=4, context_dim=24)
    x, ctx = torch.randn(2, 40, 32), torch.randn(2, 68, 24)
    perm = torch.randperm(68)
    assert torch.allclose(attn(x, ctx), attn(x, ctx[:, perm]), atol=1e-5)


def test_unet_is_a_set_function_of_index_position_pairs():
    """Relabelling the points (permuting landmarks and point-index embeddings together) changes nothing."""
    model = trained_like(tiny())
    x = inputs()
    perm = torch.randperm(68, generator=torch.Generator().manual_seed(3))
    relabelled = copy.deepcopy(model)
    with torch.no_grad():
        relabelled.tokenizer.point_embed.copy_(model.tokenizer.point_embed[perm])
    out = model(**x)
    assert torch.allclose(out, relabelled(**{**x, "landmarks": x["landmarks"][:, perm]}), atol=1e-5)
    # ... while moving positions between points (without their indices) does change the output
    assert not torch.allclose(out, model(**{**x, "landmarks": x["landmarks"][:, perm]}), atol=1e-4)


def test_gradients_reach_the_tokenizer():
    model = trained_like(tiny())
    drop = torch.tensor([True, False])
    model(**inputs(), drop=drop).square().mean().backward()
    tok = model.tokenizer
    for name, p in [("mlp", tok.mlp[0].weight), ("point_embed", tok.point_embed), ("null_tokens", tok.null_tokens)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    model.zero_grad()
    model(**inputs()).square().mean().backward()  # nothing dropped: the null tokens are unused
    assert tok.null_tokens.grad is None or tok.null_tokens.grad.abs().sum() == 0


def test_dropping_all_rows_is_the_null_condition():
    model = trained_like(tiny())
    a, b = inputs(seed=1), inputs(seed=5)
    b = {**a, "landmarks": b["landmarks"]}
    all_dropped = torch.ones(2, dtype=torch.bool)
    null = model(**{**a, "landmarks": None})
    assert torch.allclose(model(**a, drop=all_dropped), null, atol=1e-6)
    assert torch.allclose(model(**b, drop=all_dropped), null, atol=1e-6)
    assert not torch.allclose(model(**a), null, atol=1e-4)
    one = model(**a, drop=torch.tensor([True, False]))  # rows are independent
    assert torch.allclose(one[0], null[0], atol=1e-5) and torch.allclose(one[1], model(**a)[1], atol=1e-5)


def test_classifier_free_guidance_with_the_null_tokens():
    from minitalker.diffusion.samplers import guided

    model = trained_like(tiny())
    x = inputs()
    c = {"cond": x["cond"], "landmarks": x["landmarks"], "drop": torch.zeros(2, dtype=torch.bool)}
    null = {**c, "drop": torch.ones(2, dtype=torch.bool)}
    out_c, out_u = model(**x), model(**{**x, "landmarks": None})
    for scale, want in [(1.0, out_c), (0.0, out_u), (3.0, out_u + 3 * (out_c - out_u))]:
        assert torch.allclose(guided(model, c, null, scale)(x["x_t"], x["t"]), want, atol=1e-4), scale


def test_tokenizer_null_rows():
    tok = LandmarkTokenizer(16)
    lm = torch.rand(3, 68, 2) * 2 - 1
    out = tok(lm, drop=torch.tensor([False, True, False]))
    assert out.shape == (3, 68, 16)
    assert torch.equal(out[1], tok.null_tokens) and torch.equal(out[0], tok(lm)[0])


def test_channels_last_does_not_change_results():
    model = trained_like(tiny())
    plain = LandmarkUNet(UNetConfig(**{**TINY, "channels_last": False}))
    plain.load_state_dict(model.state_dict())
    x = inputs()
    assert torch.allclose(model(**x), plain(**x), atol=1e-5)


def test_one_batch_overfit():
    """A fixed batch of 4 noisy 32x32 images: 60 Adam steps cut the eps-prediction loss at least 10x."""
    model = tiny(dropout=0.0)
    x = inputs(B=4)
    target = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(60):
        loss = (model(**x) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


@pytest.mark.parametrize("change, match", [
    (dict(x_t=torch.randn(2, 4, 32, 32)), "x_t must be"),
    (dict(x_t=torch.randn(2, 3, 31, 31), cond=torch.randn(2, 6, 31, 31)), "divisible by 2"),
    (dict(cond=torch.randn(2, 3, 32, 32)), "cond must be"),
    (dict(cond=None), "cond must be"),
    (dict(landmarks=torch.rand(2, 68, 3)), r"landmarks must be a \(B, 68, 2\)"),
    (dict(landmarks=torch.rand(2, 5, 2)), r"landmarks must be a \(B, 68, 2\)"),
    (dict(landmarks=torch.rand(3, 68, 2)), "batch size"),
    (dict(landmarks=torch.full((2, 68, 2), float("nan"))), "NaN"),
    (dict(landmarks=torch.ones(2, 68, 2, dtype=torch.long)), "floating point"),
    (dict(t=torch.zeros(3)), "t must be"),
    (dict(drop=torch.tensor([1, 0])), "drop must be a bool"),
])
def test_bad_inputs(change, match):
    with pytest.raises(ValueError, match=match):
        tiny()(**{**inputs(), **change})


@pytest.mark.parametrize("kw, match", [
    (dict(image_size=33), "image_size=33 must be divisible"),
    (dict(norm_groups=6), "norm_groups=6 must divide"),
    (dict(heads=3), "heads=3 must divide"),
    (dict(cross_attn_levels=(2,)), r"cross_attn_levels \[2\] out of range"),
])
def test_bad_configs(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kw)


def test_cell_centres_use_the_landmark_token_convention():
    from minitalker.face_agent import landmark_tokens_input

    c = cell_centres(4, 4, factor=8)  # a 4x4 level of a 32x32 image
    assert c.shape == (16, 2)
    centre = landmark_tokens_input(torch.full((1, 68, 2), 8 + 3.5).numpy(), 32)[0, 0]  # cell (1, 1) covers px 8..15
    torch.testing.assert_close(c[1 * 4 + 1], centre)
    torch.testing.assert_close(cell_centres(32, 32, 1)[[0, -1]], torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))


def test_grounded_queries_let_a_featureless_pixel_find_the_token_at_its_place():
    """With identical features everywhere, only a grounded query can attend differently by position."""
    torch.manual_seed(0)
    flat = torch.zeros(1, 16, 8, 8)  # no image content at all
    tokens = torch.randn(1, 68, 32)
    for grounded in (False, True):
        block = SpatialTransformer(16, 32, heads=2, groups=8, self_attn=False, grounded=grounded)
        _, probs = block(flat, tokens, return_attention=True, factor=4)  # (1, heads, 8, 8, 68)
        spread = (probs - probs.mean((2, 3), keepdim=True)).abs().max()
        assert (spread > 1e-3) == grounded
