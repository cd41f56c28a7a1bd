"""TalkingFacePipeline: speech + one photo → a talking-face video with the sound.

The only place that knows the whole route (ARCHITECTURE.md)::

    photo ──detect_landmarks──► 68 points ──aligned_crops──► reference crop (S, S, 3) + its landmarks, box
    speech ──predict_landmarks (agent 1)──► landmarks per frame (T, 68, 2) in crop pixels
    reference + landmarks ──generate_frames (agent 2, DDIM)──► frames (T, S, S, 3)
    frames + face masks ──paste_frames (into the photo, at its resolution)──write_video──► mp4

``pipe(...)`` returns every frame in memory (for notebooks); ``pipe.write(...)`` streams the same
video batch by batch to the encoder, so memory stays bounded for speech of any length.

Temporal consistency comes from three places: agent 1 predicts clips of frames jointly, every frame
starts from the same noise image (deterministic DDIM), and the landmarks can be smoothed over time.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from minitalker.audio import FPS, SAMPLE_RATE, load_audio
from minitalker.config import default_device
from minitalker.face_agent import check_sampling, face_masks, iter_frames, load_face_agent
from minitalker.landmarks.detect import as_rgb_frames, detect_landmarks, smooth_landmarks
from minitalker.landmarks.scheme import face_box
from minitalker.nn.landmark_transformer import load_landmark_model, predict_landmarks
from minitalker.video import MAX_SIDE, aligned_crops, check_output, fit_photo, paste_frames, write_video

MIN_PHOTO_SIDE = 64  # smaller photos hold too few pixels for a face detector or a 64 px crop


class Face(NamedTuple):
    """A photo made ready for the agents: the aligned ``crop (S, S, 3)`` uint8 and its ``landmarks (68, 2)``
    (crop pixels), the RGB ``photo (H, W, 3)`` uint8 and the crop's ``box`` = (cx, cy, side) in photo pixels."""

    crop: np.ndarray
    landmarks: np.ndarray
    photo: np.ndarray
    box: np.ndarray


@dataclass
class TalkingFace:
    """What the pipeline made: ``frames (T, S, S, 3)`` uint8, ``landmarks (T, 68, 2)`` crop pixels,
    the ``reference`` crop and its landmarks, the 16 kHz ``audio`` and ``fps``; ``masks (T, S, S)``
    in [0, 1], where agent 2's pixels replaced the reference (its ``face_masks``); and, when made
    from a photo, the ``photo (H, W, 3)`` and the crop's ``box`` in it (for pasting back)."""

    frames: np.ndarray
    landmarks: np.ndarray
    reference: np.ndarray
    reference_landmarks: np.ndarray
    audio: np.ndarray
    fps: float = FPS
    masks: np.ndarray | None = None
    photo: np.ndarray | None = None
    box: np.ndarray | None = None

    def save(self, path: str | os.PathLike, crop: bool = False, scale: int = 4, max_side: int = MAX_SIDE) -> Path:
        """Write an mp4 (h264 + AAC) with the sound.

        Default: the photo's resolution, each frame pasted back into the photo through its mask
        (:func:`~minitalker.video.paste_frames`; photos over ``max_side`` px are shrunk first), frame
        by frame. ``crop=True``, or a result made from a ``reference`` crop (no photo, so crops are all
        there is): the crops alone, enlarged ``scale`` times for viewing.
        """
        batches = ((self.frames[i:i + 64], None if self.masks is None else self.masks[i:i + 64])
                   for i in range(0, len(self.frames), 64))  # 64 frames at a time: memory stays bounded
        frames = video_frames(batches, None if crop else self.photo, self.box, scale, max_side)
        return write_video(path, frames, self.fps, self.audio, SAMPLE_RATE)


def video_frames(batches: Iterable[tuple[np.ndarray, np.ndarray | None]], photo: np.ndarray | None,
                 box: np.ndarray | None, scale: int = 4, max_side: int = MAX_SIDE) -> Iterator[np.ndarray]:
    """Batches of (crops ``(b, S, S, 3)`` uint8, masks ``(b, S, S)``) → video frames, one at a time: pasted into
    the ``photo`` (shrunk once to ``max_side``) through the masks, or without a photo the crops enlarged ``scale``x."""
    if photo is not None:
        photo, box = fit_photo(photo, box, max_side)
    for crops, masks in batches:
        yield from upscale(crops, scale) if photo is None else paste_frames(photo, crops, box, masks, max_side)


def upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """``(T, S, S, 3)`` → ``(T, scale S, scale S, 3)`` uint8 by bicubic interpolation (torch; for display only)."""
    if scale == 1:
        return frames
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # (T, 3, S, S)
    big = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    return big.clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy()


def load_photo(photo: str | os.PathLike | np.ndarray) -> np.ndarray:
    """A path or array (RGB, RGBA or grey, uint8) → RGB uint8 ``(H, W, 3)``; tiny images are refused."""
    if isinstance(photo, (str, os.PathLike)):
        import imageio.v3 as iio

        if not Path(photo).is_file():
            raise FileNotFoundError(f"no photo at {photo} — check the path; give a JPEG or PNG with one face")
        try:
            photo = iio.imread(photo)
        except (OSError, ValueError, SyntaxError) as e:  # Pillow: "image file is truncated", unknown formats
            raise ValueError(f"could not read {photo} as an image ({e}) — it is truncated, corrupt or not an image: "
                             "save or export it again as JPEG or PNG") from None
    photo = np.asarray(photo)
    if photo.dtype == np.uint16:  # 16-bit PNG or TIFF
        photo = (photo // 257).astype(np.uint8)
    img = as_rgb_frames(photo)[0]  # (H, W, 3)
    if min(img.shape[:2]) < MIN_PHOTO_SIDE:
        raise ValueError(f"the photo is only {img.shape[1]}x{img.shape[0]} px — give one at least "
                         f"{MIN_PHOTO_SIDE} px on each side with the face filling a good part of it")
    return img


class TalkingFacePipeline:
    """Agents 1 and 2 with their settings. ``TalkingFacePipeline.from_checkpoints()`` loads the shipped ones."""

    def __init__(self, landmark_model, unet, schedule, agent_cfg, backend: str = "dlib"):
        self.landmark_model, self.unet, self.schedule, self.agent_cfg = landmark_model, unet, schedule, agent_cfg
        self.backend = backend
        self.size = unet.cfg.image_size

    @classmethod
    def from_checkpoints(cls, landmarks: str | os.PathLike | None = None, faces: str | os.PathLike | None = None,
                         backend: str = "dlib", device=None) -> "TalkingFacePipeline":
        device = device or default_device()
        unet, schedule, agent_cfg = load_face_agent(faces, device=device)
        return cls(load_landmark_model(landmarks, device=device), unet, schedule, agent_cfg, backend)

    def prepare_face(self, photo: str | os.PathLike | np.ndarray) -> Face:
        """Detect the face (the largest, if several), crop it aligned → :class:`Face` (crop, landmarks, photo, box).

        A face at the photo's border is fine: the crop repeats the border pixels beyond it."""
        img = load_photo(photo)
        lm = detect_landmarks(img, backend=self.backend).landmarks  # (1, 68, 2); NoFaceError if none
        crops, crop_lm = aligned_crops(img[None], lm, self.size, smooth=0)
        return Face(crops[0], crop_lm[0], img, face_box(lm[0]))

    def _landmarks(self, audio, photo, reference, smooth: float) -> tuple[np.ndarray, Face, np.ndarray]:
        """Speech (path or 16 kHz array) and a photo or a ``reference`` → (wav ``(N,)``, :class:`Face`,
        agent 1's landmarks ``(T, 68, 2)`` in crop pixels, smoothed over time with sigma ``smooth`` frames)."""
        wav = load_audio(audio) if isinstance(audio, (str, os.PathLike)) else np.asarray(audio, np.float32)
        if (photo is None) == (reference is None):
            raise ValueError("give exactly one of photo= (any image with a face) or reference=(crop, landmarks)")
        face = self.prepare_face(photo) if photo is not None else Face(*reference, None, None)
        lm = predict_landmarks(self.landmark_model, wav, face.landmarks)  # (T, 68, 2) crop pixels
        return wav, face, smooth_landmarks(lm, smooth)  # sigma 0 leaves them as they are

    def _frames(self, face: Face, lm: np.ndarray, steps, guidance, strength, seed, batch_size, progress) -> Iterator[tuple]:
        """Agent 2's frames with their paste-back masks, a batch at a time: ``(b, S, S, 3)`` uint8, ``(b, S, S)``."""
        batches = iter_frames(self.unet, self.schedule, face.crop, face.landmarks, lm, self.agent_cfg, steps=steps,
                              guidance=guidance, seed=seed, batch_size=batch_size, progress=progress, strength=strength)
        for i, frames in zip(range(0, len(lm), batch_size), batches):
            chunk = lm[i:i + len(frames)]
            yield frames, face_masks(chunk, face.landmarks, self.size, self.agent_cfg)[1][:, 0].numpy()  # soft

    def __call__(self, audio: str | os.PathLike | np.ndarray, photo: str | os.PathLike | np.ndarray | None = None,
                 *, reference: tuple[np.ndarray, np.ndarray] | None = None, steps: int | None = None,
                 guidance: float | None = None, strength: float | None = None, seed: int = 0, smooth: float = 1.0,
                 batch_size: int = 32, progress: bool = True) -> TalkingFace:
        """Speech (path or 16 kHz array) + a photo (or an already aligned ``reference`` crop and its
        landmarks, then without a photo to paste into) → :class:`TalkingFace`, every frame in memory.
        ``smooth``: Gaussian sigma (frames) on the predicted landmarks; ``steps``/``guidance``/``strength``:
        DDIM steps, classifier-free guidance scale and where sampling starts (:func:`face_agent.iter_frames`)."""
        wav, face, lm = self._landmarks(audio, photo, reference, smooth)
        frames, masks = map(np.concatenate, zip(*self._frames(face, lm, steps, guidance, strength, seed, batch_size,
                                                                         progress)))
        return TalkingFace(frames, lm, face.crop, face.landmarks, wav, masks=masks, photo=face.photo, box=face.box)

    def write(self, out: str | os.PathLike, audio: str | os.PathLike | np.ndarray,
              photo: str | os.PathLike | np.ndarray | None = None, *,
              reference: tuple[np.ndarray, np.ndarray] | None = None, crop: bool = False, steps: int | None = None,
              guidance: float | None = None, strength: float | None = None, seed: int = 0, smooth: float = 1.0,
              batch_size: int = 8, progress: bool = True, max_side: int = MAX_SIDE) -> Path:
        """The video of ``self(...).save(out, crop)``, streamed: each batch of frames is pasted and piped to
        the encoder as it is made, so memory stays bounded however long the speech (what the CLI runs).
        The output path and the sampling arguments are checked before any work. ``batch_size`` 8: the
        UNet's activations take ~12 MB a frame at 64 px, and on a CPU larger batches are no faster."""
        check_output(out)
        check_sampling(self.schedule, steps, self.agent_cfg.guidance_scale if guidance is None else guidance,
                       self.agent_cfg.strength if strength is None else strength)
        wav, face, lm = self._landmarks(audio, photo, reference, smooth)
        # closed however the encoder stops (Ctrl-C, a full disk): the sampler's progress bar ends here, not
        # at interpreter exit after the CLI's last line
        with closing(self._frames(face, lm, steps, guidance, strength, seed, batch_size, progress)) as batches:
            return write_video(out, video_frames(batches, None if crop else face.photo, face.box, max_side=max_side),
                               FPS, wav, SAMPLE_RATE)
