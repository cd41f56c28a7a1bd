"""Long speech end to end: wall time and peak memory of ``minitalker generate`` for N seconds of speech.

Speech: the CMU ARCTIC sentence shipped with pysptk (4 s), repeated to N seconds; photo: Grace Hopper
(600x512), so every frame is pasted back at the photo's resolution. The real command runs in a
subprocess; its peak RSS is what ``wait4`` reports for it (the largest resident set of the command,
or of a child it waited for: the Python process, not ffmpeg, is the larger). Targets (issue 12): peak RSS < 1 GB whatever the
length, and wall time linear in it (flat seconds per second of video).

Writes ``benchmarks/results/long_audio.json`` (or ``--json``) and prints a table.
Usage: ``python benchmarks/long_audio.py [--seconds 15 60] [--steps N]`` (default: 60 s, the checkpoint's steps)
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from minitalker.audio import SAMPLE_RATE, load_audio, n_video_frames
from minitalker.io import write_json

RESULTS = Path(__file__).parent / "results"


def long_speech(seconds: float) -> np.ndarray:
    """The ARCTIC sentence repeated, cut to ``seconds`` → ``(N,)`` float32 at 16 kHz."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pysptk imports pkg_resources
        import pysptk
    sentence = load_audio(pysptk.util.example_audio_file())
    n = round(seconds * SAMPLE_RATE)
    return np.tile(sentence, -(-n // len(sentence)))[:n]


def run_once(seconds: float, steps: int | None, folder: Path) -> dict:
    """One ``minitalker generate`` of ``seconds`` of speech in a fresh process → its row of results."""
    import imageio.v3 as iio
    import soundfile as sf

    from minitalker.data.faces import load_face

    wav = long_speech(seconds)
    sf.write(folder / "speech.wav", wav, SAMPLE_RATE)
    iio.imwrite(folder / "face.png", load_face("grace_hopper")[0])
    cmd = [sys.executable, "-m", "minitalker.cli", "generate", "--audio", str(folder / "speech.wav"),
           "--face", str(folder / "face.png"), "--out", str(folder / f"talk_{seconds:g}s.mp4")]
    cmd += ["--steps", str(steps)] if steps else []
    start = time.perf_counter()
    _, status, usage = os.wait4(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: run it by hand to see why")
    peak_mb = usage.ru_maxrss / 1024  # KiB on Linux
    return {"seconds": seconds, "frames": n_video_frames(len(wav)), "steps": steps or "checkpoint default",
            "wall_s": wall, "wall_s_per_video_s": wall / seconds, "peak_rss_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[60.0], help="lengths of speech to time")
    parser.add_argument("--steps", type=int, help="DDIM steps (default: the checkpoint's)")
    parser.add_argument("--json", type=Path, default=RESULTS / "long_audio.json", help="where to write the results")
    args = parser.parse_args()
    result = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_average": os.getloadavg()[0], "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.seconds:
            result["runs"].append(run_once(seconds, args.steps, Path(tmp)))
    write_json(args.json, result)
    print(f"load average {result['load_average']:.1f}, OMP_NUM_THREADS={result['omp_num_threads']}")
    print(f"{'speech s':>8s} {'frames':>6s} {'steps':>6s} {'wall s':>7s} {'s per video s':>13s} {'peak RSS MB':>11s}")
    for r in result["runs"]:
        print(f"{r['seconds']:8g} {r['frames']:6d} {str(r['steps']):>6s} {r['wall_s']:7.1f} "
              f"{r['wall_s_per_video_s']:13.2f} {r['peak_rss_mb']:11.0f}")


if __name__ == "__main__":
    main()
