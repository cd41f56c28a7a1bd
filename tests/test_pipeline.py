"""The end-to-end route with the shipped fast checkpoints: photo + speech → mp4, the demo, bad input."""

import warnings

import av
import numpy as np
import pytest

from minitalker.cli import build_parser, main
from minitalker.data.faces import load_face
from minitalker.landmarks.detect import NoFaceError
from minitalker.landmarks.scheme import mouth_opening
from minitalker.pipeline import TalkingFacePipeline, load_photo
from minitalker.video import read_video


@pytest.fixture(scope="module")
def pipe():
    return TalkingFacePipeline.from_checkpoints(device="cpu")


@pytest.fixture(scope="module")
def arctic():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pysptk imports pkg_resources
        import pysptk
    from minitalker.audio import load_audio

    return load_audio(pysptk.util.example_audio_file())[:16000]  # 1 s of real speech (CMU ARCTIC)


def streams(path):
    with av.open(str(path)) as f:
        return len(f.streams.video), len(f.streams.audio), sum(1 for _ in f.decode(video=0))


def test_real_photo_and_real_speech_make_a_talking_face(pipe, arctic, tmp_path):
    photo, _ = load_face("grace_hopper")  # a real photo of the identity held out of training
    result = pipe(arctic, photo, steps=3, seed=0, progress=False)
    assert result.frames.shape == (25, 64, 64, 3) and result.frames.dtype == np.uint8
    assert result.landmarks.shape == (25, 68, 2)
    assert np.ptp(mouth_opening(result.landmarks)) > 0.02, "the mouth moves with the speech"
    out = result.save(tmp_path / "talk.mp4")
    assert streams(out) == (1, 1, 25)
    video, _ = read_video(out)  # pasted back into the photo, at its resolution
    assert video.shape == (25, 600, 512, 3)
    assert np.abs(video[:, :40].astype(float) - photo[:40]).mean() < 3  # above the face: the photo itself
    assert result.masks.shape == (25, 64, 64) and result.masks.max() == 1 and result.masks[:, 0].max() == 0
    assert read_video(result.save(tmp_path / "crop.mp4", crop=True))[0].shape == (25, 256, 256, 3)


def test_grey_and_rgba_photos_work(pipe):
    photo, _ = load_face("astronaut")
    rgba = np.concatenate([photo, np.full(photo.shape[:2] + (1,), 255, np.uint8)], -1)
    grey = photo.mean(-1).astype(np.uint8)
    crop_rgb, lm_rgb, *_ = pipe.prepare_face(photo)
    for img in (rgba, grey):
        crop, lm, rgb, box = pipe.prepare_face(img)
        assert rgb.shape == photo.shape and np.abs(box - pipe.prepare_face(photo).box).max() < 3
        assert crop.shape == (64, 64, 3)
        assert np.abs(lm - lm_rgb).max() < 3  # the same face is found


def test_photo_errors_say_what_to_do(pipe, tmp_path):
    with pytest.raises(ValueError, match="at least 64 px"):
        load_photo(np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(NoFaceError, match="no face found"):
        pipe.prepare_face(np.full((200, 200, 3), 128, np.uint8))
    with pytest.raises(FileNotFoundError, match="no photo"):
        load_photo(tmp_path / "missing.jpg")
    with pytest.raises(ValueError, match="exactly one of"):
        pipe(np.zeros(16000, np.float32))


def test_a_face_at_the_border_is_pasted_back_and_a_crop_alone_saves_the_crop(pipe, arctic, tmp_path):
    photo = load_face("grace_hopper")[0][110:]  # the head cut at the brows: the crop box reaches 64 px past the top
    face = pipe.prepare_face(photo)
    assert face.box[1] - face.box[2] / 2 < 0
    result = pipe(arctic[:6400], photo, steps=1, progress=False)
    assert read_video(result.save(tmp_path / "border.mp4"))[0].shape == (10, 490, 512, 3)
    alone = pipe(arctic[:6400], reference=(face.crop, face.landmarks), steps=1, progress=False)
    assert alone.photo is None  # nothing to paste into: save() writes the crops, enlarged 4x
    assert read_video(alone.save(tmp_path / "alone.mp4"))[0].shape == (10, 256, 256, 3)


def test_silence_keeps_the_mouth_at_rest(pipe):
    """Silence is no error: the mouth keeps the photo's own resting shape (it does not move)."""
    photo, _ = load_face("grace_hopper")
    result = pipe(np.zeros(16000, np.float32), photo, steps=2, progress=False)
    assert len(result.frames) == 25
    opening = mouth_opening(result.landmarks)
    assert np.ptp(opening) < 0.01 and abs(opening.mean() - mouth_opening(result.reference_landmarks)) < 0.02


def test_generate_command_and_missing_output_folder(arctic, tmp_path, capsys):
    import soundfile as sf
    from imageio.v3 import imwrite

    sf.write(tmp_path / "speech.wav", arctic, 16000)
    imwrite(tmp_path / "face.png", load_face("grace_hopper")[0])
    args = ["generate", "--audio", str(tmp_path / "speech.wav"), "--face", str(tmp_path / "face.png"), "--steps", "2"]
    main(args + ["--out", str(tmp_path / "out.mp4")])
    assert streams(tmp_path / "out.mp4")[:2] == (1, 1) and "25 frames" in capsys.readouterr().out
    assert read_video(tmp_path / "out.mp4")[0].shape == (25, 600, 512, 3)  # the photo's size; --crop: the crop's
    assert build_parser().parse_args(args + ["--out", "x.mp4", "--crop"]).crop
    with pytest.raises(SystemExit) as exit:
        main(args + ["--out", str(tmp_path / "no" / "such" / "out.mp4")])
    assert exit.value.code == 1 and "create it first (mkdir -p" in capsys.readouterr().err


def test_write_streams_each_batch_to_the_encoder(pipe, arctic, tmp_path, monkeypatch):
    """``write`` makes the video of ``pipe(...).save`` without holding the clip: the encoder has the first
    batch's frames before the second batch is sampled."""
    import minitalker.pipeline as P

    photo = load_face("grace_hopper")[0]
    made, seen = [], []  # batches sampled so far; that count as each frame reaches the encoder
    sample, encode = P.iter_frames, P.write_video

    def counted(*args, **kwargs):
        for batch in sample(*args, **kwargs):
            made.append(len(batch))
            yield batch

    def watched(path, frames, *args):
        return encode(path, (seen.append(len(made)) or f for f in frames), *args)

    monkeypatch.setattr(P, "iter_frames", counted)
    monkeypatch.setattr(P, "write_video", watched)
    pipe.write(tmp_path / "streamed.mp4", arctic, photo, steps=1, batch_size=8, progress=False)
    assert made == [8, 8, 8, 1] and seen == [1] * 8 + [2] * 8 + [3] * 8 + [4]
    whole = pipe(arctic, photo, steps=1, progress=False).save(tmp_path / "whole.mp4")
    a, b = read_video(tmp_path / "streamed.mp4")[0], read_video(whole)[0]
    assert a.shape == b.shape == (25, 600, 512, 3) and np.abs(a.astype(int) - b).max() <= 2  # the same video


def test_an_encoder_that_stops_closes_the_sampler(pipe, arctic, tmp_path, monkeypatch):
    """Ctrl-C while a frame goes to the encoder: the suspended sampler (and its progress bar) is closed
    as ``write`` unwinds, not at interpreter exit after the CLI's last line."""
    import minitalker.pipeline as P

    closed, sample = [], P.iter_frames

    def watched(*args, **kwargs):
        try:
            yield from sample(*args, **kwargs)
        finally:
            closed.append(True)

    def stopped(path, frames, *args):
        next(iter(frames))
        raise KeyboardInterrupt

    monkeypatch.setattr(P, "iter_frames", watched)
    monkeypatch.setattr(P, "write_video", stopped)
    with pytest.raises(KeyboardInterrupt) as interrupt:  # holds the traceback, and with it write's frame
        pipe.write(tmp_path / "x.mp4", arctic, load_face("grace_hopper")[0], steps=1, batch_size=8, progress=False)
    assert interrupt.value.__traceback__ is not None and closed == [True]


def test_demo_writes_the_video_and_figures(tmp_path, capsys):
    main(["demo", "--preset", "fast", "--out", str(tmp_path / "demo"), "--steps", "2"])
    v, a, n = streams(tmp_path / "demo" / "talking_face.mp4")
    assert (v, a) == (1, 1) and n > 10
    assert read_video(tmp_path / "demo" / "talking_photo.mp4")[0].shape == (n, 600, 512, 3)  # Grace Hopper's photo
    for name in ("overview.png", "corpus_overview.png"):
        assert (tmp_path / "demo" / name).read_bytes()[:4] == b"\x89PNG"
    assert "wrote video" in capsys.readouterr().out
