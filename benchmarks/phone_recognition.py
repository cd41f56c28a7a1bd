"""Which phones does the front end hear? pocketsphinx's phone loop against its word route.

The phonetic front end (:mod:`minitalker.phones`, through :func:`minitalker.audio.recognise_phones`,
loudness and silence gate included) has two recognisers: the **loop** decodes phones alone, the
**word route** recognises *words* with pocketsphinx's US-English language model, then force-aligns
the phones of the words it heard (:func:`minitalker.phones.align`; the loop stands in where none
align). Both are scored frame by frame (100 a second) against the true phones:

* **accuracy**: the fraction of speech frames (true phone not ``sil``) given the right phone;
* **open-vowel r**: the correlation of the heard and the true open-vowel indicators (aa ae ah ao aw ay);
* **bilabials heard**: the fraction of true p/b/m frames heard as p, b or m.

On the real set (its seven recordings, clean and with white noise at 20 and 10 dB SNR, one seed)
and on the synthetic corpus's first ``--clips`` test clips (espeak; the corpus's phones are the
truth). The real set's true phones come from the same aligner, given the true text: where the word
recogniser hears the sentence right, the word route reproduces them by construction, so there its
score says whether the words were heard. Writes ``benchmarks/results/phone_recognition.json`` and
prints a table. Usage: ``python benchmarks/phone_recognition.py [--corpus PATH] [--clips 20]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from minitalker import phones as P
from minitalker.audio import SAMPLE_RATE, AudioConfig, normalise_loudness, recognise_phones
from minitalker.io import write_json
from minitalker.phones import RECOGNISERS, hear_words

OUT = Path(__file__).parent / "results" / "phone_recognition.json"


def scores(truth, heard, n: int) -> dict:
    """Frame-by-frame agreement of two phone lists over ``n`` 10-ms frames."""
    from minitalker.data.real_speech import BILABIALS, OPEN_VOWELS

    a, b = (P.phone_track(x, n).argmax(1) for x in (truth, heard))
    speech = a != P.SILENCE
    open_a, open_b = (np.isin(x, [P.PHONES.index(p) for p in OPEN_VOWELS]) for x in (a, b))
    lips_a, lips_b = (np.isin(x, [P.PHONES.index(p) for p in BILABIALS]) for x in (a, b))
    r = np.corrcoef(open_a, open_b)[0, 1] if open_a.std() and open_b.std() else 0.0
    return {"accuracy": float((a == b)[speech].mean()), "open_vowel_r": float(r),
            "bilabials_heard": float(lips_b[lips_a].mean()) if lips_a.any() else None}


def compare(name: str, wav: np.ndarray, truth) -> dict:
    n = int(len(wav) / SAMPLE_RATE * 100)
    heard = {r: recognise_phones(wav, AudioConfig(phones=True, recogniser=r)) for r in RECOGNISERS}
    row = {"phone loop": scores(truth, heard["loop"], n), "words + alignment": scores(truth, heard["words"], n),
           "words heard": hear_words(normalise_loudness(wav, AudioConfig()))}
    print(name, row, flush=True)
    return row


def main() -> None:
    from minitalker.data.corpus import Corpus
    from minitalker.data.real_speech import espeak_to_arpabet, real_speech_set

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="data/cache/corpus-fast-voices5-f004b7bf")
    parser.add_argument("--clips", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = {}
    for rec in real_speech_set():
        wav = rec["wav"]
        for snr in (None, 20, 10):
            noise = 0 if snr is None else rng.normal(size=wav.shape) * np.sqrt((wav ** 2).mean() / 10 ** (snr / 10))
            name = rec["name"] + ("" if snr is None else f" + noise {snr} dB")
            rows[name] = compare(name, (wav + noise).astype(np.float32), rec["phones"])
    synthetic = [compare(c.id, c.audio, espeak_to_arpabet(c.phonemes)) for c in Corpus(args.corpus).split("test")[:args.clips]]
    mean = {route: {k: float(np.mean([r[route][k] for r in synthetic if r[route][k] is not None] or [np.nan]))
                    for k in ("accuracy", "open_vowel_r", "bilabials_heard")} for route in ("phone loop", "words + alignment")}
    rows[f"synthetic test, first {args.clips} clips (mean)"] = mean
    write_json(OUT, {"corpus": args.corpus, "rows": rows})
    print("| recording | phone loop: accuracy / open-vowel r / bilabials heard | words + alignment: the same |")
    print("|---|---|---|")
    for name, row in rows.items():
        cells = [" / ".join("-" if row[k][m] is None else f"{row[k][m]:.2f}" for m in ("accuracy", "open_vowel_r",
                 "bilabials_heard")) for k in ("phone loop", "words + alignment")]
        print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
