"""The built-in corpus: how espeak-ng and our renderer make it, deterministically.

No public talking-face corpus can be downloaded here, so we make our own:
``grid_sentences`` → ``synthesize`` (espeak-ng speech with exact phoneme times) → ``render_clip``
(phoneme-driven landmarks and piecewise-affine-warped frames of a real photo), written in the
format of :mod:`minitalker.data.corpus` (where real recordings, imported, also go).

Splits (our interpretation of the paper's protocol, which evaluates on unseen sentences and faces):

* by **sentence**: all clips of a sentence are in the same split, so no test sentence was ever heard;
* one **identity held out** entirely (``heldout``, default ``grace_hopper``): its clips exist only in
  the test split. We hold out Grace Hopper rather than the carphone man because her photo is sharp
  (512 px): a test on her measures identity, not blur;
* **mirrored** training faces (``mirror=True``) are augmentation, not new people (see
  :func:`minitalker.data.corpus.mirror_landmarks`).

Where the compute goes: speech and landmarks cost milliseconds per clip, warping frames tens of
milliseconds per *frame*. The two agents need different things: the landmark agent many sentences
and voices (audio + landmarks), the face agent many frames of each face (frames + landmarks). So
only a ``frames_fraction`` of the training clips are rendered to frames (all val/test clips are);
the others are **landmark-only**. (Our design for CPU budgets: ``fast`` renders 25 %, ``full`` 50 %.)

The folder is ``cache_dir()/corpus-<preset>-<hash>``, the hash covering the config and the format
version: :func:`load_corpus` finds a built corpus again, or builds it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from minitalker.audio import FPS, SAMPLE_RATE
from minitalker.config import PresetConfig, cache_dir
from minitalker.data.corpus import SPLITS, VERSION, Corpus, CorpusWriter, mirror_frames, mirror_landmarks


@dataclasses.dataclass
class CorpusConfig(PresetConfig):
    """What to build. Every field changes the output (and so the folder's hash).

    ``n_sentences`` GRID-like sentences (1.3–2 s each) are split by ``splits`` fractions; each is
    spoken ``clips_per_sentence`` times, each time with a voice (``voices`` × ``rates`` words per
    minute × ``pitches`` 0–99, drawn at random) and a face (taken in turn, so faces are balanced).
    A random ``frames_fraction`` of the training clips get frames; val and test clips always do.
    """

    name: str = "fast"  # preset name, used in the folder name
    image_size: int = 64
    identities: tuple[str, ...] = ("astronaut", "carphone", "grace_hopper")
    heldout: str = "grace_hopper"  # only in the test split
    n_sentences: int = 400
    clips_per_sentence: int = 1
    voices: tuple[str, ...] = ("en-us", "en", "en-us+m3", "en-us+f2", "en+f4", "en-us+m7")
    rates: tuple[int, ...] = (140, 165, 190)
    pitches: tuple[int, ...] = (30, 50, 70)
    splits: tuple[float, ...] = (0.85, 0.05, 0.1)  # train, val, test fractions of the sentences
    mirror: bool = True  # add left-right mirrored training faces (augmentation)
    frames_fraction: float = 0.25  # of training clips rendered to frames (the rest: landmarks only)
    seed: int = 0

    @classmethod
    def fast(cls) -> "CorpusConfig":
        return cls()

    @classmethod
    def full(cls) -> "CorpusConfig":
        # 1000 sentences, ~24 k frames of 128 px (1.2 GB): about 5 minutes on 16 cores
        return cls(name="full", image_size=128, n_sentences=1000, frames_fraction=0.5)

    def hash(self) -> str:
        """8 hex digits of SHA-1 over the config and the format version: the folder's identity."""
        text = json.dumps({"config": self.to_dict(), "version": VERSION}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:8]

    def folder_name(self) -> str:
        return f"corpus-{self.name}-{self.hash()}"

    def check(self) -> None:
        """Raise ValueError for configs that cannot be built (before spending any time)."""
        from minitalker.data.faces import FACES

        unknown = set(self.identities) - set(FACES)
        if unknown:
            raise ValueError(f"unknown identities {sorted(unknown)}: the bundled faces are {FACES}")
        if self.heldout and self.heldout not in self.identities:
            raise ValueError(f"heldout={self.heldout!r} is not one of identities {self.identities}")
        if len(self.splits) != 3 or min(self.splits) < 0 or abs(sum(self.splits) - 1) > 1e-6:
            raise ValueError(f"splits must be three fractions (train, val, test) summing to 1; got {self.splits}")
        if self.n_sentences < 3:
            raise ValueError(f"n_sentences={self.n_sentences}: need at least 3 (one per split)")
        if not 0 <= self.frames_fraction <= 1:
            raise ValueError(f"frames_fraction={self.frames_fraction}: give a fraction in [0, 1]")
        if self.image_size < 16:
            raise ValueError(f"image_size={self.image_size}: use at least 16 pixels")
        if len(self.identities) - bool(self.heldout) < 1:
            raise ValueError("every identity is held out: keep at least one for training")


def load_corpus(cfg: CorpusConfig | str | None = None, root: str | os.PathLike | None = None,
                build_if_missing: bool = True, progress: bool = True) -> Corpus:
    """Open the corpus for ``cfg`` (a config, a preset name, or None for ``$MINITALKER_PRESET``).

    ``root``: a corpus folder (built or imported); by default ``cache_dir()/<cfg.folder_name()>``.
    A missing, half-written or corrupt default folder is rebuilt when ``build_if_missing``; otherwise
    (or for a foreign folder) a ValueError says what is wrong.
    """
    if root is not None and cfg is None and (Path(root) / "meta.json").exists():
        return Corpus(root)  # an existing folder speaks for itself (e.g. an imported corpus)
    cfg = cfg if isinstance(cfg, CorpusConfig) else CorpusConfig.preset(cfg)
    root = Path(root) if root is not None else cache_dir() / cfg.folder_name()
    try:
        corpus = Corpus(root)
    except (ValueError, FileNotFoundError, OSError) as e:
        if not build_if_missing:
            raise ValueError(f"no usable corpus at {root} ({e}); build it with `minitalker data build "
                             f"--preset {cfg.name}` or load_corpus(..., build_if_missing=True)") from None
        build_corpus(cfg, root, progress=progress)
        return Corpus(root)
    if corpus.meta["source"] != "built" or CorpusConfig.from_dict(corpus.meta["config"]) != cfg:
        raise ValueError(f"{root} holds a corpus built with another config; pass root=None to use the "
                         "cache folder of this config, or delete that folder")
    return corpus


# ---------------------------------------------------------------------------------------- building

def _split_sentences(cfg: CorpusConfig, rng: np.random.Generator) -> list[str]:
    """A split name per sentence index: shuffled, at least one sentence in each split."""
    n = cfg.n_sentences
    n_val, n_test = (max(1, round(n * f)) for f in cfg.splits[1:])
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"n_sentences={n} leaves no training sentence with splits {cfg.splits}")
    order = rng.permutation(n)
    split = np.empty(n, dtype=object)
    split[order[:n_train]], split[order[n_train:n_train + n_val]], split[order[n_train + n_val:]] = SPLITS
    return list(split)


def plan_clips(cfg: CorpusConfig) -> list[dict]:
    """Every clip to make, in order: id, text, split, identity, mirrored, frames (bool), voice, seed.

    Appearances per split: train = training faces (then their mirror images), val = training faces,
    test = the held-out face + training faces. They are taken in turn (so even a tiny corpus has
    every face), voices at random.
    """
    from minitalker.data.speech import grid_sentences

    cfg.check()
    rng = np.random.default_rng(cfg.seed)
    sentences = grid_sentences(cfg.n_sentences, seed=cfg.seed)
    splits = _split_sentences(cfg, rng)
    train = training_faces(cfg)
    train_ids = [i for i, mirrored in train if not mirrored]
    faces = {"train": train, "val": [(i, False) for i in train_ids],
             "test": ([(cfg.heldout, False)] if cfg.heldout else []) + [(i, False) for i in train_ids]}
    turn = dict.fromkeys(SPLITS, 0)
    plan = []
    for s, (text, split) in enumerate(zip(sentences, splits)):
        for k in range(cfg.clips_per_sentence):
            identity, mirrored = faces[split][turn[split] % len(faces[split])]
            turn[split] += 1
            voice = {"name": str(rng.choice(cfg.voices)), "rate": int(rng.choice(cfg.rates)),
                     "pitch": int(rng.choice(cfg.pitches))}
            frames = bool(rng.random() < cfg.frames_fraction) or split != "train"
            plan.append({"id": f"s{s:05d}-{k}", "text": text, "split": split, "identity": identity,
                         "mirrored": mirrored, "frames": frames, "voice": voice,
                         "seed": int(np.random.SeedSequence([cfg.seed, s, k]).generate_state(1)[0])})
    return plan


def training_faces(cfg: CorpusConfig) -> list[tuple[str, bool]]:
    """The training split's appearances ``[(identity, mirrored)]``: the faces not held out, then their mirror images."""
    train_ids = [i for i in cfg.identities if i != cfg.heldout]
    return [(i, m) for m in ((False, True) if cfg.mirror else (False,)) for i in train_ids]


@functools.cache
def _face(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``load_face`` once per process (decoding a photo costs more than rendering a short clip)."""
    from minitalker.data.faces import load_face

    image, lm = load_face(name)
    image.flags.writeable = lm.flags.writeable = False  # shared by every clip: nobody may paint on it
    return image, lm


def landmarks_only(phonemes: list[tuple[str, float, float]], n_samples: int, face: str, size: int,
                   seed: int) -> np.ndarray:
    """The landmarks ``(T, 68, 2)`` that :func:`render_clip` would give to speech of ``n_samples`` with these
    espeak ``phonemes``, without warping any frame."""
    from minitalker.audio import n_video_frames
    from minitalker.data.render import to_crop
    from minitalker.data.visemes import animate_landmarks, articulate, rest_landmarks
    from minitalker.landmarks.scheme import face_box

    rest = rest_landmarks(_face(face)[1])
    lms = animate_landmarks(rest, articulate(phonemes, n_video_frames(n_samples)), seed=seed)
    return to_crop(lms, face_box(rest), size)


def _make(job: tuple[dict, int]) -> tuple[dict, np.ndarray | None, np.ndarray, np.ndarray]:
    """Worker: speak and animate (and render, if planned) one clip → (info, frames or None, landmarks, audio)."""
    from minitalker.data.render import render_clip
    from minitalker.data.speech import Voice, synthesize

    item, size = job
    speech = synthesize(item["text"], Voice(**item["voice"]))
    if item["frames"]:
        clip = render_clip(speech, _face(item["identity"]), size=size, seed=item["seed"])
        frames, lm = clip.frames, clip.landmarks
    else:
        frames, lm = None, landmarks_only(speech.phonemes, len(speech.wav), item["identity"], size, item["seed"])
    if item["mirrored"]:
        frames, lm = None if frames is None else mirror_frames(frames), mirror_landmarks(lm, size)
    info = {k: item[k] for k in ("id", "identity", "mirrored", "split", "text", "voice")}
    info["phonemes"] = [[p, round(float(a), 4), round(float(b), 4)] for p, a, b in speech.phonemes]
    info["words"] = [[w, round(float(a), 4), round(float(b), 4)] for w, a, b in speech.words]
    return info, frames, lm, speech.wav


def reference_face(identity: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The rest pose of a bundled face (mouth closed, no motion) → (frame (S, S, 3), landmarks (68, 2)):
    exactly the reference :func:`render_clip` gives with every clip of that face."""
    from minitalker.data.render import render_frames
    from minitalker.data.visemes import rest_landmarks
    from minitalker.landmarks.scheme import face_box

    image, lm = _face(identity)
    rest = rest_landmarks(lm)
    frames, lms = render_frames(image, lm, rest[None], size, face_box(rest))
    return frames[0], lms[0]


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core; threads inside would fight over the same cores


def _made(plan: list[dict], size: int, workers: int) -> Iterator[tuple]:
    """Make the clips of ``plan`` in ``workers`` processes; results come back in plan order."""
    jobs = [(item, size) for item in plan]
    if workers <= 1:
        yield from map(_make, jobs)
        return
    method = "fork" if sys.platform == "linux" else "spawn"  # fork: no re-import of torch per worker
    with multiprocessing.get_context(method).Pool(workers, initializer=_worker_init) as pool:
        yield from pool.imap(_make, jobs, chunksize=4)


def build_corpus(cfg: CorpusConfig | str | None = None, root: str | os.PathLike | None = None,
                 progress: bool = True, workers: int | None = None) -> Path:
    """Build the corpus for ``cfg`` (config, preset name or None) into ``root`` → its path.

    Default ``root``: ``cache_dir()/corpus-<preset>-<hash>``. Replaces a corpus (or a half-written
    one) at ``root``. ``workers`` processes make clips in parallel (default: one per core); the
    output does not depend on it, since each clip has its own seed and clips are written in plan order.
    """
    cfg = cfg if isinstance(cfg, CorpusConfig) else CorpusConfig.preset(cfg)
    root = Path(root) if root is not None else cache_dir() / cfg.folder_name()
    plan = plan_clips(cfg)
    workers = (os.cpu_count() or 1) if workers is None else workers
    references = {i: reference_face(i, cfg.image_size) for i in cfg.identities}  # also loads faces for forked workers
    with CorpusWriter(root, cfg.image_size) as writer:
        bar = tqdm(_made(plan, cfg.image_size, workers), total=len(plan), disable=not progress,
                   desc=f"building {root.name}", unit="clip")
        for info, frames, lm, audio in bar:
            writer.add(info, frames, lm, audio)
        meta = {"source": "built", "config": cfg.to_dict(), "fps": FPS, "sample_rate": SAMPLE_RATE,
                "identities": list(cfg.identities), "heldout": [cfg.heldout] if cfg.heldout else [], "report": []}
        return writer.finish(meta, references)
