"""Agent 1: the landmark completion transformer (speech + masked reference landmarks → 68 landmarks).

DiffTalker's first agent completes a face: the speaker's reference landmarks are given with the
mouth and jaw hidden (:data:`~minitalker.landmarks.scheme.COMPLETION_MASK`), and the audio around
each frame decides where the hidden points go. Everything happens in the similarity-normalised
frame of :func:`~minitalker.landmarks.scheme.normalise` (eye corners at (±0.5, 0)).

Tokens, for a clip of T frames (our interpretation; the paper gives no sizes)::

    landmark: the 68 reference points, each a token: visible points as Linear(Fourier(x, y)), the
              31 hidden ones as a learned [MASK] token; + the point's index embedding  (B, 68, d)
    audio   : each frame's window of W log-mel frames, cut into A = W/p patches of p mel frames
              → Linear(p·80, d)                                        (B, T, A, d)
              fast: p = 4, five 40 ms tokens per frame; full: p = 2, a token per 20 ms. Several
              tokens let attention pick details inside the window. With the phonetic front end
              (``front_end``, :mod:`minitalker.phones`) a patch's one-hot phones add (or, for
              "phones", replace) Linear(p·40, d)
    + modality embeddings (audio / landmark) and a time embedding (frame t of the clip)

Coordinates enter through Fourier features (sin and cos of 2^k π x; Tancik et al. 2020): faces
differ by a few hundredths of the eye distance, which a plain Linear(2, d) would barely notice.

Two stages of pre-norm blocks (like GPT-2)::

    reference encoder : the 68 landmark tokens attend to each other, once per clip: the [MASK]
                        tokens of the hidden points learn the face they belong to
    frame blocks      : per frame, the A audio tokens + the 31 hidden-point tokens (from the
                        encoder, the same in every frame until audio reaches them)
        frame attention : inside one frame: audio and hidden points attend to each other
        time attention  : each token attends to the same token in the other T frames (clip mode;
                          factorised space-time attention as in TimeSformer) → smooth motion
        MLP

The visible points never change, so they are encoded once per clip rather than re-attended in
every frame: 36 keys per frame instead of 73, at the same accuracy.

A head maps each hidden token to its displacement from the reference's rest position: the
network never *sees* the hidden points (it cannot copy them; audio must decide the shape), but
its answer is anchored on them, so every speaker keeps their own mouth. Our interpretation: with
two training faces no network can guess a new person's mouth from the upper face alone.
Visible points are copied from the reference. A linear read-out of each frame's whole
window (the form of the ridge baseline) is added to the head's displacements: it learns the
linear part of the audio → mouth map in a few steps, the transformer learns the rest (context over
frames, non-linear distinctions such as a bilabial closure vs a pause), and training converges
sooner.

``clip_frames = 1`` gives the frame mode (no time attention).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..audio import AudioConfig, audio_features, silent_features
from ..config import DATA_DIR, PresetConfig, check_choice, check_fraction, check_non_negative, check_positive
from ..data.visemes import rest_landmarks
from ..io import check_kind, load_checkpoint, model_weights
from ..landmarks import scheme
from ..phones import RECOGNISERS
from .layers import attention, fourier_features

HIDDEN = np.flatnonzero(scheme.COMPLETION_MASK)  # (31,) indices predicted from audio
VISIBLE = np.flatnonzero(~scheme.COMPLETION_MASK)  # (37,) indices copied from the reference
SHIPPED = DATA_DIR / "checkpoints" / "landmarks_fast"
SHIPPED_PHONES = DATA_DIR / "checkpoints" / "landmarks_phones_fast"  # the phonetic front end (minitalker.phones)


@dataclass
class LandmarkTransformerConfig(PresetConfig):
    n_mels: int = 80  # mel bins (AudioConfig.n_mels)
    window: int = 20  # mel frames per video frame (AudioConfig.window)
    mel_patch: int = 4  # mel frames per audio token (4: five 40 ms tokens per 200 ms window)
    clip_frames: int = 16  # frames predicted jointly; 1 = frame mode (no time attention)
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 3  # frame blocks (audio + hidden points of each frame, time attention)
    n_reference_layers: int = 1  # reference encoder blocks (the 68 landmark tokens of the clip)
    mlp_ratio: int = 2
    dropout: float = 0.0
    n_freqs: int = 6  # Fourier features sin/cos(2^k π x), k < n_freqs, of the visible points' coordinates
    linear_path: bool = True  # add a linear map from each frame's whole window to its displacements
    mel_mean: float = -8.0  # log-mel standardisation (x - mean) / std; measured on the fast corpus
    mel_std: float = 4.4
    lifter: int = 0  # AudioConfig.lifter of its features: 0 = the full log-mel, K = its spectral envelope
    front_end: str = "mel"  # what the audio tokens read: "mel", "phones" (minitalker.phones) or "mel+phones"
    recogniser: str = "loop"  # with phones, who hears them, in training and after: minitalker.phones.RECOGNISERS
    spectrum: tuple[float, ...] = ()  # AudioConfig.spectrum: the training corpus's average log-mel, set by training

    def audio_config(self) -> AudioConfig:
        """The front end this model hears through (:func:`minitalker.audio.audio_features`)."""
        return AudioConfig(n_mels=self.n_mels, window=self.window, lifter=self.lifter, phones="phones" in self.front_end,
                           recogniser=self.recogniser, spectrum=self.spectrum)

    @classmethod
    def full(cls) -> "LandmarkTransformerConfig":
        return cls(mel_patch=2, clip_frames=32, d_model=256, n_heads=8, n_layers=6, mlp_ratio=4, dropout=0.1)

    def __post_init__(self):
        check_positive(self, "n_mels", "window", "mel_patch", "clip_frames", "d_model", "n_heads", "n_layers",
                       "mlp_ratio", "mel_std")
        check_non_negative(self, "n_reference_layers", "n_freqs", "lifter")
        check_fraction(self, "dropout")
        check_choice(self, "front_end", ("mel", "phones", "mel+phones"))
        check_choice(self, "recogniser", RECOGNISERS)
        if self.recogniser != "loop" and "phones" not in self.front_end:
            raise ValueError(f"recogniser={self.recogniser!r} hears phones, which front_end={self.front_end!r} does "
                             "not read: give front_end='phones' or 'mel+phones', or leave the recogniser at 'loop'")
        if self.front_end == "phones" and self.linear_path:
            raise ValueError("the linear path reads the log-mel, which the phones front end does not use: "
                             "give linear_path=False with front_end='phones'")
        if self.window % self.mel_patch:
            raise ValueError(f"mel_patch={self.mel_patch} must divide window={self.window} (the window is cut into "
                             "audio tokens of mel_patch frames): give e.g. window 20 with mel_patch 4 or 2")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={self.d_model}: give e.g. d_model 64 with "
                             "n_heads 4")


class Attention(nn.Module):
    """Multi-head self-attention over the tokens of ``x (B, N, d)``: one projection to q, k, v, then
    :func:`~minitalker.nn.layers.attention` (``softmax(q kᵀ/√d_h) v`` per head), then an output projection."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # (B, N, d) each
        y, _ = attention(q, k, v, self.heads, dropout=self.dropout if self.training else 0.0)
        return self.proj(y)


class Block(nn.Module):
    """Pre-norm block (as in GPT-2): attention over the tokens (+ time attention) + MLP, each residual.

    ``x (B, N, d)``: one set of tokens (the reference encoder); ``x (B, T, N, d)``: the tokens of T
    frames, which attend within their frame and then, with ``time=True``, along time.
    """

    def __init__(self, cfg: LandmarkTransformerConfig, time: bool = False):
        super().__init__()
        d = cfg.d_model
        self.ln_attn, self.attn = nn.LayerNorm(d), Attention(d, cfg.n_heads, cfg.dropout)
        self.ln_time = nn.LayerNorm(d) if time else None
        self.time_attn = Attention(d, cfg.n_heads, cfg.dropout) if time else None
        self.ln_mlp = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, cfg.mlp_ratio * d), nn.GELU(), nn.Linear(cfg.mlp_ratio * d, d),
                                 nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x + self.attn(self.ln_attn(x).flatten(0, -3)).view(shape)  # (B·T, N, d): each frame on its own
        if self.time_attn is not None and x.shape[1] > 1:  # (only frame blocks have time attention)
            B, T, N, d = shape
            h = self.ln_time(x).transpose(1, 2).flatten(0, 1)  # (B·N, T, d): one sequence per token
            x = x + self.time_attn(h).view(B, N, T, d).transpose(1, 2)
        return x + self.mlp(self.ln_mlp(x))


class LandmarkCompletionTransformer(nn.Module):
    """``(mel (B, T, W, F), reference (B, 68, 2)) → landmarks (B, T, 68, 2)``, all normalised.

    ``mel``: the front end's windows (:func:`~minitalker.audio.audio_features`), F = 80 log-mel bins,
    then 40 one-hot phones if the config's ``front_end`` has phones.
    """

    def __init__(self, cfg: LandmarkTransformerConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or LandmarkTransformerConfig()
        self.n_features = cfg.audio_config().n_features  # F: log-mel bins [+ phones] per frame of its input
        d, n_audio, n_phones = cfg.d_model, cfg.window // cfg.mel_patch, self.n_features - cfg.n_mels
        self.audio_in = nn.Linear(cfg.mel_patch * cfg.n_mels, d) if "mel" in cfg.front_end else None
        self.phones_in = nn.Linear(cfg.mel_patch * n_phones, d) if n_phones else None
        self.audio_pos = nn.Parameter(torch.randn(n_audio, d) * 0.02)  # where in the window
        self.point_in = nn.Linear(4 * cfg.n_freqs, d)
        F = cfg.n_freqs  # point features per coordinate, (sin, cos) of x then of y: this model's layout
        self.register_buffer("by_coordinate", torch.arange(4 * F).view(2, 2, F).transpose(0, 1).flatten(), persistent=False)
        self.mask_token = nn.Parameter(torch.randn(d) * 0.02)  # stands in for every hidden point
        self.point_pos = nn.Parameter(torch.randn(scheme.N_POINTS, d) * 0.02)  # which of the 68 points
        self.modality = nn.Parameter(torch.randn(2, d) * 0.02)  # 0 = audio, 1 = landmark
        self.time_pos = nn.Parameter(torch.randn(cfg.clip_frames, d) * 0.02)  # frame t of the clip
        self.encoder = nn.ModuleList(Block(cfg) for _ in range(cfg.n_reference_layers))
        self.blocks = nn.ModuleList(Block(cfg, time=cfg.clip_frames > 1) for _ in range(cfg.n_layers))
        self.ln_out, self.head = nn.LayerNorm(d), nn.Linear(d, 2)
        self.linear = nn.Linear(cfg.window * cfg.n_mels, 2 * len(HIDDEN)) if cfg.linear_path else None
        with torch.no_grad():
            self.head.weight.mul_(0.1)  # start near "copy the reference": small displacements
            if self.linear is not None:
                self.linear.weight.zero_()
                self.linear.bias.zero_()
        self.register_buffer("hidden", torch.as_tensor(HIDDEN), persistent=False)
        self.register_buffer("visible", torch.as_tensor(VISIBLE), persistent=False)

    def encode_reference(self, reference: torch.Tensor) -> torch.Tensor:
        """Reference ``(B, 68, 2)`` → the hidden points' tokens ``(B, 31, d)``, which now know the face.

        The 68 tokens: visible points as Linear(Fourier(x, y)), hidden points as the [MASK] token;
        each + its point embedding + the landmark modality; then the reference encoder's blocks.
        """
        B = len(reference)
        fourier = fourier_features(reference[:, self.visible], self.cfg.n_freqs, include_input=False)  # (B, 37, 4F)
        fourier = fourier[..., self.by_coordinate]  # (B, 37, 4F) as [sin x, cos x, sin y, cos y]
        x = self.mask_token.expand(B, scheme.N_POINTS, -1).clone()  # (B, 68, d): [MASK] everywhere ...
        x[:, self.visible] = self.point_in(fourier)  # ... but where a point is visible
        x = x + self.point_pos + self.modality[1]
        for block in self.encoder:
            x = block(x)
        return x[:, self.hidden]  # (B, 31, d)

    def forward(self, mel: torch.Tensor, reference: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """``tokens``: :meth:`encode_reference` of ``reference`` ``(B or 1, 31, d)``, where the caller has it
        already (:meth:`predict_sequence` encodes its one reference once for every clip)."""
        cfg = self.cfg
        self._check(mel, reference)
        B, T, W, _ = mel.shape
        A, M = W // cfg.mel_patch, cfg.n_mels
        phones, mel = mel[..., M:], (mel[..., :M] - cfg.mel_mean) / cfg.mel_std  # (B, T, W, 40), (B, T, W, 80)
        read = []  # each audio token reads its patch of p frames: log-mel, one-hot phones, or both
        if self.audio_in is not None:
            read.append(self.audio_in(mel.reshape(B, T, A, cfg.mel_patch * M)))
        if self.phones_in is not None:
            read.append(self.phones_in(phones.reshape(B, T, A, -1)))
        audio = sum(read) + self.audio_pos + self.modality[0]  # (B, T, A, d)
        tokens = self.encode_reference(reference) if tokens is None else tokens  # (B or 1, 31, d)
        hidden = tokens[:, None].expand(B, T, -1, -1)  # (B, T, 31, d)
        x = torch.cat([audio, hidden], 2) + self.time_pos[:T, None]  # (B, T, A + 31, d)
        for block in self.blocks:
            x = block(x)
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
        if mel.ndim != 4 or mel.shape[2:] != (cfg.window, self.n_features):
            raise ValueError(f"mel must be (B, T, {cfg.window}, {self.n_features}) windows from audio.audio_features with the "
                             f"model's AudioConfig (front end {cfg.front_end!r}); got {tuple(mel.shape)}")
        if mel.shape[1] > cfg.clip_frames:
            raise ValueError(f"{mel.shape[1]} frames but the model predicts at most clip_frames={cfg.clip_frames} "
                             "jointly: use predict_sequence for longer audio")
        if reference.shape != (mel.shape[0], scheme.N_POINTS, 2):
            raise ValueError(f"reference must be (B, 68, 2) normalised landmarks; got {tuple(reference.shape)} for B={mel.shape[0]}")

    @torch.no_grad()
    def predict_sequence(self, mel: np.ndarray, reference: np.ndarray, overlap: int | None = None,
                         batch: int = 8) -> np.ndarray:
        """Any number of frames: ``mel (T, W, F)``, normalised ``reference (68, 2)`` → ``(T, 68, 2)``.

        Cuts the sequence into clips of ``clip_frames`` that overlap by ``overlap`` frames (default an
        eighth; the last clip is moved back to end at the last frame, like the training chunks that
        end a clip), runs them in batches of ``batch`` clips and cross-fades the overlaps linearly.
        Audio shorter than a clip is padded with silent windows (:func:`~minitalker.audio.silent_features`). Batches of 8
        clips run faster than one batch of all (whose large activations cost page faults), and an
        overlap of 2 frames in 16 computes 14% fewer frames than one of 4.
        """
        C = self.cfg.clip_frames
        overlap = C // 8 if overlap is None else overlap
        if not 0 <= overlap < C:
            raise ValueError(f"overlap={overlap}: give 0 <= overlap < clip_frames={C}")
        T = len(mel)
        if T < C:  # shorter than one clip: pad with silent windows
            silent = np.broadcast_to(silent_features(self.cfg.audio_config()), (C - T, *mel.shape[1:]))
            mel = np.concatenate([mel, silent])
        starts = list(range(0, len(mel) - C + 1, C - overlap))  # len(mel) >= C now
        if starts[-1] + C < len(mel):
            starts.append(len(mel) - C)  # the last clip ends at the last frame (as training chunks do)
        clips = np.stack([mel[s:s + C] for s in starts]).astype(np.float32)  # (n, C, W, 80)
        device = next(self.parameters()).device
        was_training = self.training
        if was_training:  # (switching modes walks every module: 1 ms, 5% of a 2 s clip)
            self.eval()
        ref = torch.as_tensor(reference, dtype=torch.float32, device=device)[None]  # (1, 68, 2)
        tokens = self.encode_reference(ref)  # (1, 31, d): the same face in every clip
        pred = np.concatenate([self(x, ref.expand(len(x), -1, -1), tokens).float().cpu().numpy()
                               for x in torch.as_tensor(clips, device=device).split(batch)])  # (n, C, 68, 2)
        if was_training:
            self.train()
        ramp = np.ones(C, np.float32)  # cross-fade weights: rise over the first overlap, fall over the last
        if overlap:
            ramp[:overlap] = ramp[-overlap:][::-1] = (np.arange(overlap) + 1) / (overlap + 1)
        out, weight = np.zeros((len(mel), 68, 2), np.float32), np.zeros(len(mel), np.float32)
        for i, s in enumerate(starts):
            w = ramp.copy()
            if i == 0:
                w[:overlap] = 1
            if i == len(starts) - 1:
                w[C - overlap:] = 1
            out[s:s + C] += pred[i] * w[:, None, None]
            weight[s:s + C] += w
        return out[:T] / weight[:T, None, None]


# ------------------------------------------------------------------------------------- inference

def model_from_checkpoint(path: str | os.PathLike, config: LandmarkTransformerConfig | None = None,
                          device: str | torch.device = "cpu") -> LandmarkCompletionTransformer:
    """Load a landmark model saved by the trainer or shipped (EMA weights when present, in fp32).

    ``config``: the configuration you expect; a checkpoint trained with another one is an error.
    The checkpoint's JSON (configs, metrics, provenance) is kept as ``model.meta``.
    """
    tensors, meta = load_checkpoint(path)
    check_kind(path, meta, "landmarks")
    saved = LandmarkTransformerConfig.from_dict(meta["model_config"])
    if config is not None and config != saved:
        diff = [k for k, v in config.to_dict().items() if saved.to_dict()[k] != v]
        raise ValueError(f"{path} was trained with another LandmarkTransformerConfig (differs in {diff}): "
                         "load it without a config, or train one with yours (`minitalker train landmarks`)")
    model = LandmarkCompletionTransformer(saved)
    weights = model_weights(tensors)
    missing, unknown = set(model.state_dict()) - set(weights), set(weights) - set(model.state_dict())
    if missing or unknown:  # e.g. the earlier layout, which attended to the visible points in every block
        raise ValueError(f"{path} holds weights of another LandmarkCompletionTransformer layout (missing "
                         f"{sorted(missing)[:2]}, unknown {sorted(unknown)[:2]}): retrain it with this version "
                         "(`minitalker train landmarks`)")
    model.load_state_dict(weights)
    model.meta = meta
    return model.to(device).eval()


def load_landmark_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> LandmarkCompletionTransformer:
    """The shipped fast checkpoint (``data/checkpoints/landmarks_fast``) or the one at ``path``."""
    return model_from_checkpoint(SHIPPED if path is None else Path(path), device=device)


def predict_landmarks(model: LandmarkCompletionTransformer, wav: np.ndarray, reference_landmarks: np.ndarray,
                      fps: float = 25, audio_cfg: AudioConfig | None = None, heard: list | None = None) -> np.ndarray:
    """Speech ``(N,)`` at 16 kHz + the speaker's reference landmarks ``(68, 2)`` in image pixels
    → landmarks ``(T, 68, 2)`` in the same pixels, one per video frame (``T = N·fps/16000``).

    The hidden points come from the model; the others are the reference's. The reference's mouth is
    closed first (:func:`~minitalker.data.visemes.rest_landmarks`), as in every training reference:
    the model moves the hidden points *from the reference's own*, so a photo with parted lips would
    keep them parted through every p, b and m. Long audio is cut into overlapping clips
    (:meth:`~LandmarkCompletionTransformer.predict_sequence`). Silence gives a closed, resting mouth.
    ``heard``: with a phonetic front end, the phones already recognised in ``wav``
    (:func:`~minitalker.audio.recognise_phones`), so that several faces driven by one recording hear
    it once. Raises ValueError for audio shorter than one window (0.2 s) and for reference landmarks of
    the wrong shape or with NaN.
    """
    ref = scheme.check_landmarks(reference_landmarks, "reference_landmarks")
    if ref.shape != (scheme.N_POINTS, 2):
        raise ValueError(f"reference_landmarks must be one face (68, 2) in pixels; got {ref.shape}")
    ref_n, params = scheme.normalise(rest_landmarks(ref))  # (68, 2) canonical, the mouth closed as in training
    mel = audio_features(wav, cfg=audio_cfg or model.cfg.audio_config(), fps=fps, heard=heard)  # (T, W, F); ValueError if too short
    expected = (model.cfg.window, model.n_features)
    if mel.shape[1:] != expected:
        raise ValueError(f"audio windows {mel.shape[1:]} do not match the model's {expected}: use the "
                         "AudioConfig the model was trained with (model.cfg.audio_config())")
    return scheme.denormalise(model.predict_sequence(mel, ref_n), params)  # (T, 68, 2) pixels
