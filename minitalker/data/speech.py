"""Synthetic speech with exact phoneme times, and a GRID-like sentence grammar.

DiffTalker trains on recorded talking faces; we cannot download any here, so the built-in corpus
speaks its own sentences with espeak-ng (a formant synthesiser, see :mod:`minitalker.data.espeak`).
The point is not natural-sounding audio but *ground truth*: espeak tells us exactly when each
phoneme starts, and :mod:`minitalker.data.visemes` turns those times into mouth shapes. So the
audio → landmark task in our corpus has a known, learnable answer.

The sentences follow the GRID corpus grammar (Cooke et al., 2006), six words of fixed roles::

    command  colour  preposition  letter  digit  adverb
    bin      blue    at           F       two    now
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from minitalker.audio import SAMPLE_RATE
from minitalker.data import espeak
from minitalker.data.visemes import base_phoneme

SILENCE = "_"  # espeak's pause phonemes all start with "_" ("_", "_:", "_!")


def voice_variants() -> list[str]:
    """Names of the voice variants bundled with espeak-ng (``"m3"``, ``"f2"``, ``"klatt"``...)."""
    import espeakng_loader

    return sorted(p.name for p in (Path(espeakng_loader.get_data_path()) / "voices" / "!v").iterdir())


@dataclasses.dataclass(frozen=True)
class Voice:
    """An espeak-ng voice: ``name`` = language (``"en-us"``, ``"en"`` = British, ``"en-029"``...),
    optionally ``+variant`` (``"en-us+m3"``, ``"en+f4"``; see :func:`voice_variants`); ``rate`` in
    words per minute (espeak's default 175); ``pitch`` 0–99 (default 50)."""

    name: str = "en-us"
    rate: int = 165
    pitch: int = 50

    def __post_init__(self):
        if not 80 <= self.rate <= 450:
            raise ValueError(f"rate={self.rate} words/minute: espeak-ng accepts 80 to 450")
        if not 0 <= self.pitch <= 99:
            raise ValueError(f"pitch={self.pitch}: espeak-ng accepts 0 to 99")
        _, _, variant = self.name.partition("+")
        if variant and variant not in voice_variants():  # espeak would silently ignore it
            raise ValueError(f"unknown espeak-ng voice variant {variant!r} in {self.name!r}; "
                             f"bundled ones: {', '.join(voice_variants())}")


@dataclasses.dataclass
class Speech:
    """One synthesised utterance.

    ``wav (N,)`` float32 in [-1, 1] at 16 kHz; ``phonemes`` and ``words``: ``[(name, start_s, end_s)]``.
    Phonemes tile ``[0, duration]`` without gaps (silences are named ``"_..."``); words do not cover
    the pauses between sentences.
    """

    text: str
    voice: Voice
    wav: np.ndarray
    phonemes: list[tuple[str, float, float]]
    words: list[tuple[str, float, float]]

    @property
    def duration(self) -> float:
        return len(self.wav) / SAMPLE_RATE


def _speak_in_child(text: str, voice: Voice) -> tuple[int, np.ndarray, list[list]]:
    """Run :func:`espeak.speak` in a fresh ``python -I -S`` process → (rate, pcm (N,) int16, events)."""
    import espeakng_loader

    request = {"text": text, "voice": voice.name, "rate": voice.rate, "pitch": voice.pitch,
               "library": espeakng_loader.get_library_path(), "data": espeakng_loader.get_data_path()}
    proc = subprocess.run([sys.executable, "-I", "-S", espeak.__file__], input=json.dumps(request).encode(),
                          capture_output=True)
    if proc.returncode != 0:
        last = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"espeak-ng failed on {text!r} with voice {voice}: {last}")
    header, _, pcm = proc.stdout.partition(b"\n")
    meta = json.loads(header)
    return meta["sample_rate"], np.frombuffer(pcm, dtype=np.int16), meta["events"]


def _intervals(starts: list[tuple[str, float]], end: float) -> list[tuple[str, float, float]]:
    """``[(name, start)]`` → ``[(name, start, next start or end)]``, dropping empty intervals."""
    ends = [s for _, s in starts[1:]] + [end]
    return [(n, s, e) for (n, s), e in zip(starts, ends) if e > s]


#: espeak reports a stop when its burst starts; the closure before it (silence or a voice bar), some 40 ms
#: earlier, is the stop's too, so a stop is moved CLOSURE_LEAD earlier (at most half way into the phoneme before).
STOPS, CLOSURE_LEAD = frozenset({"p", "b", "t", "d", "k", "g"}), 0.04


def _closures_first(phonemes: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Phoneme intervals with every stop starting at its closure: ``CLOSURE_LEAD`` earlier, taken from the phoneme before."""
    out = list(phonemes)
    for i in range(1, len(out)):
        (prev, a, _), (name, start, end) = out[i - 1], out[i]
        if base_phoneme(name) in STOPS:
            onset = max(start - CLOSURE_LEAD, (a + start) / 2)
            out[i - 1], out[i] = (prev, a, onset), (name, onset, end)
    return out


def synthesize(text: str, voice: Voice = Voice()) -> Speech:
    """Speak ``text`` → :class:`Speech` (16 kHz audio, phoneme and word intervals in seconds).

    espeak-ng speaks at 22050 Hz; we resample to 16 kHz with a polyphase filter (320/441). Phoneme
    ``i`` lasts from its event to the next phoneme's event (the last one to the end of the audio),
    except that stops start at their closure (:func:`_closures_first`); a leading ``"_"`` covers the
    silence before the first phoneme. Deterministic: the same text and
    voice give byte-identical output (each call runs espeak in a fresh process, see ``espeak.py``).
    """
    from scipy.signal import resample_poly

    if not text.strip():
        raise ValueError("text is empty: nothing to say")
    rate, pcm, events = _speak_in_child(text, voice)
    wav = resample_poly(pcm.astype(np.float32) / 32768.0, SAMPLE_RATE, rate).astype(np.float32)  # (N,)
    duration = len(wav) / SAMPLE_RATE  # within one sample of len(pcm) / rate
    phones = [(e[2], e[1] / rate) for e in events if e[0] == "phoneme"]
    if not phones or phones[0][1] > 0:
        phones.insert(0, (SILENCE, 0.0))
    phonemes = _intervals(phones, len(pcm) / rate)
    phonemes[-1] = (*phonemes[-1][:2], duration)
    phonemes = _closures_first(phonemes)
    # a word starts with its first phoneme and ends where the next word or a silence starts
    word_events = [e for e in events if e[0] == "word"]
    sounds = [s for n, s, _ in phonemes if not n.startswith(SILENCE)]
    pauses = [s for n, s, _ in phonemes if n.startswith(SILENCE)]
    starts = [min((s for s in sounds if s >= e[1] / rate), default=duration) for e in word_events]
    words = []
    for (_, _, first, n), start in zip(word_events, starts):
        end = min([t for t in starts + pauses if t > start], default=duration)
        words.append((text[first:first + n], start, end))
    return Speech(text=text, voice=voice, wav=wav, phonemes=phonemes, words=words)


# ----------------------------------------------------------------------------------------- GRID

#: The GRID grammar. Our changes: the letter "A" is left out as well as GRID's "W", because espeak
#: reads a lone "A" as the article /@/, not the letter name /eI/; digits are written as words.
GRID_WORDS: dict[str, tuple[str, ...]] = {
    "command": ("bin", "lay", "place", "set"),
    "colour": ("blue", "green", "red", "white"),
    "preposition": ("at", "by", "in", "with"),
    "letter": tuple("BCDEFGHIJKLMNOPQRSTUVXYZ"),
    "digit": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "adverb": ("again", "now", "please", "soon"),
}


def grid_sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct GRID-like sentences ("bin blue at F two now"), drawn at random without repeats.

    Deterministic in ``seed``. There are 4·4·4·24·10·4 = 61 440 possible sentences.
    """
    sizes = [len(v) for v in GRID_WORDS.values()]
    total = int(np.prod(sizes))
    if not 0 <= n <= total:
        raise ValueError(f"n={n}: the grammar has {total} distinct sentences")
    picks = np.random.default_rng(seed).choice(total, size=n, replace=False)
    index = np.stack(np.unravel_index(picks, sizes), -1)  # (n, 6): one word index per slot
    return [" ".join(words[i] for words, i in zip(GRID_WORDS.values(), row)) for row in index]
