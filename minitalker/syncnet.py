"""SyncNet and its lip-sync scores LSE-D / LSE-C, as Wav2Lip reports them.

SyncNet (Chung & Zisserman 2016, "Out of time: automated lip sync in the wild") embeds 0.2 s of
sound and the 5 video frames over the same 0.2 s into one space, trained so that the two are close
when in sync. To score a video (``SyncNetInstance.evaluate`` of joonson/syncnet_python, which
Wav2Lip's ``evaluation/scores_LSE`` runs unchanged):

* every 5-frame window ``i`` (25 fps) gives a video embedding ``v_i``; MFCC frames ``4i ... 4i+19``
  (100 Hz) give an audio embedding ``a_i``;
* for each offset ``k`` in ``-15 ... 15`` frames, the mean distance ``D_k = mean_i ‖v_i - a_{i+k}‖``
  (``a`` padded with zero vectors beyond its ends);
* **LSE-D** = ``min_k D_k`` (lower is better), **LSE-C** = ``median_k D_k - min_k D_k`` (the
  confidence, higher is better), and the **offset** ``= -argmin_k D_k`` in frames: positive when the
  sound comes early, negative when it comes late, 0 in sync.

The network is written from the published architecture with the parameter names of the published
``syncnet_v2.model`` (a plain state dict), so those weights load with ``torch.load(weights_only=True)``.
Nothing is ever downloaded: get the file yourself (:data:`WEIGHTS_HELP`). Followed exactly (checked
against the reference code): the layers, the MFCC (python_speech_features' defaults on 16-bit sample
values), the pairing of frames and MFCC windows, the scores. Our choices, said where they happen: the
face box from dlib's 68 landmarks instead of the S3FD detector, frames fed as decoded (the reference
round-trips them through JPEG), nearest-frame resampling to 25 fps, soxr resampling of the sound.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from minitalker.audio import FPS, SAMPLE_RATE

WEIGHTS_URL = "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model"
WEIGHTS_HELP = (f"expected syncnet_v2.model, the state dict that joonson/syncnet_python's download_model.sh fetches "
                f"from {WEIGHTS_URL}; download it yourself, put it anywhere and pass its path (--syncnet PATH)")
WINDOW = 5  # video frames per SyncNet window (0.2 s at 25 fps)
MFCC_PER_FRAME = 4  # 100 Hz MFCC / 25 fps
VSHIFT = 15  # offsets searched, in frames each way (Wav2Lip's setting)
SIZE = 224  # face crop side fed to the video stream
CROP_SCALE = 0.4  # run_pipeline.py's --crop_scale: margin around the face box
PAD_VALUE = 110  # grey that run_pipeline.py pads frames with


# ----------------------------------------------------------------------------- the network

def _conv_bn_relu(conv: type[nn.Module], bn: type[nn.Module], cin: int, cout: int, **kw) -> list[nn.Module]:
    return [conv(cin, cout, **kw), bn(cout), nn.ReLU()]


def _head(dim: int) -> nn.Sequential:
    """512 → 512 → ``dim``: the fully connected part of either stream."""
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNet(nn.Module):
    """The two streams of ``SyncNetModel.S`` (syncnet_python), same layers, same parameter names.

    Audio: MFCC ``(B, 1, 13, 20)`` → 2-D convs → ``(B, 512, 1, 1)`` → ``netfcaud`` → ``(B, 1024)``.
    Video: BGR frames 0-255 ``(B, 3, 5, 224, 224)`` → 3-D convs (the first spans all 5 frames, the
    rest work per frame) → ``(B, 512, 1, 1, 1)`` → ``netfclip`` → ``(B, 1024)``. The layer indices
    inside each ``nn.Sequential`` are the reference's, since they make up the parameter names
    (``netcnnaud.0.weight`` ...); so its no-op ``MaxPool2d(1, 1)`` is kept as an ``nn.Identity``.
    """

    def __init__(self, dim: int = 1024):
        super().__init__()
        c2, c3 = (nn.Conv2d, nn.BatchNorm2d), (nn.Conv3d, nn.BatchNorm3d)
        self.netcnnaud = nn.Sequential(                              # (B, 1, 13, 20)
            *_conv_bn_relu(*c2, 1, 64, kernel_size=3, padding=1), nn.Identity(),
            *_conv_bn_relu(*c2, 64, 192, kernel_size=3, padding=1),
            nn.MaxPool2d(kernel_size=3, stride=(1, 2)),              # (B, 192, 11, 9)
            *_conv_bn_relu(*c2, 192, 384, kernel_size=3, padding=1),
            *_conv_bn_relu(*c2, 384, 256, kernel_size=3, padding=1),
            *_conv_bn_relu(*c2, 256, 256, kernel_size=3, padding=1),
            nn.MaxPool2d(kernel_size=3, stride=2),                   # (B, 256, 5, 4)
            *_conv_bn_relu(*c2, 256, 512, kernel_size=(5, 4)),       # (B, 512, 1, 1)
        )
        self.netfcaud = _head(dim)
        self.netfclip = _head(dim)
        self.netcnnlip = nn.Sequential(                              # (B, 3, 5, 224, 224)
            *_conv_bn_relu(*c3, 3, 96, kernel_size=(5, 7, 7), stride=(1, 2, 2)),  # (B, 96, 1, 109, 109)
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),   # (B, 96, 1, 54, 54)
            *_conv_bn_relu(*c3, 96, 256, kernel_size=(1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)),  # 26 x 26
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),  # (B, 256, 1, 13, 13)
            *_conv_bn_relu(*c3, 256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            *_conv_bn_relu(*c3, 256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            *_conv_bn_relu(*c3, 256, 256, kernel_size=(1, 3, 3), padding=(0, 1, 1)),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),   # (B, 256, 1, 6, 6)
            *_conv_bn_relu(*c3, 256, 512, kernel_size=(1, 6, 6)),    # (B, 512, 1, 1, 1)
        )

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        """MFCC windows ``(B, 1, 13, 20)`` → audio embeddings ``(B, dim)``."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, frames: torch.Tensor) -> torch.Tensor:
        """Face windows ``(B, 3, 5, 224, 224)`` (BGR, 0-255) → video embeddings ``(B, dim)``."""
        return self.netfclip(self.netcnnlip(frames).flatten(1))


def load_syncnet(path: str | os.PathLike) -> SyncNet:
    """The published weights (``syncnet_v2.model``, a plain state dict) → :class:`SyncNet` in eval mode.

    Read with ``torch.load(weights_only=True)``: tensors and containers only, never arbitrary
    pickled code; the old (pre-zip) torch format loads too. ``num_batches_tracked`` may be absent
    (files saved before PyTorch 0.4.1 lack it; eval mode never uses it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SyncNet weights not found at {path}: {WEIGHTS_HELP}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds on files that are not tensors only (UnpicklingError, KeyError...)
        raise ValueError(f"{path} is not a plain state dict of tensors (torch.load(weights_only=True) refused it: "
                         f"{type(e).__name__}); {WEIGHTS_HELP}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of tensors; {WEIGHTS_HELP}")
    model = SyncNet()
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or reshaped:
        raise ValueError(f"{path} is a state dict but not SyncNet's (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}, other shapes {reshaped[:3]}); {WEIGHTS_HELP}")
    model.load_state_dict(state, strict=False)
    return model.eval()


# ----------------------------------------------------------------------------- audio: MFCC

def _mel_filterbank(n_filters: int = 26, n_fft: int = 512, sr: int = SAMPLE_RATE) -> np.ndarray:
    """python_speech_features' triangular filters on FFT bins ``(n_filters, 1 + n_fft/2)``.

    Band edges evenly spaced on the mel scale ``m = 2595 log10(1 + f/700)`` from 0 to sr/2, each
    snapped down to an FFT bin ``floor((n_fft + 1) f / sr)``; filter ``j`` rises from edge ``j`` to
    ``j + 1`` and falls to ``j + 2`` (peak 1).
    """
    mels = np.linspace(0, 2595 * np.log10(1 + sr / 2 / 700), n_filters + 2)
    bins = np.floor((n_fft + 1) * 700 * (10 ** (mels / 2595) - 1) / sr)  # (n_filters + 2,)
    k = np.arange(n_fft // 2 + 1)[None, :]  # (1, F)
    lo, mid, hi = bins[:-2, None], bins[1:-1, None], bins[2:, None]  # (n_filters, 1) each
    rise = np.where((k >= lo) & (k < mid), (k - lo) / np.maximum(mid - lo, 1), 0)
    fall = np.where((k >= mid) & (k < hi), (hi - k) / np.maximum(hi - mid, 1), 0)
    return rise + fall  # (n_filters, F)


def mfcc(pcm: np.ndarray, sr: int = SAMPLE_RATE, n_ceps: int = 13) -> np.ndarray:
    """``python_speech_features.mfcc`` with its defaults, in numpy: ``(N,)`` samples → ``(M, 13)``.

    Pre-emphasis ``y[n] = x[n] - 0.97 x[n-1]``; 25 ms frames every 10 ms, rectangular window, zero
    padded at the end so ``M = 1 + ceil((N - 400) / 160)``; power spectrum ``|FFT_512|² / 512``;
    26 mel filters; ``log``; DCT-II (orthonormal), first 13; lifter ``1 + 11 sin(π n / 22)``; then
    ``c_0`` replaced by the log of the frame's total power. Scale matters (only to ``c_0``): the
    reference reads 16-bit PCM, so pass samples in the int16 range (:func:`pcm16`).
    """
    from scipy.fft import dct

    x = np.asarray(pcm, dtype=np.float64)
    x = np.append(x[:1], x[1:] - 0.97 * x[:-1])
    win, hop, n_fft = round(0.025 * sr), round(0.010 * sr), 512
    M = 1 if len(x) <= win else 1 + int(np.ceil((len(x) - win) / hop))
    x = np.pad(x, (0, (M - 1) * hop + win - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]  # (M, win)
    power = np.abs(np.fft.rfft(frames, n_fft)) ** 2 / n_fft  # (M, 257)
    eps = np.finfo(float).eps
    energy = power.sum(1)  # (M,)
    bands = power @ _mel_filterbank(26, n_fft, sr).T  # (M, 26)
    energy[energy == 0], bands[bands == 0] = eps, eps  # digital silence: log(eps), not -inf
    ceps = dct(np.log(bands), type=2, axis=1, norm="ortho")[:, :n_ceps]  # (M, 13)
    ceps *= 1 + 11 * np.sin(np.pi * np.arange(n_ceps) / 22)
    ceps[:, 0] = np.log(energy)
    return ceps


def pcm16(wav: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] → the int16 values ffmpeg's ``pcm_s16le`` would write (as float64)."""
    return np.clip(np.round(np.asarray(wav, dtype=np.float64) * 32768), -32768, 32767)


# ----------------------------------------------------------------------------- video: face crops

def crop_face(frame: np.ndarray, box: np.ndarray, size: int = SIZE) -> np.ndarray:
    """run_pipeline.py's crop of one frame ``(H, W, 3)`` around ``box`` = (x0, y0, x1, y1) → ``(size, size, 3)`` uint8.

    With ``s`` = half the box's longer side and centre ``(cx, cy)``: rows ``cy - s ... cy + 1.8 s``,
    columns ``cx - 1.4 s ... cx + 1.4 s`` (a square from the box's top to 0.8 s below its bottom),
    grey 110 beyond the frame, resized bilinearly (half-pixel centres, as cv2.INTER_LINEAR).
    """
    x0, y0, x1, y1 = box
    s = max(x1 - x0, y1 - y0) / 2
    pad = int(s * (1 + 2 * CROP_SCALE))
    img = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), constant_values=PAD_VALUE)
    cy, cx = (y0 + y1) / 2 + pad, (x0 + x1) / 2 + pad
    face = img[int(cy - s):int(cy + s * (1 + 2 * CROP_SCALE)), int(cx - s * (1 + CROP_SCALE)):int(cx + s * (1 + CROP_SCALE))]
    return resize(face, size)


def resize(img: np.ndarray, size: int = SIZE) -> np.ndarray:
    """``(H, W, 3)`` uint8 → ``(size, size, 3)`` uint8, bilinear without anti-aliasing (cv2.INTER_LINEAR's rule)."""
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()  # (1, 3, H, W)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x[0].round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


def landmark_boxes(frames: np.ndarray) -> np.ndarray:
    """A face box per frame from dlib's 68 landmarks → ``(T, 4)`` (x0, y0, x1, y1), square, smoothed over time.

    Our stand-in for the reference's S3FD boxes: the landmarks' bounding box, its top raised by a
    fifth of its height (the 68 points stop at the brows; a face detector's box takes in the
    forehead). Centre and half side are median-filtered over 13 frames as the reference smooths its
    track (edges repeated, our choice; the reference pads with zeros).
    """
    from scipy.ndimage import median_filter

    from minitalker.landmarks.detect import detect_landmarks

    lm = detect_landmarks(frames, backend="dlib").landmarks  # (T, 68, 2)
    lo, hi = lm.min(1), lm.max(1)  # (T, 2) each
    lo[:, 1] -= 0.2 * (hi[:, 1] - lo[:, 1])
    track = np.column_stack([(lo + hi) / 2, (hi - lo).max(1) / 2])  # (T, 3) centre x, centre y, half side
    cx, cy, s = median_filter(track, size=(13, 1), mode="nearest").T  # (T,) each
    return np.stack([cx - s, cy - s, cx + s, cy + s], 1)


def face_windows(crops: np.ndarray, start: int, stop: int) -> torch.Tensor:
    """Windows ``start ... stop-1`` of RGB crops ``(T, 224, 224, 3)`` → ``(B, 3, 5, 224, 224)`` BGR floats 0-255, as cv2 reads."""
    x = torch.from_numpy(np.ascontiguousarray(crops[start:stop + WINDOW - 1, ..., ::-1])).float()  # (B+4, H, W, 3)
    x = x.permute(3, 0, 1, 2)  # (3, B+4, H, W)
    return torch.stack([x[:, i:i + WINDOW] for i in range(stop - start)])  # (B, 3, 5, H, W)


# ----------------------------------------------------------------------------- scores

def sync_scores(video_emb: torch.Tensor, audio_emb: torch.Tensor, vshift: int = VSHIFT) -> dict:
    """LSE-D, LSE-C and the offset from per-window embeddings ``(T, D)`` each (``calc_pdist`` + ``evaluate``).

    ``d[i, j] = ‖v_i - a_{i + j - vshift}‖`` for ``j = 0 ... 2 vshift`` (zero vectors beyond the ends;
    ``F.pairwise_distance`` adds its ``1e-6`` as the reference does), ``D_j = mean_i d[i, j]``.
    Returns ``lse_d = min D``, ``lse_c = median D - min D``, ``offset = vshift - argmin D`` and ``mean_dists = D``.
    """
    win = 2 * vshift + 1
    padded = F.pad(audio_emb, (0, 0, vshift, vshift))  # (T + 2 vshift, D)
    shifted = padded.unfold(0, win, 1)[:len(video_emb)].transpose(1, 2)  # (T, win, D): row i = a_{i-vshift ... i+vshift}
    d = F.pairwise_distance(video_emb[:, None, :].expand_as(shifted), shifted)  # (T, win)
    mean = d.mean(0)  # (win,)
    lse_d, best = torch.min(mean, 0)
    return {"lse_d": float(lse_d), "lse_c": float(torch.median(mean) - lse_d), "offset": vshift - int(best),
            "mean_dists": mean.tolist()}


@torch.no_grad()
def embed(model: SyncNet, crops: np.ndarray, pcm: np.ndarray, batch_size: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Face crops ``(T, 224, 224, 3)`` RGB at 25 fps + 16 kHz PCM ``(N,)`` → video and audio embeddings ``(n, 1024)`` each.

    As the reference: ``n = min(T, floor(N / 640)) - 5`` windows (one fewer than would fit; kept, so
    the numbers match), window ``i`` = frames ``i ... i+4`` and MFCC frames ``4i ... 4i+19``.
    """
    cc = torch.from_numpy(mfcc(pcm).T).float()  # (13, M)
    n = min(len(crops), len(pcm) // (SAMPLE_RATE // FPS)) - WINDOW
    if n < 1:
        raise ValueError(f"too short for SyncNet: {len(crops)} frames and {len(pcm) / SAMPLE_RATE:.2f} s of sound; "
                         f"need at least {WINDOW + 1} frames ({(WINDOW + 1) / FPS:.2f} s) of both")
    video, audio = [], []
    for i in range(0, n, batch_size):
        stop = min(n, i + batch_size)
        video.append(model.forward_lip(face_windows(crops, i, stop)))
        a = torch.stack([cc[:, MFCC_PER_FRAME * j:MFCC_PER_FRAME * j + 20] for j in range(i, stop)])  # (B, 13, 20)
        audio.append(model.forward_aud(a[:, None]))
    return torch.cat(video), torch.cat(audio)


def evaluate_sync(model: SyncNet, video: str | os.PathLike, box: tuple[float, float, float, float] | None = None,
                  full_frame: bool = False, vshift: int = VSHIFT) -> dict:
    """SyncNet scores of a video file with sound → ``{lse_d, lse_c, offset, windows, face, mean_dists}``.

    The face: dlib landmarks on every frame (:func:`landmark_boxes`, then :func:`crop_face`), or one
    fixed ``box`` (x0, y0, x1, y1) for every frame, or ``full_frame`` for a video that is already a
    face crop (``generate --crop``): whole frames resized to 224, as Wav2Lip scores LRS2's face
    tracks. Other frame rates are brought to 25 fps by nearest frame (the reference converts with
    ffmpeg first); the sound is read at 16 kHz (soxr resampling, our loader) as 16-bit values.
    """
    from minitalker.video import read_video_with_audio, resample_fps

    if box is not None and full_frame:
        raise ValueError("give a face box or full_frame=True, not both")
    frames, fps, wav = read_video_with_audio(video)
    if wav is None:
        raise ValueError(f"{video} has no sound track: SyncNet scores picture against sound")
    if abs(fps - FPS) > 1e-3:
        frames = resample_fps(frames, fps, FPS)
    if full_frame:
        face, crops = "full frame", np.stack([resize(f) for f in frames])
    else:
        boxes = np.tile(np.asarray(box, float), (len(frames), 1)) if box is not None else landmark_boxes(frames)
        face = "box" if box is not None else "dlib landmarks"
        crops = np.stack([crop_face(f, b) for f, b in zip(frames, boxes)])  # (T, 224, 224, 3)
    v, a = embed(model, crops, pcm16(wav))
    return {"video": str(video), **sync_scores(v, a, vshift), "windows": len(v), "face": face}


def format_sync(r: dict) -> str:
    """The three numbers for humans."""
    return (f"{r['video']}: LSE-D {r['lse_d']:.3f} (lower is better)  LSE-C {r['lse_c']:.3f} (higher is better)  "
            f"offset {r['offset']:+d} frames  ({r['windows']} windows, face: {r['face']})")
