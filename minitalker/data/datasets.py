"""The corpus as training samples, one class per agent.

:class:`LandmarkClips` serves agent 1 (the landmark completion transformer). A sample is a chunk
of T consecutive frames of one clip::

    mel        (T, W, 80)   log-mel window of each frame (audio.frame_windows)
    reference  (68, 2)      the speaker's neutral landmarks (corpus.reference), normalised
    target     (T, 68, 2)   the frames' true landmarks, each normalised by its own eye corners

"Normalised" is :func:`minitalker.landmarks.scheme.normalise`: head position, rotation and size
are removed, so the model only learns what speech changes. Samples are drawn from integer seeds
(see :mod:`minitalker.train.loop`): the same seed always gives the same sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..audio import FPS, AudioConfig, frame_times, frame_windows, log_mel
from ..landmarks import scheme
from .corpus import Clip


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
      only short pauses, so without this a long silence was never seen (measured: the mouth stayed
      half open, 0.05 of the eye distance, on 2 s of silence).

    No time-stretch: the corpus already speaks at 140-190 words per minute with several voices.
    """

    level_db: float = 6.0
    tilt_db: float = 6.0
    noise_db: tuple[float, float] = (0.0, 20.0)
    hum_db: float = 30.0
    p_noise: float = 0.5
    p_pause: float = 0.1

    def __call__(self, mel: np.ndarray, rng: np.random.Generator, floor: float) -> np.ndarray:
        nat = np.log(10) / 10  # 1 dB of power in natural-log units
        n_mels = mel.shape[-1]
        g = rng.uniform(-self.level_db, self.level_db) * nat
        tilt = rng.uniform(-self.tilt_db, self.tilt_db) * nat * (np.arange(n_mels) / (n_mels - 1) - 0.5)  # (80,)
        hum = rng.uniform(0, self.hum_db) * (1 - np.arange(n_mels) / (n_mels - 1))  # (80,) most in the lowest band
        noise = np.exp(floor + (rng.uniform(*self.noise_db) + hum) * nat) if rng.random() < self.p_noise else 0.0
        return np.maximum(np.log(np.exp(mel + g + tilt) + noise), floor).astype(np.float32)


class LandmarkClips:
    """Agent 1's view of one split: per clip its log-mel, normalised reference and targets.

    ``identities``: keep only these speakers (default all). The arrays are small (the log-mel of
    a 2 s clip is 200 × 80), so everything is computed once and kept in memory.
    """

    def __init__(self, clips: list[Clip], audio_cfg: AudioConfig | None = None):
        if not clips:
            raise ValueError("no clips to build landmark samples from: check the split and identities")
        self.audio_cfg = audio_cfg or AudioConfig()
        self.clips = clips
        self.mel = [log_mel(c.audio, self.audio_cfg) for c in clips]  # [(M_i, 80)]
        self.reference = [scheme.normalise(c.reference()[1])[0] for c in clips]  # [(68, 2)]
        self.target = [scheme.normalise(c.landmarks)[0] for c in clips]  # [(T_i, 68, 2)]
        self.n_frames = np.array([len(t) for t in self.target])
        self.floor = float(np.log(self.audio_cfg.log_floor))

    def __len__(self) -> int:
        return len(self.clips)

    def windows(self, i: int) -> np.ndarray:
        """All frame windows of clip ``i`` → ``(T_i, W, 80)``."""
        return frame_windows(self.mel[i], int(self.n_frames[i]), self.audio_cfg)

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
        and a start, both from ``seed`` → (mel (T, W, 80), reference (68, 2), target (T, 68, 2)).

        The start is drawn from ``frames // 4`` positions beyond either end and clamped, so about one
        chunk in ten starts at a clip's first frame and one in ten ends at its last. (Uniform starts
        show the first and last frames in one chunk position of ``T - frames + 1``: measured, the
        last 3 frames of test clips had 50% more error than the rest.)
        """
        rng = np.random.default_rng(seed)
        starts = np.maximum(self.n_frames - frames + 1, 0)
        if not starts.any():
            raise ValueError(f"every clip is shorter than {frames} frames: use a smaller clip_frames")
        i = rng.choice(len(starts), p=starts / starts.sum())
        k = frames // 4
        s = int(np.clip(rng.integers(-k, starts[i] + k), 0, starts[i] - 1))
        mel, target = self.windows(i)[s:s + frames], self.target[i][s:s + frames]
        if augment is not None:
            if rng.random() < augment.p_pause:  # a pause: no sound, the mouth at rest
                mel, target = np.full_like(mel, self.floor), np.repeat(self.reference[i][None], frames, 0)
            mel = augment(mel, rng, self.floor)
        return mel, self.reference[i], target

    def batch(self, seeds: list[int], frames: int, augment: MelAugment | None = None) -> dict[str, torch.Tensor]:
        """Stack the samples of ``seeds`` → mel (B, T, W, 80), reference (B, 68, 2), target (B, T, 68, 2)."""
        mel, ref, target = zip(*(self.sample(s, frames, augment) for s in seeds))
        return {"mel": torch.from_numpy(np.stack(mel)), "reference": torch.from_numpy(np.stack(ref)),
                "target": torch.from_numpy(np.stack(target))}
