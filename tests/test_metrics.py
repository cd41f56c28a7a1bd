import dataclasses

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from minitalker import metrics as M
from minitalker.landmarks.scheme import MOUTH, mouth_error
from minitalker.nn.landmark_regressor import RegressorConfig, load_landmark_regressor
from minitalker.train.landmark_regressor import (
    Augment,
    RegressorTrainConfig,
    save_regressor,
    train_landmark_regressor,
    warp,
)


def random_frames(*shape, seed=0, lo=0, hi=256):
    return np.random.default_rng(seed).integers(lo, hi, shape, dtype=np.uint8)


def face(seed=0):
    """68 random points in a 64 px crop, outer eye corners 24 px apart, mouth points in x 22–42, y 40–50."""
    rng = np.random.default_rng(seed)
    lm = rng.uniform(10, 54, (68, 2)).astype(np.float32)
    lm[36], lm[45] = (20, 24), (44, 24)
    lm[MOUTH] = rng.uniform((22, 40), (42, 50), (20, 2))
    return lm


# ---------------------------------------------------------------------------------- PSNR, SSIM

def test_psnr_known_values():
    a = random_frames(3, 16, 16, 3, lo=20, hi=230)
    assert (M.psnr(a, a) == M.PSNR_CAP).all()
    offset = (a.astype(np.int16) + 10).astype(np.uint8)  # MSE exactly 100
    np.testing.assert_allclose(M.psnr(a, offset), 10 * np.log10(255**2 / 100), rtol=1e-12)
    assert M.psnr(a, offset).shape == (3,) and M.psnr(a[0], offset[0]).shape == ()
    x = np.full((8, 8, 3), 0.5)  # floats with their own range
    np.testing.assert_allclose(M.psnr(x, x + 0.1, data_range=1.0), 20.0)


def test_ssim_matches_skimage():
    a = random_frames(4, 40, 33, 3, seed=1)
    noise = np.random.default_rng(2).normal(0, 25, a.shape)
    b = np.clip(a * 0.7 + 40 + noise, 0, 255).astype(np.uint8)
    ours = M.ssim(a, b)
    ref = [structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 channel_axis=-1, data_range=255) for x, y in zip(a, b)]
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    np.testing.assert_allclose(M.ssim(a, a), 1.0)
    np.testing.assert_allclose(M.gaussian_window().sum(), 1.0)


def test_region_scores_only_the_box():
    a = random_frames(2, 32, 32, 3)
    b = a.copy()
    b[:, :, :10] = 0  # damage outside the box only
    box = (12, 8, 28, 24)
    assert (M.psnr(a, b, region=box) == M.PSNR_CAP).all()
    np.testing.assert_allclose(M.ssim(a, b, region=box), 1.0)
    b[:, 10:20, 15:25] //= 2  # now inside too: same as scoring the cropped arrays
    np.testing.assert_allclose(M.psnr(a, b, region=box), M.psnr(a[:, 8:24, 12:28], b[:, 8:24, 12:28]))
    np.testing.assert_allclose(M.ssim(a, b, region=box), M.ssim(a[:, 8:24, 12:28], b[:, 8:24, 12:28]))
    with pytest.raises(ValueError, match="does not fit"):
        M.psnr(a, b, region=(20, 0, 40, 10))


def test_mouth_box_is_square_inside_the_frame_and_holds_the_mouth():
    lm = np.stack([face(s) for s in range(5)])  # (5, 68, 2)
    x0, y0, x1, y1 = M.mouth_box(lm, 64, margin=0.25)
    assert x1 - x0 == y1 - y0 >= 16 and 0 <= x0 and 0 <= y0 and x1 <= 64 and y1 <= 64
    pts = lm[:, MOUTH].reshape(-1, 2)
    assert (pts[:, 0] >= x0).all() and (pts[:, 0] < x1).all() and (pts[:, 1] >= y0).all() and (pts[:, 1] < y1).all()
    low = lm.copy()
    low[:, MOUTH, 1] += 12  # mouth near the bottom edge: the box moves up, it does not shrink
    bx0, by0, bx1, by1 = M.mouth_box(low, 64, margin=0.25)
    assert by1 == 64 and bx1 - bx0 == x1 - x0
    assert M.mouth_box(face(), 64) == M.mouth_box(face()[None], 64)


# ------------------------------------------------------------------------------------- jitter

def test_jitter_zero_for_still_and_linear_motion_positive_for_noise():
    lm = face()
    still = np.repeat(lm[None], 10, 0)
    assert M.landmark_jitter(still) == 0.0
    linear = lm + np.arange(10, dtype=np.float32)[:, None, None] * np.float32([0.5, -0.25])
    assert M.landmark_jitter(linear) == pytest.approx(0.0, abs=1e-6)
    noisy = still + np.random.default_rng(0).normal(0, 0.5, still.shape).astype(np.float32)
    j = M.landmark_jitter(noisy)
    assert j > 0.01
    assert M.landmark_jitter(noisy * 3) == pytest.approx(j, rel=1e-5)  # a fraction of the eye distance
    assert M.jitter_ratio(noisy, noisy) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="T >= 3"):
        M.landmark_jitter(still[:2])


# ----------------------------------------------------------------------------------- Fréchet, FID

def test_frechet_distance_known_values():
    mu, cov = np.array([1.0, -2.0, 0.5]), np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]])
    assert M.frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-9)
    # 1-D: N(0, 1) vs N(1, 4): (0 - 1)² + 1 + 4 - 2·√4 = 2
    assert M.frechet_distance(np.array([0.0]), np.array([[1.0]]), np.array([1.0]), np.array([[4.0]])) == pytest.approx(2.0)
    # singular covariances (fewer samples than dimensions) still give a finite number
    feats = np.random.default_rng(0).normal(size=(3, 5))
    assert np.isfinite(M.frechet_distance(feats.mean(0), np.cov(feats, rowvar=False), feats.mean(0) + 1, np.cov(feats, rowvar=False)))
    with pytest.raises(ValueError, match="covariances"):
        M.frechet_distance(mu, cov, mu[:2], cov[:2, :2])


class ChannelStats(torch.nn.Module):
    """A stand-in for the Inception file with its calling convention: channel means and deviations / 255."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1) / 255


def test_fid_refuses_to_run_without_a_local_inception_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MINITALKER_CACHE", str(tmp_path))
    frames = random_frames(4, 16, 16, 3)
    with pytest.raises(FileNotFoundError, match="inception-2015-12-05.pt") as err:
        M.fid(frames, frames)
    assert str(tmp_path) in str(err.value) and "nvlabs-fi-cdn.nvidia.com" in str(err.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        M.fid(frames, frames, inception_path=tmp_path / "elsewhere.pt")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_fid_with_a_scripted_feature_extractor(tmp_path, monkeypatch):
    monkeypatch.setenv("MINITALKER_CACHE", str(tmp_path))
    torch.jit.script(ChannelStats()).save(str(tmp_path / M.INCEPTION_FILE))  # found in $MINITALKER_CACHE
    real = random_frames(12, 20, 20, 3, lo=50, hi=150)
    assert M.fid(real, real) == pytest.approx(0.0, abs=1e-6)
    brighter = real + np.uint8(40)  # shifts each channel mean by 40/255, leaves the deviations alone
    assert M.fid(real, brighter) == pytest.approx(3 * (40 / 255) ** 2, rel=1e-4)


# -------------------------------------------------------------------------------- bad inputs

def test_bad_inputs_give_clear_errors():
    a = random_frames(2, 16, 16, 3)
    with pytest.raises(ValueError, match="same shape"):
        M.psnr(a, a[:, :15])
    with pytest.raises(ValueError, match="data_range=255"):
        M.psnr(a, a, data_range=1.0)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        M.ssim(a / 127.5 - 1, a / 127.5 - 1, data_range=2.0)
    with pytest.raises(TypeError, match="uint8 or float"):
        M.psnr(a.astype(np.int32), a.astype(np.int32))
    with pytest.raises(ValueError, match="at least 11x11"):
        M.ssim(a[:, :8, :8], a[:, :8, :8])
    with pytest.raises(ValueError, match="68, 2"):
        M.mouth_box(np.zeros((20, 2)), 64)
    lm = np.repeat(face()[None], 2, 0)
    with pytest.raises(ValueError, match="one per frame"):
        M.evaluate_frames(random_frames(3, 32, 32, 3), random_frames(3, 32, 32, 3), lm)
    with pytest.raises(ValueError, match="square frames"):
        M.measure_landmarks(np.zeros((2, 32, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="pass reference="):
        M.measure_landmarks(np.zeros((2, 32, 32, 3), np.uint8))


# ------------------------------------------------------------------- the regressor and evaluate

@pytest.fixture(scope="module")
def regressor(tiny_corpus, tmp_path_factory):
    """A narrow regressor trained for a few seconds on the tiny corpus (32 px, 80 training frames).

    On one thread: a model this small gains nothing from a second one, and on a busy machine two
    threads wait on each other (measured here: 5 s on one thread, 110 s on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = RegressorConfig(widths=(8, 16, 32), hidden=64)
    train = dataclasses.replace(RegressorTrainConfig.fast(), steps=150, batch_size=16, lr=3e-3, warmup_steps=10)
    augment = Augment(scale=0.05, rotate=0, shift=1, jitter=0.5)  # little data, few steps: gentle changes
    try:
        yield train_landmark_regressor(tiny_corpus, cfg, train, tmp_path_factory.mktemp("run"), augment)
    finally:
        torch.set_num_threads(threads)


def test_augmenting_warp_moves_the_landmarks_with_the_image():
    """A quarter turn plus a shift: the bright pixel lands where the moved landmark says (crop units)."""
    from minitalker.landmarks.scheme import crop_to_unit, unit_to_crop

    S, px = 16, 2 / 15  # one pixel in [-1, 1] units
    image = torch.zeros(1, 1, S, S)
    image[0, 0, 6, 9] = 1.0  # x = 9, y = 6
    lm = torch.as_tensor(crop_to_unit(np.tile(np.float32([9, 6]), (1, 68, 1)), S))  # (1, 68, 2)
    theta = torch.tensor([[[0.0, -1.0, 2 * px], [1.0, 0.0, -px]]])  # output p reads input at A p + t
    out, moved = warp(image, lm, theta)
    y, x = divmod(int(out.flatten().argmax()), S)
    assert float(out.max()) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(unit_to_crop(moved[0, 0].numpy(), S), [x, y], atol=1e-4)


def test_regressor_beats_copying_the_reference_on_held_out_frames(regressor):
    _, report = regressor
    assert report["val_mouth_error"] < 0.8 * report["val_copy_reference"], report


def test_regressor_checkpoint_round_trip(regressor, tiny_corpus, tmp_path):
    model, _ = regressor
    save_regressor(model, tmp_path / "reg", {"note": "test"})
    loaded = load_landmark_regressor(32, tmp_path / "reg")
    clip = tiny_corpus.split("val")[0]
    ref = clip.reference()
    np.testing.assert_allclose(loaded.predict(clip.frames, *ref), model.predict(clip.frames, *ref), atol=1e-3)
    with pytest.raises(ValueError, match="reads 32px crops"):
        load_landmark_regressor(64, tmp_path / "reg")
    with pytest.raises(FileNotFoundError, match="minitalker train regressor"):
        load_landmark_regressor(32, tmp_path / "missing")
    with pytest.raises(ValueError, match="reads \\(32x32\\) crops"):
        loaded.predict(random_frames(2, 64, 64, 3), *ref)


def test_evaluate_frames_truth_against_itself_and_against_the_copied_reference(regressor, tiny_corpus):
    model, _ = regressor
    clip = tiny_corpus.split("val")[0]
    truth, lm = clip.frames, clip.landmarks
    perfect = M.evaluate_frames(truth, truth, lm, clip.reference(), model)
    assert perfect["landmarks_by"] == "regressor"
    assert perfect["psnr"] == perfect["mouth_psnr"] == M.PSNR_CAP and perfect["ssim"] == pytest.approx(1.0)
    assert perfect["lmd"] == perfect["lmd_floor"] and perfect["jitter_ratio"] == pytest.approx(1.0)
    ref_frame, ref_lm = clip.reference()
    copied = M.evaluate_frames(np.repeat(ref_frame[None], len(truth), 0), truth, lm, (ref_frame, ref_lm), model)
    assert copied["mouth_psnr"] < M.PSNR_CAP and copied["lmd"] > perfect["lmd"]
    assert copied["lmd"] == pytest.approx(mouth_error(np.repeat(ref_lm[None], len(lm), 0), lm).mean(), abs=0.05)


def test_measure_landmarks_uses_dlib_at_128_pixels():
    from minitalker.data.faces import load_face
    from minitalker.video import aligned_crops

    img, lm = load_face("astronaut")
    crops, lm_crop = aligned_crops(np.repeat(img[None], 3, 0), np.repeat(lm[None], 3, 0), 128, smooth=0)
    scores = M.evaluate_frames(crops, crops, lm_crop)
    assert scores["landmarks_by"] == "dlib" and scores["lmd_floor"] < 0.05 and scores["jitter"] == 0.0


def test_shipped_regressor_reads_a_64px_face_it_never_saw():
    """The shipped checkpoint, on Grace Hopper's photo (held out of its training) against a shifted copy."""
    from minitalker.data.faces import load_face
    from minitalker.video import aligned_crops

    img, lm = load_face("grace_hopper")
    crops, lm_crop = aligned_crops(np.repeat(img[None], 2, 0), np.repeat(lm[None], 2, 0), 64, smooth=0)
    frame, truth = np.roll(crops[1], (1, -1), axis=(0, 1)), lm_crop[1] + np.float32([-1, 1])  # 1 px down and left
    landmarks, method = M.measure_landmarks(frame[None], reference=(crops[0], lm_crop[0]))
    assert method == "regressor" and landmarks.shape == (1, 68, 2)
    copied = mouth_error(lm_crop[:1], truth[None])[0]  # 1.4 px over an 18 px eye distance: 0.079
    assert mouth_error(landmarks, truth[None])[0] < copied / 2  # measured: 0.025
