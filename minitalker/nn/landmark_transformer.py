"""Agent 1: the landmark completion transformer (speech + masked reference landmarks → 68 landmarks).

DiffTalker's first agent completes a face: the speaker's reference landmarks are given with the
mouth and jaw hidden (:data:`~minitalker.landmarks.scheme.COMPLETION_MASK`), and the audio around
each frame decides where the hidden points go. Everything happens in the similarity-normalised
frame of :func:`~minitalker.landmarks.scheme.normalise` (eye corners at (±0.5, 0)).

Tokens, for a clip of T frames (our interpretation; the paper gives no sizes)::

    audio   : each frame's window of W log-mel frames, cut into A = W/p patches of p mel frames
              → Linear(p·80, d)                                        (B, T, A, d)
              fast: p = 4, five 40 ms tokens per frame; full: p = 2, a token per 20 ms. Several
              tokens let attention pick details inside the window (measured on the fast corpus:
              one token per frame, p = W, d = 48, left the model only 3% ahead of ridge; p = 4,
              d = 64 with 3x the steps, 20% ahead)
    hidden  : the 31 masked points: a learned [MASK] token + the point's index embedding (B, T, 31, d)
    visible : the 37 visible reference points: Linear(Fourier(x, y)) + index embedding (B, 37, d)
    + modality embeddings (audio / landmark) and a time embedding (frame t of the clip)

Coordinates enter through Fourier features (sin and cos of 2^k π x; Tancik et al. 2020): faces
differ by a few hundredths of the eye distance, which a plain Linear(2, d) would barely notice.

Each block (pre-norm, like GPT-2) does three things::

    frame attention : inside one frame, audio + hidden tokens attend to each other and to the
                      visible tokens (keys/values only: visible points pass through unchanged, so
                      their own outputs would be thrown away; computing them once per clip
                      instead of once per frame halves the cost)
    time attention  : each token attends to the same token in the other T frames (clip mode;
                      factorised space-time attention as in TimeSformer) → smooth motion
    MLP

A head maps each hidden token to its displacement from the reference's rest position: the
network never *sees* the hidden points (it cannot copy them; audio must decide the shape), but
its answer is anchored on them, so every speaker keeps their own mouth. Our interpretation: with
two training faces no network can guess a new person's mouth from the upper face alone (measured
on the held-out face: 0.147 inter-ocular error for absolute positions, 0.030 for copying the
reference). Visible points are copied from the reference. A linear read-out of each frame's whole
window (the form of the ridge baseline) is added to the head's displacements: it learns the
linear part of the audio → mouth map in a few steps, the transformer learns the rest (context over
frames, non-linear distinctions such as a bilabial closure vs a pause); measured on the fast
corpus (older build, 400-step runs), validation error after 60 steps was 0.014 with it, 0.021-0.024
without.

``clip_frames = 1`` gives the frame mode (no time attention).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..audio import AudioConfig, audio_features
from ..config import DATA_DIR, PresetConfig
from ..io import load_checkpoint
from ..landmarks import scheme

HIDDEN = np.flatnonzero(scheme.COMPLETION_MASK)  # (31,) indices predicted from audio
VISIBLE = np.flatnonzero(~scheme.COMPLETION_MASK)  # (37,) indices copied from the reference
SHIPPED = DATA_DIR / "checkpoints" / "landmarks_fast"


@dataclass
class LandmarkTransformerConfig(PresetConfig):
    n_mels: int = 80  # mel bins (AudioConfig.n_mels)
    window: int = 20  # mel frames per video frame (AudioConfig.window)
    mel_patch: int = 4  # mel frames per audio token (4: five 40 ms tokens per 200 ms window)
    clip_frames: int = 16  # frames predicted jointly; 1 = frame mode (no time attention)
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 3
    mlp_ratio: int = 2
    dropout: float = 0.0
    n_freqs: int = 6  # Fourier features sin/cos(2^k π x), k < n_freqs, of the visible points' coordinates
    linear_path: bool = True  # add a linear map from each frame's whole window to its displacements
    mel_mean: float = -8.0  # log-mel standardisation (x - mean) / std; measured on the fast corpus
    mel_std: float = 4.4

    @classmethod
    def full(cls) -> "LandmarkTransformerConfig":
        return cls(mel_patch=2, clip_frames=32, d_model=256, n_heads=8, n_layers=6, mlp_ratio=4, dropout=0.1)

    def check(self) -> None:
        if self.window % self.mel_patch or self.d_model % self.n_heads:
            raise ValueError(f"need window % mel_patch == 0 and d_model % n_heads == 0; got {self}")


class Attention(nn.Module):
    """Multi-head scaled dot-product attention ``softmax(q kᵀ/√d_h) v``, optionally with extra memory.

    ``memory (B, M, d)`` adds M keys/values shared by groups of ``r = B'/B`` consecutive rows of
    ``x (B', N, d)`` (here: the visible reference points, shared by the T frames of a clip).
    """

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        Bx, N, d = x.shape
        q, k, v = self.qkv(x).chunk(3, -1)  # (B', N, d) each
        if memory is not None:
            mk, mv = F.linear(memory, self.qkv.weight[d:], self.qkv.bias[d:]).chunk(2, -1)  # (B, M, d)
            r = Bx // memory.shape[0]
            k, v = torch.cat([k, mk.repeat_interleave(r, 0)], 1), torch.cat([v, mv.repeat_interleave(r, 0)], 1)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (q, k, v))  # (B', h, N|N+M, d_h)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(Bx, N, d))


class Block(nn.Module):
    """Pre-norm block: frame attention (+ time attention in clip mode) + MLP, each residual."""

    def __init__(self, cfg: LandmarkTransformerConfig):
        super().__init__()
        d = cfg.d_model
        self.ln_frame, self.ln_memory = nn.LayerNorm(d), nn.LayerNorm(d)
        self.frame_attn = Attention(d, cfg.n_heads, cfg.dropout)
        self.ln_time = nn.LayerNorm(d) if cfg.clip_frames > 1 else None
        self.time_attn = Attention(d, cfg.n_heads, cfg.dropout) if cfg.clip_frames > 1 else None
        self.ln_mlp = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, cfg.mlp_ratio * d), nn.GELU(), nn.Linear(cfg.mlp_ratio * d, d),
                                 nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        B, T, N, d = x.shape  # x: per-frame tokens; memory (B, M, d): visible reference tokens
        x = x + self.frame_attn(self.ln_frame(x).flatten(0, 1), self.ln_memory(memory)).view(B, T, N, d)
        if self.time_attn is not None and T > 1:
            h = self.ln_time(x).transpose(1, 2).flatten(0, 1)  # (B·N, T, d): one sequence per token
            x = x + self.time_attn(h).view(B, N, T, d).transpose(1, 2)
        return x + self.mlp(self.ln_mlp(x))


class LandmarkCompletionTransformer(nn.Module):
    """``(mel (B, T, W, 80), reference (B, 68, 2)) → landmarks (B, T, 68, 2)``, all normalised."""

    def __init__(self, cfg: LandmarkTransformerConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or LandmarkTransformerConfig()
        cfg.check()
        d, n_audio = cfg.d_model, cfg.window // cfg.mel_patch
        self.audio_in = nn.Linear(cfg.mel_patch * cfg.n_mels, d)
        self.audio_pos = nn.Parameter(torch.randn(n_audio, d) * 0.02)  # where in the window
        self.register_buffer("freqs", 2.0 ** torch.arange(cfg.n_freqs) * math.pi, persistent=False)
        self.point_in = nn.Linear(4 * cfg.n_freqs, d)
        self.mask_token = nn.Parameter(torch.randn(d) * 0.02)  # stands in for every hidden point
        self.point_pos = nn.Parameter(torch.randn(scheme.N_POINTS, d) * 0.02)  # which of the 68 points
        self.modality = nn.Parameter(torch.randn(2, d) * 0.02)  # 0 = audio, 1 = landmark
        self.time_pos = nn.Parameter(torch.randn(cfg.clip_frames, d) * 0.02)  # frame t of the clip
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_out, self.head = nn.LayerNorm(d), nn.Linear(d, 2)
        self.linear = nn.Linear(cfg.window * cfg.n_mels, 2 * len(HIDDEN)) if cfg.linear_path else None
        with torch.no_grad():
            self.head.weight.mul_(0.1)  # start near "copy the reference": small displacements
            if self.linear is not None:
                self.linear.weight.zero_()
                self.linear.bias.zero_()
        self.register_buffer("hidden", torch.as_tensor(HIDDEN), persistent=False)
        self.register_buffer("visible", torch.as_tensor(VISIBLE), persistent=False)

    def forward(self, mel: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        self._check(mel, reference)
        B, T, W, M = mel.shape
        A = W // cfg.mel_patch
        mel = (mel - cfg.mel_mean) / cfg.mel_std
        audio = self.audio_in(mel.reshape(B, T, A, cfg.mel_patch * M))
        audio = audio + self.audio_pos + self.modality[0]  # (B, T, A, d)
        hidden = (self.mask_token + self.point_pos[self.hidden] + self.modality[1]).expand(B, T, -1, -1)  # (B, T, 31, d)
        x = torch.cat([audio, hidden], 2) + self.time_pos[:T, None]  # (B, T, A + 31, d)
        xy = reference[:, self.visible, :, None] * self.freqs  # (B, 37, 2, F)
        fourier = torch.cat([xy.sin(), xy.cos()], -1).flatten(2)  # (B, 37, 4F)
        memory = self.point_in(fourier) + self.point_pos[self.visible] + self.modality[1]  # (B, 37, d)
        for block in self.blocks:
            x = block(x, memory)
        move = self.head(self.ln_out(x[:, :, A:]))  # (B, T, 31, 2) displacement of each hidden point
        if self.linear is not None:  # + a linear read-out of the window (the ridge baseline's form)
            move = move + self.linear(mel.flatten(2) / math.sqrt(W * M)).view(B, T, -1, 2)  # (scaled: Adam
            # moves every weight by ~lr, so without 1/√(W·80) its 1600 inputs would swing the output)
        out = reference[:, None].expand(B, T, -1, -1).clone()  # (B, T, 68, 2): the reference, at rest
        out[:, :, self.hidden] += move.to(out.dtype)
        return out

    @torch.no_grad()
    def init_linear(self, w: np.ndarray, mean_x: np.ndarray, mean_y: np.ndarray) -> None:
        """Start the linear path at a fitted linear model ``y = (x - mean_x) @ w + mean_y`` of raw
        mel windows ``x (W·80,)`` → displacements ``y (62,)`` (e.g. the ridge baseline's solution)."""
        if self.linear is None:
            raise ValueError("this model has no linear path (config linear_path=False)")
        cfg = self.cfg
        scale = math.sqrt(cfg.window * cfg.n_mels) * cfg.mel_std  # the path sees (x - mel_mean) / scale
        self.linear.weight.copy_(torch.as_tensor((scale * w).T, dtype=torch.float32))
        self.linear.bias.copy_(torch.as_tensor((cfg.mel_mean - mean_x) @ w + mean_y, dtype=torch.float32))

    def _check(self, mel: torch.Tensor, reference: torch.Tensor) -> None:
        cfg = self.cfg
        if mel.ndim != 4 or mel.shape[2:] != (cfg.window, cfg.n_mels):
            raise ValueError(f"mel must be (B, T, {cfg.window}, {cfg.n_mels}) windows from audio.audio_features; got {tuple(mel.shape)}")
        if mel.shape[1] > cfg.clip_frames:
            raise ValueError(f"{mel.shape[1]} frames but the model predicts at most clip_frames={cfg.clip_frames} "
                             "jointly: use predict_sequence for longer audio")
        if reference.shape != (mel.shape[0], scheme.N_POINTS, 2):
            raise ValueError(f"reference must be (B, 68, 2) normalised landmarks; got {tuple(reference.shape)} for B={mel.shape[0]}")

    @torch.no_grad()
    def predict_sequence(self, mel: np.ndarray, reference: np.ndarray, overlap: int | None = None) -> np.ndarray:
        """Any number of frames: ``mel (T, W, 80)``, normalised ``reference (68, 2)`` → ``(T, 68, 2)``.

        Cuts the sequence into clips of ``clip_frames`` that overlap by ``overlap`` frames (default a
        quarter), runs them as one batch and cross-fades the overlaps linearly. The tail is padded
        with silent windows (the log-mel floor), which training clips also contain between words.
        """
        C = self.cfg.clip_frames
        overlap = C // 4 if overlap is None else overlap
        stride, T = C - overlap, len(mel)
        n = max(1, math.ceil((T - overlap) / stride))
        silent = np.full((n * stride + overlap - T, *mel.shape[1:]), math.log(AudioConfig().log_floor), np.float32)
        padded = np.concatenate([mel, silent]) if len(silent) else np.asarray(mel, np.float32)
        clips = np.stack([padded[i * stride:i * stride + C] for i in range(n)])  # (n, C, W, 80)
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        ref = torch.as_tensor(reference, dtype=torch.float32, device=device)
        pred = self(torch.as_tensor(clips, device=device), ref.expand(n, -1, -1)).float().cpu().numpy()  # (n, C, 68, 2)
        self.train(was_training)
        ramp = np.ones(C, np.float32)  # cross-fade weights: rise over the first overlap, fall over the last
        if overlap:
            ramp[:overlap] = ramp[-overlap:][::-1] = (np.arange(overlap) + 1) / (overlap + 1)
        out, weight = np.zeros((len(padded), 68, 2), np.float32), np.zeros(len(padded), np.float32)
        for i in range(n):
            w = ramp.copy()
            if i == 0:
                w[:overlap] = 1
            if i == n - 1:
                w[C - overlap:] = 1
            out[i * stride:i * stride + C] += pred[i] * w[:, None, None]
            weight[i * stride:i * stride + C] += w
        return out[:T] / weight[:T, None, None]


# ------------------------------------------------------------------------------------- inference

def model_from_checkpoint(path: str | os.PathLike, config: LandmarkTransformerConfig | None = None,
                          device: str | torch.device = "cpu") -> LandmarkCompletionTransformer:
    """Load a landmark model saved by the trainer or shipped (EMA weights when present, in fp32).

    ``config``: the configuration you expect; a checkpoint trained with another one is an error.
    The checkpoint's JSON (configs, metrics, provenance) is kept as ``model.meta``.
    """
    tensors, meta = load_checkpoint(path)
    if meta.get("model_class") not in (None, "LandmarkCompletionTransformer"):
        raise ValueError(f"{path} holds a {meta['model_class']}, not a LandmarkCompletionTransformer")
    saved = LandmarkTransformerConfig.from_dict(meta["model_config"])
    if config is not None and config != saved:
        diff = [k for k, v in config.to_dict().items() if saved.to_dict()[k] != v]
        raise ValueError(f"{path} was trained with another LandmarkTransformerConfig (differs in {diff}): "
                         "load it without a config, or train one with yours (`minitalker train landmarks`)")
    prefix = "ema." if any(k.startswith("ema.") for k in tensors) else "model."
    model = LandmarkCompletionTransformer(saved)
    model.load_state_dict({k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix)})
    model.meta = meta
    return model.to(device).eval()


def load_landmark_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> LandmarkCompletionTransformer:
    """The shipped fast checkpoint (``data/checkpoints/landmarks_fast``) or the one at ``path``."""
    return model_from_checkpoint(SHIPPED if path is None else Path(path), device=device)


def predict_landmarks(model: LandmarkCompletionTransformer, wav: np.ndarray, reference_landmarks: np.ndarray,
                      fps: float = 25, audio_cfg: AudioConfig | None = None) -> np.ndarray:
    """Speech ``(N,)`` at 16 kHz + the speaker's reference landmarks ``(68, 2)`` in image pixels
    → landmarks ``(T, 68, 2)`` in the same pixels, one per video frame (``T = N·fps/16000``).

    The hidden points come from the model; the others are the reference's. Long audio is cut into
    overlapping clips (:meth:`~LandmarkCompletionTransformer.predict_sequence`). Silence gives a
    closed, resting mouth. Raises ValueError for audio shorter than one window (0.2 s) and for
    reference landmarks of the wrong shape or with NaN.
    """
    ref = scheme.check_landmarks(reference_landmarks, "reference_landmarks")
    if ref.shape != (scheme.N_POINTS, 2):
        raise ValueError(f"reference_landmarks must be one face (68, 2) in pixels; got {ref.shape}")
    ref_n, params = scheme.normalise(ref)  # (68, 2) in the canonical frame
    mel = audio_features(wav, cfg=audio_cfg, fps=fps)  # (T, W, 80); ValueError if too short
    if mel.shape[1:] != (model.cfg.window, model.cfg.n_mels):
        raise ValueError(f"audio windows {mel.shape[1:]} do not match the model's ({model.cfg.window}, "
                         f"{model.cfg.n_mels}): use the AudioConfig the model was trained with")
    return scheme.denormalise(model.predict_sequence(mel, ref_n), params)  # (T, 68, 2) pixels
