"""Import real recordings into the corpus format: the GRID corpus, or any folder of talking-head videos.

Each video goes through the same steps as the built-in corpus's frames would in a camera:
read → 25 fps (:func:`video.resample_fps`) → 68 landmarks per frame (:func:`detect_landmarks`,
gaps interpolated) → stable aligned face crops at ``size`` (:func:`video.aligned_crops`), with its
speech as mono 16 kHz audio trimmed or zero-padded to exactly ``T / 25`` seconds. The result is a
folder in the format of :mod:`minitalker.data.corpus`, which ``load_corpus(root=...)`` opens like a built one.

Layouts accepted (``SRC`` is the folder given; video = .mp4 .mpg .mpeg .mov .avi .mkv .webm .m4v):

* ``layout="grid"`` — one folder per speaker, as the GRID corpus unpacks::

      SRC/s1/bbaf2n.mpg            (or SRC/s1/video/bbaf2n.mpg)     the video; identity = "s1"
      SRC/s1/audio/bbaf2n.wav      or SRC/s1/bbaf2n.wav or SRC/audio/s1/bbaf2n.wav   its sound
      SRC/s1/align/bbaf2n.align    or SRC/align/s1/bbaf2n.align or SRC/s1/bbaf2n.align  (optional)

  Without a separate audio file, the video's own sound track is used. An ``.align`` file gives the
  words with their times (GRID writes ``start end word`` per line, in 1/25000 s, with ``sil`` and
  ``sp`` for silence); the sentence text is the words joined.
* ``layout="videos"`` — any videos with sound, anywhere under SRC. Identity = the sub-folder the
  video is in (``SRC/alice/*.mp4`` → ``alice``), or the file's name for videos directly in SRC.

Nothing stops the import but a bad folder: a video that cannot be read, has no sound, or shows no
face in any frame is skipped; every video gets a line in the report (``meta["report"]``, printed
at the end), including how many of its frames had no face and were interpolated.

Splits are by sentence as in the built corpus (a hash of the text, or of the clip id when the text
is unknown), and ``heldout`` identities go to the test split only. The reference frame of an
identity is its detected frame with the most closed mouth (our choice: the nearest thing to a
neutral photo that a video offers).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from minitalker.audio import FPS, SAMPLE_RATE, load_audio
from minitalker.data.corpus import SPLITS, CorpusWriter
from minitalker.landmarks.detect import BACKENDS, NoFaceError, detect_landmarks
from minitalker.landmarks.scheme import mouth_opening
from minitalker.video import aligned_crops, read_video_with_audio, resample_fps

VIDEO_EXTS = (".mp4", ".mpg", ".mpeg", ".mov", ".avi", ".mkv", ".webm", ".m4v")
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg")
LAYOUTS = ("grid", "videos")
SILENCE_WORDS = ("sil", "sp")


@dataclasses.dataclass
class Source:
    """One video to import: where it is, whose it is, and its optional sound and word-timing files."""

    video: Path
    id: str
    identity: str
    audio: Path | None = None
    align: Path | None = None


def _first(*candidates: Path) -> Path | None:
    return next((p for p in candidates if p.is_file()), None)


def _videos_in(folder: Path, recursive: bool) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in files if p.is_file() and p.suffix.lower() in VIDEO_EXTS)


def find_grid(src: Path) -> list[Source]:
    """Speaker folders under ``src`` (any name but ``audio``/``align``) and their videos, with sidecars."""
    sources = []
    for speaker in sorted(p for p in src.iterdir() if p.is_dir() and p.name not in ("audio", "align", "video")):
        for video in [v for d in (speaker, speaker / "video") if d.is_dir() for v in _videos_in(d, False)]:
            stem, spk = video.stem, speaker.name
            audio = _first(*(d / f"{stem}{ext}" for d in (speaker / "audio", speaker, src / "audio" / spk)
                             for ext in AUDIO_EXTS))
            align = _first(speaker / "align" / f"{stem}.align", src / "align" / spk / f"{stem}.align",
                           speaker / f"{stem}.align")
            sources.append(Source(video, f"{spk}/{stem}", spk, audio, align))
    return sources


def find_videos(src: Path) -> list[Source]:
    """Every video under ``src`` (recursively); ``src`` may also be one video file."""
    if src.is_file():
        return [Source(src, src.stem, src.stem)]
    sources = []
    for video in _videos_in(src, True):
        rel = video.relative_to(src)
        identity = rel.parent.as_posix() if rel.parent != Path(".") else video.stem
        sources.append(Source(video, rel.with_suffix("").as_posix(), identity))
    return sources


def read_align(path: str | os.PathLike) -> list[tuple[str, float, float]]:
    """A GRID ``.align`` file → [(word, start_s, end_s)] without silences (units: 1/25000 s)."""
    words = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            start, end, word = int(parts[0]), int(parts[1]), parts[2]
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{n}: expected 'start end word' (GRID .align), got {line!r}") from None
        if word not in SILENCE_WORDS:
            words.append((word, start / 25000, end / 25000))
    return words


def _split_of(key: str, fractions: tuple[float, float, float]) -> str:
    """A stable split from a hash of ``key`` (the sentence): the same text always lands in the same split."""
    u = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 16**8  # uniform in [0, 1)
    return SPLITS[int(np.searchsorted(np.cumsum(fractions), u, side="right").clip(max=2))]


def _import_one(src: Source, backend: str, size: int) -> tuple[dict, tuple | None]:
    """One video → (report line, (info, crops, landmarks, audio, detection found) or None if skipped)."""
    line = {"video": src.id, "status": "skipped", "frames": 0, "frames_without_face": 0}
    try:
        frames, fps, track = read_video_with_audio(src.video)
        audio = load_audio(src.audio) if src.audio is not None else track
    except (ValueError, OSError, RuntimeError) as e:
        return {**line, "reason": f"unreadable: {e}"}, None
    if audio is None:
        return {**line, "reason": "no audio: the video has no sound track and there is no audio file beside it"}, None
    frames = resample_fps(frames, fps, FPS)  # (T, H, W, 3) at 25 fps
    line["frames"] = len(frames)
    try:
        det = detect_landmarks(frames, backend)
    except NoFaceError:
        return {**line, "frames_without_face": len(frames), "reason": f"no face in any of its {len(frames)} frames"}, None
    crops, lm = aligned_crops(frames, det.landmarks, size)  # (T, S, S, 3), (T, 68, 2)
    n = round(len(frames) * SAMPLE_RATE / FPS)
    audio = np.pad(audio[:n], (0, max(0, n - len(audio))))  # exactly T frames of sound
    words = read_align(src.align) if src.align is not None else []
    info = {"id": src.id, "identity": src.identity, "mirrored": False, "text": " ".join(w for w, _, _ in words),
            "voice": {"source": "recording"}, "phonemes": [], "words": [[w, a, b] for w, a, b in words]}
    line.update(status="ok", frames_without_face=int((~det.found).sum()), reason=det.report())
    return line, (info, crops, lm, audio.astype(np.float32), det.found)


def format_report(report: list[dict]) -> str:
    """The per-video report as a table for humans."""
    rows = [f"{'video':<32} {'status':<8} {'frames':>6} {'no face':>7}  details"]
    rows += [f"{r['video']:<32} {r['status']:<8} {r['frames']:>6} {r['frames_without_face']:>7}  {r['reason']}" for r in report]
    return "\n".join(rows)


def import_videos(src: str | os.PathLike, out: str | os.PathLike, layout: str = "videos", backend: str = "dlib",
                  size: int = 128, splits: tuple[float, float, float] = (0.9, 0.05, 0.05),
                  heldout: tuple[str, ...] = (), progress: bool = True) -> Path:
    """Import the videos under ``src`` (see the module docstring for layouts) into a corpus at ``out``.

    ``backend``: landmark detector (``"dlib"`` works offline). ``size``: crop side in pixels.
    Returns ``out``; the per-video report is printed and stored in ``meta.json`` (``report``).
    Raises FileNotFoundError / ValueError for a missing or empty ``src`` or when no video is usable
    (nothing is written then).
    """
    src, out = Path(src), Path(out)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: choose one of {LAYOUTS}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {BACKENDS}")
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist: give the folder holding the videos")
    if src.is_file() and (layout == "grid" or src.suffix.lower() not in VIDEO_EXTS):
        raise ValueError(f"{src} is a file; give a folder ({layout} layout) or one video file ({', '.join(VIDEO_EXTS)})")
    sources = find_grid(src) if layout == "grid" else find_videos(src)
    if not sources:
        others = sorted({p.suffix or p.name for p in src.rglob("*") if p.is_file()})
        hint = "speaker folders such as SRC/s1/bbaf2n.mpg" if layout == "grid" else "video files anywhere under it"
        raise ValueError(f"no videos found in {src} (expected {hint}; video extensions {', '.join(VIDEO_EXTS)}; "
                         f"found only {others or 'no files'})")
    report: list[dict] = []
    references: dict[str, tuple[float, np.ndarray, np.ndarray]] = {}  # identity → (opening, frame, lm)
    with CorpusWriter(out, size) as writer:
        for source in tqdm(sources, desc=f"importing {src.name}", unit="video", disable=not progress):
            line, result = _import_one(source, backend, size)
            report.append(line)
            if result is None:
                continue
            info, crops, lm, audio, found = result
            info["split"] = "test" if info["identity"] in heldout else _split_of(info["text"] or info["id"], splits)
            writer.add(info, crops, lm, audio)
            opening = np.where(found, mouth_opening(lm), np.inf)  # only frames with a detected face
            t = int(np.argmin(opening))
            if opening[t] < references.get(info["identity"], (np.inf,))[0]:
                references[info["identity"]] = (float(opening[t]), crops[t], lm[t])
        print(format_report(report))
        if not writer.clips:
            raise ValueError(f"none of the {len(sources)} videos in {src} could be imported (see the report above)")
        identities = sorted(references)
        meta = {"source": layout, "config": {"layout": layout, "backend": backend, "size": size, "splits": list(splits),
                                             "heldout": list(heldout), "src": str(src)},
                "fps": FPS, "sample_rate": SAMPLE_RATE, "identities": identities,
                "heldout": [i for i in heldout if i in identities], "report": report}
        return writer.finish(meta, {i: (f, lm) for i, (_, f, lm) in references.items()})

