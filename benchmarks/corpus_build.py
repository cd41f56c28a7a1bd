"""How long does building the built-in corpus take? (target: the fast preset in under 2 minutes on 2 cores)

1. Stage costs, in this process, on a few clips: speech synthesis (ms per clip) and rendering
   (ms per frame), so one sees where the time goes.
2. The whole build from scratch, as ``minitalker data build`` runs it, into a temporary folder.

Writes ``benchmarks/results/corpus_build.json`` and prints a table.
Usage: ``python benchmarks/corpus_build.py [--preset fast|full] [--workers 2]``
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from minitalker.data.render import render_clip
from minitalker.data.speech import Voice, synthesize
from minitalker.data.synthetic import CorpusConfig, build_corpus, load_corpus, plan_clips
from minitalker.io import write_json

RESULTS = Path(__file__).parent / "results"


def stage_costs(cfg: CorpusConfig, n: int = 8) -> dict:
    """ms per clip for speech, ms per frame for rendering, over the first ``n`` planned clips (one process)."""
    speech_s = render_s = frames = 0.0
    for item in plan_clips(cfg)[:n]:
        t0 = time.perf_counter()
        speech = synthesize(item["text"], Voice(**item["voice"]))
        t1 = time.perf_counter()
        clip = render_clip(speech, item["identity"], size=cfg.image_size, seed=item["seed"])
        render_s, speech_s, frames = render_s + time.perf_counter() - t1, speech_s + t1 - t0, frames + len(clip.frames)
    return {"speech_ms_per_clip": 1000 * speech_s / n, "render_ms_per_frame": 1000 * render_s / frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast", choices=("fast", "full"))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    cfg = CorpusConfig.preset(args.preset)
    render_clip(synthesize("bin blue at F two now"), cfg.identities[0], size=cfg.image_size, seed=0)  # warm caches
    result = {"preset": args.preset, "config": cfg.to_dict(), "workers": args.workers, "cpu_count": os.cpu_count(),
              "machine": platform.processor() or platform.machine(), **stage_costs(cfg)}
    result["load_average_before"] = os.getloadavg()[0]  # other jobs on the machine slow the build down
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = build_corpus(cfg, Path(tmp) / cfg.folder_name(), workers=args.workers)
        result["build_s"] = time.perf_counter() - t0
        corpus = load_corpus(cfg, root, build_if_missing=False)
        rendered = [c for c in corpus.clips if c.has_frames]
        result.update(clips=len(corpus), clips_with_frames=len(rendered), frames=sum(c.n_frames for c in rendered),
                      landmark_frames=sum(c.n_frames for c in corpus.clips),
                      audio_s=sum(c.n_samples for c in corpus.clips) / corpus.sample_rate,
                      size_mb=sum(p.stat().st_size for p in root.iterdir()) / 2**20)
    result["ms_per_frame_overall"] = 1000 * result["build_s"] / result["frames"]  # speech and landmarks included
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "corpus_build.json", result)
    rows = [("preset", args.preset), ("workers / cores", f"{args.workers} / {os.cpu_count()}"),
            ("clips", f"{result['clips']} ({result['clips_with_frames']} with frames)"),
            ("frames", f"{result['frames']} at {cfg.image_size} px"), ("landmark frames", result["landmark_frames"]),
            ("speech", f"{result['audio_s'] / 60:.1f} min"), ("on disk", f"{result['size_mb']:.0f} MB"),
            ("speech synthesis", f"{result['speech_ms_per_clip']:.0f} ms / clip"),
            ("rendering", f"{result['render_ms_per_frame']:.1f} ms / frame"),
            ("whole build", f"{result['build_s']:.1f} s ({result['ms_per_frame_overall']:.1f} ms / frame)"),
            ("load before", f"{result['load_average_before']:.1f}")]
    print("\n".join(f"| {k:<18} | {v:>30} |" for k, v in rows))


if __name__ == "__main__":
    main()
