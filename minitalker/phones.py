"""A phonetic front end: the phones an offline recogniser hears, as a one-hot track beside the log-mel.

Agent 1 learns speech from espeak alone. A human voice's log-mel lies outside what it heard, and no
speaker or channel augmentation closed that gap (README, "Agent 1 on real speech"). pocketsphinx's
US-English acoustic model was trained on many human voices, so the *phones* it recognises mean the
same thing whoever speaks, espeak included. (The agent-1 issue names this option; the recogniser
is our choice: the one that ships offline.)

* :func:`decode`: speech ``(N,)`` → ``[(phone, start_s, end_s), ...]``, by one of two recognisers:

  - ``"loop"``: phone-loop decoding (pocketsphinx's ``allphone`` mode with its bundled phone
    language model; no words), with CMU's settings for phoneme recognition (language weight 2,
    beams 1e-20);
  - ``"words"``: :func:`hear_words` (pocketsphinx's word recogniser and US-English language model),
    then :func:`align` of the phones of the words it heard, the route Rhubarb Lip Sync takes. The
    language model's knowledge of English turns half-heard phones into whole words, so on clean human
    speech the phones come out right far more often than from the loop; on espeak's robotic voice and
    its word salad it does worse (``benchmarks/phone_recognition.py``). Where it hears no words, or
    cannot align them, the loop's phones stand in, for the whole utterance (one misheard word that
    will not align sends a long recording back to the loop).

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
RECOGNISERS = ("loop", "words")
SETTINGS = {"lw": 2.0, "beam": 1e-20, "pbeam": 1e-20}  # CMU's phoneme-recognition recipe
CACHE_KEY = SETTINGS | {"cmn": "batch", "silence_gate": 1, "fresh_decoder": 1}  # what a cached track was made with


def cache_key(recogniser: str = "loop") -> dict:
    """What a cached phone track was made with (the loop's key predates the word route, hence no name)."""
    return CACHE_KEY if recogniser == "loop" else CACHE_KEY | {"recogniser": recogniser}


def _decoder(sample_rate: int, kind: str = "words", loglevel: str = "ERROR"):
    """A fresh decoder (0.4 s to make with the language model, 0.15 s without): a reused one carries
    state from earlier utterances into the next, so the same audio could be heard differently.
    ``kind``: ``"words"``, pocketsphinx's word recogniser (its US-English language model and
    dictionary); ``"align"``, the dictionary alone (the text to align stands in for the language
    model); ``"loop"``, its phone loop, where batch CMN takes the cepstral means from the whole utterance."""
    try:
        import pocketsphinx
    except ImportError as e:
        raise ImportError("the phonetic front end needs pocketsphinx (offline, with its English model): "
                          "pip install pocketsphinx — `make install` does") from e
    settings = {"words": {}, "align": {"lm": None},
                "loop": {"lm": None, "backtrace": False, "cmn": "batch", **SETTINGS,
                         "allphone": str(Path(pocketsphinx.get_model_path()) / "en-us" / "en-us-phone.lm.bin")}}
    return pocketsphinx.Decoder(loglevel=loglevel, samprate=sample_rate, **settings[kind])


def _run(decoder, wav: np.ndarray) -> None:
    """Decode speech ``(N,)`` in [-1, 1] as one utterance (pocketsphinx reads 16-bit PCM)."""
    decoder.start_utt()
    decoder.process_raw((np.clip(wav, -1, 1) * 32767).astype(np.int16).tobytes(), full_utt=True)
    decoder.end_utt()


def decode(wav: np.ndarray, sample_rate: int = 16000, recogniser: str = "loop") -> list[tuple[str, float, float]]:
    """The phones heard in speech ``(N,)`` in [-1, 1] → ``[(phone, start_s, end_s), ...]`` in time
    order, by the ``recogniser`` (:data:`RECOGNISERS`, see the module docstring); names outside
    :data:`PHONES` (noise, fillers) become ``sil``."""
    if recogniser not in RECOGNISERS:
        raise ValueError(f"recogniser {recogniser!r}: choose one of {RECOGNISERS}")
    if recogniser == "words" and (text := hear_words(wav, sample_rate)):
        try:
            return align(wav, text, sample_rate, loglevel="FATAL")
        except ValueError:  # misheard words the audio cannot be aligned to: fall back to the loop
            pass
    decoder = _decoder(sample_rate, "loop")
    _run(decoder, wav)
    frame_s = 1 / decoder.config["frate"]  # 10 ms
    return [(name if (name := seg.word.lower()) in PHONES else "sil", seg.start_frame * frame_s,
             (seg.end_frame + 1) * frame_s) for seg in decoder.seg()]


def hear_words(wav: np.ndarray, sample_rate: int = 16000) -> str:
    """The words pocketsphinx's recogniser hears in speech ``(N,)``: lower case, ``""`` for none."""
    decoder = _decoder(sample_rate)
    _run(decoder, wav)
    return decoder.hyp().hypstr.strip() if decoder.hyp() else ""


def align(wav: np.ndarray, text: str, sample_rate: int = 16000, loglevel: str = "ERROR",
          pronounce: dict[str, str] | None = None) -> list[tuple[str, float, float]]:
    """Forced alignment of speech ``(N,)`` to its text → ``[(phone, start_s, end_s), ...]``.

    pocketsphinx decodes with the text as the only allowed word sequence (its dictionary picks the
    pronunciation variant), then aligns phones inside the words; it works at 100 frames a second.
    ``pronounce``: words its CMU dictionary lacks, as ``{"aligner": "ah l ay n er"}``.
    ValueError where the speech cannot be aligned to the text.
    """
    decoder = _decoder(sample_rate, "align", loglevel)
    failed = ValueError(f"pocketsphinx could not align the speech to {text!r}: is it the right text?")
    try:  # pocketsphinx raises RuntimeError ("Failed to stop utterance processing", unknown words, ...)
        for word, phones in (pronounce or {}).items():
            if decoder.lookup_word(word) is None:  # (adding a word the dictionary has fails)
                decoder.add_word(word, phones.upper(), update=False)  # the acoustic model names phones in capitals
        decoder.set_align_text(text)  # (builds the search, with the words added above)
        for step in ("words", "phones"):  # first the word sequence, then the phones inside it
            _run(decoder, wav)
            if step == "words":
                if decoder.hyp() is None:
                    raise failed
                decoder.set_alignment()
    except RuntimeError as e:
        raise failed from e
    frame_s = 1 / decoder.config["frate"]
    return [(name if (name := ph.name.lower()) in PHONES else "sil", ph.start * frame_s,
             (ph.start + ph.duration) * frame_s) for word in decoder.get_alignment() for ph in word]


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
