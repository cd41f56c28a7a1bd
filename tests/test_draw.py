import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from minitalker.data.faces import load_face  # noqa: E402
from minitalker.landmarks.draw import draw_on_frames, frame_grid, group_polylines, plot_landmarks, rasterise  # noqa: E402
from minitalker.landmarks.scheme import CLOSED_GROUPS, GROUPS  # noqa: E402


@pytest.fixture(scope="module")
def face():
    return load_face("astronaut")


def test_group_polylines_close_only_eyes_and_lips(face):
    _, lm = face
    lines = group_polylines(lm)
    assert list(lines) == list(GROUPS)
    for name, pts in lines.items():
        a, b = GROUPS[name]
        closed = name in CLOSED_GROUPS
        assert len(pts) == b - a + closed and (np.array_equal(pts[0], pts[-1]) == closed)


def test_rasterise_draws_every_point_and_segment_and_nothing_else(face):
    _, lm = face
    img = rasterise(lm, 512)
    assert img.shape == (512, 512) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
    xy = np.round(lm).astype(int)
    assert (img[xy[:, 1], xy[:, 0]] > 0.99).all()  # every vertex is inked
    closing = np.round((lm[41] + lm[36]) / 2).astype(int)  # the segment that closes the right eye
    assert img[closing[1], closing[0]] > 0
    x0, y0 = xy.min(0) - 2
    x1, y1 = xy.max(0) + 2
    assert img[:y0].sum() == img[y1:].sum() == img[:, :x0].sum() == img[:, x1:].sum() == 0
    length = sum(np.linalg.norm(np.diff(p, axis=0), axis=1).sum() for p in group_polylines(lm).values())
    assert 0.8 * length < img.sum() < 2.0 * length  # about one pixel of ink per pixel of line


def test_rasterise_clips_batches_and_takes_rectangular_sizes(face):
    _, lm = face
    small = rasterise(lm, (120, 200))  # most of the face lies outside: clipped, not an error
    assert small.shape == (120, 200) and small.sum() > 0
    both = rasterise(np.stack([lm, lm * 0.5]), 256)
    assert both.shape == (2, 256, 256)
    np.testing.assert_array_equal(both[1], rasterise(lm * 0.5, 256))


def test_draw_on_frames_marks_the_points_and_leaves_the_rest(face):
    image, lm = face
    frames = np.stack([image, image[::-1]])
    lms = np.stack([lm, lm * [1, -1] + [0, 511]])  # the second frame is flipped upside down
    out = draw_on_frames(frames, lms, color=(0, 255, 0))
    assert out.shape == frames.shape and out.dtype == np.uint8
    for t in range(2):
        xy = np.round(lms[t]).astype(int)
        np.testing.assert_array_equal(out[t, xy[:, 1], xy[:, 0]], np.broadcast_to([0, 255, 0], (68, 3)))
    np.testing.assert_array_equal(out[:, 400:, 400:], frames[:, 400:, 400:])  # far from the face: untouched
    assert (draw_on_frames(image, lm).shape == image.shape)  # a single image works too
    with pytest.raises(ValueError, match="one \\(68, 2\\) face per frame"):
        draw_on_frames(frames, lm)


def test_plot_landmarks_draws_one_line_per_group_and_optional_labels(face):
    image, lm = face
    fig, (a, b) = plt.subplots(1, 2)
    plot_landmarks(a, lm, labels=True)
    assert len(a.lines) == len(GROUPS) and len(a.texts) == 68
    assert a.yaxis_inverted()  # no image: y flipped so the face is upright
    np.testing.assert_array_equal(a.lines[list(GROUPS).index("outer_lips")].get_xydata()[-1], lm[48])
    b.imshow(image)
    plot_landmarks(b, lm, groups=False, color="k")
    assert len(b.texts) == 0 and all(line.get_linestyle() == "None" for line in b.lines)
    with pytest.raises(ValueError, match="one face"):
        plot_landmarks(a, np.stack([lm, lm]))
    plt.close(fig)


def test_plot_landmarks_labels_a_subset_off_the_points(face):
    image, lm = face
    fig, ax = plt.subplots()
    ax.imshow(image)
    plot_landmarks(ax, lm, labels=[8, 36, 51, 57, 62])
    texts = {t.get_text(): np.array(t.get_position()) for t in ax.texts}  # offsets in points, y up
    assert sorted(texts) == ["36", "51", "57", "62", "8"]
    assert texts["8"][1] < 0 and texts["57"][1] < 0  # chin and lower lip: labelled below (y down in the image)
    assert texts["51"][1] > 0 and texts["62"][1] < 0  # upper lip: outer above, inner towards the mouth centre
    assert texts["36"][0] < 0  # outer corner of the image-left eye: to its left
    plt.close(fig)


def test_frame_grid_lays_out_frames_with_landmarks(face):
    image, lm = face
    fig = frame_grid(np.stack([image] * 5), np.stack([lm] * 5), ncols=3, fontsize=11)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 6 and len(panels) == 5
    assert all(len(ax.lines) == len(GROUPS) for ax in panels) and panels[4].get_title() == "4"
    assert panels[0].title.get_fontsize() == 11
    plt.close(fig)
    with pytest.raises(ValueError, match="5 frames but 2"):
        frame_grid(np.stack([image] * 5), np.stack([lm] * 2))
