"""The smallest useful ctypes binding of espeak-ng: text → 16-bit PCM + phoneme and word events.

The ``espeakng-loader`` wheel bundles ``libespeak-ng.so`` and its voice data, so this works offline
with no system package. We call the C API of ``speak_lib.h`` directly:

1. ``espeak_Initialize(SYNCHRONOUS, 0, data_path, PHONEME_EVENTS)`` → the sample rate (22050 Hz);
2. ``espeak_SetSynthCallback(cb)``: espeak calls ``cb(pcm, n, events)`` with each chunk of audio and
   an array of events (type 7 = phoneme, name in ``id.string``; type 1 = word, with its character
   position in the text; the array ends with type 0). ``event.sample`` is the sample where it starts;
3. ``espeak_SetVoiceByName``, ``espeak_SetParameter`` (rate, pitch), ``espeak_Synth``, ``espeak_Synchronize``.

Why this file runs as a **child process** (``python espeak.py`` reads a JSON request on stdin):
espeak-ng keeps hidden state between utterances (the phase of its pitch "flutter" and the pitch of
the last glottal cycle), so the same sentence spoken twice in one process comes out a few samples
different. Speaking each utterance in a fresh process makes the audio a pure function of
(text, voice). It costs a few tens of ms per sentence, and it also makes calls thread-safe.
The child runs as ``python -I -S espeak.py`` (no site-packages: the parent passes the library and
data paths that ``espeakng_loader`` gives it), so it starts in about 20 ms.
"""

from __future__ import annotations

import ctypes
import json
import sys

AUDIO_OUTPUT_SYNCHRONOUS, INITIALIZE_PHONEME_EVENTS = 2, 0x0001
POS_CHARACTER, CHARS_UTF8 = 1, 1
PARAM_RATE, PARAM_PITCH = 1, 3
EVENT_END_OF_LIST, EVENT_WORD, EVENT_PHONEME = 0, 1, 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):  # espeak_EVENT
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def speak(text: str, voice: str, rate: int, pitch: int, library: str, data: str) -> tuple[int, bytes, list[list]]:
    """Synthesise ``text`` in this process → ``(sample_rate, pcm int16 bytes, events)``.

    ``library``/``data``: paths of ``libespeak-ng.so`` and ``espeak-ng-data`` (from ``espeakng_loader``).
    ``events``: ``["phoneme", sample, name]`` and ``["word", sample, first_char, n_chars]`` in time order.
    Call it once per process (see the module docstring).
    """
    lib = ctypes.CDLL(library)
    rate_hz = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(), INITIALIZE_PHONEME_EVENTS)
    if rate_hz <= 0:
        raise RuntimeError(f"espeak_Initialize failed ({rate_hz}): is the espeakng-loader data folder intact?")
    pcm, events = [], []

    @_Callback
    def on_audio(wav, n, ev):  # espeak → us: a chunk of samples and the events inside it
        if n > 0:
            pcm.append(ctypes.string_at(wav, 2 * n))
        i = 0
        while ev[i].type != EVENT_END_OF_LIST:
            e = ev[i]
            if e.type == EVENT_PHONEME:
                events.append(["phoneme", e.sample, e.id.string.decode("ascii", "replace")])
            elif e.type == EVENT_WORD:
                events.append(["word", e.sample, e.text_position - 1, e.length])  # espeak counts from 1
            i += 1
        return 0  # 0 = go on

    lib.espeak_SetSynthCallback(on_audio)
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise ValueError(f"espeak-ng has no voice {voice!r}")
    lib.espeak_SetParameter(PARAM_RATE, rate, 0)
    lib.espeak_SetParameter(PARAM_PITCH, pitch, 0)
    lib.espeak_ng_SetRandSeed(ctypes.c_long(0))  # the Klatt voices' noise source
    data = text.encode()
    if lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None) != 0:
        raise RuntimeError(f"espeak_Synth failed on {text!r}")
    lib.espeak_Synchronize()
    return rate_hz, b"".join(pcm), events


def main() -> None:
    """Child-process entry: JSON ``{text, voice, rate, pitch, library, data}`` on stdin → JSON header line + PCM on stdout."""
    request = json.loads(sys.stdin.buffer.read())
    rate_hz, pcm, events = speak(**request)
    out = sys.stdout.buffer
    out.write(json.dumps({"sample_rate": rate_hz, "events": events}).encode() + b"\n")
    out.write(pcm)
    out.flush()


if __name__ == "__main__":
    main()
