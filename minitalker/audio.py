"""Speech in: load any audio (or a video's sound track), log-mel features, one window per video frame.

The landmark transformer sees, for every video frame, a short window of log-mel frames centred on
that frame. The timing convention shared by the whole package (audio, video, corpus renderer):

* audio is mono float32 at ``SAMPLE_RATE`` = 16 kHz; video runs at ``FPS`` = 25 frames per second;
* video frame ``i`` is on screen during ``[i/fps, (i+1)/fps)`` and stands for its midpoint
  ``t_i = (i + 0.5) / fps`` (see :func:`frame_times`);
* mel frame ``m`` is centred on ``m * hop`` seconds (librosa's ``center=True``), so with a 10 ms
  hop at 25 fps, video frame ``i`` is centred on mel frame ``4 i + 2``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import numpy as np

from minitalker import phones
from minitalker.config import PresetConfig, check_choice, check_non_negative, check_positive

SAMPLE_RATE = 16000  # Hz, mono
FPS = 25  # video frames per second


@dataclasses.dataclass
class AudioConfig(PresetConfig):
    """Log-mel front end. Same for both presets: features are cheap, and sharing them keeps data portable.

    ``window`` = 20 mel frames = 200 ms centred on a video frame (5 video frames): long enough to
    hold a syllable and the co-articulation around the current phoneme, short enough that the
    features say *what the mouth does now*. (The paper does not give the window; this is our choice,
    in line with Wav2Lip's 0.2 s audio window.) ``fmin``/``fmax`` = 55/7600 Hz cover speech at 16 kHz.

    ``spectrum``: a long-term average log-mel ``(n_mels,)`` (:func:`long_term_spectrum` of the speech a
    model learnt from); when given, each recording's own is moved to it (:func:`match_spectrum`).
    """

    sample_rate: int = SAMPLE_RATE
    n_mels: int = 80
    hop_ms: float = 10.0
    win_ms: float = 25.0
    fmin: float = 55.0
    fmax: float = 7600.0
    window: int = 20  # mel frames per video frame window
    target_rms: float = 0.1  # loudness of the active part after normalisation (-20 dBFS)
    gate_db: float = 40.0  # frames more than this below the loudest frame count as silence
    silence_rms: float = 1e-4  # frames quieter than this (-80 dBFS) are silence whatever the rest does
    log_floor: float = 1e-6  # mel power floor before the log: ~70 dB below loud speech bins; hides room noise
    lifter: int = 0  # > 0: keep only the spectral envelope, the first `lifter` cepstral coefficients (see log_mel)
    phones: bool = False  # append the recognised phones' one-hot track after the mel bins (minitalker.phones)
    recogniser: str = "loop"  # with phones, who hears them: "loop" (phones only) or "words" (words, then aligned)
    spectrum: tuple[float, ...] = ()  # empty: off; else n_mels values of log-mel that every recording is moved to
    spectrum_max_db: float = 20.0  # match_spectrum moves no bin by more than this
    spectrum_gate_db: float = 20.0  # the spectrum is measured on frames within this of the loudest (speech_frames)

    def __post_init__(self):
        self.spectrum = tuple(float(v) for v in self.spectrum)
        check_positive(self, "sample_rate", "n_mels", "hop_ms", "win_ms", "fmax", "window", "target_rms", "gate_db",
                       "silence_rms", "log_floor", "spectrum_max_db", "spectrum_gate_db")
        if self.spectrum and len(self.spectrum) != self.n_mels:
            raise ValueError(f"spectrum has {len(self.spectrum)} values, one per mel bin is {self.n_mels}: give "
                             "long_term_spectrum(...) of speech heard through the same n_mels, or () for none")
        check_non_negative(self, "fmin", "lifter")
        check_choice(self, "recogniser", phones.RECOGNISERS)
        if not self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"AudioConfig needs fmin < fmax ≤ sample_rate / 2 (Nyquist, {self.sample_rate / 2:g} Hz); "
                             f"got fmin={self.fmin}, fmax={self.fmax}")
        if self.lifter > self.n_mels:
            raise ValueError(f"lifter {self.lifter} keeps more cepstral coefficients than the {self.n_mels} mel bins "
                             "hold: give 0 (off) or at most n_mels")

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def n_fft(self) -> int:
        """The next power of two at or above the window length (512 for 25 ms at 16 kHz)."""
        return 1 << (self.win_length - 1).bit_length()

    @property
    def hop_s(self) -> float:
        """Seconds between log-mel frames (and phone-track rows): ``hop_length / sample_rate``."""
        return self.hop_length / self.sample_rate

    @property
    def n_features(self) -> int:
        """Features per frame of :func:`audio_features`: the mel bins, then one per phone if ``phones``."""
        return self.n_mels + (len(phones.PHONES) if self.phones else 0)

    @property
    def min_duration_s(self) -> float:
        """The shortest audio that fills one frame window (0.2 s by default)."""
        return self.window * self.hop_length / self.sample_rate


# ----------------------------------------------------------------------------- loading

def _read_soundfile(path: Path) -> tuple[np.ndarray, int] | None:
    """wav/flac/mp3/ogg... via libsndfile → ((N, C) float32, rate), or None if it is not such a file."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError:
        return None
    return data, rate


def _read_av(path: Path) -> tuple[np.ndarray, int] | None:
    """The first audio stream of any container ffmpeg reads (mp4, mov, avi, mkv, m4a...) via PyAV.

    Returns ((N, C) float32, rate), or None when the container has no audio stream.
    Raises ValueError when ffmpeg cannot read the file at all.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            to_float = av.AudioResampler(format="fltp")  # planar float32, keep layout and rate
            chunks = [f.to_ndarray() for frame in container.decode(stream) for f in to_float.resample(frame)]
            chunks += [f.to_ndarray() for f in to_float.resample(None)]  # flush
            rate = stream.rate
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise ValueError(
            f"could not read audio from {path} ({e}) — it is truncated, corrupt or not a media file: "
            "use wav, flac, mp3, ogg, or a video with a sound track (mp4, mov, avi, mkv)"
        ) from None
    if not chunks:
        return np.zeros((0, 1), np.float32), rate
    return np.concatenate(chunks, axis=1).T, rate  # (N, C)


def load_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Load speech as mono float32 at ``sr`` Hz → ``(N,)``.

    Reads audio files (wav, flac, mp3, ogg via libsndfile) and the sound track of video files
    (mp4, mov, avi, mkv... via PyAV/ffmpeg). Channels are averaged (stereo → mono); other sample
    rates are resampled with soxr (librosa's default, high quality), never rejected.
    """
    import librosa

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path} — check the path; give a wav/flac/mp3 or a video file")
    read = _read_soundfile(path)
    if read is None:
        read = _read_av(path)
        if read is None:
            raise ValueError(f"{path} is a video with no audio track — pass the speech as a separate file (e.g. --audio speech.wav)")
    data, rate = read
    if len(data) == 0:
        raise ValueError(f"{path} contains no audio samples — give a recording with speech in it")
    wav = data.mean(axis=1)  # (N,) stereo → mono
    if rate != sr:
        wav = librosa.resample(wav, orig_sr=rate, target_sr=sr)
    return np.ascontiguousarray(wav, dtype=np.float32)


def audio_warnings(wav: np.ndarray, cfg: AudioConfig | None = None) -> list[str]:
    """What may be wrong with speech that is still usable → messages (none for a good recording):
    silence (every sample under ``cfg.silence_rms``), clipping (over 0.1% of samples at full scale),
    a very quiet recording (peak under -40 dBFS: loudness is normalised, but the noise rises with it)."""
    cfg = cfg or AudioConfig()
    wav = _check_wav(wav)
    peak = float(np.abs(wav).max())
    if peak < cfg.silence_rms:
        return ["the audio is silent — the mouth will stay at rest; check the file or the recording level"]
    out = []
    clipped = float(np.mean(np.abs(wav) >= 0.999))
    if clipped > 1e-3:
        out.append(f"{clipped:.1%} of the audio samples are clipped at full scale — distorted speech moves the "
                   "mouth less faithfully; record at a lower gain")
    if peak < 0.01:
        out.append(f"the audio is very quiet (peak {20 * np.log10(peak):.0f} dBFS) — it is normalised, but its "
                   "noise is raised with it; record closer to the microphone")
    return out


# ----------------------------------------------------------------------------- features

def _check_wav(wav: np.ndarray) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"audio must be mono (N,) samples; got shape {wav.shape} (load_audio gives mono)")
    if not np.isfinite(wav).all():
        raise ValueError("audio contains NaN or inf samples")
    return wav


def normalise_loudness(wav: np.ndarray, cfg: AudioConfig | None = None) -> np.ndarray:
    """Scale speech so that its *active* part has RMS ``cfg.target_rms``: ``y = x * target / rms_active``.

    ``rms_active = sqrt(mean_j r_j^2)`` over the 25 ms frames ``j`` whose RMS ``r_j`` is within
    ``gate_db`` of the loudest frame and above ``silence_rms`` (a simple energy gate, our choice:
    pauses would otherwise make a sentence with long silences look quiet). The gate is relative, so
    ``x`` and ``0.1 x`` select the same frames and give the same ``y``. If no frame is active the
    signal is silence and is returned unchanged (its features sit at the log floor).
    """
    return _normalised(_check_wav(wav), cfg or AudioConfig())[0]


def _normalised(wav: np.ndarray, cfg: AudioConfig) -> tuple[np.ndarray, np.ndarray]:
    """:func:`normalise_loudness` ``y (N,)`` and the frame RMS of ``y`` ``(M,)`` (that of ``x`` times the
    gain), so that a second gate on ``y`` needs no second pass over the samples."""
    r = frame_rms(wav, cfg)
    active = energy_gate(r, cfg.gate_db, cfg)
    if not active.any():
        return wav, r
    gain = np.float32(cfg.target_rms / np.sqrt(np.mean(r[active] ** 2)))
    return wav * gain, r * gain


def frame_rms(wav: np.ndarray, cfg: AudioConfig | None = None) -> np.ndarray:
    """RMS of each 25 ms frame ``(M,)``, hop 10 ms, centred on ``m · hop`` (as the log-mel's frames)."""
    import librosa

    cfg = cfg or AudioConfig()
    return librosa.feature.rms(y=wav, frame_length=cfg.win_length, hop_length=cfg.hop_length)[0]


def energy_gate(r: np.ndarray, gate_db: float, cfg: AudioConfig) -> np.ndarray:
    """Frame RMS ``r (M,)`` → the active frames ``(M,)`` bool: ``r > silence_rms`` and ``r ≥ max(r) · 10^(−gate_db/20)``."""
    return (r > cfg.silence_rms) & (r >= r.max() * 10 ** (-gate_db / 20))


def frame_activity(wav: np.ndarray, cfg: AudioConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The energy gate of :func:`normalise_loudness` on ``wav``: its frame RMS ``r (M,)`` (:func:`frame_rms`)
    and whether each frame is active (:func:`energy_gate` with ``cfg.gate_db``)."""
    cfg = cfg or AudioConfig()
    r = frame_rms(wav, cfg)
    return r, energy_gate(r, cfg.gate_db, cfg)


@functools.cache
def _mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa's Slaney-style mel filterbank ``(n_mels, 1 + n_fft/2)``, made once per setting."""
    import librosa

    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    basis.flags.writeable = False  # shared by every call
    return basis


@functools.cache
def _blas_threads():
    """numpy's BLAS thread pools (threadpoolctl), found once. The mel filterbank is one small matrix
    product; run on BLAS's own threads, they spin against torch's for the same cores (so we run it on one)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def log_mel(wav: np.ndarray, cfg: AudioConfig | None = None) -> np.ndarray:
    """Loudness-normalised log-mel spectrogram ``(N,) → (M, n_mels)`` float32, ``M = 1 + N // hop``.

    ``S = log(max(mel_filterbank @ |STFT(y)|^2, floor))`` with ``y = normalise_loudness(x)``, Hann
    window of 25 ms, hop 10 ms, frames centred on ``m * hop`` (librosa ``center=True``). The floor
    (``log(1e-6) = -13.8``) is where digital silence sits; it also hides typical room noise, so clean
    synthetic speech and real recordings look alike (our choice). With ``cfg.lifter`` = K > 0 the
    spectrum is smoothed across bins to its envelope (cepstral liftering, as MFCCs keep ~13
    coefficients): the formants that say which phone it is stay, the pitch harmonics that say whose
    voice it is (and espeak's) go. Last, with ``cfg.spectrum``, the recording's colour is moved to
    that spectrum (:func:`match_spectrum`).
    """
    return _log_mel(wav, cfg or AudioConfig())[0]


def _log_mel(wav: np.ndarray, cfg: AudioConfig) -> tuple[np.ndarray, np.ndarray]:
    """:func:`log_mel` ``(M, n_mels)`` and its speech frames ``(M,)`` bool: the frames within
    ``cfg.spectrum_gate_db`` of the loudest, so the voiced body of the speech, not its pauses, breaths
    and room noise, on which a long-term spectrum is measured (with the 40 dB loudness gate, a sentence
    with a higher noise floor or another colour kept other frames, and its average moved with them)."""
    import librosa

    y, r = _normalised(_check_wav(wav), cfg)
    power = np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                                center=True, pad_mode="constant")) ** 2  # (1 + n_fft/2, M)
    with _blas_threads().limit(limits=1, user_api="blas"):  # see _blas_threads
        mel = _mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax) @ power  # (n_mels, M)
    log_mel = np.log(np.maximum(mel, cfg.log_floor)).T  # (M, n_mels)
    if cfg.lifter:  # S_env = IDCT(first `lifter` DCT coefficients of S over the bins): formants stay, pitch goes
        from scipy.fft import dct, idct

        cep = dct(log_mel, type=2, norm="ortho", axis=1)
        cep[:, cfg.lifter:] = 0
        log_mel = np.maximum(idct(cep, type=2, norm="ortho", axis=1), np.log(cfg.log_floor))
    speech = energy_gate(r, cfg.spectrum_gate_db, cfg)[:len(log_mel)]  # (M,)
    if cfg.spectrum:
        log_mel = match_spectrum(log_mel, speech, cfg)
    return log_mel.astype(np.float32), speech


def match_spectrum(log_mel: np.ndarray, active: np.ndarray, cfg: AudioConfig) -> np.ndarray:
    """Move a recording's long-term spectrum to ``cfg.spectrum``: ``(M, n_mels)`` log-mel, ``(M,)``
    frames to measure it on (the speech frames of :func:`_log_mel`) → ``(M, n_mels)``.

    ``S' = max(S + clip(s_ref - mean_active(S), ±spectrum_max_db), floor)`` on every bin above the
    floor; digital silence stays at the floor. This is cepstral mean normalisation (CMN, as speech
    recognisers do) with the corpus's average instead of zero as the target, so the features keep
    the values the model learnt from. Why (our choice): a voice, a microphone and a room colour the
    whole recording the same way, and the corpus's espeak voices have a colour of their own (CMU
    ARCTIC differs from it by up to 8 dB around 1 kHz); what is left after the match is what changes
    from frame to frame, the phones. With no active frame the features are returned as they are.
    """
    if not active.any():
        return log_mel
    floor, limit = np.log(cfg.log_floor), cfg.spectrum_max_db * np.log(10) / 10  # dB of power → natural log
    shift = np.clip(np.asarray(cfg.spectrum, np.float32) - log_mel[active].mean(0), -limit, limit)  # (n_mels,)
    return np.where(log_mel > floor, np.maximum(log_mel + shift, floor), log_mel).astype(np.float32)


def long_term_spectrum(wavs, cfg: AudioConfig | None = None) -> tuple[float, ...]:
    """The long-term average of :func:`log_mel` through ``cfg``: the mean over the speech frames (within
    ``cfg.spectrum_gate_db`` of the loudest) of every recording in ``wavs`` → ``n_mels`` values (rounded
    to 1e-3), for ``AudioConfig.spectrum``.
    """
    cfg = cfg or AudioConfig()
    frames = np.concatenate([mel[speech] for mel, speech in (_log_mel(wav, cfg) for wav in wavs)])
    if not len(frames):
        raise ValueError("no active frame in these recordings: long_term_spectrum needs speech, not silence")
    return tuple(round(float(v), 3) for v in frames.mean(0))


def n_video_frames(n_samples: int, sr: int = SAMPLE_RATE, fps: float = FPS) -> int:
    """Whole video frames that ``n_samples`` of audio cover: ``floor(n_samples * fps / sr)``."""
    return int(n_samples * fps // sr)


def frame_times(n_frames: int, fps: float = FPS) -> np.ndarray:
    """The time each video frame stands for: its midpoint ``(i + 0.5) / fps`` seconds → ``(T,)``."""
    return (np.arange(n_frames) + 0.5) / fps


def frame_windows(mel: np.ndarray, n_frames: int, cfg: AudioConfig | None = None, fps: float = FPS) -> np.ndarray:
    """Cut ``(M, F)`` features (log-mel, [+ phones]) into one window per video frame → ``(T, W, F)``.

    Window ``i`` holds mel frames ``c_i - W//2 ... c_i + W//2 - 1`` with ``c_i = round(t_i / hop)``
    the mel frame centred on the video frame's time ``t_i`` (:func:`frame_times`); so index ``W//2``
    of each window is "now". Indices before the start or past the end repeat the edge frame.
    """
    cfg = cfg or AudioConfig()
    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim != 2:
        raise ValueError(f"mel must be (M, F) features per mel frame; got shape {mel.shape}")
    if len(mel) < cfg.window:
        raise ValueError(
            f"audio too short: {len(mel)} mel frames, need at least {cfg.window} "
            f"(minimum duration {cfg.min_duration_s:.2f} s)"
        )
    hop_s = cfg.hop_s
    duration = (len(mel) - 1) * hop_s
    available = int(duration * fps + 1e-6)  # a frame more is tolerated (edge padding), more is a mismatch
    if n_frames < 1 or n_frames > available + 1:
        raise ValueError(
            f"n_frames={n_frames} but the audio ({duration:.2f} s) covers {available} video frames "
            f"at {fps:g} fps: trim the video or give the matching audio"
        )
    centre = np.round(frame_times(n_frames, fps) / hop_s).astype(int)  # (T,)
    idx = centre[:, None] + np.arange(cfg.window)[None, :] - cfg.window // 2  # (T, W)
    return mel[np.clip(idx, 0, len(mel) - 1)]  # (T, W, F)


def recognise_phones(wav: np.ndarray, cfg: AudioConfig | None = None) -> list[tuple[str, float, float]]:
    """The phones pocketsphinx hears in speech ``(N,)`` (:func:`minitalker.phones.decode`, by
    ``cfg.recogniser``) →
    ``[(phone, start_s, end_s), ...]``, after two steps of this front end:

    * the speech is first brought to the front end's loudness (:func:`normalise_loudness`), so a
      quiet recording is not lost to 16-bit rounding;
    * a phone that lies mostly in frames the energy gate calls silent (:func:`frame_activity`)
      becomes ``sil``: a phone loop must put *some* phone on digital silence.
    """
    cfg = cfg or AudioConfig()
    wav = normalise_loudness(wav, cfg)
    active, hop_s = frame_activity(wav, cfg)[1], cfg.hop_s  # (M,) one per hop
    out = []
    for name, start, end in phones.decode(wav, cfg.sample_rate, cfg.recogniser):
        frames = active[round(start / hop_s):round(end / hop_s)]
        out.append((name if frames.size and frames.mean() >= 0.5 else "sil", start, end))
    return out


def audio_track(wav: np.ndarray, cfg: AudioConfig | None = None, heard: list | None = None) -> np.ndarray:
    """Speech ``(N,)`` → the front end's features per mel frame ``(M, F)``: :func:`log_mel`, then (if
    ``cfg.phones``) the one-hot track of the phones :func:`recognise_phones` hears, or of ``heard``
    (its output for this ``wav`` and ``cfg``, when the caller already has it: recognising is slow)."""
    cfg = cfg or AudioConfig()
    mel = log_mel(wav, cfg)  # (M, n_mels)
    if not cfg.phones:
        return mel
    heard = recognise_phones(wav, cfg) if heard is None else heard
    track = phones.phone_track(heard, len(mel), cfg.hop_s)  # (M, 40)
    return np.concatenate([mel, track], 1)


def silent_features(cfg: AudioConfig | None = None) -> np.ndarray:
    """One frame of silence in :func:`audio_track`'s features ``(F,)``: the log-mel floor, phone ``sil``."""
    cfg = cfg or AudioConfig()
    row = np.full(cfg.n_features, np.log(cfg.log_floor), np.float32)
    if cfg.phones:
        row[cfg.n_mels:] = 0
        row[cfg.n_mels + phones.SILENCE] = 1
    return row


def audio_features(wav: np.ndarray, n_frames: int | None = None, cfg: AudioConfig | None = None, fps: float = FPS,
                   heard: list | None = None) -> np.ndarray:
    """Speech ``(N,)`` → per-frame windows of :func:`audio_track` ``(T, W, F)`` (F = 80 mel bins, + 40
    phones if ``cfg.phones``, ``heard`` as there); ``T`` defaults to :func:`n_video_frames`."""
    cfg = cfg or AudioConfig()
    wav = _check_wav(wav)
    if len(wav) < cfg.min_duration_s * cfg.sample_rate:
        raise ValueError(
            f"audio too short: {len(wav) / cfg.sample_rate:.3f} s; the minimum duration is "
            f"{cfg.min_duration_s:.2f} s (one frame window) — give a longer recording"
        )
    n_frames = n_video_frames(len(wav), cfg.sample_rate, fps) if n_frames is None else n_frames
    return frame_windows(audio_track(wav, cfg, heard), n_frames, cfg, fps)


# ----------------------------------------------------------------------------- plots

def label_phonemes(ax, phonemes, fontsize: float = 9):
    """Shade each phoneme's span ``(label, start_s, end_s)`` on ``ax`` and write its label at the top.

    Labels alternate between two rows, so neighbours never overwrite each other however short they are.
    """
    for i, (label, start, end) in enumerate(phonemes):
        ax.axvspan(start, end, color=f"C{i % 2 + 1}", alpha=0.15, lw=0)
        ax.text((start + end) / 2, 0.97 - 0.11 * (i % 2), label, transform=ax.get_xaxis_transform(), ha="center",
                va="top", fontsize=fontsize)


def plot_waveform_mel(wav: np.ndarray, mel: np.ndarray | None = None, phonemes=None, fps: float = FPS,
                      cfg: AudioConfig | None = None, axes=None):
    """Waveform above log-mel on one time axis, video frames as ticks, optional phoneme spans.

    ``phonemes``: list of ``(label, start_s, end_s)``. ``axes``: two matplotlib axes to draw in
    (a new figure otherwise). Returns the figure.
    """
    import matplotlib.pyplot as plt

    cfg = cfg or AudioConfig()
    wav = _check_wav(wav)
    mel = log_mel(wav, cfg) if mel is None else np.asarray(mel)
    if axes is None:
        fig, axes = plt.subplots(2, 1, figsize=(10, 4), dpi=80, sharex=True)
    ax_w, ax_m = axes
    duration = len(wav) / cfg.sample_rate
    ax_w.plot(np.arange(len(wav)) / cfg.sample_rate, wav, lw=0.5, color="tab:blue")
    ax_w.set(ylabel="amplitude", xlim=(0, duration))
    label_phonemes(ax_w, phonemes or [])
    hop_s = cfg.hop_s
    ax_m.imshow(mel.T, origin="lower", aspect="auto", cmap="magma",
                extent=(-hop_s / 2, (len(mel) - 0.5) * hop_s, 0, mel.shape[1]))
    ax_m.set(xlabel=f"time (s); minor ticks = video frames at {fps:g} fps", ylabel="mel bin")
    ax_m.set_xticks(np.arange(n_video_frames(len(wav), cfg.sample_rate, fps) + 1) / fps, minor=True)
    ax_m.tick_params(axis="x", which="minor", length=3)
    return ax_w.figure
