"""Figures and a sample clip that show what a corpus holds (used by ``minitalker demo`` and notebook 01).

One clip, seen four ways on one time axis: its waveform and log-mel with the phoneme spans, its
mouth opening (inner-lip gap / inter-ocular distance) under the same phoneme track, and a strip of
its frames with the landmarks drawn on; plus the reference face of every identity.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from minitalker.audio import label_phonemes, log_mel, plot_waveform_mel
from minitalker.data.corpus import Clip, Corpus
from minitalker.landmarks.draw import plot_landmarks
from minitalker.landmarks.scheme import mouth_opening


def first_clip(corpus: Corpus) -> Clip:
    """The first training clip with frames (or any clip with frames, for a corpus without training clips)."""
    return (corpus.split("train", frames=True) or [c for c in corpus.clips if c.has_frames])[0]


def plot_mouth_track(clip: Clip, ax=None):
    """Mouth opening per frame (at frame midpoints) with the phoneme spans behind it → the axes.

    Closures (p, b, m) should sit in dips and open vowels (aa, ae, aw...) on peaks.
    """
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(10, 2), dpi=80)[1]
    t = (np.arange(clip.n_frames) + 0.5) / clip.corpus.fps
    label_phonemes(ax, clip.phonemes)
    ax.plot(t, mouth_opening(clip.landmarks), "k.-", lw=1, ms=3)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.3 * (hi - lo))  # headroom for the phoneme labels
    ax.set(xlabel="time (s)", ylabel="mouth opening", xlim=(0, clip.n_samples / clip.corpus.sample_rate))
    return ax


def plot_overview(corpus: Corpus, clip: Clip | None = None, n_frames: int = 8):
    """The corpus at a glance: one clip's sound, mouth and frames, and each identity's reference.

    ``clip`` defaults to :func:`first_clip`. Returns the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    clip = clip or first_clip(corpus)
    n_ids = len(corpus.identities)
    fig = plt.figure(figsize=(10, 8.5), dpi=80)
    grid = fig.add_gridspec(5, max(n_frames, n_ids), height_ratios=[1, 1.2, 1, 1.1, 1.1])
    top = [fig.add_subplot(grid[i, :]) for i in range(3)]
    top[1].sharex(top[0]), top[2].sharex(top[0])
    plot_waveform_mel(clip.audio, log_mel(clip.audio), clip.phonemes, fps=corpus.fps, axes=top[:2])
    plot_mouth_track(clip, top[2])
    said = f": “{clip.text}”" if clip.text else ""
    top[0].set_title(f"{clip.id} ({clip.identity}{', mirrored' if clip.mirrored else ''}, {clip.split}){said}", fontsize=10)
    frames, landmarks = clip.frames, clip.landmarks
    for i, t in enumerate(np.linspace(0, clip.n_frames - 1, n_frames).round().astype(int)):
        ax = fig.add_subplot(grid[3, i])
        ax.imshow(frames[t])
        plot_landmarks(ax, landmarks[t], markersize=0.8, linewidth=0.5)
        ax.set_title(f"frame {t}", fontsize=8)
        ax.axis("off")
    for i, identity in enumerate(corpus.identities):
        ax = fig.add_subplot(grid[4, i])
        ax.imshow(corpus.reference(identity)[0])
        n = sum(c.identity == identity for c in corpus.clips)
        ax.set_title(f"{identity}{' (held out)' * (identity in corpus.heldout)}\n{n} clips", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def write_sample(corpus: Corpus, out: str | os.PathLike, clip: Clip | None = None) -> tuple[Path, Path]:
    """Write ``corpus_overview.png`` and ``sample_clip.mp4`` (frames with its sound) into ``out`` → both paths."""
    import matplotlib.pyplot as plt

    from minitalker.io import atomic_path
    from minitalker.video import write_video

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clip = clip or first_clip(corpus)
    fig = plot_overview(corpus, clip)
    png = out / "corpus_overview.png"
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return png, write_video(out / "sample_clip.mp4", clip.frames, corpus.fps, clip.audio, corpus.sample_rate)
