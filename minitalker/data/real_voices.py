"""Real voices for agent 1: human speech, with the corpus's rig moving the mouth on its aligned phones.

Agent 1 learns mouths from espeak, whose voices are all one synthesiser's. Here the same rig
(:func:`~minitalker.data.visemes.articulate`) animates the corpus's training faces on the phone
timings of real speech (:data:`~minitalker.data.real_speech.TRAINING_VOICES`, aligned by
pocketsphinx), so the targets are the mouths agent 1 already learns, and only the voice is new.
Our choice: the paper trains on real video, which ships in no package; real voices with rig mouths
are the nearest thing we can train on offline. None of these speakers is in the real set agent 1
is scored on (:func:`minitalker.lipsync.evaluate_landmarks_real`).

:func:`real_voice_corpus` writes them as a corpus of landmark-only training clips (each recording on
``copies`` faces, taken in turn), cached next to the espeak corpus, that agent 1's training adds to
its own training split (:class:`~minitalker.train.landmarks.LandmarkTrainConfig.real_voices`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from minitalker.audio import FPS, SAMPLE_RATE
from minitalker.config import cache_dir
from minitalker.data.corpus import VERSION, Corpus, CorpusWriter, mirror_landmarks, read_meta
from minitalker.data.real_speech import ARPABET_TO_ESPEAK, TRAINING_VOICES, label_path, load_phones
from minitalker.data.synthetic import CorpusConfig, landmarks_only, reference_face


def _faces(base: CorpusConfig) -> list[tuple[str, bool]]:
    """The base corpus's training appearances: its faces that are not held out, then their mirror images."""
    faces = [i for i in base.identities if i != base.heldout]
    return [(i, m) for m in ((False, True) if base.mirror else (False,)) for i in faces]


def _fetched() -> dict:
    """The training voices fetched into the cache, by name."""
    return {name: rec for name, rec in TRAINING_VOICES.items() if rec.fetched.is_file()}


def _folder(base: CorpusConfig, copies: int) -> Path:
    """``<cache>/realvoices-<preset>-<hash>``, the hash over the faces, the copies and the fetched voices' labels."""
    labels = {name: label_path(name).read_text() for name in _fetched()}
    text = json.dumps({"faces": _faces(base), "size": base.image_size, "seed": base.seed, "copies": copies,
                       "labels": labels, "version": VERSION}, sort_keys=True)
    return cache_dir() / f"realvoices-{base.name}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def build_real_voice_corpus(base: CorpusConfig, copies: int, root: Path, progress: bool = True) -> Path:
    """Write every fetched training voice ``copies`` times (on faces taken in turn) as landmark-only
    ``train`` clips at ``root``: audio (N,), the rig's landmarks (T, 68, 2) on its aligned phones."""
    faces, references = _faces(base), {i: reference_face(i, base.image_size) for i in base.identities}
    recordings = _fetched()
    if not recordings:
        raise FileNotFoundError("no training voice is fetched: run `python -m minitalker.data.real_speech --fetch` "
                                "(`make install` does)")
    with CorpusWriter(root, base.image_size) as writer:
        turn = 0
        for name, rec in tqdm(recordings.items(), disable=not progress, desc="real voices", unit="recording"):
            wav = rec.audio()
            phonemes = [(ARPABET_TO_ESPEAK[p], start, end) for p, start, end in load_phones(name)]
            for k in range(copies):
                identity, mirrored = faces[turn % len(faces)]
                turn += 1
                seed = int(np.random.SeedSequence([base.seed, turn]).generate_state(1)[0])
                lm = landmarks_only(phonemes, len(wav), identity, base.image_size, seed)  # (T, 68, 2)
                info = {"id": f"{name}-{k}", "identity": identity, "mirrored": mirrored, "split": "train",
                        "text": rec.text, "voice": {"name": f"real:{name}"},
                        "phonemes": [[p, round(a, 4), round(b, 4)] for p, a, b in phonemes], "words": []}
                writer.add(info, None, mirror_landmarks(lm, base.image_size) if mirrored else lm, wav)
        meta = {"source": f"real voices ({len(recordings)} recordings)", "config": {"copies": copies}, "fps": FPS,
                "sample_rate": SAMPLE_RATE, "identities": list(base.identities),
                "heldout": [base.heldout] if base.heldout else [], "report": []}
        return writer.finish(meta, references)


def real_voice_corpus(base: CorpusConfig, copies: int, progress: bool = True) -> Corpus:
    """The real-voice training clips for the faces of corpus config ``base`` (built on first use, ~1 min)."""
    root = _folder(base, copies)
    try:
        read_meta(root)
    except ValueError:  # not built yet, or half-written
        build_real_voice_corpus(base, copies, root, progress)
    return Corpus(root)
