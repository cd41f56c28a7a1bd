"""Video in and out: read frames (and sound), resample to 25 fps, stable face crops, write mp4 with audio.

Frames are uint8 ``(T, H, W, 3)`` RGB. Pixel coordinates put pixel centres on integers (as dlib
and scikit-image do): pixel ``(r, c)`` covers ``[c - 0.5, c + 0.5] x [r - 0.5, r + 0.5]``.
Timing follows :mod:`minitalker.audio`: frame ``i`` stands for time ``(i + 0.5) / fps``.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from minitalker.audio import FPS, SAMPLE_RATE, load_audio
from minitalker.io import atomic_path
from minitalker.landmarks.scheme import check_landmarks, face_box


def _open_video(path: str | os.PathLike):
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path} (check the path)")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise ValueError(f"could not read {path} as a video ({e}): it is corrupt or not a video file") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path} has no video stream: give a video file (mp4, mov, avi, mkv)")
    return container


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decode every frame of the first video stream → (frames ``(T, H, W, 3)`` uint8 RGB, fps)."""
    import av

    with _open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or FPS)
        try:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        except av.error.FFmpegError as e:
            raise ValueError(f"could not decode {path} ({e}): the file is corrupt") from None
    if not frames:
        raise ValueError(f"{path} contains no video frames")
    return np.stack(frames), fps  # (T, H, W, 3)


def read_video_with_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, float, np.ndarray | None]:
    """(frames ``(T, H, W, 3)``, fps, audio ``(N,)`` mono float32 at ``sr`` or None when silent-film)."""
    frames, fps = read_video(path)
    with _open_video(path) as container:
        has_audio = bool(container.streams.audio)
    return frames, fps, load_audio(path, sr) if has_audio else None


def resample_fps(frames: np.ndarray, src_fps: float, dst_fps: float = FPS) -> np.ndarray:
    """Change the frame rate of any per-frame array ``(T, ...)`` (frames, landmarks) by nearest frame.

    Output frame ``j`` stands for ``t_j = (j + 0.5) / dst_fps``; it copies the source frame on
    screen then, ``i = floor(t_j * src_fps)`` (equivalently the source frame whose midpoint is
    nearest). The duration is kept: ``T_out = round(T * dst_fps / src_fps)``. No blending, so
    frames stay real images and landmarks stay consistent with them.
    """
    frames = np.asarray(frames)
    if src_fps <= 0 or dst_fps <= 0:
        raise ValueError(f"frame rates must be positive; got src_fps={src_fps}, dst_fps={dst_fps}")
    n_out = max(1, round(len(frames) * dst_fps / src_fps))
    idx = np.floor((np.arange(n_out) + 0.5) / dst_fps * src_fps).astype(int)
    return frames[np.clip(idx, 0, len(frames) - 1)]


# ----------------------------------------------------------------------------- aligned crops

def smooth_boxes(boxes: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing over time of face boxes ``(T, 3)`` = (cx, cy, side); ``sigma`` in frames.

    Detected landmarks jitter by a pixel or two per frame; a crop that follows them shakes the whole
    face. Smoothing centre and side (edges repeated at the ends) keeps the crop steady while still
    following real head motion slower than ~sigma frames.
    """
    from scipy.ndimage import gaussian_filter1d

    boxes = np.asarray(boxes, dtype=np.float64)
    return boxes if sigma <= 0 else gaussian_filter1d(boxes, sigma, axis=0, mode="nearest")


def _crop_one(frame: np.ndarray, box: np.ndarray, size: int, pad: str) -> np.ndarray:
    """One square crop: bilinear warp of the box onto ``size x size`` after an anti-alias blur.

    Crop pixel ``u`` samples image ``x = x0 + (u + 0.5) s`` with ``x0 = cx - side/2``, ``s = side/size``.
    When shrinking (``s > 1``) we first blur with ``sigma = (s - 1) / 2`` (scikit-image's
    anti-aliasing rule). Only the box plus a margin is touched, so cost does not grow with the frame.
    """
    from scipy.ndimage import gaussian_filter
    from skimage.transform import AffineTransform, warp

    cx, cy, side = box
    s = side / size
    sigma = max(0.0, (s - 1) / 2)
    r = int(np.ceil(side / 2 + 3 * sigma + 2))  # half-size of the region we read
    ox, oy = int(np.floor(cx)) - r, int(np.floor(cy)) - r
    h, w = frame.shape[:2]
    rows, cols = np.arange(oy, oy + 2 * r + 1), np.arange(ox, ox + 2 * r + 1)
    region = frame[np.clip(rows, 0, h - 1)[:, None], np.clip(cols, 0, w - 1)[None, :]].astype(np.float32)
    if pad == "black":
        region[(rows < 0) | (rows >= h)] = 0
        region[:, (cols < 0) | (cols >= w)] = 0
    if sigma > 0:
        region = gaussian_filter(region, (sigma, sigma, 0))
    t = AffineTransform(matrix=np.array([[s, 0, cx - side / 2 + 0.5 * s - ox],
                                         [0, s, cy - side / 2 + 0.5 * s - oy],
                                         [0, 0, 1]]))  # crop (u, v) → region (x, y)
    out = warp(region, t, output_shape=(size, size), order=1, mode="edge", preserve_range=True)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def aligned_crops(frames: np.ndarray, landmarks: np.ndarray, size: int, smooth: float = 2.0,
                  zoom: float = 1.0, pad: str = "edge") -> tuple[np.ndarray, np.ndarray]:
    """Stable square face crops → (crops ``(T, size, size, 3)`` uint8, landmarks in crop ``(T, 68, 2)``).

    Boxes come from :func:`minitalker.landmarks.scheme.face_box` on each frame, then
    :func:`smooth_boxes` with ``smooth`` = Gaussian sigma in frames (0 = none). Parts of the box
    outside the image repeat the border (``pad="edge"``) or are black (``pad="black"``).
    Landmarks map exactly as the pixels do: ``u = (x - x0) / s - 0.5``.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3); got {frames.dtype} {frames.shape}")
    landmarks = check_landmarks(landmarks)
    if landmarks.shape[:-2] != frames.shape[:1]:
        raise ValueError(f"need one (68, 2) landmark set per frame: {len(frames)} frames, landmarks {landmarks.shape}")
    if pad not in ("edge", "black"):
        raise ValueError(f"pad must be 'edge' or 'black'; got {pad!r}")
    boxes = smooth_boxes(face_box(landmarks, zoom), smooth)  # (T, 3)
    crops = np.stack([_crop_one(f, b, size, pad) for f, b in zip(frames, boxes)])  # (T, size, size, 3)
    s = boxes[:, 2] / size  # (T,)
    x0 = boxes[:, :2] - boxes[:, 2:] / 2  # (T, 2) top-left corner of the box
    in_crop = (landmarks - x0[:, None, :]) / s[:, None, None] - 0.5  # (T, 68, 2)
    return crops, in_crop.astype(np.float32)


# ----------------------------------------------------------------------------- pasting back

MAX_SIDE = 1024  # longer side of a photo-resolution video; larger photos are shrunk first


def fit_photo(photo: np.ndarray, box: np.ndarray, max_side: int = MAX_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """Shrink a photo whose longer side exceeds ``max_side`` → (photo ``(H', W', 3)`` uint8, box ``(3,)`` to match).

    Anti-aliased bilinear resize (torch ``antialias=True``); pixel centres map as
    ``x' = (x + 0.5) k - 0.5`` with ``k = W' / W`` (and ``H' / H`` for y), the side as ``side k``.
    A smaller photo comes back as it is.
    """
    import torch
    import torch.nn.functional as F

    box = np.asarray(box, dtype=np.float64)
    H, W = photo.shape[:2]
    if max(H, W) <= max_side:
        return photo, box
    h, w = max(1, round(H * max_side / max(H, W))), max(1, round(W * max_side / max(H, W)))
    x = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    kx, ky = w / W, h / H
    box = np.array([(box[0] + 0.5) * kx - 0.5, (box[1] + 0.5) * ky - 0.5, box[2] * (kx + ky) / 2])
    return x[0].clamp(0, 255).round().byte().permute(1, 2, 0).numpy(), box


def paste_frames(photo: np.ndarray, crops: np.ndarray, box: np.ndarray, alpha: np.ndarray,
                 max_side: int = MAX_SIDE, chunk: int = 16) -> Iterator[np.ndarray]:
    """Each crop pasted back into the photo, one full frame ``(H, W, 3)`` uint8 at a time (see :func:`paste_back`)."""
    import torch
    import torch.nn.functional as F
    from scipy.ndimage import gaussian_filter

    photo, crops, alpha = np.asarray(photo), np.asarray(crops), np.asarray(alpha, dtype=np.float32)
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise ValueError(f"photo must be uint8 (H, W, 3); got {photo.dtype} {photo.shape}")
    if crops.ndim != 4 or crops.shape[3] != 3 or crops.shape[1] != crops.shape[2] or crops.dtype != np.uint8:
        raise ValueError(f"crops must be uint8 (T, S, S, 3); got {crops.dtype} {crops.shape}")
    T, S = crops.shape[:2]
    if alpha.shape not in ((S, S), (T, S, S)):
        raise ValueError(f"alpha must be (S, S) or (T, S, S) = {(T, S, S)}; got {alpha.shape}")
    box = np.asarray(box, dtype=np.float64)
    if box.shape != (3,) or not np.isfinite(box).all() or box[2] <= 0:
        raise ValueError(f"box must be (cx, cy, side) with side > 0; got {box}")
    photo, (cx, cy, side) = fit_photo(photo, box, max_side)
    H, W = photo.shape[:2]
    x0, y0 = cx - side / 2, cy - side / 2
    c0, c1 = max(int(np.ceil(x0)), 0), min(int(np.ceil(x0 + side)), W)  # pixel centres inside the box and the photo
    r0, r1 = max(int(np.ceil(y0)), 0), min(int(np.ceil(y0 + side)), H)
    if c0 >= c1 or r0 >= r1:  # the box misses the photo altogether
        yield from (photo.copy() for _ in range(T))
        return
    gx = torch.from_numpy(2 * (np.arange(c0, c1) - x0) / side - 1).float()  # (w,) crop coords, align_corners=False
    gy = torch.from_numpy(2 * (np.arange(r0, r1) - y0) / side - 1).float()  # (h,)
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1)[None]  # (1, h, w, 2) as (x, y)
    base = torch.from_numpy(photo[r0:r1, c0:c1]).permute(2, 0, 1).float()  # (3, h, w)
    sigma = max(0.0, (S / side - 1) / 2)  # shrinking the crop: the same anti-alias rule as _crop_one
    alpha = np.broadcast_to(alpha, (T, S, S))
    for i in range(0, T, chunk):
        src = np.concatenate([crops[i:i + chunk].transpose(0, 3, 1, 2), alpha[i:i + chunk, None]], 1, dtype=np.float32)
        if sigma > 0:
            src = gaussian_filter(src, (0, 0, sigma, sigma))
        up = F.grid_sample(torch.from_numpy(src), grid.expand(len(src), -1, -1, -1), mode="bicubic",
                           padding_mode="border", align_corners=False)  # (b, 4, h, w)
        a = up[:, 3:].clamp(0, 1)  # exactly 0 where the crop's alpha is 0 all round: the photo stays bit for bit
        region = (base + a * (up[:, :3] - base)).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        for r in region:
            frame = photo.copy()
            frame[r0:r1, c0:c1] = r
            yield frame


def paste_back(photo: np.ndarray, crops: np.ndarray, box: np.ndarray, alpha: np.ndarray,
               max_side: int = MAX_SIDE) -> np.ndarray:
    """Crops ``(T, S, S, 3)`` uint8 blended back into the photo ``(H, W, 3)`` uint8 → ``(T, H, W, 3)`` uint8.

    The exact inverse of :func:`_crop_one`'s sampling: photo pixel ``x`` (centre inside the box)
    reads the crop at ``u = (x - x0) / s - 0.5``, ``x0 = cx - side / 2``, ``s = side / S`` (bicubic;
    anti-aliased first when the box is smaller than the crop), and so does ``alpha`` ``(T, S, S)``
    or ``(S, S)`` in [0, 1]: ``out = a crop + (1 - a) photo``. Pixels where ``a = 0`` and all
    pixels outside the box are the photo's, bit for bit; the part of the box outside the photo is
    dropped (a face at the border works). Only the box's region is resampled, so cost beyond one
    copy of the photo per frame does not grow with the photo. Photos larger than ``max_side`` are
    first shrunk (anti-aliased), box with them (:func:`fit_photo`), so the output is then ``(T, H', W', 3)``.
    This is how Wav2Lip, MuseTalk and LatentSync return a video at the photo's resolution; for
    long clips give :func:`paste_frames` (the same, one frame at a time) to :func:`write_video`.
    """
    return np.stack(list(paste_frames(photo, crops, box, alpha, max_side)))


# ----------------------------------------------------------------------------- writing

def check_output(path: str | os.PathLike) -> Path:
    """Fail now, not after minutes of work, if no mp4 can be written at ``path`` → ``path`` as a Path.

    Checks the suffix, that the folder exists and that we can create a file in it (a real probe:
    permissions alone miss read-only file systems). An existing file is fine (it will be replaced).
    """
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"{path} does not end in .mp4 — the video is written as mp4 (H.264 + AAC): "
                         "give a path ending in .mp4")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder — give a file path ending in .mp4 inside it")
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist — create it first (mkdir -p {folder})")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise PermissionError(f"cannot write in folder {folder} ({e.strerror}) — choose a writable folder "
                              "for the video") from None
    return path


def write_video(path: str | os.PathLike, frames: np.ndarray | Iterable[np.ndarray], fps: float = FPS,
                audio: np.ndarray | None = None, sr: int = SAMPLE_RATE, crf: int = 18) -> Path:
    """Write an mp4 (H.264, yuv420p, ``crf`` quality; AAC sound if ``audio`` is given) → the path.

    ``frames``: uint8 ``(T, H, W, 3)``, or any iterable of ``(H, W, 3)`` frames (a generator such as
    :func:`paste_frames`: frames are piped to the encoder as they come, so a long full-resolution
    clip is never held in memory at once). Uses the ffmpeg binary bundled with imageio-ffmpeg. Odd
    widths/heights are padded by one repeated row/column (yuv420p needs even sizes). The file
    appears atomically; the folder must exist and be writable (:func:`check_output`, before the first
    frame is asked for; we do not create folders silently: a typo in a path should fail loudly).
    Sound and picture keep their own lengths; players stop at the longer one.
    """
    import imageio_ffmpeg
    import soundfile as sf

    path = check_output(path)
    hint = "(from floats in [-1, 1]: ((x + 1) * 127.5).round().clip(0, 255).astype(np.uint8))"
    if isinstance(frames, np.ndarray) and (frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8
                                           or len(frames) == 0):
        raise ValueError(f"frames must be a non-empty uint8 (T, H, W, 3) array; got {frames.dtype} {frames.shape} "
                         + hint)
    frames = map(np.asarray, frames)
    first = next(frames, np.empty(0))
    if first.ndim != 3 or first.shape[-1] != 3 or first.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (H, W, 3) each, at least one; got {first.dtype} {first.shape} {hint}")
    if audio is not None:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or len(audio) == 0:
            raise ValueError(f"audio must be mono (N,) samples with N > 0; got shape {audio.shape}")
    h, w, _ = first.shape
    with atomic_path(path) as tmp, tempfile.TemporaryDirectory() as tmpdir:
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{w + w % 2}x{h + h % 2}", "-r", f"{fps}", "-i", "pipe:0"]
        if audio is not None:
            wav = Path(tmpdir) / "audio.wav"
            sf.write(wav, np.clip(audio, -1, 1), sr, subtype="PCM_16")
            cmd += ["-i", str(wav), "-c:a", "aac", "-b:a", "128k"]
        cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf), "-preset", "fast",
                "-movflags", "+faststart", "-f", "mp4", str(tmp)]
        log = Path(tmpdir) / "ffmpeg.log"  # a file, not a pipe: a chatty encoder cannot block us
        with open(log, "wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=err)
            try:
                for frame in itertools.chain([first], frames):
                    if frame.shape != first.shape or frame.dtype != np.uint8:
                        raise ValueError(f"every frame must be uint8 {first.shape}; got {frame.dtype} {frame.shape}")
                    proc.stdin.write(np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge").tobytes())
            except BrokenPipeError:
                pass  # ffmpeg stopped early: its return code and log say why
            except BaseException:
                proc.kill()
                raise
            finally:
                proc.communicate()  # close the pipe (the end of the video) and wait for the encoder
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg failed writing {path}:\n{log.read_text(errors='replace')[-2000:]}")
    return path


def show_video(path: str | os.PathLike, width: int = 320):
    """An inline, embedded player (with sound) for notebooks: ``IPython.display.Video``.

    The file is embedded as base64, so keep clips short and small when the notebook is committed.
    """
    from IPython.display import Video

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    return Video(str(path), embed=True, width=width, mimetype="video/mp4", html_attributes="controls loop")
