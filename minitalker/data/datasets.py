"""The corpus as training samples, one class per agent.

:class:`LandmarkClips` serves agent 1 (the landmark completion transformer). A sample is a chunk
of T consecutive frames of one clip::

    mel        (T, W, F)    each frame's window of the front end's features (audio.frame_windows):
                            80 log-mel bins, then 40 one-hot phones if the AudioConfig has phones
    reference  (68, 2)      the speaker's neutral landmarks (corpus.reference), normalised
    target     (T, 68, 2)   the frames' true landmarks, each normalised by its own eye corners

"Normalised" is :func:`minitalker.landmarks.scheme.normalise`: head position, rotation and size
are removed, so the model only learns what speech changes. Samples are drawn from integer seeds
(see :mod:`minitalker.train.loop`): the same seed always gives the same sample.
"""

from __future__ import annotations

import functools
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..audio import (
    FPS,
    AudioConfig,
    audio_track,
    frame_times,
    frame_windows,
    log_mel,
    recognise_phones,
    silent_features,
)
from ..config import check_fraction, check_non_negative, check_positive
from ..landmarks import scheme
from ..phones import cache_key, phone_track
from .corpus import Clip
from .real_speech import espeak_to_arpabet


@dataclass
class MelAugment:
    """Random changes to a chunk's log-mel that real recordings bring (our choice; the paper has none).

    The front end already normalises loudness (:func:`minitalker.audio.normalise_loudness`), so a
    plain gain would be undone; what survives is colour and noise. Per sample we draw

    * a level offset ``g ~ U(±level_db)`` (what is left of loudness once speech is normalised),
    * a spectral tilt, linear in mel bin, ``U(±tilt_db)`` from lowest to highest bin (microphones,
      voices, rooms),
    * on a fraction ``p_noise`` of the samples, a noise floor ``U(noise_db)`` dB above the log-mel
      floor plus up to ``hum_db`` more towards the lowest band (hum, rumble: the CMU ARCTIC
      recording's pauses sit ~22 dB above the floor in the low bands, at the floor above),
      added in the power domain: ``S' = log(exp(S + g + tilt) + n)``. The other samples keep
      digital silence, which real inputs also have;
    * on a fraction ``p_pause`` of the samples, no speech at all: the chunk becomes a pause (log-mel
      floor, then the noise above) and the target the resting reference. The corpus's sentences hold
      only short pauses, so without this a long silence was never seen (and the mouth stayed half
      open through one).

    Speaker and channel changes, so that a human voice is not a new world (our choice; what each did
    on real speech: the README's agent-1 table):

    * an **equaliser**: a smooth random gain over the mel bins, the sum of ``eq_bands`` cosines of
      random phase with amplitudes ``U(±eq_db)`` (microphones, rooms and voices colour the spectrum
      by more than a tilt; CMU ARCTIC's differs from the corpus's by up to 8 dB around 1 kHz);
    * a **frequency warp** (vocal-tract length, as VTLP): the spectrum is read at ``f / α`` with
      ``log α ~ U(±log(1 + warp))``, moving formants by up to ``warp`` in either direction;
    * a **speed change** (:meth:`stretch`, applied to whole clips): audio and landmarks are resampled
      in time by ``s`` with ``log s ~ U(±log(1 + speed))``: espeak's 140-190 words a minute are
      slow and regular next to people reading aloud;
    * on a fraction ``p_band`` of the samples, **band-limiting**: every bin above a cutoff
      ``U(band_hz)`` drops to the floor (telephone and low-rate recordings end at 3.4-4 kHz);
    * on a fraction ``p_reverb`` of the clips, a **room** (:meth:`reverberate`, applied to whole
      clips after the speed change, before the chunk is cut): each mel band's power gains an exponentially decaying tail of
      its past, with a reverberation time ``U(rt60_s)`` and a direct-to-reverberant ratio
      ``U(drr_db)``; espeak is dry, and a room's tail fills the short silence of a p, b or m;
    * on a fraction ``p_nonspeech`` of the samples, **sound that is not speech**
      (:func:`nonspeech`: noise, hum, tones and chords) and the resting mouth as the target: without
      it, white noise opened the mouth.

    For the phonetic front end (:mod:`minitalker.phones`), on a fraction ``p_true_phones`` of the
    samples the phone track is the corpus's own (espeak's phonemes in CMU names) instead of what
    pocketsphinx hears: it hears few of espeak's bilabials as p, b or m (most of a person's; design
    notes), so from recognised phones alone agent 1 could not learn that a heard p closes the lips.
    """

    level_db: float = 6.0
    tilt_db: float = 6.0
    noise_db: tuple[float, float] = (0.0, 20.0)
    hum_db: float = 30.0
    p_noise: float = 0.5
    p_pause: float = 0.1
    eq_db: float = 0.0
    eq_bands: int = 3
    warp: float = 0.0
    speed: float = 0.0
    p_band: float = 0.0
    band_hz: tuple[float, float] = (3400.0, 6000.0)
    p_nonspeech: float = 0.0
    p_true_phones: float = 0.0
    p_reverb: float = 0.0
    rt60_s: tuple[float, float] = (0.2, 0.8)
    drr_db: tuple[float, float] = (0.0, 12.0)

    def __post_init__(self):
        check_non_negative(self, "level_db", "tilt_db", "hum_db", "eq_db", "warp", "speed")
        check_positive(self, "eq_bands")
        check_fraction(self, "p_noise", "p_pause", "p_band", "p_nonspeech", "p_true_phones", "p_reverb")
        for name in ("noise_db", "band_hz", "rt60_s", "drr_db"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"MelAugment.{name} is a range (low, high) with 0 ≤ low ≤ high; got {(lo, hi)}")

    def stretch(self, mel: np.ndarray, target: np.ndarray, rng: np.random.Generator,
                frames: int) -> tuple[np.ndarray, np.ndarray]:
        """:func:`stretch` a clip by a random factor; a clip that would end up shorter than ``frames`` stays as it is."""
        if not self.speed:
            return mel, target
        out = stretch(mel, target, float(np.exp(rng.uniform(-1, 1) * np.log1p(self.speed))))
        return out if len(out[1]) >= frames else (mel, target)

    def reverberate(self, track: np.ndarray, rng: np.random.Generator, hop_s: float, n_mels: int) -> np.ndarray:
        """A clip's features ``(M, F)`` heard in a random room, on a fraction ``p_reverb`` of the clips:
        its first ``n_mels`` columns (the log-mel) change, the phones after them stay as recognised.

        ``P'(m) = P(m) + c Σ_{k≥1} d^k P(m-k)`` per band, on power ``P = exp(log-mel)``: the tail decays
        by 60 dB over the reverberation time (``d = 10^(-6 hop / RT60)``) and holds ``10^(-DRR/10)``
        of the direct energy (``c d / (1 - d)``). Late reverberation as a smooth energy envelope, the
        same in every band (our choice: a room impulse response of real phases needs the waveform,
        which training chunks no longer have).
        """
        if not (self.p_reverb and rng.random() < self.p_reverb):
            return track  # (no copy: most clips hear no room)
        import scipy.signal

        d = 10 ** (-6 * hop_s / rng.uniform(*self.rt60_s))  # energy left after one hop
        c = 10 ** (-rng.uniform(*self.drr_db) / 10) * (1 - d) / d  # tail energy / direct = c d / (1 - d)
        power = np.exp(track[:, :n_mels].astype(np.float64))  # (M, 80)
        tail = scipy.signal.lfilter([0, d], [1, -d], power, axis=0)  # (M, 80): Σ_{k≥1} d^k P(m-k)
        out = track.copy()
        out[:, :n_mels] = np.log(power + c * tail)
        return out

    def __call__(self, mel: np.ndarray, rng: np.random.Generator, floor: float) -> np.ndarray:
        nat = np.log(10) / 10  # 1 dB of power in natural-log units
        n_mels = mel.shape[-1]
        if self.warp:
            mel = warp_frequencies(mel, float(np.exp(rng.uniform(-1, 1) * np.log1p(self.warp))))
        if self.p_band and rng.random() < self.p_band:  # everything above the cutoff is gone
            mel = np.where(_mel_centres(n_mels) > rng.uniform(*self.band_hz), floor, mel)
        g = rng.uniform(-self.level_db, self.level_db) * nat
        tilt = rng.uniform(-self.tilt_db, self.tilt_db) * nat * (np.arange(n_mels) / (n_mels - 1) - 0.5)  # (80,)
        if self.eq_db:  # smooth random equaliser: sum_b a_b cos(π (b + 1) k / n + φ_b)
            k = np.arange(n_mels) / n_mels
            for b in range(self.eq_bands):
                tilt = tilt + rng.uniform(-self.eq_db, self.eq_db) * nat * np.cos(np.pi * (b + 1) * k
                                                                                + rng.uniform(0, 2 * np.pi))
        hum = rng.uniform(0, self.hum_db) * (1 - np.arange(n_mels) / (n_mels - 1))  # (80,) most in the lowest band
        noise = np.exp(floor + (rng.uniform(*self.noise_db) + hum) * nat) if rng.random() < self.p_noise else 0.0
        return np.maximum(np.log(np.exp(mel + g + tilt) + noise), floor).astype(np.float32)


def nonspeech(seconds: float, rng: np.random.Generator, sr: int = 16000) -> np.ndarray:
    """A random sound that is not speech, ``(N,)`` float32: white, pink or brown noise, mains hum,
    or a tune of tones and chords (a few harmonics each, notes held 0.1-0.6 s), at a random level.

    Noise has no formants and tunes hold steady pitches with no syllable rhythm; the mouth should
    stay at rest on all of them (our choice of what "non-speech" covers, kept short).
    """
    n = int(seconds * sr)
    kind = rng.integers(4)
    if kind == 0:  # white, pink (1/f) or brown (1/f²) noise, shaped in the frequency domain
        spec = rng.normal(size=n // 2 + 1) + 1j * rng.normal(size=n // 2 + 1)
        y = np.fft.irfft(spec / np.maximum(np.arange(n // 2 + 1), 1) ** (rng.integers(3) / 2), n)
    elif kind == 1:  # mains hum with its harmonics
        t = np.arange(n) / sr
        y = sum(rng.uniform(0, 1) / (h + 1) * np.sin(2 * np.pi * rng.choice([50, 60]) * (h + 1) * t) for h in range(4))
    else:  # a tune: notes (kind 2) or chords of 3 (kind 3), each with a few decaying harmonics
        y = np.zeros(n)
        start = 0
        while start < n:
            length = int(rng.uniform(0.1, 0.6) * sr)
            t = np.arange(length) / sr
            for f0 in 110 * 2 ** (rng.integers(0, 36, size=1 if kind == 2 else 3) / 12):  # A2 to A5
                y[start:start + length] += sum(np.sin(2 * np.pi * f0 * h * t)[:n - start] / h ** rng.uniform(1, 3)
                                               for h in range(1, 5))
            start += length
    return (y / (np.abs(y).max() + 1e-9) * 10 ** rng.uniform(-2, -0.3)).astype(np.float32)


def _resample(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``x`` read at fractional positions ``pos`` along its first axis, linearly, edges clamped."""
    pos = np.clip(pos, 0, len(x) - 1)
    i0 = np.minimum(pos.astype(int), len(x) - 2) if len(x) > 1 else np.zeros(len(pos), int)
    w = (pos - i0).reshape(-1, *([1] * (x.ndim - 1)))
    return ((1 - w) * x[i0] + w * x[np.minimum(i0 + 1, len(x) - 1)]).astype(x.dtype)


def stretch(mel: np.ndarray, target: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """A clip's log-mel ``(M, 80)`` and landmarks ``(T, 68, 2)`` played ``s`` times faster.

    New time ``τ`` shows original time ``s·τ``: mel frame ``j`` (at ``j·hop``) reads original frame
    ``s·j``, video frame ``i`` (midpoint ``(i + ½)/fps``) original frame ``s·(i + ½) - ½``; linear
    interpolation. Lengths: ``(M - 1)/s + 1`` mel frames and ``T/s`` video frames (rounded down).
    """
    n_mel, n_frames = int((len(mel) - 1) / s) + 1, int(len(target) / s)
    return _resample(mel, s * np.arange(n_mel)), _resample(target, s * (np.arange(n_frames) + 0.5) - 0.5)


def warp_frequencies(mel: np.ndarray, alpha: float) -> np.ndarray:
    """Log-mel ``(..., 80)`` with every frequency scaled by ``alpha``: bin ``k`` reads the bin at ``f_k / alpha``.

    ``alpha > 1`` moves formants up (a shorter vocal tract), ``< 1`` down; bins beyond the edges repeat them.
    """
    f = _mel_centres(mel.shape[-1])  # (80,) Hz
    src = np.interp(f / alpha, f, np.arange(len(f)))  # fractional source bin of each bin
    return np.moveaxis(_resample(np.moveaxis(mel, -1, 0), src), 0, -1)


@functools.cache
def _mel_centres(n_mels: int) -> np.ndarray:
    """Centre frequency (Hz) of each mel bin of the default AudioConfig: ``(n_mels,)``."""
    import librosa

    cfg = AudioConfig()
    return librosa.mel_frequencies(n_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax)[1:-1]


def recognise_clips(clips: list[Clip], cfg: AudioConfig | None = None, progress: bool = True,
                    workers: int = 1) -> list[list[tuple[str, float, float]]]:
    """The phones :func:`~minitalker.audio.recognise_phones` hears in each clip, read from (or added
    to) ``<corpus folder>.phones.json`` (another recogniser than the loop: ``.phones-<name>.json``)
    beside the corpus folder, which stays as it was built (a corpus is heard once).

    The cache is keyed by clip id and by :func:`minitalker.phones.cache_key`, one file per corpus,
    rewritten whole every 200 clips (an interrupted run resumes from there). ``workers`` > 1
    recognises in that many processes.
    """
    cfg = cfg or AudioConfig()
    key, by_root = cache_key(cfg.recogniser), {}
    todo = [c for c in clips if c.id not in _phone_cache(by_root, c.corpus.root, cfg.recogniser)]
    hear = functools.partial(recognise_phones, cfg=cfg)
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn")) if workers > 1 and todo else None
    try:
        found = pool.map(hear, (c.audio for c in todo), chunksize=8) if pool else map(hear, (c.audio for c in todo))
        for n, (clip, phones) in enumerate(tqdm(zip(todo, found), total=len(todo), desc="recognising phones",
                                                disable=not progress or not todo), 1):
            by_root[clip.corpus.root][clip.id] = phones
            if n % 200 == 0 or n == len(todo):
                for root in {c.corpus.root for c in todo}:
                    path = _phone_cache_path(root, cfg.recogniser)
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(json.dumps({"settings": key, "clips": by_root[root]}))
                    os.replace(tmp, path)  # whole or not at all
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    return [[tuple(p) for p in by_root[clip.corpus.root][clip.id]] for clip in clips]


def _phone_cache(by_root: dict, root: Path, recogniser: str) -> dict:
    """The phones already recognised for the corpus at ``root`` (empty if none, or made otherwise)."""
    if root not in by_root:
        path = _phone_cache_path(root, recogniser)
        stored = json.loads(path.read_text()) if path.is_file() else {}
        by_root[root] = stored.get("clips", {}) if stored.get("settings") == cache_key(recogniser) else {}
    return by_root[root]


def _phone_cache_path(root: Path, recogniser: str) -> Path:
    """``<corpus>.phones.json`` for the phone loop, ``<corpus>.phones-<recogniser>.json`` for another."""
    return root.parent / (f"{root.name}.phones.json" if recogniser == "loop" else f"{root.name}.phones-{recogniser}.json")


class LandmarkClips:
    """Agent 1's view of one split: per clip its features, normalised reference and targets.

    ``clips``: one split's clips (e.g. ``splits(corpus)["train"]``); ``audio_cfg``: the front end
    (default :class:`AudioConfig`). The arrays are small (the log-mel of a 2 s clip is 200 × 80),
    so everything is computed once and kept in memory; recognised phones (``audio_cfg.phones``) are
    cached beside the corpus (:func:`recognise_clips`).
    """

    def __init__(self, clips: list[Clip], audio_cfg: AudioConfig | None = None):
        if not clips:
            raise ValueError("no clips to build landmark samples from: check the split")
        self.audio_cfg = audio_cfg or AudioConfig()
        self.clips = clips
        self.mel = [log_mel(c.audio, self.audio_cfg) for c in clips]  # [(M_i, 80)]
        self.phones = self.true_phones = None  # [(M_i, 40)] one-hot: heard, and the corpus's own
        if self.audio_cfg.phones:
            hop_s = self.audio_cfg.hop_s
            self.phones = [phone_track(p, len(m), hop_s) for p, m in zip(recognise_clips(clips, self.audio_cfg), self.mel)]
            self.true_phones = [phone_track(espeak_to_arpabet(c.phonemes), len(m), hop_s) for c, m in zip(clips, self.mel)]
        self.reference = [scheme.normalise(c.reference()[1])[0] for c in clips]  # [(68, 2)]
        self.target = [scheme.normalise(c.landmarks)[0] for c in clips]  # [(T_i, 68, 2)]
        self.n_frames = np.array([len(t) for t in self.target])
        self.floor = float(np.log(self.audio_cfg.log_floor))

    def __len__(self) -> int:
        return len(self.clips)

    def track(self, i: int, true_phones: bool = False) -> np.ndarray:
        """Clip ``i``'s features per mel frame ``(M_i, F)``: log-mel, then phones if any (:func:`~minitalker.audio.audio_track`;
        ``true_phones``: the corpus's own phones instead of the heard ones)."""
        if self.phones is None:
            return self.mel[i]
        return np.concatenate([self.mel[i], (self.true_phones if true_phones else self.phones)[i]], 1)

    def windows(self, i: int) -> np.ndarray:
        """All log-mel frame windows of clip ``i`` → ``(T_i, W, 80)`` (what the ridge baseline reads)."""
        return frame_windows(self.mel[i], int(self.n_frames[i]), self.audio_cfg)

    def features(self, i: int) -> np.ndarray:
        """All frame windows of clip ``i``'s features → ``(T_i, W, F)`` (what agent 1 reads)."""
        return frame_windows(self.track(i), int(self.n_frames[i]), self.audio_cfg)

    def phonemes(self, i: int) -> list[str]:
        """The phoneme spoken at each frame's midpoint of clip ``i`` ("" between phonemes) → T_i names."""
        times = frame_times(int(self.n_frames[i]), FPS)
        names = [""] * len(times)
        for name, start, end in self.clips[i].phonemes:
            for t in np.flatnonzero((times >= start) & (times < end)):
                names[t] = name
        return names

    def sample(self, seed: int, frames: int, augment: MelAugment | None = None) -> tuple[np.ndarray, ...]:
        """One chunk of ``frames`` consecutive frames: a clip (chosen in proportion to its length)
        and a start, both from ``seed`` → (mel (T, W, F), reference (68, 2), target (T, 68, 2)).

        The start is drawn from ``frames // 4`` positions beyond either end and clamped, so about one
        chunk in ten starts at a clip's first frame and one in ten ends at its last. (Uniform starts
        show the first and last frames in one chunk position of ``T - frames + 1``, and the model
        erred most on them.)
        """
        rng = np.random.default_rng(seed)
        starts = np.maximum(self.n_frames - frames + 1, 0)
        if not starts.any():
            raise ValueError(f"every clip is shorter than {frames} frames: use a smaller clip_frames")
        i = rng.choice(len(starts), p=starts / starts.sum())
        # (drawn for every phone sample, so p_true_phones changes the phone source and nothing else)
        true_phones = self.phones is not None and augment is not None and rng.random() < augment.p_true_phones
        mel, target = self.track(i, true_phones), self.target[i]  # (M, F), (T, 68, 2)
        if augment is not None:
            mel, target = augment.stretch(mel, target, rng, frames)
        k, n = frames // 4, len(target) - frames + 1
        s = int(np.clip(rng.integers(-k, n + k), 0, n - 1))
        if augment is not None:  # (a room acts on the whole clip, as its tail reaches into the chunk)
            mel = augment.reverberate(mel, rng, self.audio_cfg.hop_s, self.audio_cfg.n_mels)
        mel = frame_windows(mel, len(target), self.audio_cfg)[s:s + frames]
        target = target[s:s + frames]
        if augment is not None:
            if rng.random() < augment.p_pause:  # a pause: no sound, the mouth at rest
                mel = np.broadcast_to(silent_features(self.audio_cfg), mel.shape).copy()
                target = np.repeat(self.reference[i][None], frames, 0)
            elif augment.p_nonspeech and rng.random() < augment.p_nonspeech:  # not speech: the mouth at rest
                sound = audio_track(nonspeech((frames + 6) / FPS, rng), self.audio_cfg)
                mel, target = frame_windows(sound, frames, self.audio_cfg), np.repeat(self.reference[i][None], frames, 0)
            M = self.audio_cfg.n_mels  # the changes act on the log-mel only; phones stay as recognised
            mel = np.concatenate([augment(mel[..., :M], rng, self.floor), mel[..., M:]], -1)
        return mel, self.reference[i], target

    def batch(self, seeds: list[int], frames: int, augment: MelAugment | None = None) -> dict[str, torch.Tensor]:
        """Stack the samples of ``seeds`` → mel (B, T, W, F), reference (B, 68, 2), target (B, T, 68, 2)."""
        mel, ref, target = zip(*(self.sample(s, frames, augment) for s in seeds))
        return {"mel": torch.from_numpy(np.stack(mel)), "reference": torch.from_numpy(np.stack(ref)),
                "target": torch.from_numpy(np.stack(target))}
