"""Tests of `ldseg_tf.metrics` against hand-computed cases."""

import csv
import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from ldseg_tf import metrics


def square(shape, top_left, side):
    mask = np.zeros(shape, bool)
    mask[tuple(slice(c, c + side) for c in top_left)] = True
    return mask


def concentric_squares(side, k, ndim=2):
    """An inner hyper-cube of `side` voxels and the same cube grown by `k` voxels."""
    shape = (side + 2 * k + 10,) * ndim
    inner = square(shape, (k + 5,) * ndim, side)
    outer = square(shape, (5,) * ndim, side + 2 * k)
    return inner, outer


def reference_surface_distances(pred, target, spacing):
    """Brute force: pairwise distances between the surface voxel coordinates."""
    from scipy import ndimage

    def surface_points(mask):
        structure = ndimage.generate_binary_structure(mask.ndim, 1)
        eroded = ndimage.binary_erosion(mask, structure=structure, border_value=0)
        return np.argwhere(mask & ~eroded) * np.asarray(spacing)

    d = cdist(surface_points(pred), surface_points(target))
    return d.min(axis=1), d.min(axis=0)


# ------------------------------------------------------------------- overlap
@pytest.mark.parametrize("k", [0, 1, 3, 7])
def test_dice_iou_of_shifted_squares(k):
    # Two 20x20 squares shifted by k columns overlap in 20 x (20 - k) pixels.
    a = square((40, 50), (10, 10), 20)
    b = square((40, 50), (10, 10 + k), 20)
    assert metrics.dice(a, b) == pytest.approx((20 - k) / 20)
    assert metrics.iou(a, b) == pytest.approx((20 - k) / (20 + k))
    assert metrics.dice(b, a) == metrics.dice(a, b)


def test_dice_iou_of_nested_masks():
    inner = square((10, 10), (2, 2), 4)  # 16 pixels
    outer = square((10, 10), (1, 1), 8)  # 64 pixels, contains inner
    assert metrics.dice(inner, outer) == pytest.approx(2 * 16 / 80)
    assert metrics.iou(inner, outer) == pytest.approx(16 / 64)


def test_dice_iou_disjoint_is_zero():
    a = square((10, 10), (0, 0), 3)
    b = square((10, 10), (5, 5), 3)
    assert metrics.dice(a, b) == 0.0
    assert metrics.iou(a, b) == 0.0


def test_per_image_dice_scores_one_class_inside_a_mask():
    a = square((10, 10), (0, 0), 4).astype(np.int32)  # 16 pixels of class 1
    b = square((10, 10), (0, 2), 4).astype(np.int32)  # shifted: 8 shared
    pred, truth = np.stack([a, a, 2 * a]), np.stack([a, b, 2 * a])
    np.testing.assert_allclose(metrics.per_image_dice(pred, truth), [1.0, 0.5, 1.0])
    np.testing.assert_allclose(metrics.per_image_dice(pred, truth, label=2), [1.0, 1.0, 1.0])
    # Inside the first two columns only the prediction has class 1 in case 2.
    fov = np.zeros((3, 10, 10), bool)
    fov[:, :, :2] = True
    np.testing.assert_allclose(metrics.per_image_dice(pred, truth, mask=fov), [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="mask shape"):
        metrics.per_image_dice(pred, truth, mask=fov[:, :5])
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.per_image_dice(pred, truth[:2])


def test_empty_mask_conventions():
    empty = np.zeros((8, 8), bool)
    full = square((8, 8), (2, 2), 3)
    assert metrics.dice(empty, empty) == 1.0
    assert metrics.iou(empty, empty) == 1.0
    assert metrics.dice(empty, full) == 0.0
    assert metrics.iou(full, empty) == 0.0
    assert metrics.hd95(empty, empty) == 0.0
    assert metrics.assd(empty, empty) == 0.0
    assert metrics.hd95(empty, full) == math.inf
    assert metrics.hd95(full, empty) == math.inf
    assert metrics.assd(full, empty) == math.inf


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
        metrics.dice(np.zeros((4, 5)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
        metrics.hd95(np.ones((4, 5)), np.ones((5, 4)))


# ------------------------------------------------------------------ distances
def test_identical_masks_have_zero_distance():
    a = square((20, 20), (3, 4), 9)
    assert metrics.hd95(a, a) == 0.0
    assert metrics.assd(a, a) == 0.0


@pytest.mark.parametrize("k", [1, 3])
def test_shifted_segments_1d(k):
    # The surface of a 1D segment is its two end points; each is k from the other's.
    a = np.zeros(40, bool)
    a[10:25] = True
    b = np.roll(a, k)
    assert metrics.hd95(a, b) == pytest.approx(k)
    assert metrics.assd(a, b) == pytest.approx(k)
    assert metrics.hd95(a, b, spacing=(2.5,)) == pytest.approx(2.5 * k)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_parallel_bars_with_anisotropic_spacing(k):
    # A one-pixel-thick bar is all surface; every pixel is exactly k rows (or
    # columns) away from the matching pixel of the other bar.
    a = np.zeros((30, 30), bool)
    a[10, 5:25] = True
    b = np.roll(a, k, axis=0)
    for spacing, scale in [(None, 1.0), ((3.0, 0.5), 3.0), ((0.5, 3.0), 0.5)]:
        assert metrics.hd95(a, b, spacing) == pytest.approx(k * scale)
        assert metrics.assd(a, b, spacing) == pytest.approx(k * scale)
    vertical_a, vertical_b = a.T, b.T
    assert metrics.hd95(vertical_a, vertical_b, (3.0, 0.5)) == pytest.approx(0.5 * k)
    assert metrics.assd(vertical_a, vertical_b, (3.0, 0.5)) == pytest.approx(0.5 * k)


def test_concentric_squares_by_hand():
    # Inner 40x40 square, outer grown by k = 2. All 156 inner surface pixels are
    # exactly 2 from the outer surface; of the 172 outer ones, 3 per corner are
    # farther: sqrt(8) (the corner) and twice sqrt(5); the rest are exactly 2.
    inner, outer = concentric_squares(40, 2)
    n = 156 + 172
    expected_assd = ((n - 12) * 2 + 4 * (math.sqrt(8) + 2 * math.sqrt(5))) / n
    # 12 of 328 values (3.7%) exceed 2, so the 95th percentile is 2.
    assert metrics.hd95(inner, outer) == pytest.approx(2.0)
    assert metrics.hd95(outer, inner) == pytest.approx(2.0)
    assert metrics.assd(inner, outer) == pytest.approx(expected_assd)
    # Isotropic spacing scales every distance.
    assert metrics.hd95(inner, outer, spacing=(0.7, 0.7)) == pytest.approx(1.4)
    assert metrics.assd(inner, outer, spacing=(0.7, 0.7)) == pytest.approx(0.7 * expected_assd)


def test_concentric_discs_are_about_k_apart():
    yy, xx = np.mgrid[:80, :80]
    r = np.hypot(yy - 39.5, xx - 39.5)
    for k in (2, 4):
        small, large = r < 20, r < 20 + k
        assert metrics.hd95(small, large) == pytest.approx(k, abs=0.75)
        assert metrics.assd(small, large) == pytest.approx(k, abs=0.5)


def test_concentric_cubes_3d_by_hand():
    # Inner 30^3 cube (5048 surface voxels, all exactly 1 away) and the cube grown
    # by 1 (5768 surface voxels: 360 edge voxels at sqrt(2), 8 corners at sqrt(3),
    # the rest at 1). 368 of 10816 values (3.4%) exceed 1.
    inner, outer = concentric_squares(30, 1, ndim=3)
    n = 5048 + 5768
    expected_assd = (n - 368 + 360 * math.sqrt(2) + 8 * math.sqrt(3)) / n
    assert metrics.hd95(inner, outer) == pytest.approx(1.0)
    assert metrics.assd(inner, outer) == pytest.approx(expected_assd)


@pytest.mark.parametrize("k", [1, 3])
def test_parallel_plates_3d_with_spacing(k):
    a = np.zeros((16, 12, 12), bool)
    a[4, 2:10, 2:10] = True
    b = np.roll(a, k, axis=0)
    assert metrics.hd95(a, b) == pytest.approx(k)
    assert metrics.hd95(a, b, spacing=(2.0, 0.5, 0.5)) == pytest.approx(2.0 * k)
    assert metrics.assd(a, b, spacing=(2.0, 0.5, 0.5)) == pytest.approx(2.0 * k)


@pytest.mark.parametrize(
    "shape, spacing", [((40, 36), (1.5, 0.6)), ((14, 16, 12), (2.5, 0.8, 1.1))]
)
def test_distances_match_brute_force(shape, spacing):
    rng = np.random.default_rng(3)
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")

    def blob(centre, radius):
        return sum((g - c) ** 2 for g, c in zip(grids, centre)) < radius**2

    pred = blob([s * 0.4 for s in shape], 5) | blob([s * 0.7 for s in shape], 3)
    target = blob([s * 0.45 for s in shape], 6) ^ (rng.random(shape) < 0.01)
    forward, backward = reference_surface_distances(pred, target, spacing)
    got_forward, got_backward = metrics.surface_distances(pred, target, spacing)
    np.testing.assert_allclose(np.sort(got_forward), np.sort(forward))
    np.testing.assert_allclose(np.sort(got_backward), np.sort(backward))
    pooled = np.concatenate([forward, backward])
    assert metrics.hd95(pred, target, spacing) == pytest.approx(np.percentile(pooled, 95))
    assert metrics.assd(pred, target, spacing) == pytest.approx(pooled.mean())


def test_object_on_image_border_has_surface_there():
    # The whole 5x5 image is foreground: its surface is the image border ring.
    full = np.ones((5, 5), bool)
    centre = np.zeros((5, 5), bool)
    centre[2, 2] = True
    forward, backward = metrics.surface_distances(full, centre)
    assert forward.size == 16
    assert backward.tolist() == [2.0]


def test_bad_spacing():
    a = square((10, 10), (2, 2), 4)
    with pytest.raises(ValueError, match="spacing"):
        metrics.hd95(a, a, spacing=(1.0,))
    with pytest.raises(ValueError, match="spacing"):
        metrics.assd(a, a, spacing=(1.0, 0.0))


# ---------------------------------------------------------------------- cases
def two_class_maps():
    """3-class label maps: LV square 1 -> shifted by 2 columns, LA square 2 -> exact."""
    true = np.zeros((40, 40), np.int32)
    pred = np.zeros((40, 40), np.int32)
    true[5:15, 5:15] = 1
    pred[5:15, 7:17] = 1
    true[25:35, 10:20] = 2
    pred[25:35, 10:20] = 2
    return pred, true


def test_evaluate_case_multiclass():
    pred, true = two_class_maps()
    result = metrics.evaluate_case(
        pred, true, num_classes=3, class_names=("background", "LV", "LA")
    )
    assert list(result) == ["LV", "LA", "all"]
    assert set(result["LV"]) == {"dsc", "iou", "hd95", "assd"}
    # LV: 10x10 squares shifted by 2 -> overlap 80.
    assert result["LV"]["dsc"] == pytest.approx(160 / 200)
    assert result["LV"]["iou"] == pytest.approx(80 / 120)
    assert 0 < result["LV"]["assd"] <= result["LV"]["hd95"] <= 2.0
    assert result["LA"] == {"dsc": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0}
    # Union: 200 true and 200 predicted pixels, 180 shared.
    assert result["all"] == {"dsc": pytest.approx(360 / 400), "iou": pytest.approx(180 / 220)}


def test_evaluate_case_default_names_spacing_and_no_distances():
    pred, true = two_class_maps()
    result = metrics.evaluate_case(pred, true, 3, distances=False)
    assert list(result) == ["class_1", "class_2", "all"]
    assert set(result["class_1"]) == {"dsc", "iou"}
    binary = metrics.evaluate_case(pred == 1, true == 1, 2, spacing=(2.0, 2.0))
    assert list(binary) == ["class_1"]  # no union for a single foreground class
    plain = metrics.evaluate_case(pred == 1, true == 1, 2)
    assert binary["class_1"]["hd95"] == pytest.approx(2 * plain["class_1"]["hd95"])


def test_evaluate_case_absent_classes():
    true = np.zeros((12, 12), np.int32)
    true[2:6, 2:6] = 1
    pred = np.zeros_like(true)
    result = metrics.evaluate_case(pred, true, 3)
    assert result["class_1"] == {"dsc": 0.0, "iou": 0.0, "hd95": math.inf, "assd": math.inf}
    assert result["class_2"] == {"dsc": 1.0, "iou": 1.0, "hd95": 0.0, "assd": 0.0}


def test_evaluate_case_3d():
    true = np.zeros((10, 12, 14), np.int32)
    true[2:6, 2:8, 2:8] = 1
    pred = true.copy()
    pred[2:6, 2:8, 2] = 0  # one face removed: 4*6*5 of 4*6*6 voxels left
    result = metrics.evaluate_case(pred, true, 2, spacing=(3.0, 1.0, 1.0))
    assert result["class_1"]["dsc"] == pytest.approx(2 * 120 / 264)
    assert result["class_1"]["iou"] == pytest.approx(120 / 144)
    assert result["class_1"]["hd95"] == pytest.approx(1.0)


def test_evaluate_case_validates_inputs():
    pred, true = two_class_maps()
    with pytest.raises(ValueError, match=r"\(40, 40\).*\(40, 39\)"):
        metrics.evaluate_case(pred, true[:, :-1], 3)
    bad = pred.copy()
    bad[0, 0], bad[0, 1] = 3, 7
    with pytest.raises(ValueError, match=r"pred_labels.*0\.\.2.*3, 7"):
        metrics.evaluate_case(bad, true, 3)
    bad = true.copy()
    bad[0, 0] = -1
    with pytest.raises(ValueError, match=r"true_labels.*-1"):
        metrics.evaluate_case(pred, bad, 3)
    with pytest.raises(ValueError, match="integer"):
        metrics.evaluate_case(pred + 0.5, true, 3)
    with pytest.raises(ValueError, match="num_classes"):
        metrics.evaluate_case(pred, true, 1)
    with pytest.raises(ValueError, match="class_names"):
        metrics.evaluate_case(pred, true, 3, class_names=("bg", "LV"))
    with pytest.raises(ValueError, match="spacing"):
        metrics.evaluate_case(pred, true, 3, spacing=(1.0, 1.0, 1.0))
    # Integral floats are accepted.
    assert metrics.evaluate_case(pred.astype(np.float32), true, 3)["class_2"]["dsc"] == 1.0


# ------------------------------------------------------------------ summaries
def hand_cases():
    return [
        {"LV": {"dsc": 0.5, "hd95": 1.0}, "all": {"dsc": 0.6}},
        {"LV": {"dsc": 1.0, "hd95": math.inf}, "all": {"dsc": 0.8}},
        {"LV": {"dsc": 0.75, "hd95": 3.0}, "all": {"dsc": 0.7}},
    ]


def test_summarize_by_hand():
    summary = metrics.summarize(hand_cases())
    dsc = summary["LV"]["dsc"]
    assert dsc["mean"] == pytest.approx(0.75)
    assert dsc["sd"] == pytest.approx(math.sqrt((0.0625 + 0.0625 + 0) / 3))
    assert (dsc["n"], dsc["n_inf"]) == (3, 0)
    hd = summary["LV"]["hd95"]
    assert hd == {"mean": 2.0, "sd": 1.0, "n": 2, "n_inf": 1}
    assert summary["all"]["dsc"]["mean"] == pytest.approx(0.7)
    text = metrics.format_summary(summary, digits=2)
    assert "dsc 0.75 ± 0.20" in text and "(1 inf)" in text


def test_summarize_all_infinite():
    summary = metrics.summarize([{"LV": {"hd95": math.inf}}])
    assert math.isnan(summary["LV"]["hd95"]["mean"])
    assert summary["LV"]["hd95"]["n_inf"] == 1


def test_csv_rows_and_file(tmp_path):
    cases = hand_cases()
    rows = metrics.to_csv_rows(cases, case_ids=["a", "b", "c"])
    assert rows[1] == {"case": "b", "LV/dsc": 1.0, "LV/hd95": math.inf, "all/dsc": 0.8}
    with pytest.raises(ValueError, match="2 case ids for 3 cases"):
        metrics.to_csv_rows(cases, case_ids=["a", "b"])
    path = tmp_path / "sub" / "cases.csv"
    metrics.write_csv(str(path), cases)
    with open(path) as f:
        read = list(csv.DictReader(f))
    assert list(read[0]) == ["case", "LV/dsc", "LV/hd95", "all/dsc"]
    assert read[1]["case"] == "1"
    assert float(read[1]["LV/hd95"]) == math.inf
    assert float(read[2]["LV/dsc"]) == 0.75
