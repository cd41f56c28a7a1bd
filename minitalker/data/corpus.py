"""The built-in talking-face corpus: build it once, store it compactly, load it lazily.

No public talking-face corpus can be downloaded here, so we make our own, deterministically:
``grid_sentences`` → ``synthesize`` (espeak-ng speech with exact phoneme times) → ``render_clip``
(phoneme-driven landmarks and piecewise-affine-warped frames of a real photo). Real recordings
(GRID, any talking-head video) are imported into the same format by :mod:`minitalker.data.importers`.

Splits (our interpretation of the paper's protocol, which evaluates on unseen sentences and faces):

* by **sentence**: all clips of a sentence are in the same split, so no test sentence was ever heard;
* one **identity held out** entirely (``heldout``, default ``grace_hopper``): its clips exist only in
  the test split, to measure generalisation to a new face. We hold out Grace Hopper rather than the
  carphone man because her photo is sharp (512 px): a test on her measures identity, not blur;
* **mirrored** training faces (``mirror=True``) are augmentation, not new people: a clip keeps its
  ``identity`` and says ``mirrored=True``; its frames and landmarks are flipped left-right (with
  the iBUG points relabelled, see :data:`MIRROR`), and ``clip.reference()`` is flipped to match.

Where the compute goes: speech and landmarks cost milliseconds per clip, warping frames tens of
milliseconds per *frame*. The two agents need different things: the landmark agent many sentences
and voices (audio + landmarks), the face agent many frames of each face (frames + landmarks). So
only a ``frames_fraction`` of the training clips are rendered to frames (all val/test clips are);
the others are **landmark-only** (``clip.has_frames`` is False). ``corpus.split(name, frames=True)``
gives the clips with frames. (Our design for CPU budgets: ``fast`` renders 25 %, ``full`` 50 %.)

On disk (``cache_dir()/corpus-<preset>-<hash>/``; the hash covers the config and format version)::

    meta.json                 format, version, source, config, image_size, fps, sample_rate,
                              identities, heldout, clips: [{id, identity, mirrored, split, text,
                              voice, phonemes [[name, start_s, end_s]], words, n_frames, n_samples,
                              shard, landmark_offset, frame_offset (null: no frames), audio_offset}],
                              report (importers: one line per video)
    shard-000.safetensors     landmarks (ΣT, 68, 2) float32 (crop px) | frames (ΣT', S, S, 3) uint8
                              | audio (ΣN,) float32 at 16 kHz; each clip is a slice of each array
    references.safetensors    <identity>.frame (S, S, 3) uint8, <identity>.landmarks (68, 2) float32

The folder is written under a temporary name and renamed when complete, so it either exists whole
or not at all; safetensors (unlike npz, whose zip entries carry timestamps) makes every byte
depend only on the config, so two builds with the same seed are byte-identical.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file
from tqdm.auto import tqdm

from minitalker.audio import FPS, SAMPLE_RATE
from minitalker.config import PresetConfig, cache_dir
from minitalker.io import write_json

FORMAT, VERSION = "minitalker-corpus", 2  # 2: stops close CLOSURE_LEAD before espeak says (visemes)
SPLITS = ("train", "val", "test")
SHARD_FRAMES = 4096  # frames per shard file (48 MB at 64 px): small enough to mmap, few enough to list
#: iBUG-68 index of each point's mirror image (jaw 0↔16, brows 17↔26, eyes 36↔45, mouth 48↔54...).
MIRROR = np.array(
    [*range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,
     45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
     54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65])


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


# ---------------------------------------------------------------------------------------- loading

@dataclasses.dataclass
class Clip:
    """One utterance: speech, its landmarks and its frames. Arrays are read from the shard on access.

    ``audio (N,)`` float32 16 kHz · ``landmarks (T, 68, 2)`` float32 in crop pixels ·
    ``frames (T, S, S, 3)`` uint8 (only if ``has_frames``) · ``phonemes`` [(name, start_s, end_s)] ·
    ``words`` the same for words.
    """

    id: str
    identity: str
    split: str
    text: str
    voice: dict[str, Any]
    phonemes: list[tuple[str, float, float]]
    words: list[tuple[str, float, float]]
    n_frames: int
    n_samples: int
    mirrored: bool
    shard: str
    landmark_offset: int
    frame_offset: int | None
    audio_offset: int
    corpus: "Corpus" = dataclasses.field(repr=False, compare=False)

    @property
    def audio(self) -> np.ndarray:
        return self.corpus._read(self.shard, "audio", self.audio_offset, self.n_samples)

    @property
    def landmarks(self) -> np.ndarray:
        return self.corpus._read(self.shard, "landmarks", self.landmark_offset, self.n_frames)

    @property
    def has_frames(self) -> bool:
        return self.frame_offset is not None

    @property
    def frames(self) -> np.ndarray:
        if not self.has_frames:
            raise ValueError(f"clip {self.id} is landmark-only (no frames were rendered for it): "
                             "take clips from corpus.split(name, frames=True)")
        return self.corpus._read(self.shard, "frames", self.frame_offset, self.n_frames)

    def reference(self) -> tuple[np.ndarray, np.ndarray]:
        """The reference (frame (S, S, 3), landmarks (68, 2)) that matches this clip's appearance."""
        return self.corpus.reference(self.identity, self.mirrored)


class Corpus:
    """A corpus folder (built or imported): ``clips``, ``split(name)``, ``reference(identity)``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.meta = read_meta(self.root)
        self.image_size: int = self.meta["image_size"]
        self.fps: float = self.meta["fps"]
        self.sample_rate: int = self.meta["sample_rate"]
        self.identities: list[str] = self.meta["identities"]
        self.heldout: list[str] = self.meta["heldout"]
        self._handles: dict[str, Any] = {}
        self.clips = [Clip(**{**c, "phonemes": [tuple(p) for p in c["phonemes"]],
                              "words": [tuple(w) for w in c["words"]]}, corpus=self) for c in self.meta["clips"]]
        with safe_open(self.root / "references.safetensors", "np") as f:
            self._references = {k: f.get_tensor(k) for k in f.keys()}

    def __len__(self) -> int:
        return len(self.clips)

    def __repr__(self) -> str:
        counts = ", ".join(f"{s} {len(self.split(s))}" for s in SPLITS)
        with_frames = [c for c in self.clips if c.has_frames]
        return (f"Corpus({self.root.name}: {len(self)} clips ({counts}); {len(with_frames)} with "
                f"{sum(c.n_frames for c in with_frames)} frames of {self.image_size}px; "
                f"identities {self.identities}, held out {self.heldout})")

    def split(self, name: str, frames: bool = False) -> list[Clip]:
        """The clips of split ``name``; with ``frames=True`` only those that have frames."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: choose one of {SPLITS}")
        return [c for c in self.clips if c.split == name and (c.has_frames or not frames)]

    def reference(self, identity: str, mirrored: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """A neutral frame of ``identity`` and its landmarks → ((S, S, 3) uint8, (68, 2) float32)."""
        if identity not in self.identities:
            raise KeyError(f"no identity {identity!r} in this corpus; it has {self.identities}")
        frame, lm = self._references[f"{identity}.frame"], self._references[f"{identity}.landmarks"]
        return (mirror_frames(frame), mirror_landmarks(lm, self.image_size)) if mirrored else (frame, lm)

    def _read(self, shard: str, key: str, start: int, length: int) -> np.ndarray:
        if shard not in self._handles:
            self._handles[shard] = safe_open(self.root / shard, "np")
        return self._handles[shard].get_slice(key)[start:start + length]

    def __getstate__(self) -> dict:  # open files do not pickle (DataLoader workers): reopen there
        return {**self.__dict__, "_handles": {}}


def mirror_frames(frames: np.ndarray) -> np.ndarray:
    """Flip images ``(..., S, S, 3)`` left-right."""
    return np.ascontiguousarray(frames[..., ::-1, :])


def mirror_landmarks(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Landmarks ``(..., 68, 2)`` of an image ``size`` pixels wide, after :func:`mirror_frames`.

    Pixel column ``x`` goes to ``size - 1 - x``; point ``i`` becomes point ``MIRROR[i]`` so that the
    points keep their meaning (36 stays the outer corner of the eye on the image's left).
    """
    lm = landmarks[..., MIRROR, :].copy()
    lm[..., 0] = size - 1 - lm[..., 0]
    return lm


def read_meta(root: Path) -> dict:
    """``meta.json`` of a complete corpus folder; ValueError if it is missing, corrupt or another format."""
    path = root / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{root} is not a complete corpus (no meta.json): rebuild it "
                         "(`minitalker data build`) or delete the folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is corrupt ({e}): delete {root} and rebuild (`minitalker data build`)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{root} holds no {FORMAT} v{VERSION} (found {meta.get('format') if isinstance(meta, dict) else meta!r} "
                         f"v{meta.get('version') if isinstance(meta, dict) else '?'}): delete it and rebuild")
    missing = sorted(({c["shard"] for c in meta["clips"]} | {"references.safetensors"}) - {p.name for p in root.iterdir()})
    if missing:
        raise ValueError(f"{root} lacks {missing}: the corpus is incomplete; delete it and rebuild")
    return meta


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


# ---------------------------------------------------------------------------------------- writing

def _is_corpus_like(folder: Path) -> bool:
    """True if ``folder`` holds nothing but what a corpus (maybe a half-written one) holds."""
    return all(p.name == "meta.json" or p.suffix in (".safetensors", ".tmp") for p in folder.iterdir())


class CorpusWriter:
    """Write clips in order into a temporary folder; :meth:`finish` makes it the corpus at ``root``.

    Used as a context manager; if the block fails, the temporary folder is removed and ``root`` is
    untouched. Importers use this too, so built and imported corpora share one format.
    """

    def __init__(self, root: str | os.PathLike, image_size: int):
        self.root, self.size = Path(root), image_size
        if self.root.is_file() or (self.root.is_dir() and not _is_corpus_like(self.root)):
            raise ValueError(f"{self.root} exists and is not a corpus folder: refusing to overwrite it; "
                             "choose a new or empty folder")
        self.root.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.root.with_name(f".{self.root.name}.{os.getpid()}.tmp")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        self.clips: list[dict] = []
        self._buffer: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._landmarks = self._frames = self._samples = self._shard = 0

    def __enter__(self) -> "CorpusWriter":
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def add(self, info: dict, frames: np.ndarray | None, landmarks: np.ndarray, audio: np.ndarray) -> None:
        """Append one clip: ``frames (T, S, S, 3)`` uint8 or None, ``landmarks (T, 68, 2)``, ``audio (N,)``."""
        T, S = len(landmarks), self.size
        if landmarks.shape != (T, 68, 2) or frames is not None and (frames.shape != (T, S, S, 3) or frames.dtype != np.uint8):
            raise ValueError(f"clip {info.get('id')}: landmarks {landmarks.shape} / frames "
                             f"{None if frames is None else (frames.shape, frames.dtype)} do not match "
                             f"(T, 68, 2) / (T, {S}, {S}, 3) uint8")
        self.clips.append({**info, "n_frames": T, "n_samples": len(audio), "shard": f"shard-{self._shard:03d}.safetensors",
                           "landmark_offset": self._landmarks, "frame_offset": None if frames is None else self._frames,
                           "audio_offset": self._samples})
        self._buffer.append((frames if frames is not None else np.zeros((0, S, S, 3), np.uint8),
                             landmarks.astype(np.float32), audio.astype(np.float32)))
        self._landmarks, self._samples = self._landmarks + T, self._samples + len(audio)
        self._frames += 0 if frames is None else T
        if self._frames >= SHARD_FRAMES:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        frames, landmarks, audio = (np.concatenate(a) for a in zip(*self._buffer))
        save_file({"frames": frames, "landmarks": landmarks, "audio": audio},
                  str(self.tmp / f"shard-{self._shard:03d}.safetensors"))
        self._buffer, self._shard = [], self._shard + 1
        self._landmarks = self._frames = self._samples = 0

    def finish(self, meta: dict, references: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
        """Write the last shard, references and ``meta.json``; rename the folder to ``root``.

        ``references``: identity → (frame (S, S, 3) uint8, landmarks (68, 2)). An existing folder at
        ``root`` (an old or broken corpus) is replaced.
        """
        self._flush()
        tensors = {}
        for identity, (frame, lm) in sorted(references.items()):
            tensors[f"{identity}.frame"], tensors[f"{identity}.landmarks"] = frame, lm.astype(np.float32)
        save_file(tensors, str(self.tmp / "references.safetensors"))
        write_json(self.tmp / "meta.json", {"format": FORMAT, "version": VERSION, **meta,
                                            "image_size": self.size, "clips": self.clips})
        if self.root.exists():  # move the old folder aside first, so root is never half-replaced
            old = self.root.with_name(f".{self.root.name}.{os.getpid()}.old")
            os.replace(self.root, old)
            shutil.rmtree(old)
        os.replace(self.tmp, self.root)
        return self.root


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
    train_ids = [i for i in cfg.identities if i != cfg.heldout]
    faces = {"train": [(i, m) for m in ((False, True) if cfg.mirror else (False,)) for i in train_ids],
             "val": [(i, False) for i in train_ids],
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


@functools.cache
def _face(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``load_face`` once per process (decoding a photo costs more than rendering a short clip)."""
    from minitalker.data.faces import load_face

    image, lm = load_face(name)
    image.flags.writeable = lm.flags.writeable = False  # shared by every clip: nobody may paint on it
    return image, lm


def _landmarks_only(speech, face: str, size: int, seed: int) -> np.ndarray:
    """The landmarks ``(T, 68, 2)`` that :func:`render_clip` would give, without warping any frame."""
    from minitalker.audio import n_video_frames
    from minitalker.data.render import to_crop
    from minitalker.data.visemes import animate_landmarks, articulate, rest_landmarks
    from minitalker.landmarks.scheme import face_box

    rest = rest_landmarks(_face(face)[1])
    lms = animate_landmarks(rest, articulate(speech.phonemes, n_video_frames(len(speech.wav))), seed=seed)
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
        frames, lm = None, _landmarks_only(speech, item["identity"], size, item["seed"])
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
