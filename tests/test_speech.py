"""Synthetic speech: espeak-ng through ctypes, phoneme times, determinism, the GRID grammar."""

import numpy as np
import pytest

from minitalker.audio import SAMPLE_RATE
from minitalker.data.speech import GRID_WORDS, Speech, Voice, grid_sentences, synthesize


@pytest.fixture(scope="module")
def speech() -> Speech:
    return synthesize("bin blue at F two now", Voice("en-us", rate=165, pitch=50))


def test_audio_is_16khz_float(speech):
    assert speech.wav.dtype == np.float32 and speech.wav.ndim == 1
    assert 0.8 < speech.duration < 3.0 and speech.duration == len(speech.wav) / SAMPLE_RATE
    assert 0.05 < np.abs(speech.wav).max() <= 1.0


def test_phonemes_tile_the_audio(speech):
    starts = np.array([s for _, s, _ in speech.phonemes])
    ends = np.array([e for _, _, e in speech.phonemes])
    assert starts[0] == 0.0 and ends[-1] == pytest.approx(speech.duration)
    assert np.all(ends > starts) and np.all(np.diff(starts) > 0)
    np.testing.assert_array_equal(starts[1:], ends[:-1])  # no gaps, no overlaps
    names = [n.lstrip("',") for n, _, _ in speech.phonemes]
    assert names[:4] == ["_", "b", "I", "n"] and "aU" in names  # "bin ... now"


def test_words_in_order_inside_the_audio(speech):
    assert [w for w, _, _ in speech.words] == "bin blue at F two now".split()
    for (_, s, e), (_, s_next, _) in zip(speech.words, speech.words[1:] + [("", speech.duration, 0)]):
        assert 0 <= s < e <= s_next + 1e-9


def test_same_input_same_bytes(speech):
    other = synthesize("lay red by Q eight soon", Voice("en-us+m3", rate=140, pitch=30))  # in between
    again = synthesize("bin blue at F two now", Voice("en-us", rate=165, pitch=50))
    assert again.wav.tobytes() == speech.wav.tobytes() and again.phonemes == speech.phonemes
    assert other.wav.tobytes() != speech.wav.tobytes()


def test_rate_changes_duration():
    slow, fast = (synthesize("set white with zero again", Voice("en", rate=r)) for r in (120, 240))
    assert slow.duration > 1.4 * fast.duration


def test_bad_voices_are_clear():
    with pytest.raises(ValueError, match="variant"):
        Voice("en-us+nosuchvoice")
    with pytest.raises(ValueError, match="rate"):
        Voice(rate=20)
    with pytest.raises(RuntimeError, match="no voice"):
        synthesize("hello", Voice("xx-nowhere"))


def test_grid_sentences_deterministic_and_grammatical():
    a, b = grid_sentences(50, seed=1), grid_sentences(50, seed=1)
    assert a == b and len(set(a)) == 50 and a != grid_sentences(50, seed=2)
    for sentence in a:
        words = sentence.split()
        assert len(words) == 6 and all(w in slot for w, slot in zip(words, GRID_WORDS.values()))
    with pytest.raises(ValueError):
        grid_sentences(10**6)


def test_a_stop_starts_at_its_closure_not_at_its_burst():
    """espeak reports "p" when the burst starts; the silent closure before it is the stop's too
    (synthesize moves stops CLOSURE_LEAD earlier), so the lips shut while the sound is silent."""
    from minitalker.data.visemes import base_phoneme

    speech = synthesize("lay green with p zero again")
    name, start, end = next(p for p in speech.phonemes if base_phoneme(p[0]) == "p")

    def level(a, b):  # dB between a and b seconds
        return 20 * np.log10(np.sqrt(np.mean(speech.wav[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)] ** 2)) + 1e-9)

    loud = max(level(t, t + 0.02) for t in np.arange(0, speech.duration - 0.02, 0.02))
    assert level(start + 0.005, start + 0.025) < loud - 40  # the closure: silence inside the stop
    assert end - start > 0.05
