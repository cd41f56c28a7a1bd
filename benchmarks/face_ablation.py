"""Agent 2's levers, one at a time, at the same training budget: what each one buys on real material.

Rows are cumulative, from the earlier layout to the shipped one (issue 11's ablation):

0. ``earlier``: everything below the nose tip regenerated, cross-attention at 16x16 and 8x8 with
   position-blind queries, reference + masked copy as the image condition;
1. ``+ face mask``: only the feathered jaw/cheek hull is painted (background, hair, clothes kept);
2. ``+ grounded attention``: queries carry the Fourier features of their position, and a 32x32 level
   cross-attends too;
3. ``+ warped reference``: the photo warped to the target landmarks as 3 more input channels;
4. ``+ sketch``: the landmarks drawn as lines in one more channel (the second route for geometry);
5. ``+ appearance jitter``: hue rotation and stronger colour gain on every image of a sample;
6. ``+ texture swap``: half the samples take (part of) the other training identity's face shape
   (``FaceAgentConfig.p_reshape``), so texture and geometry no longer come in fixed pairs.

Each row trains the fast preset's schedule (same seed, same data, same learning-rate curve) and stops
after ``--steps`` steps; rows are resumable (``outputs/ablation/<row>``). Each is then scored by its
validation mouth MSE on the synthetic corpus (``make_eval_fn``, the training-time measure, recomputed at
scoring time so that every row is scored by the same code on the same frames; ``--synthetic`` adds
:func:`minitalker.train.faces.evaluate_faces`) and on real material
(:func:`minitalker.face_eval.evaluate_faces_real`: the carphone clip and ``--photos`` unseen photos,
Grace Hopper first), all with DDIM 10 steps from pure noise (``strength`` 1) and guidance 1. ``--size N`` instead
trains and scores one row, the fast preset with ``N``-pixel crops (its corpus rendered at ``N`` px):
give it the steps that take as long as the 64 px row's (the crop-size comparison at equal training time).
Writes ``benchmarks/results/face_ablation.json``
and prints each row's real-material results. Usage: ``python benchmarks/face_ablation.py [--steps 200] [--rows 0 1 ...]``; on 2 cores
``OMP_NUM_THREADS=1`` and two processes with ``--no-eval --rows 0 2 4`` / ``--rows 1 3 5``, then ``--no-train``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from minitalker.data.synthetic import CorpusConfig, load_corpus
from minitalker.face_agent import load_face_agent
from minitalker.io import write_json
from minitalker.train.faces import FaceRun, FrameBank, evaluate_faces, make_eval_fn, train_faces

RESULTS = Path(__file__).parent / "results" / "face_ablation.json"


def rows() -> list[tuple[str, FaceRun]]:
    """The cumulative configurations, from the earlier layout to all levers."""
    run = FaceRun.preset("fast")
    unet, agent = run.unet, run.agent
    earlier_unet = dataclasses.replace(unet, grounded=False, cross_attn_levels=(2, 3), cond_channels=6)
    agent = dataclasses.replace(agent, colour_jitter=0.1, hue_jitter=0.0)  # the earlier gain, no hue rotation
    steps = [
        ("earlier", earlier_unet, dataclasses.replace(agent, mask="half", warp=False, sketch=False)),
        ("+ face mask", earlier_unet, dataclasses.replace(agent, warp=False, sketch=False)),
        ("+ grounded attention", dataclasses.replace(unet, cond_channels=6), dataclasses.replace(agent, warp=False, sketch=False)),
        ("+ warped reference", dataclasses.replace(unet, cond_channels=9), dataclasses.replace(agent, sketch=False)),
        ("+ sketch", unet, agent),
        ("+ appearance jitter", unet, run.agent),  # = the fast preset
        ("+ texture swap", unet, dataclasses.replace(run.agent, p_reshape=0.5)),
    ]
    return [(name, dataclasses.replace(run, unet=u, agent=a)) for name, u, a in steps]


def size_row(size: int) -> tuple[str, FaceRun]:
    """The fast preset (the last row) with ``size``-pixel crops."""
    run = FaceRun.preset("fast")
    return f"fast preset at {size} px", dataclasses.replace(run, unet=dataclasses.replace(run.unet, image_size=size))


def folder_of(out: str, name: str) -> Path:
    return Path(out) / name.strip("+ ").replace(" ", "_")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="training steps per row (of the preset's schedule)")
    ap.add_argument("--rows", type=int, nargs="*", help="row indices (default: all)")
    ap.add_argument("--out", default="outputs/ablation", help="run folders")
    ap.add_argument("--no-train", action="store_true", help="only score rows already trained")
    ap.add_argument("--no-eval", action="store_true", help="only train (e.g. rows split over processes)")
    ap.add_argument("--photos", type=int, default=1, help="unseen real photos to score (of face_eval.real_photos())")
    ap.add_argument("--landmarks", help="agent 1 checkpoint that drives the unseen photos (default: the shipped one; "
                    "rows compared with each other must use the same)")
    ap.add_argument("--size", type=int, help="train/score only the fast preset at this crop size (pixels)")
    ap.add_argument("--synthetic", action="store_true", help="also evaluate_faces on the corpus (the validation "
                    "mouth MSE is always recorded)")
    args = ap.parse_args()
    chosen = [size_row(args.size)] if args.size else [r for k, r in enumerate(rows()) if args.rows is None or k in args.rows]
    cfg = CorpusConfig.fast()
    corpus = load_corpus(dataclasses.replace(cfg, image_size=args.size) if args.size else cfg)
    for name, run in chosen:
        folder = folder_of(args.out, name)
        if not args.no_train:
            t0 = time.time()
            train_faces(out=folder, run=run, stop_at=args.steps, corpus=corpus)
            print(f"{name}: trained {args.steps} steps in {time.time() - t0:.0f} s")
    if not args.no_eval:
        from minitalker.face_eval import evaluate_faces_real, real_photos
        from minitalker.nn.landmark_transformer import load_landmark_model

        photos = dict(list(real_photos().items())[:args.photos])
        landmark_model = load_landmark_model(args.landmarks)
        val = FrameBank(corpus, "val", [i for i in corpus.identities if i not in corpus.heldout])
        for name, run in chosen:
            folder = folder_of(args.out, name)
            unet, schedule, agent = load_face_agent(folder / "best")
            row = {"steps": args.steps, "agent": run.agent.to_dict(), "unet": run.unet.to_dict(),
                   "val": make_eval_fn(val, schedule, agent)(unet),  # today's sampling on today's corpus, every row alike
                   "real": evaluate_faces_real(folder / "best", steps=10, guidance=1.0, photos=photos, strength=1.0,
                                               landmark_model=landmark_model)}
            if args.synthetic:
                synthetic = evaluate_faces(folder / "best", corpus=corpus, clips_per_group=2, steps=10, guidance=1.0, ddpm_frames=1)
                row["synthetic"] = {g: synthetic[g] for g in ("test_sentences", "heldout_identity")}
            results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}  # read late: rows run in parallel
            write_json(RESULTS, results | {name: row})
            print(name, json.dumps(row["real"], default=str)[:400])

if __name__ == "__main__":
    main()
