"""How fast is the corpus renderer? ms per frame of ``render_frames`` at 64 and 128 px, per bundled face.

Per-clip setup (mesh, blurred photo, candidate triangles) is included, spread over a 4 s clip
(100 frames). We report wall time and this process's CPU time: on a shared machine the CPU time is
the fairer number. Also: ms per utterance of ``synthesize`` (a fresh espeak process each).

Writes ``benchmarks/results/render_speed.json`` and prints a table.
Usage: ``python benchmarks/render_speed.py``
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from minitalker.data.faces import FACES, load_face
from minitalker.data.render import render_frames
from minitalker.data.speech import Voice, grid_sentences, synthesize
from minitalker.data.visemes import animate_landmarks, articulate, rest_landmarks
from minitalker.io import write_json
from minitalker.landmarks.scheme import face_box

RESULTS = Path(__file__).parent / "results"


def timed(fn, repeat: int = 3) -> tuple[float, float]:
    """Best-of-``repeat`` (wall s, CPU s) of ``fn()``."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - w, time.process_time() - c))
    return best


def main() -> None:
    texts = grid_sentences(4, seed=0)
    wall, cpu = timed(lambda: [synthesize(t, Voice("en-us")) for t in texts], repeat=1)
    result = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "load_average": os.getloadavg()[0], "synthesize_ms_per_sentence": 1000 * wall / len(texts),
              "render": []}
    speech = synthesize(" ".join(texts[:2]))
    n = 100
    params = articulate(speech.phonemes, n)
    for name in FACES:
        image, lm = load_face(name)
        rest = rest_landmarks(lm)
        lms = animate_landmarks(rest, params, seed=0)
        for size in (64, 128):
            wall, cpu = timed(lambda: render_frames(image, lm, lms, size, face_box(rest)))
            result["render"].append({"face": name, "size": size, "wall_ms_per_frame": 1000 * wall / n,
                                     "cpu_ms_per_frame": 1000 * cpu / n})
    write_json(RESULTS / "render_speed.json", result)
    print(f"synthesize: {result['synthesize_ms_per_sentence']:.0f} ms per sentence (load {result['load_average']:.1f})")
    print(f"{'face':14s} {'size':>4s} {'wall ms/frame':>14s} {'cpu ms/frame':>13s}")
    for r in result["render"]:
        print(f"{r['face']:14s} {r['size']:4d} {r['wall_ms_per_frame']:14.2f} {r['cpu_ms_per_frame']:13.2f}")


if __name__ == "__main__":
    main()
