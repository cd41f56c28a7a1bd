"""The corpus format: a folder of clips (speech, landmarks, frames), how it is written and read.

Two sources fill this one format: the built-in corpus (:mod:`minitalker.data.synthetic`: espeak-ng
speech and warped photos) and real recordings (:mod:`minitalker.data.importers`: GRID, any
talking-head video). Everything downstream sees only a :class:`Corpus` and its clips (:class:`Clip`).

* **Splits**: each clip is in one of :data:`SPLITS`; the identities in ``corpus.heldout`` appear
  only in the test split, to measure generalisation to a new face.
* **Mirrored** clips are augmentation, not new people: a clip keeps its ``identity`` and says
  ``mirrored=True``; its frames and landmarks are flipped left-right (with the iBUG points
  relabelled, see :data:`MIRROR`), and ``clip.reference()`` is flipped to match.
* **Landmark-only** clips: frames are optional per clip (``clip.has_frames``), since agent 1 needs
  many sentences (audio + landmarks) and agent 2 many frames; ``corpus.split(name, frames=True)``
  gives the clips with frames.

On disk (a built corpus lives in ``cache_dir()/corpus-<preset>-<hash>/``)::

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
depend only on the content, so two builds with the same seed are byte-identical.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from minitalker.io import write_json

FORMAT, VERSION = "minitalker-corpus", 2  # 2: stops close CLOSURE_LEAD before espeak says (visemes)
SPLITS = ("train", "val", "test")
SHARD_FRAMES = 4096  # frames per shard file (48 MB at 64 px): small enough to mmap, few enough to list
#: iBUG-68 index of each point's mirror image (jaw 0↔16, brows 17↔26, eyes 36↔45, mouth 48↔54...).
MIRROR = np.array(
    [*range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,
     45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
     54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65])


# ---------------------------------------------------------------------------------------- reading

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
