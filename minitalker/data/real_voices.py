"""Real voices for agent 1: human speech, with the corpus's rig moving the mouth on its aligned phones.

Agent 1 learns mouths from espeak, whose voices are all one synthesiser's. Here the same rig
(:func:`~minitalker.data.visemes.articulate`) animates the corpus's training faces on the phone
timings of real speech (:data:`~minitalker.data.real_speech.TRAINING_VOICES`, aligned by
pocketsphinx), so the targets are the mouths agent 1 already learns (up to stress, which the aligner's
phones lack: :func:`~minitalker.data.real_speech.rig_phonemes`), and the voice is new.
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
from minitalker.data.real_speech import TRAINING_VOICES, load_phones, rig_phonemes
from minitalker.data.synthetic import CorpusConfig, landmarks_only, reference_face, training_faces


def _folder(base: CorpusConfig, copies: int) -> Path:
    """``<cache>/realvoices-<preset>-<hash>``, the hash over the faces, the copies and what the rig reads."""
    phonemes = {name: rig_phonemes(load_phones(name)) for name in TRAINING_VOICES}
    text = json.dumps({"faces": training_faces(base), "size": base.image_size, "seed": base.seed, "copies": copies,
                       "phonemes": phonemes, "version": VERSION}, sort_keys=True)
    return cache_dir() / f"realvoices-{base.name}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def build_real_voice_corpus(base: CorpusConfig, copies: int, root: Path, progress: bool = True) -> Path:
    """Write every training voice ``copies`` times (on faces taken in turn) as landmark-only ``train`` clips
    at ``root``: audio (N,), the rig's landmarks (T, 68, 2) on its aligned phones. FileNotFoundError (saying
    what to run) where a voice is not fetched."""
    for rec in TRAINING_VOICES.values():
        rec.path()  # all there, or the error that says how to fetch them
    faces, references = training_faces(base), {i: reference_face(i, base.image_size) for i in base.identities}
    with CorpusWriter(root, base.image_size) as writer:
        turn = 0
        for name, rec in tqdm(TRAINING_VOICES.items(), disable=not progress, desc="real voices", unit="recording"):
            wav = rec.audio()
            phonemes = rig_phonemes(load_phones(name))
            for k in range(copies):
                identity, mirrored = faces[turn % len(faces)]
                turn += 1
                seed = int(np.random.SeedSequence([base.seed, turn]).generate_state(1)[0])
                lm = landmarks_only(phonemes, len(wav), identity, base.image_size, seed)  # (T, 68, 2)
                info = {"id": f"{name}-{k}", "identity": identity, "mirrored": mirrored, "split": "train",
                        "text": rec.text, "voice": {"name": f"real:{name}"},
                        "phonemes": [[p, round(a, 4), round(b, 4)] for p, a, b in phonemes], "words": []}
                writer.add(info, None, mirror_landmarks(lm, base.image_size) if mirrored else lm, wav)
        meta = {"source": f"real voices ({len(TRAINING_VOICES)} recordings)", "config": {"copies": copies}, "fps": FPS,
                "sample_rate": SAMPLE_RATE, "identities": list(base.identities),
                "heldout": [base.heldout] if base.heldout else [], "report": []}
        return writer.finish(meta, references)


def real_voice_corpus(base: CorpusConfig, copies: int, progress: bool = True) -> Corpus:
    """The real-voice training clips for the faces of corpus config ``base`` (built on first use, in seconds)."""
    root = _folder(base, copies)
    try:
        read_meta(root)
    except ValueError:  # not built yet, or half-written
        build_real_voice_corpus(base, copies, root, progress)
    return Corpus(root)
