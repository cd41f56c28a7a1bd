"""From phonemes to moving landmarks: visemes, co-articulation, then a jaw-and-lips model.

DiffTalker's paper says nothing about data synthesis; everything here is our interpretation,
kept as simple as a talking-head animator's rig:

1. **Visemes.** Each espeak phoneme gets an articulation *target* ``(jaw, lips, spread, round)``
   in [0, 1] plus two constraints: bilabials (p b m) press the lips shut, labiodentals (f v) raise
   the lower lip to the upper teeth. Diphthongs ("aI", "aU"...) glide between two targets.
2. **Co-articulation** (Cohen & Massaro, 1993): a frame's parameters are the average of all targets
   weighted by each phoneme's *dominance*, which is constant during the phoneme and decays with
   the distance to it, more slowly *before* it (we anticipate: lips round before the "u" of
   "two"). Closures are not averaged away: p/b/m hold the lips exactly shut over their interval
   (plus a small margin, so that every closure spans at least one 25 fps frame).
3. **Geometry** (:func:`animate_landmarks`), in the canonical frame of
   :func:`~minitalker.landmarks.scheme.normalise` (outer eye corners at (±0.5, 0)): the jaw
   drops the chin (a rotation about the ear axis, seen from the front: points drop in proportion
   to their distance in front of the axis, i.e. most at the chin), the lips part, spread, round;
   then blinks and a small, smooth head motion (a similarity transform).
"""

from __future__ import annotations

import numpy as np

from minitalker.audio import FPS, frame_times
from minitalker.landmarks.scheme import LOWER_JAW, MOUTH, check_landmarks, denormalise, normalise

PARAMS = ("jaw", "lips", "spread", "round", "closure", "labio")  # the K = 6 columns of articulate()
COARSE_CLASSES = ("bilabial", "open_vowel", "rounded_vowel", "other")

# ------------------------------------------------------------------------------------ visemes
#: Articulation target of each phoneme (espeak's ASCII names, stress marks removed):
#: (jaw drop, extra lip opening, lip spread, lip rounding, dominance), all in [0, 1].
VISEMES: dict[str, tuple[float, float, float, float, float]] = {
    # vowels: open ...
    "a": (0.80, 0.30, 0.20, 0.00, 1.0), "a#": (0.70, 0.25, 0.15, 0.00, 1.0), "A:": (0.85, 0.30, 0.05, 0.10, 1.0),
    "0": (0.75, 0.25, 0.00, 0.35, 1.0), "V": (0.65, 0.25, 0.10, 0.00, 1.0),
    # ... mid ...
    "E": (0.55, 0.20, 0.35, 0.00, 1.0), "@": (0.30, 0.10, 0.10, 0.00, 0.6), "3": (0.30, 0.10, 0.05, 0.20, 0.6),
    "3:": (0.35, 0.10, 0.00, 0.30, 1.0), "O": (0.55, 0.15, 0.00, 0.65, 1.0), "O:": (0.55, 0.15, 0.00, 0.65, 1.0),
    # ... close, spread or rounded
    "i": (0.15, 0.10, 0.75, 0.00, 1.0), "i:": (0.12, 0.10, 0.85, 0.00, 1.0), "I": (0.20, 0.10, 0.60, 0.00, 1.0),
    "U": (0.25, 0.10, 0.00, 0.65, 1.0), "u:": (0.15, 0.10, 0.00, 0.95, 1.0),
    # consonants: the lips ...
    "p": (0.05, 0.0, 0.0, 0.0, 1.0), "b": (0.05, 0.0, 0.0, 0.0, 1.0), "m": (0.05, 0.0, 0.0, 0.0, 1.0),
    "f": (0.10, 0.10, 0.10, 0.0, 0.9), "v": (0.10, 0.10, 0.10, 0.0, 0.9),
    "w": (0.08, 0.05, 0.00, 1.0, 1.0), "r": (0.15, 0.10, 0.00, 0.50, 0.6),
    # ... the tongue behind the teeth (the lips follow their neighbours, low dominance) ...
    "T": (0.15, 0.15, 0.10, 0.0, 0.6), "D": (0.15, 0.15, 0.10, 0.0, 0.6),
    "s": (0.06, 0.12, 0.40, 0.0, 0.7), "z": (0.06, 0.12, 0.40, 0.0, 0.7),
    "S": (0.10, 0.20, 0.00, 0.60, 0.8), "Z": (0.10, 0.20, 0.00, 0.60, 0.8),
    "tS": (0.10, 0.20, 0.00, 0.60, 0.8), "dZ": (0.10, 0.20, 0.00, 0.60, 0.8),
    "t": (0.20, 0.10, 0.10, 0.0, 0.4), "d": (0.20, 0.10, 0.10, 0.0, 0.4), "n": (0.20, 0.10, 0.10, 0.0, 0.4),
    "l": (0.25, 0.10, 0.10, 0.0, 0.4), "j": (0.10, 0.10, 0.60, 0.0, 0.6),
    # ... and further back (almost no say over the lips)
    "k": (0.25, 0.10, 0.05, 0.0, 0.3), "g": (0.25, 0.10, 0.05, 0.0, 0.3), "N": (0.25, 0.10, 0.05, 0.0, 0.3),
    "h": (0.30, 0.10, 0.00, 0.0, 0.1),
    # silence: mouth at rest (closed), moderately dominant so that long pauses close the mouth
    "_": (0.00, 0.00, 0.00, 0.00, 0.5),
}
VOWELS = {"a", "a#", "A:", "0", "V", "E", "@", "3", "3:", "O", "O:", "i", "i:", "I", "U", "u:"}
BILABIAL, LABIODENTAL = {"p", "b", "m"}, {"f", "v"}
DIPHTHONGS = {"aI": ("a", "I"), "aU": ("a", "U"), "eI": ("E", "I"), "oU": ("O", "U"), "OI": ("O", "I"),
              "i@": ("i", "@"), "e@": ("E", "@"), "U@": ("U", "@"), "A@": ("A:", "3"), "o@": ("O", "3")}
#: What each espeak name sounds like: (IPA, an American English word espeak-ng's en-us voice speaks
#: with it). espeak writes phonemes in ASCII (Kirshenbaum-like): "'" marks primary stress, "," secondary.
GLOSS: dict[str, tuple[str, str]] = {
    "a": ("æ", "cat"), "a#": ("ə", "about"), "A:": ("ɑː", "father"), "0": ("ɑ", "lot"), "V": ("ʌ", "strut"),
    "E": ("ɛ", "dress"), "@": ("ə", "comma"), "3": ("ɚ", "letter"), "3:": ("ɜː", "nurse"), "O": ("ɔ", "often"),
    "O:": ("ɔː", "thought"), "i": ("i", "happy"), "i:": ("iː", "fleece"), "I": ("ɪ", "kit"), "U": ("ʊ", "foot"),
    "u:": ("uː", "goose"), "p": ("p", "pen"), "b": ("b", "bin"), "m": ("m", "man"), "f": ("f", "fun"),
    "v": ("v", "van"), "w": ("w", "wet"), "r": ("ɹ", "red"), "T": ("θ", "thin"), "D": ("ð", "this"),
    "s": ("s", "see"), "z": ("z", "zoo"), "S": ("ʃ", "she"), "Z": ("ʒ", "vision"), "tS": ("tʃ", "church"),
    "dZ": ("dʒ", "judge"), "t": ("t", "ten"), "d": ("d", "dog"), "n": ("n", "no"), "l": ("l", "law"),
    "j": ("j", "yes"), "k": ("k", "cat"), "g": ("ɡ", "go"), "N": ("ŋ", "sing"), "h": ("h", "hat"),
    "_": ("", "a pause"), "aI": ("aɪ", "price"), "aU": ("aʊ", "mouth"), "eI": ("eɪ", "face"),
    "oU": ("oʊ", "goat"), "OI": ("ɔɪ", "choice"), "i@": ("ɪɹ", "near"), "e@": ("ɛɹ", "square"),
    "U@": ("ʊɹ", "cure"), "A@": ("ɑːɹ", "start"), "o@": ("ɔːɹ", "force"),
}
STRESS_GAIN = {"'": 1.0, ",": 0.9, "": 0.8}  # unstressed syllables open the jaw less
ANTICIPATION, CARRY_OVER = 0.08, 0.05  # s: how far a phoneme's dominance reaches before / after it
HOLD, RAMP = 0.02, 0.06  # s: closures hold this long beyond their phoneme, then release over RAMP


def _split_stress(name: str) -> tuple[str, str]:
    """``"'aU"`` → ``("'", "aU")``: espeak's stress mark (if any) and the phoneme."""
    mark = name[0] if name[:1] in ("'", ",") else ""
    return mark, name.lstrip("',=")


def base_phoneme(name: str) -> str | None:
    """espeak's phoneme name → a key of :data:`VISEMES` or :data:`DIPHTHONGS`, or None if unknown.

    Drops stress marks and then espeak's variant suffixes (``"t#"`` → ``"t"``, ``"r-"`` → ``"r"``,
    ``"@2"`` → ``"@"``, ``"i@3"`` → ``"i@"``); every pause (``"_:"``, ``"_!"``) is ``"_"``.
    """
    name = _split_stress(name)[1]
    if name.startswith("_"):
        return "_"
    while name:
        if name in VISEMES or name in DIPHTHONGS:
            return name
        name = name[:-1] if name[-1] in "#-23" else ""
    return None


def _coarse(key: str | None) -> str:
    if key in BILABIAL:
        return "bilabial"
    if key in DIPHTHONGS:
        key = DIPHTHONGS[key][0]
    if key not in VOWELS:
        return "other"
    jaw, _, _, rnd, _ = VISEMES[key]
    return "rounded_vowel" if rnd >= 0.5 else "open_vowel" if jaw >= 0.5 else "other"


#: The coarse class of every known phoneme, for evaluation: "bilabial" (lips shut), "open_vowel"
#: (jaw at least half open), "rounded_vowel", "other". A diphthong counts as its first part.
PHONEME_CLASS: dict[str, str] = {k: _coarse(k) for k in [*VISEMES, *DIPHTHONGS]}


def phoneme_class(name: str) -> str:
    """The coarse class of an espeak phoneme name (stress marks allowed): one of :data:`COARSE_CLASSES`."""
    return PHONEME_CLASS.get(base_phoneme(name), "other")


def gloss(name: str) -> str:
    """An espeak phoneme name as IPA and an example word: ``"'aU"`` → ``"ˈaʊ as in mouth"``; ``"?"`` if unknown."""
    key = base_phoneme(name)
    if key is None:
        return "?"
    ipa, word = GLOSS[key]
    stress = {"'": "ˈ", ",": "ˌ"}[_split_stress(name)[0]] if _split_stress(name)[0] else ""
    return f"{stress}{ipa} as in {word}" if ipa else word


# ---------------------------------------------------------------------------- co-articulation

def _segments(phonemes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Phoneme intervals → per segment ``start, end (S,)``, ``target (S, 4)``, ``dominance (S,)``, ``kind (S,)``.

    A diphthong becomes two segments (first and second half); unknown phonemes are dropped.
    ``kind``: 1 = bilabial, 2 = labiodental, 0 = other.
    """
    rows = []
    for name, start, end in phonemes:
        mark, key = _split_stress(name)[0], base_phoneme(name)
        if key is None:
            continue
        parts = DIPHTHONGS.get(key, (key,))
        edges = np.linspace(start, end, len(parts) + 1)
        for part, a, b in zip(parts, edges[:-1], edges[1:]):
            jaw, lips, spread, rnd, dom = VISEMES[part]
            gain = STRESS_GAIN[mark] if part in VOWELS else 1.0
            kind = 1 if part in BILABIAL else 2 if part in LABIODENTAL else 0
            rows.append((a, b, jaw * gain, lips * gain, spread, rnd, dom, kind))
    if not rows:
        raise ValueError("no known phonemes to articulate (expected espeak names such as 'b', \"'aU\", '_')")
    r = np.array(rows, dtype=np.float64)
    return r[:, 0], r[:, 1], r[:, 2:6], r[:, 6], r[:, 7].astype(int)


def articulate(phonemes, n_frames: int, fps: float = FPS,
               spans: tuple[float, float] | None = None) -> np.ndarray:
    """Phoneme intervals ``[(name, start_s, end_s)]`` → articulation parameters ``(T, 6)`` (see :data:`PARAMS`).

    Frame ``i`` is sampled at its midpoint ``(i + 0.5) / fps``. Columns 0–3 (jaw, lips, spread,
    round) are the dominance-weighted average of the targets::

        p(t) = Σ_s D_s(t) target_s / Σ_s D_s(t),   D_s(t) = dominance_s · exp(-(d_s(t) / σ)²)

    with ``d_s(t)`` the distance from ``t`` to segment ``s`` (0 inside it) and ``σ`` = ``spans[0]``
    before the segment, ``spans[1]`` after it (None: ``ANTICIPATION``, ``CARRY_OVER``; other spans
    are for experiments: the corpus is rendered with the defaults). Columns 4–5 (closure, labio) are 1
    within ``HOLD`` of a bilabial / labiodental segment and fall to 0 over ``RAMP`` (a cosine).
    """
    start, end, target, dom, kind = _segments(phonemes)
    t = frame_times(n_frames, fps)[:, None]  # (T, 1)
    before, after = start - t, t - end  # (T, S): > 0 when the frame is before / after the segment
    d = np.maximum(np.maximum(before, after), 0.0)
    weight = dom * np.exp(-(d / np.where(before > 0, *(spans or (ANTICIPATION, CARRY_OVER)))) ** 2)  # (T, S)
    shape = weight @ target / np.maximum(weight.sum(1, keepdims=True), 1e-12)  # (T, 4)
    window = np.cos(np.clip((d - HOLD) / RAMP, 0, 1) * np.pi / 2) ** 2  # (T, S): 1 near the segment
    closure = np.max(np.where(kind == 1, window, 0.0), axis=1, initial=0.0)  # (T,)
    labio = np.max(np.where(kind == 2, window, 0.0), axis=1, initial=0.0)
    return np.concatenate([shape, closure[:, None], labio[:, None]], 1).astype(np.float32)  # (T, 6)


# ----------------------------------------------------------------------------------- geometry
# Amplitudes in canonical units (1 = the distance between the outer eye corners).
GAP_JAW, GAP_LIPS = 0.22, 0.10  # inner-lip gap at the centre for jaw = 1 and for lips = 1
UPPER_SHARE = 0.25  # the upper lip takes this share of the gap (it lifts), the lower lip the rest
MOUTH_DROP = 0.3  # the whole mouth (corners too) drops by this fraction of the lower lip's drop
JAW_DROP = 0.20  # chin drop at jaw = 1
SPREAD, ROUND, INNER_ROUND = 0.12, 0.28, 0.25  # relative change of mouth width; extra for the opening
POUT, PRESS, TUCK = 0.02, 0.015, 0.03  # rounding everts the lips, closure presses them, f/v tucks the lower
LABIO_GAP = 0.8  # f/v: the lower lip rises to the upper teeth and removes this share of the gap
UPPER_OUTER, LOWER_OUTER = np.arange(49, 54), np.arange(55, 60)
UPPER_INNER, LOWER_INNER = np.array([61, 62, 63]), np.array([67, 66, 65])  # paired top ↔ bottom
LOWER_LIP = np.concatenate([LOWER_OUTER, LOWER_INNER])
INNER = np.arange(60, 68)
#: Blinks: upper lid points and the lower lid points they meet.
UPPER_LID, LOWER_LID = np.array([37, 38, 43, 44]), np.array([41, 40, 47, 46])


def _mouth_coordinate(c: np.ndarray) -> np.ndarray:
    """Horizontal position of every point across the mouth, -1 at one corner (48), +1 at the other (54): ``(68,)``."""
    centre, half = (c[48, 0] + c[54, 0]) / 2, (c[54, 0] - c[48, 0]) / 2
    return np.clip((c[:, 0] - centre) / half, -1, 1)


def _jaw_weight(c: np.ndarray) -> np.ndarray:
    """How far each lower-jaw point drops when the jaw opens, 1 at the chin: ``(68,)`` (0 off the jaw).

    The mandible is a horseshoe hinged near the ears; seen from the front, a point drops in
    proportion to its distance in front of the hinge, which we take as ``1 - u²`` with ``u`` its
    position across the face (-1 and 1 at jaw points 0 and 16).
    """
    u = (c[:, 0] - (c[0, 0] + c[16, 0]) / 2) / ((c[16, 0] - c[0, 0]) / 2)
    w = np.zeros(len(c))
    w[LOWER_JAW] = np.clip(1 - u[LOWER_JAW] ** 2, 0, 1)
    return w


def rest_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """A detected face ``(68, 2)`` with its mouth closed at rest: the reference pose of our clips.

    The lower lip and the chin rise by the detected inner-lip gap, and each lower inner-lip point
    is put exactly on its upper partner (61↔67, 62↔66, 63↔65), so ``mouth_opening`` is exactly 0.
    """
    lm = check_landmarks(landmarks)
    if lm.shape != (68, 2):
        raise ValueError(f"rest_landmarks takes one face (68, 2); got {lm.shape}")
    c, frame = normalise(lm)
    gap = max(float(c[66, 1] - c[62, 1]), 0.0)
    prof = 1 - _mouth_coordinate(c) ** 2
    c[LOWER_LIP, 1] -= gap * prof[LOWER_LIP]
    c[:, 1] -= JAW_DROP / GAP_JAW * gap * _jaw_weight(c)
    c[LOWER_INNER] = c[UPPER_INNER]
    return denormalise(c, frame)


def _move_mouth(c: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Rest face ``c (68, 2)`` (canonical) + parameters ``(T, 6)`` → ``(T, 68, 2)`` with jaw and lips moved.

    Inner-lip gap at the centre: ``g = (1 - closure)(1 - 0.8 labio)(0.22 jaw + 0.1 lips)``; it is
    shared out along the lips by the profile ``(1 - u²)^(1 - round/2)`` (0 at the corners; rounder
    when rounded). Widths scale about the mouth centre. With ``g = 0`` each lower inner point stays
    on its upper partner, so the closed lips of :func:`rest_landmarks` stay exactly closed.
    """
    jaw, lips, spread, rnd, closure, labio = (params[:, k:k + 1].astype(np.float64) for k in range(6))  # (T, 1)
    gap = (1 - closure) * (1 - LABIO_GAP * labio) * np.maximum(GAP_JAW * jaw + GAP_LIPS * lips, 0)
    up, down = UPPER_SHARE * gap, (1 - UPPER_SHARE) * gap
    u = _mouth_coordinate(c)  # (68,)
    prof = (1 - u ** 2) ** (1 - rnd / 2)  # (T, 68)
    dy = np.zeros((len(params), len(c)))
    dy[:, UPPER_OUTER] -= (up + POUT * rnd - PRESS * closure) * prof[:, UPPER_OUTER]
    dy[:, UPPER_INNER] -= up * prof[:, UPPER_INNER]
    dy[:, LOWER_OUTER] += (down + POUT * rnd - PRESS * closure - TUCK * labio) * prof[:, LOWER_OUTER]
    dy[:, LOWER_INNER] += down * prof[:, LOWER_INNER]
    dy[:, MOUTH] += MOUTH_DROP * down
    dy += JAW_DROP * jaw * _jaw_weight(c)
    width = 1 + SPREAD * spread - ROUND * rnd  # (T, 1)
    scale = np.ones((len(params), len(c)))
    scale[:, MOUTH] = width
    scale[:, INNER] *= 1 - INNER_ROUND * rnd
    centre = (c[48, 0] + c[54, 0]) / 2
    out = np.repeat(c[None].astype(np.float64), len(params), 0)  # (T, 68, 2)
    out[..., 0] = centre + (c[:, 0] - centre) * scale
    out[..., 1] += dy
    return out


def blink_curve(n_frames: int, rng: np.random.Generator, fps: float = FPS) -> np.ndarray:
    """Eyelid closure ``(T,)`` in [0, 1]: a blink every 2–5 s (the first within 2.5 s), each closing
    in about 0.1 s and reopening in about 0.2 s (a Gaussian bump, narrower before its peak)."""
    t = frame_times(n_frames, fps)
    peaks = [rng.uniform(0.3, 2.5)]
    while peaks[-1] < n_frames / fps:
        peaks.append(peaks[-1] + rng.uniform(2.0, 5.0))
    dt = t[:, None] - np.array(peaks)  # (T, B)
    return np.exp(-(dt / np.where(dt < 0, 0.05, 0.09)) ** 2).max(1, initial=0.0)


def head_pose(n_frames: int, rng: np.random.Generator, fps: float = FPS) -> np.ndarray:
    """A small, smooth, random head motion ``(T, 4)``: roll (radians), log-scale, shift x, shift y (canonical units).

    Each is a sum of three sinusoids of random phase and frequency (0.1–0.6 Hz), scaled so that
    the roll stays within about ±3° (1.2° rms), the shift within about ±0.1 eye distances.
    """
    t = frame_times(n_frames, fps)[:, None, None]  # (T, 1, 1)
    freq, phase = rng.uniform(0.1, 0.6, (4, 3)), rng.uniform(0, 2 * np.pi, (4, 3))
    waves = np.sin(2 * np.pi * freq * t + phase).sum(-1) / np.sqrt(1.5)  # (T, 4), rms 1
    return waves * np.array([np.radians(1.2), 0.01, 0.03, 0.02])


def animate_landmarks(neutral: np.ndarray, params: np.ndarray, seed: int = 0, head_motion: bool = True,
                      blinks: bool = True, fps: float = FPS) -> np.ndarray:
    """Rest face ``(68, 2)`` (see :func:`rest_landmarks`) + parameters ``(T, 6)`` → landmarks ``(T, 68, 2)``.

    In the canonical frame: move jaw and lips (:func:`_move_mouth`), close the eyelids on blinks
    (upper lid points meet the lower ones, 80 % of the way down), then turn, scale and shift the
    whole face about a pivot at the neck. Back in the image's pixels, like ``neutral``. Blinks and
    head motion are random but fixed by ``seed`` (each from its own stream, so one can be switched
    off without changing the other).
    """
    neutral = check_landmarks(neutral)
    params = np.asarray(params, dtype=np.float32)
    if neutral.shape != (68, 2) or params.ndim != 2 or params.shape[1] != len(PARAMS):
        raise ValueError(f"need neutral (68, 2) and params (T, {len(PARAMS)}); got {neutral.shape}, {params.shape}")
    c, frame = normalise(neutral)
    lm = _move_mouth(c, params)  # (T, 68, 2)
    rng_blink, rng_head = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if blinks:
        b = blink_curve(len(params), rng_blink, fps)[:, None, None]  # (T, 1, 1)
        upper, lower = lm[:, UPPER_LID], lm[:, LOWER_LID]
        meet = upper + 0.8 * (lower - upper)
        lm[:, UPPER_LID], lm[:, LOWER_LID] = upper + b * (meet - upper), lower + b * (meet - lower)
    if head_motion:
        roll, log_scale, sx, sy = head_pose(len(params), rng_head, fps).T[..., None]  # each (T, 1)
        pivot = np.array([0.0, 1.5])  # below the chin: the head turns on the neck
        cos, sin, k = np.cos(roll), np.sin(roll), np.exp(log_scale)
        x, y = lm[..., 0] - pivot[0], lm[..., 1] - pivot[1]
        lm = np.stack([k * (cos * x - sin * y) + pivot[0] + sx, k * (sin * x + cos * y) + pivot[1] + sy], -1)
    return denormalise(lm.astype(np.float32), frame)
