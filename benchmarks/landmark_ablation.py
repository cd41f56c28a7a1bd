"""Agent 1 on real voices: what each speaker/channel augmentation buys, at the same training budget.

Each row trains agent 1's fast model for ``--steps`` steps (its own cosine schedule, seed 0); rows 0-7
are cumulative (issue 15's ablation), 8-10 try the two levers that remained:

0. ``earlier``: the earlier augmentation only (level, tilt, noise, pauses);
1. ``+ equaliser``: a smooth random gain over the mel bins (``eq_db``);
2. ``+ frequency warp``: formants moved by up to 15% (VTLP, ``freq_warp``);
3. ``+ speed``: clips played up to 1.3x faster or slower (``speed``);
4. ``+ band-limits, non-speech``: 20% of chunks band-limited, 10% noise, hum or tunes with the mouth
   at rest (``p_band``, ``p_nonspeech``);
5. ``+ 24 voices``: every sentence still spoken 5 times, by voices drawn from 24 espeak voices and
   accents instead of 6 (``voices = MANY_VOICES``);
6. ``+ faster speech``: espeak rates 150-270 words a minute instead of 140-190 (``rates = FAST_RATES``);
7. ``+ stops start at their closure``: row 6 on the corpus as built since format version 2 (stops move
   40 ms earlier, :data:`minitalker.data.speech.CLOSURE_LEAD`); rows 0-6 were measured on version 1;
8. ``closures alone``: row 0's training on the version-2 corpus (the timing fix without the new
   augmentation, voices or rates);
9. ``closures + envelope``: row 8 hearing only the spectral envelope (``lifter = 20`` cepstral
   coefficients: formants without pitch harmonics);
10. ``all + envelope``: row 7 hearing only the spectral envelope.

The fast preset (the shipped agent 1) is row 8 plus row 4's band-limits and non-speech chunks at half
their strength here (10% and 5% of chunks), trained for 3 600 steps: the levers of rows 1-3 and 5-7
did not pay on real speech at this budget and cost accuracy on the synthetic test set. Each row is
scored on the real set (:func:`minitalker.lipsync.evaluate_landmarks_real`: closure / open-vowel
opening ratio, open-vowel r, AV offset, r with the rig) and on the synthetic test set
(:func:`minitalker.train.landmarks.evaluate_landmarks`: mouth error and its gain over the best
baseline, on the test split as the corpus is built now; ``--no-train`` re-scores). Writes
``benchmarks/results/landmark_ablation.json``. Usage:
``OMP_NUM_THREADS=1 python benchmarks/landmark_ablation.py [--steps 1200] [--rows 0 1 ...] [--no-train]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from minitalker.io import write_json
from minitalker.lipsync import evaluate_landmarks_real, format_lipsync
from minitalker.nn.landmark_transformer import LandmarkTransformerConfig, model_from_checkpoint
from minitalker.train.landmarks import FAST_RATES, MANY_VOICES, LandmarkTrainConfig, evaluate_landmarks, train_landmarks

RESULTS = Path(__file__).parent / "results" / "landmark_ablation.json"


def rows(steps: int) -> list[tuple[str, LandmarkTrainConfig, LandmarkTransformerConfig]]:
    """(name, training config, model config) of each row."""
    earlier = dataclasses.replace(LandmarkTrainConfig.fast(), steps=steps, p_band=0.0, p_nonspeech=0.0, voices=(),
                                  match_spectrum=False)
    speech_only = dataclasses.replace(earlier, eq_db=4.0, freq_warp=0.15, speed=0.3)
    fast = dataclasses.replace(speech_only, p_band=0.2, p_nonspeech=0.1)  # the rows' strength; the preset uses half
    everything = dataclasses.replace(fast, voices=MANY_VOICES, rates=FAST_RATES)
    model, envelope = LandmarkTransformerConfig.fast(), dataclasses.replace(LandmarkTransformerConfig.fast(), lifter=20)
    return [("earlier", earlier, model),
            ("+ equaliser", dataclasses.replace(speech_only, freq_warp=0.0, speed=0.0), model),
            ("+ frequency warp", dataclasses.replace(speech_only, speed=0.0), model),
            ("+ speed", speech_only, model),
            ("+ band-limits, non-speech", dataclasses.replace(fast, voices=()), model),
            ("+ 24 voices", dataclasses.replace(fast, voices=MANY_VOICES), model),
            ("+ faster speech", everything, model),
            ("+ stops start at their closure", everything, model),
            ("closures alone", earlier, model),
            ("closures + envelope", earlier, envelope),
            ("all + envelope", everything, envelope)]

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1200, help="training steps per row")
    ap.add_argument("--rows", type=int, nargs="*", help="row indices (default: all)")
    ap.add_argument("--out", default="outputs/landmark_ablation", help="run folders")
    ap.add_argument("--no-train", action="store_true", help="only score rows already trained")
    args = ap.parse_args()
    table = rows(args.steps)
    for i in args.rows if args.rows is not None else range(len(table)):
        name, cfg, model_cfg = table[i]
        start = time.time()
        run = Path(args.out) / f"row{i}"
        if not args.no_train:
            train_landmarks("fast", run, resume=True, train_cfg=cfg, model_cfg=model_cfg)
        minutes = round((time.time() - start) / 60, 1)
        model = model_from_checkpoint(run / "best")
        real, synthetic = evaluate_landmarks_real(model), evaluate_landmarks(model)
        print(f"## {i}: {name} ({args.steps} steps)\n{format_lipsync(real)}\nsynthetic: {synthetic['improvement']}")
        results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}  # read now: rows may run in parallel
        results[name] = {"row": i, "steps": args.steps, "corpus": model.meta["corpus"],
                         "train_minutes": results.get(name, {}).get("train_minutes") if args.no_train else minutes,
                         "real": real["overall"], "real_recordings": real["recordings"], "rig": real["rig"]["overall"],
                         "synthetic_error": synthetic["test_sentences"]["model"]["mouth_error"],
                         "synthetic_gain": synthetic["improvement"]}
        write_json(RESULTS, dict(sorted(results.items(), key=lambda kv: kv[1]["row"])))

if __name__ == "__main__":
    main()
