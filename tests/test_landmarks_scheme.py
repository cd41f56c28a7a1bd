import numpy as np
import pytest

from minitalker.landmarks import scheme as S


def random_faces(*batch, seed=0):
    """Random (..., 68, 2) point sets with the outer eye corners well apart."""
    rng = np.random.default_rng(seed)
    lm = rng.uniform(0, 100, (*batch, 68, 2)).astype(np.float32)
    lm[..., 36, :], lm[..., 45, :] = (30, 40), (70, 42)
    return lm


def similarity(lm, scale, angle, shift):
    c, s = np.cos(angle), np.sin(angle)
    return (lm @ np.array([[c, s], [-s, c]]).T * scale + shift).astype(np.float32)


def simple_face(opening=0.0):
    """Outer eye corners 10 px apart on y=0; mouth corners at y=25, 6 px apart; inner-lip gap ``opening``."""
    lm = np.zeros((68, 2), np.float32)
    lm[:, 0] = np.linspace(-5, 15, 68)  # spread points so nothing is degenerate
    lm[36], lm[45] = (0, 0), (10, 0)
    lm[48], lm[54] = (2, 25), (8, 25)
    lm[[61, 62, 63], 1] = 25 - opening / 2
    lm[[67, 66, 65], 1] = 25 + opening / 2
    return lm


def test_groups_partition_all_points_and_masks_have_expected_sizes():
    idx = np.concatenate([S.group_indices(g) for g in S.GROUPS])
    np.testing.assert_array_equal(idx, np.arange(68))
    assert len(S.MOUTH) == 20 and S.COMPLETION_MASK.sum() == 31
    assert S.COMPLETION_MASK[S.MOUTH].all() and S.COMPLETION_MASK[S.LOWER_JAW].all()
    for visible in ("right_eye", "left_eye", "right_brow", "left_brow", "nose_bridge", "nose_base"):
        assert not S.COMPLETION_MASK[S.group_indices(visible)].any()
    with pytest.raises(KeyError, match="unknown landmark group"):
        S.group_indices("ears")


def test_normalise_round_trip_and_canonical_eyes():
    lm = random_faces(4, 3)
    canon, params = S.normalise(lm)
    assert canon.shape == (4, 3, 68, 2) and canon.dtype == np.float32
    np.testing.assert_allclose(canon[..., 36, :], np.broadcast_to([-0.5, 0], (4, 3, 2)), atol=1e-6)
    np.testing.assert_allclose(canon[..., 45, :], np.broadcast_to([0.5, 0], (4, 3, 2)), atol=1e-6)
    np.testing.assert_allclose(S.denormalise(canon, params), lm, atol=1e-3)


@pytest.mark.parametrize("scale,angle,shift", [(2.5, 0.3, (10, -4)), (0.4, -2.0, (-50, 7)), (1.0, np.pi, (0, 0))])
def test_normalise_is_invariant_to_similarity_transforms(scale, angle, shift):
    lm = random_faces(5)
    moved = similarity(lm, scale, angle, np.array(shift))
    np.testing.assert_allclose(S.normalise(moved)[0], S.normalise(lm)[0], atol=1e-4)
    # ...and the measures, which are ratios to the inter-ocular distance, do not move either
    np.testing.assert_allclose(S.mouth_width(moved), S.mouth_width(lm), rtol=1e-4)


def test_mouth_measures_on_constructed_shapes():
    closed, open_ = simple_face(0.0), simple_face(3.0)
    assert S.mouth_opening(closed) == pytest.approx(0.0, abs=1e-6)
    assert S.mouth_opening(open_) == pytest.approx(0.3)
    assert S.mouth_width(open_) == pytest.approx(0.6)
    both = np.stack([closed, open_, similarity(open_, 3.0, 0.0, np.array([5, 5]))])  # (3, 68, 2)
    np.testing.assert_allclose(S.mouth_opening(both), [0, 0.3, 0.3], atol=1e-5)


def test_mouth_error_counts_only_mouth_points():
    true = simple_face(2.0)
    pred = true.copy()
    pred[S.MOUTH] += (0.6, 0.8)  # 1 px off, inter-ocular 10 px
    assert S.mouth_error(pred, true) == pytest.approx(0.1)
    elsewhere = true.copy()
    elsewhere[:48] += 5.0
    assert S.mouth_error(elsewhere, true) == pytest.approx(0.0)


def test_face_box_follows_the_face_but_not_the_speech():
    lm = simple_face(0.0)
    cx, cy, side = S.face_box(lm)
    eyes, mouth = lm[36:48].mean(0), lm[[48, 54]].mean(0)
    assert eyes[1] < cy < (eyes[1] + mouth[1]) / 2  # above the eye-mouth midpoint, so brows and chin fit
    assert side == pytest.approx(4.4 * np.linalg.norm(mouth - eyes))
    np.testing.assert_allclose(S.face_box(lm + (7, -3)), [cx + 7, cy - 3, side], rtol=1e-6)
    assert S.face_box(lm * 2)[2] == pytest.approx(2 * side)
    assert S.face_box(lm, zoom=2.0)[2] == pytest.approx(side / 2)
    np.testing.assert_allclose(S.face_box(simple_face(4.0)), S.face_box(lm))  # opening the mouth moves nothing
    assert S.face_box(np.stack([lm, lm + 1])).shape == (2, 3)


@pytest.mark.parametrize("bad,message", [
    (np.zeros((68, 3)), r"shape \(\.\.\., 68, 2\)"),
    (np.zeros((67, 2)), r"shape \(\.\.\., 68, 2\)"),
    (np.zeros(68), r"shape \(\.\.\., 68, 2\)"),
    (np.full((68, 2), np.nan), "NaN or inf"),
])
def test_check_landmarks_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message):
        S.check_landmarks(bad)


def test_normalise_rejects_coinciding_eye_corners():
    lm = random_faces()
    lm[45] = lm[36]
    with pytest.raises(ValueError, match="eye corners coincide"):
        S.normalise(lm)
