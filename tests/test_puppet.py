import numpy as np
import pytest

from minitalker.data.faces import load_face
from minitalker.landmarks import scheme
from minitalker.landmarks.puppet import face_axes, pose_mouth


@pytest.fixture(scope="module")
def face():
    return load_face("grace_hopper")[1]  # (68, 2) a real face, slightly tilted


def rotate(lm, angle, scale, shift):
    c, s = np.cos(angle), np.sin(angle)
    return (lm @ np.array([[c, s], [-s, c]]).T * scale + shift).astype(np.float32)


def test_no_controls_is_the_identity_and_input_is_kept(face):
    before = face.copy()
    out = pose_mouth(face)
    np.testing.assert_allclose(out, face, atol=1e-5)
    assert out is not face and out.dtype == np.float32
    np.testing.assert_array_equal(face, before)


def test_jaw_opens_by_exactly_its_amount_and_keeps_width(face):
    u, _, _ = face_axes(face)
    upright = rotate(face, np.arctan2(u[1], u[0]), 1.0, 0.0)  # eye line horizontal: opening is along the rows
    assert scheme.mouth_opening(pose_mouth(upright, jaw=0.15)) - scheme.mouth_opening(upright) == pytest.approx(0.15, abs=1e-4)
    out = pose_mouth(face, jaw=0.15)
    assert scheme.mouth_opening(out) - scheme.mouth_opening(face) == pytest.approx(0.15, rel=0.01)
    assert scheme.mouth_width(out) == pytest.approx(scheme.mouth_width(face), abs=1e-4)
    _, v, _ = face_axes(face)
    drop = (out - face) @ v
    assert drop[8] > drop[5] > drop[2] > 0  # the chin drops most, the jaw less towards the ears
    np.testing.assert_allclose(out[:2], face[:2]); np.testing.assert_allclose(out[17:48], face[17:48])


def test_spread_widens_by_exactly_its_amount(face):
    out = pose_mouth(face, spread=0.1)
    assert scheme.mouth_width(out) - scheme.mouth_width(face) == pytest.approx(0.1, abs=1e-4)
    assert scheme.mouth_opening(out) == pytest.approx(scheme.mouth_opening(face), abs=1e-4)


def test_rounding_narrows_and_purses(face):
    opened = pose_mouth(face, jaw=0.1)
    out = pose_mouth(face, jaw=0.1, rounding=0.5)
    assert scheme.mouth_width(out) == pytest.approx(scheme.mouth_width(pose_mouth(face, rounding=0.5)), abs=1e-4)
    assert scheme.mouth_width(pose_mouth(face, rounding=0.5)) == pytest.approx(0.8 * scheme.mouth_width(face), rel=1e-3)
    assert scheme.mouth_opening(out) > scheme.mouth_opening(opened)  # the jaw comes after, on pursed lips


def test_controls_follow_the_face_not_the_image(face):
    """Pose then rotate/scale/shift == rotate/scale/shift then pose (amounts are in the face's units)."""
    moved = rotate(face, 0.4, 1.7, np.array([12.0, -3.0]))
    a = rotate(pose_mouth(face, jaw=0.1, spread=-0.05, rounding=0.3), 0.4, 1.7, np.array([12.0, -3.0]))
    np.testing.assert_allclose(pose_mouth(moved, jaw=0.1, spread=-0.05, rounding=0.3), a, atol=1e-3)


def test_drag_moves_one_point_by_pixels(face):
    out = pose_mouth(face, point=57, offset=(2.0, -1.5))
    np.testing.assert_allclose(out[57] - face[57], (2.0, -1.5), atol=1e-5)
    np.testing.assert_allclose(np.delete(out, 57, 0), np.delete(face, 57, 0))


def test_bad_input():
    with pytest.raises(ValueError, match="rounding"):
        pose_mouth(load_face("grace_hopper")[1], rounding=2)
    with pytest.raises(ValueError, match="index"):
        pose_mouth(load_face("grace_hopper")[1], point=68)
    with pytest.raises(ValueError, match="one face"):
        pose_mouth(np.zeros((2, 68, 2), np.float32))
