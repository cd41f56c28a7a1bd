"""The piecewise-affine renderer: identity warp, mesh, painted mouth, whole clips."""

import numpy as np
import pytest

from minitalker.data.faces import FACES, load_face
from minitalker.data.render import LIP_EDGES, _head_points, _triangles, _vertices, render_clip, render_frames, to_crop
from minitalker.data.speech import synthesize
from minitalker.data.visemes import animate_landmarks, articulate, rest_landmarks
from minitalker.landmarks import scheme
from minitalker.video import aligned_crops


@pytest.fixture(scope="module")
def speech():
    return synthesize("bin blue at F two now")


@pytest.mark.parametrize("name", FACES)
def test_identity_warp_is_the_plain_crop(name):
    image, lm = load_face(name)
    frames, crop_lm = render_frames(image, lm, lm[None], 64, mouth=False)
    crop, crop_lm_video = aligned_crops(image[None], lm[None], 64, smooth=0)
    np.testing.assert_allclose(crop_lm, crop_lm_video, atol=1e-3)  # same pixel convention as video.py
    assert np.abs(frames[0].astype(int) - crop[0]).max() <= 1  # same blur, same bilinear sampling


def test_mesh_keeps_the_lips_and_never_folds(speech):
    """Lip contours are mesh edges, and the triangles tile the frame exactly in every animated frame."""
    for name in FACES:
        _, lm = load_face(name)
        rest = rest_landmarks(lm)
        box = scheme.face_box(rest)
        tris = _triangles(lm, _head_points(lm), box, 64)
        edges = {frozenset(e) for t in tris for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2]))}
        assert all(frozenset(e) in edges for e in LIP_EDGES)
        lms = animate_landmarks(rest, articulate(speech.phonemes, 30), seed=1)
        v = _vertices(lms, _head_points(lm), box, 64)[:, tris]  # (T, N, 3, 2)
        e1, e2 = v[:, :, 1] - v[:, :, 0], v[:, :, 2] - v[:, :, 0]
        area = np.abs(e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]).sum(1) / 2  # (T,)
        hull = np.ptp(v[0].reshape(-1, 2), axis=0).prod()  # the square of border anchors
        np.testing.assert_allclose(area, hull, rtol=1e-6)  # any fold would count twice


def test_render_clip(speech):
    clip = render_clip(speech, "astronaut", size=48, seed=5)
    n = int(len(speech.wav) * 25 // 16000)
    assert clip.frames.shape == (n, 48, 48, 3) and clip.frames.dtype == np.uint8
    assert clip.landmarks.shape == (n, 68, 2) and clip.reference_frame.shape == (48, 48, 3)
    assert (clip.landmarks > 0).all() and (clip.landmarks < 47).all()  # the face stays inside the crop
    assert scheme.mouth_opening(clip.reference_landmarks) == 0
    again = render_clip(speech, "astronaut", size=48, seed=5)
    assert again.frames.tobytes() == clip.frames.tobytes()
    other = render_clip(speech, "astronaut", size=48, seed=6)  # other blinks and head motion
    assert not np.array_equal(other.landmarks, clip.landmarks)
    np.testing.assert_array_equal(other.reference_frame, clip.reference_frame)


def test_open_mouth_is_dark_inside_and_closed_mouth_is_not(speech):
    image, lm = load_face("grace_hopper")
    rest = rest_landmarks(lm)
    lms = animate_landmarks(rest, articulate(speech.phonemes, 35), seed=0, head_motion=False, blinks=False)
    opening = scheme.mouth_opening(lms)
    wide, shut = int(np.argmax(opening)), int(np.argmin(opening))
    frames, crop_lm = render_frames(image, lm, lms[[wide, shut]], 128, scheme.face_box(rest))
    centre = np.round((crop_lm[:, 62] + crop_lm[:, 66]) / 2 + [0, 1]).astype(int)  # below the teeth
    lum = [frames[i, centre[i, 1], centre[i, 0]].mean() for i in range(2)]
    assert lum[0] < 0.5 * lum[1]  # a dark cavity where the lips part; lips where they are shut


def test_bad_inputs_are_clear():
    image, lm = load_face("astronaut")
    with pytest.raises(ValueError, match="uint8"):
        render_frames(image.astype(float), lm, lm[None], 32)
    with pytest.raises(ValueError, match="68"):
        render_frames(image, lm[:60], lm[None], 32)


def test_to_crop_matches_frames():
    image, lm = load_face("carphone")
    box = scheme.face_box(lm)
    _, crop_lm = render_frames(image, lm, lm[None], 32, box)
    np.testing.assert_allclose(crop_lm[0], to_crop(lm, box, 32))
