"""The main job (``minitalker demo``): a sentence never heard, a face never seen → a talking face.

It takes the first held-out-sentence clip of the held-out identity from the built-in corpus (so a
ground truth exists to compare with), gives agent 1 its speech and the speaker's neutral reference,
lets agent 2 draw the frames, and writes

* ``talking_face.mp4``: generated frames (left) next to the ground truth (right), with the sound;
* ``talking_photo.mp4``: the generated face pasted back into the held-out photo, at its resolution;
* ``overview.png``: log-mel with phonemes, predicted vs true mouth opening, and frame strips;
* ``corpus_overview.png`` and ``sample_clip.mp4``: a look at the corpus the agents learnt from.

With ``train=True`` both agents are retrained first (into ``outputs/``) instead of loading the
shipped checkpoints.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from minitalker.audio import log_mel, plot_waveform_mel
from minitalker.data.corpus import Clip
from minitalker.data.faces import FACES, load_face
from minitalker.data.overview import write_sample
from minitalker.data.synthetic import load_corpus
from minitalker.data.visemes import rest_landmarks
from minitalker.io import atomic_path
from minitalker.landmarks.draw import plot_landmarks
from minitalker.landmarks.scheme import face_box, mouth_opening
from minitalker.pipeline import TalkingFace, TalkingFacePipeline


def demo_clip(corpus) -> Clip:
    """The first test clip of a held-out identity (else of any identity)."""
    test = corpus.split("test", frames=True)
    return next((c for c in test if c.identity in corpus.heldout), test[0])


def plot_talking_face(result: TalkingFace, clip: Clip | None = None, n_frames: int = 8):
    """Mel + phonemes, predicted (and true) mouth opening, generated (and true) frames → the figure."""
    import matplotlib.pyplot as plt

    rows = 2 if clip is not None else 1
    fig = plt.figure(figsize=(10, 5 + 1.3 * rows), dpi=80)
    grid = fig.add_gridspec(3 + rows, n_frames, height_ratios=[1, 1.2, 1.1] + [1.2] * rows)
    top = [fig.add_subplot(grid[i, :]) for i in range(3)]
    top[1].sharex(top[0]), top[2].sharex(top[0])
    phonemes = clip.phonemes if clip is not None else None
    plot_waveform_mel(result.audio, log_mel(result.audio), phonemes, fps=result.fps, axes=top[:2])
    t = (np.arange(len(result.landmarks)) + 0.5) / result.fps
    top[2].plot(t, mouth_opening(result.landmarks), "C3.-", lw=1, ms=3, label="agent 1 (from speech)")
    if clip is not None:
        T = min(len(t), clip.n_frames)
        top[2].plot(t[:T], mouth_opening(clip.landmarks[:T]), "k--", lw=1, label="ground truth")
        top[0].set_title(f"“{clip.text}” ({clip.identity}, {clip.split} split)", fontsize=10)
    top[2].set(ylabel="mouth opening", xlabel="time (s)")
    top[2].legend(fontsize=8, loc="upper right")
    last = len(result.frames) if clip is None else min(len(result.frames), clip.n_frames)
    picks = np.linspace(0, last - 1, n_frames).round().astype(int)
    strips = [("generated", result.frames, result.landmarks)]
    if clip is not None:
        strips.append(("truth", clip.frames, clip.landmarks))
    for r, (name, frames, lms) in enumerate(strips):
        for i, k in enumerate(picks):
            ax = fig.add_subplot(grid[3 + r, i])
            ax.imshow(frames[k])
            plot_landmarks(ax, lms[k], markersize=0.5, linewidth=0.4)
            ax.set_title(f"{name} {k}" if i == 0 else f"{k}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return fig


def run_demo(preset: str | None = None, out: str | os.PathLike = "outputs/demo", train: bool = False,
             steps: int | None = None, guidance: float | None = None, seed: int = 0) -> dict[str, Path]:
    """Build the corpus if missing, load (or ``train``) both agents, write the video and the figure."""
    import matplotlib.pyplot as plt

    corpus = load_corpus(preset)
    print(corpus)
    landmarks_ckpt = faces_ckpt = None
    if train:
        from minitalker.train.faces import train_faces
        from minitalker.train.landmarks import train_landmarks

        landmarks_ckpt = Path(train_landmarks(preset)) / "best"
        faces_ckpt = Path(train_faces(preset, corpus=corpus).out_dir) / "best"
    pipe = TalkingFacePipeline.from_checkpoints(landmarks_ckpt, faces_ckpt)
    clip = demo_clip(corpus)
    result = pipe(clip.audio, reference=clip.reference(), steps=steps, guidance=guidance, seed=seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    T = min(len(result.frames), clip.n_frames)  # the two may differ by a frame at the end of the audio
    side_by_side = TalkingFace(np.concatenate([result.frames[:T], clip.frames[:T]], axis=2),
                               result.landmarks[:T], result.reference, result.reference_landmarks, result.audio)
    paths = {"video": side_by_side.save(out / "talking_face.mp4")}
    if clip.identity in FACES and not clip.mirrored:  # a bundled photo: the corpus cropped it at face_box(rest)
        photo, lm = load_face(clip.identity)  # (see data.synthetic.reference_face), so the frames paste straight back
        in_photo = dataclasses.replace(result, photo=photo, box=face_box(rest_landmarks(lm)))
        paths["photo_video"] = in_photo.save(out / "talking_photo.mp4")
    fig = plot_talking_face(result, clip)
    with atomic_path(out / "overview.png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    paths["overview"] = out / "overview.png"
    paths["corpus_overview"], paths["corpus_sample"] = write_sample(corpus, out)  # what the agents learnt from
    return paths
