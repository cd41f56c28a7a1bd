"""A phonetic front end: the phones an offline recogniser hears, as a one-hot track beside the log-mel.

Agent 1 learns speech from espeak alone. A human voice's log-mel lies outside what it heard, and no
speaker or channel augmentation closed that gap (README, "Agent 1 on real speech"). pocketsphinx's
US-English acoustic model was trained on many human voices, so the *phones* it recognises mean the
same thing whoever speaks, espeak included. (The agent-1 issue names this option; the recogniser
is our choice: the one that ships offline.)

* :func:`decode`: speech ``(N,)`` → ``[(phone, start_s, end_s), ...]`` by phone-loop decoding
  (pocketsphinx's ``allphone`` mode with its bundled phone language model; no text needed), with
  CMU's settings for phoneme recognition (language weight 2, beams 1e-20).
  :func:`minitalker.audio.recognise_phones` adds the front end's loudness and silence gate.
* :func:`phone_track`: phones → ``(M, P)`` one-hot rows, one per log-mel frame (``m · hop``), so the
  windows of :func:`minitalker.audio.frame_windows` cut both alike. ``P = len(PHONES) = 40``: the CMU
  dictionary's 39 phones and ``sil`` (noise and fillers count as ``sil``).

The recogniser gives one best path, not posteriors: a one-hot track is what it can say.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PHONES = ("aa", "ae", "ah", "ao", "aw", "ay", "b", "ch", "d", "dh", "eh", "er", "ey", "f", "g", "hh", "ih", "iy",
          "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh", "sil", "t", "th", "uh", "uw", "v", "w",
          "y", "z", "zh")  # the CMU dictionary's 39 phones (ARPAbet, lower case) and silence
SILENCE = PHONES.index("sil")
SETTINGS = {"lw": 2.0, "beam": 1e-20, "pbeam": 1e-20}  # CMU's phoneme-recognition recipe
CACHE_KEY = SETTINGS | {"cmn": "batch", "silence_gate": 1, "fresh_decoder": 1}  # what a cached track was made with


def _decoder(sample_rate: int):
    """A fresh decoder (0.1 s to make): a reused one carries state from earlier utterances into the
    next, so the same audio could be heard differently. Batch CMN takes the cepstral means from the
    whole utterance."""
    try:
        import pocketsphinx
    except ImportError as e:
        raise ImportError("the phonetic front end needs pocketsphinx (offline, with its English model): "
                          "pip install pocketsphinx — `make install` does") from e
    model = Path(pocketsphinx.__file__).parent / "model" / "en-us"
    return pocketsphinx.Decoder(loglevel="ERROR", samprate=sample_rate, lm=None, backtrace=False,
                                allphone=str(model / "en-us-phone.lm.bin"), cmn="batch", **SETTINGS)


def decode(wav: np.ndarray, sample_rate: int = 16000) -> list[tuple[str, float, float]]:
    """Phone-loop recognition of speech ``(N,)`` in [-1, 1] → ``[(phone, start_s, end_s), ...]`` in
    time order; names outside :data:`PHONES` (noise, fillers) become ``sil``."""
    decoder = _decoder(sample_rate)
    decoder.start_utt()
    decoder.process_raw((np.clip(wav, -1, 1) * 32767).astype(np.int16).tobytes(), full_utt=True)
    decoder.end_utt()
    frame_s = 1 / decoder.config["frate"]  # 10 ms
    return [(name if (name := seg.word.lower()) in PHONES else "sil", seg.start_frame * frame_s,
             (seg.end_frame + 1) * frame_s) for seg in decoder.seg()]


def phone_track(phones: list[tuple[str, float, float]], n_frames: int, hop_s: float = 0.01) -> np.ndarray:
    """Phones → one-hot ``(n_frames, P)`` float32: row ``m`` (time ``m · hop_s``, the log-mel frame's
    centre) marks the phone that covers it, ``sil`` where none does."""
    track = np.zeros((n_frames, len(PHONES)), np.float32)
    index = np.full(n_frames, SILENCE)
    t = np.arange(n_frames) * hop_s
    for name, start, end in phones:
        index[(t >= start) & (t < end)] = PHONES.index(name)
    track[np.arange(n_frames), index] = 1
    return track
