"""How fast does agent 1 turn speech into landmarks on CPU? (target: at least 100× real time at 25 fps)

Two numbers for a few audio lengths, best of ``--repeats`` runs each:

* **model**: ``predict_sequence`` on precomputed mel windows (the transformer, chunking and cross-fade);
* **end to end**: ``predict_landmarks`` from the waveform (front end + model + denormalise; with the
  phonetic front end, ``--checkpoint`` of a model trained with it, that includes phone recognition).

The input is noise-like speech-band audio: speed does not depend on what is said. Uses the shipped
fast checkpoint when present (or ``--checkpoint``), otherwise a fresh model of the same configuration.
Writes ``benchmarks/results/landmark_inference[_<checkpoint name>].json`` and prints a table.
Each is measured with 1 and with all torch threads (on a busy machine, one thread is often faster:
threads that wait for a core spin instead of working). Load average is recorded with the result.
Usage: ``python benchmarks/landmark_inference.py [--preset fast|full] [--checkpoint PATH] [--threads 1 2]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from minitalker.audio import audio_features
from minitalker.io import suffixed, write_json
from minitalker.nn.landmark_transformer import (
    SHIPPED,
    LandmarkCompletionTransformer,
    LandmarkTransformerConfig,
    load_landmark_model,
    predict_landmarks,
)

RESULTS = Path(__file__).parent / "results"
FPS = 25


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast", choices=("fast", "full"))
    parser.add_argument("--checkpoint", help="an agent-1 checkpoint to time instead of the shipped one")
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, torch.get_num_threads()}))
    parser.add_argument("--repeats", type=int, default=10)  # a 2 s clip takes ~20 ms: few repeats are noisy
    args = parser.parse_args()
    shipped = args.checkpoint or (args.preset == "fast" and suffixed(SHIPPED, ".json").exists())
    model = (load_landmark_model(args.checkpoint) if shipped
             else LandmarkCompletionTransformer(LandmarkTransformerConfig.preset(args.preset)).eval())
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 0.3, (68, 2)).astype(np.float32) * 60 + 100
    reference[36], reference[45] = (70, 100), (130, 100)
    result = {"preset": args.preset, "weights": args.checkpoint or ("shipped" if shipped else "random init"),
              "front_end": model.cfg.front_end, "cpu_count": os.cpu_count(),
              "load_average_1min": os.getloadavg()[0], "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "parameters": sum(p.numel() for p in model.parameters()), "runs": []}
    for threads, seconds in [(t, s) for t in args.threads for s in (2, 10, 60)]:
        torch.set_num_threads(threads)
        wav = (rng.normal(0, 0.1, seconds * 16000) * np.sin(np.arange(seconds * 16000) / 800) ** 2).astype(np.float32)
        mel = audio_features(wav, cfg=model.cfg.audio_config())
        ref_n = reference / 60.0
        with torch.inference_mode():
            t_model = best_time(lambda: model.predict_sequence(mel, ref_n), args.repeats)
            t_all = best_time(lambda: predict_landmarks(model, wav, reference), args.repeats)
        frames = len(mel)
        result["runs"].append({"threads": threads, "audio_s": seconds, "frames": frames,
                               "model_fps": frames / t_model, "end_to_end_fps": frames / t_all,
                               "model_x_realtime": frames / t_model / FPS, "end_to_end_x_realtime": frames / t_all / FPS})
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / f"landmark_inference{'_' + Path(args.checkpoint).name if args.checkpoint else ''}.json", result)
    print(f"agent 1 ({args.preset}, {result['parameters']:,} parameters, {result['weights']}), {os.cpu_count()} cores, "
          f"load average {result['load_average_1min']:.1f}")
    print("| threads | audio | frames | model frames/s | × real time | end-to-end frames/s | × real time |")
    print("|---|---|---|---|---|---|---|")
    for r in result["runs"]:
        print(f"| {r['threads']} | {r['audio_s']} s | {r['frames']} | {r['model_fps']:.0f} | {r['model_x_realtime']:.0f}× "
              f"| {r['end_to_end_fps']:.0f} | {r['end_to_end_x_realtime']:.0f}× |")


if __name__ == "__main__":
    main()
