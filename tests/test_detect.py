import numpy as np
import pytest
import torch

from minitalker.data.faces import carphone_video, load_face, load_image
from minitalker.landmarks import detect as D
from minitalker.landmarks.detect import Detection, NoFaceError, detect_landmarks


@pytest.fixture(scope="module")
def carphone():
    frames, _ = carphone_video()
    return frames, detect_landmarks(frames)


def assert_plausible_face(lm):
    """Anatomy a correct iBUG-68 fit must respect, in image coordinates (y down)."""
    eyes_y, nose_y, mouth_y, chin_y = lm[36:48, 1].mean(), lm[30, 1], lm[48:68, 1].mean(), lm[8, 1]
    assert lm[17:27, 1].mean() < eyes_y < nose_y < mouth_y < chin_y
    assert lm[36:42, 0].mean() < lm[27:36, 0].mean() < lm[42:48, 0].mean()  # subject's right eye on the image left
    assert lm[48, 0] < lm[54, 0] and lm[0, 0] < lm[16, 0]
    assert D.N_POINTS == 68 and np.linalg.norm(lm[45] - lm[36]) > 20


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_dlib_finds_the_shipped_landmarks_on_real_photos(name):
    image, shipped = load_face(name)
    det = detect_landmarks(image, backend="dlib")
    assert det.landmarks.shape == (1, 68, 2) and det.landmarks.dtype == np.float32 and det.found.all()
    assert_plausible_face(det.landmarks[0])
    assert np.abs(det.landmarks[0] - shipped).max() < 3  # same detector, same image: within a few pixels


def test_dlib_tracks_the_face_through_the_carphone_clip(carphone):
    frames, det = carphone
    assert det.landmarks.shape == (120, 68, 2) and det.found.mean() >= 0.95
    assert np.isfinite(det.landmarks).all()
    for lm in det.landmarks[det.found][::10]:
        assert_plausible_face(lm)
    step = np.linalg.norm(np.diff(det.landmarks[:, 30], axis=0), axis=-1)  # nose tip, frame to frame
    assert np.median(step) < 3  # a tracked face moves a little per frame, it does not jump


def test_missing_frames_are_interpolated_from_their_neighbours(carphone):
    frames, full = carphone
    clip = frames[:20].copy()
    clip[[0, 8, 9, 10]] = 128  # flat grey: no face there
    det = detect_landmarks(clip)
    expect_missing = np.zeros(20, bool)
    expect_missing[[0, 8, 9, 10]] = True
    np.testing.assert_array_equal(det.found, ~expect_missing & full.found[:20])
    lm = det.landmarks
    np.testing.assert_allclose(lm[0], lm[1])  # edge: nearest found frame
    np.testing.assert_allclose(lm[9], (lm[7] + lm[11]) / 2, atol=1e-4)  # midway between frames 7 and 11
    np.testing.assert_allclose(lm[8], 0.75 * lm[7] + 0.25 * lm[11], atol=1e-4)
    assert np.abs(lm[8:11] - full.landmarks[8:11]).mean() < 4  # the head moved little: close to the truth
    assert "interpolated frames 0, 8-10" in det.report()


def test_fill_gaps_is_linear_in_time():
    lm = np.zeros((6, 68, 2), np.float32)
    lm[:, :, 0] = np.arange(6)[:, None] * 2.0  # x moves 2 px a frame
    found = np.array([False, True, False, False, True, False])
    filled = D.fill_gaps(np.where(found[:, None, None], lm, np.nan), found)
    np.testing.assert_allclose(filled[1:5, 0, 0], [2, 4, 6, 8])
    np.testing.assert_allclose(filled[[0, 5], 0, 0], [2, 8])  # ends copy the nearest found frame
    with pytest.raises(NoFaceError):
        D.fill_gaps(lm, np.zeros(6, bool))


def test_smoothing_removes_jitter_but_keeps_the_shape(carphone):
    _, det = carphone
    lm = det.landmarks
    smooth = D.smooth_landmarks(lm, sigma=1.0)
    jitter = lambda x: np.abs(np.diff(x, 2, axis=0)).mean()  # noqa: E731 (second difference in time)
    assert smooth.shape == lm.shape and jitter(smooth) < 0.5 * jitter(lm)
    assert np.abs(smooth - lm).mean() < 2
    assert D.smooth_landmarks(lm, 0.0) is lm


@pytest.mark.parametrize("image, hint", [(np.full((200, 200, 3), 128, np.uint8), "upscale it"),
                                         ("coffee", "frontal, well-lit"),
                                         (np.full((3000, 4000, 3), 128, np.uint8), "shrunk to 1024 px a side")])
def test_an_image_without_a_face_raises_a_clear_error_whose_hint_fits_its_size(image, hint):
    if isinstance(image, str):
        from skimage import data

        image = data.coffee()
    with pytest.raises(NoFaceError, match=f"no face found in the image .*HOG and CNN.* — .*{hint}"):
        detect_landmarks(image)
    assert issubclass(NoFaceError, ValueError)


def test_a_large_photo_is_searched_shrunk_and_fitted_at_full_size(monkeypatch):
    from PIL import Image

    small = load_image("astronaut")  # 512 px
    big = np.asarray(Image.fromarray(small).resize((4096, 4096), Image.BICUBIC))  # 16 MP, the face ~1000 px wide
    seen = []
    real = D.shrink
    monkeypatch.setattr(D, "shrink", lambda img, side: seen.append(real(img, side)[0].shape) or real(img, side))
    det = detect_landmarks(big)
    assert seen == [(1024, 1024, 3)]  # HOG searched 1 MP, not 16 (nor 64 upsampled)
    ref = detect_landmarks(small).landmarks[0]
    assert np.abs(det.landmarks[0] - ((ref + 0.5) * 8 - 0.5)).mean() < 8  # the same face, fitted in full-size pixels


def test_the_cnn_stops_looking_in_a_video_where_it_never_finds_a_face(monkeypatch):
    hog, mmod, predictor = D._dlib_models()
    looks = []
    monkeypatch.setattr(D, "_dlib_models", lambda: (hog, lambda img, up: looks.append(up) or mmod(img, up), predictor))
    with pytest.raises(NoFaceError, match="any of the 12 frames"):
        detect_landmarks(np.full((12, 64, 64, 3), 128, np.uint8))
    assert looks == [1] * D.CNN_PATIENCE  # small frames: upsampled once


def degrade(frame: np.ndarray, quality: int = 5) -> np.ndarray:
    """A frame as a low-bitrate stream leaves it: JPEG at ``quality`` (blocking, smeared colour and edges)."""
    import imageio.v3 as iio

    return iio.imread(iio.imwrite("<bytes>", frame, extension=".jpg", quality=quality))


def test_the_cnn_detector_finds_what_hog_misses_and_gaps_are_interpolated(carphone):
    frames, clean = carphone
    clip = np.stack([frames[0]] + [degrade(f) for f in frames[10:40:10]])  # one clean frame, three degraded
    with pytest.raises(NoFaceError):
        detect_landmarks(clip[1:], cnn=False)  # HOG alone sees no face in any degraded frame
    det = detect_landmarks(clip)
    assert det.source.tolist() == ["hog", "cnn", "", "cnn"]  # frame 2 defeats both: interpolated
    np.testing.assert_array_equal(det.found, [True, True, False, True])
    truth = clean.landmarks[[0, 10, 20, 30]]
    assert np.abs(det.landmarks[[1, 3]] - truth[[1, 3]]).mean() < 4  # the predictor fits well in the CNN's box
    np.testing.assert_allclose(det.landmarks[2], (det.landmarks[1] + det.landmarks[3]) / 2, atol=1e-4)
    assert det.report() == ("dlib: a face in 3 of 4 frames; by the CNN detector (HOG found none) in frames 1, 3; "
                            "interpolated frames 2")


def test_a_video_without_any_face_raises_a_clear_error():
    with pytest.raises(NoFaceError, match="any of the 3 frames"):
        detect_landmarks(np.zeros((3, 64, 64, 3), np.uint8))


def test_rgba_and_grey_images_work():
    rgb = load_image("astronaut")
    ref = detect_landmarks(rgb).landmarks
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1)
    np.testing.assert_array_equal(detect_landmarks(rgba).landmarks, ref)  # alpha is dropped
    grey = np.round(rgb @ [0.299, 0.587, 0.114]).astype(np.uint8)  # (H, W)
    assert np.abs(detect_landmarks(grey).landmarks - ref).mean() < 2


def test_input_shapes_and_types():
    assert D.as_rgb_frames(np.zeros((5, 7), np.uint8)).shape == (1, 5, 7, 3)
    assert D.as_rgb_frames(np.zeros((4, 5, 7), np.uint8)).shape == (4, 5, 7, 3)
    assert D.as_rgb_frames(np.zeros((4, 5, 7, 1), np.uint8)).shape == (4, 5, 7, 3)
    with pytest.raises(TypeError, match="uint8"):
        D.as_rgb_frames(np.zeros((5, 7, 3)))
    with pytest.raises(ValueError, match="expected an image"):
        D.as_rgb_frames(np.zeros((2, 3, 5, 7, 3), np.uint8))
    with pytest.raises(ValueError, match="unknown backend"):
        detect_landmarks(np.zeros((5, 7), np.uint8), backend="opencv")


def test_choose_face_prefers_largest_then_score_then_the_tracked_one():
    boxes = np.array([[0, 0, 50, 50, 0.1], [100, 100, 190, 190, 0.2], [300, 0, 390, 90, 0.9]], np.float32)
    assert D.choose_face(boxes) == 2  # boxes 1 and 2 tie in size; 2 scores higher
    assert D.choose_face(boxes[:2]) == 1
    assert D.choose_face(boxes, previous=np.array([5, 5, 55, 55, 1.0])) == 0  # in a video: nearest to last frame


def test_detection_report():
    det = Detection(np.zeros((6, 68, 2), np.float32), np.array([1, 1, 0, 0, 1, 0], bool),
                    np.array([1, 2, 0, 0, 1, 0]), "dlib")
    assert det.report() == "dlib: a face in 3 of 6 frames; interpolated frames 2-3, 5; several faces (kept one) in frames 1"
    assert str(det) == det.report() and len(det) == 6


# ----------------------------------------------------------------------- face_alignment backend

@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty TORCH_HOME, a fresh model cache, and any download attempt turned into a failure."""
    import face_alignment.utils
    import torch.hub

    def no_download(url, *args, **kwargs):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(face_alignment.utils, "download_url_to_file", no_download)
    D._face_alignment_model.cache_clear()
    yield tmp_path / "hub" / "checkpoints"
    D._face_alignment_model.cache_clear()


def test_face_alignment_without_weights_says_what_to_fetch_and_where(torch_home):
    with pytest.raises(FileNotFoundError) as err:
        detect_landmarks(np.zeros((64, 64, 3), np.uint8), backend="face_alignment", device="cpu")
    msg = str(err.value)
    for name, (url, path) in D.face_alignment_weights().items():
        assert name in msg and url in msg and path.parent == torch_home
    assert "s3fd-619a316812.pth" in msg and "2DFAN4-11f355bf06.pth.tar" in msg
    assert str(torch_home) in msg and "backend='dlib'" in msg


def stand_in_weights(net: torch.nn.Module, values: dict[str, list[float]]) -> dict[str, torch.Tensor]:
    """A state dict with the right names and shapes, all zeros but ``values``; stride-0 tensors keep the file tiny."""
    sd = {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in net.state_dict().items()}
    return sd | {k: torch.tensor(v) for k, v in values.items()}


def test_face_alignment_loads_local_weights_without_downloading(torch_home, monkeypatch):
    """Build S3FD + 2D-FAN from stand-in files in TORCH_HOME, then run the whole backend on one image.

    The stand-in S3FD says "face" only at its coarsest level (stride 128), so a 128×128 image yields
    exactly one box; the all-zero FAN yields 68 (degenerate) points. We check the plumbing, not accuracy.
    """
    import face_alignment.utils as fa_utils
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    with torch.device("meta"):  # shapes only, no memory
        fan, sfd = FAN(4), s3fd()
    background = {f"{n}_mbox_conf.bias": [10.0, 0.0] for n in ("conv4_3_norm", "fc7", "conv5_3_norm", "conv6_2")}
    faces = {"conv3_3_norm_mbox_conf.bias": [10.0, 10.0, 10.0, 0.0], "conv7_2_mbox_conf.bias": [0.0, 10.0]}
    torch_home.mkdir(parents=True)
    torch.save(stand_in_weights(sfd, background | faces), torch_home / "s3fd-619a316812.pth")
    torch.save(stand_in_weights(fan, {"l3.bias": [0.5] * 68}), torch_home / "2DFAN4-11f355bf06.pth.tar")

    model = D._face_alignment_model("cpu")
    assert model is D._face_alignment_model("cpu")  # built once, then cached
    assert model.face_detector.face_detector.conv7_2_mbox_conf.bias.tolist() == [0.0, 10.0]  # our files were read
    assert (model.face_alignment_net.l3.bias == 0.5).all() and not model.face_alignment_net.l3.weight.any()
    # The loaded FAN outputs its constant l3 bias; a stub doing the same spares two 256² passes (seconds on 2 cores).
    monkeypatch.setattr(model, "face_alignment_net", lambda x: torch.full((len(x), 68, 64, 64), 0.5))
    # face-alignment numba-compiles two helpers on first call (~15 s on 2 cores): run their Python versions
    monkeypatch.setattr(fa_utils, "_get_preds_fromhm", fa_utils._get_preds_fromhm.py_func)
    monkeypatch.setattr(fa_utils, "transform_np", fa_utils.transform_np.py_func)

    det = detect_landmarks(np.full((128, 128), 100, np.uint8), backend="face_alignment", device="cpu")
    assert det.backend == "face_alignment" and det.landmarks.shape == (1, 68, 2)
    assert det.found.all() and det.n_faces.tolist() == [1] and np.isfinite(det.landmarks).all()
