"""Tests of the built-in synthetic datasets."""

import time

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from ldseg_tf.data.synthetic import (
    SYNTHETIC_SETS,
    make_echo_2d,
    make_glands_2d,
    make_knee_3d,
    make_lines_2d,
    synthetic_arrays,
    synthetic_dataset,
)

SHAPES = {
    "glands": [(64, 64), (48, 80)],
    "echo": [(64, 64), (48, 80)],
    "knee": [(32, 32, 32), (20, 24, 28)],
    "lines": [(64, 64), (48, 80)],
}
CASES = [(name, shape) for name, shapes in SHAPES.items() for shape in shapes]


@pytest.fixture(scope="module")
def glands():
    return make_glands_2d(24, (64, 64), seed=0)


@pytest.fixture(scope="module")
def echo():
    return make_echo_2d(16, (64, 64), seed=0)


@pytest.fixture(scope="module")
def knee():
    return make_knee_3d(6, (32, 32, 32), seed=0)


# ----------------------------------------------------------------- all sets
@pytest.mark.parametrize("name, shape", CASES)
def test_shapes_dtypes_ranges_and_labels(name, shape):
    spec = SYNTHETIC_SETS[name]
    images, masks = synthetic_arrays(name, 5, shape, seed=1)
    assert images.shape == (5, *shape, spec["channels"])
    assert masks.shape == (5, *shape)
    assert images.dtype == np.float32 and masks.dtype == np.int32
    assert np.all(np.isfinite(images))
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert images.std() > 0.05  # not a blank image
    # Every example holds every class.
    for mask in masks:
        assert set(np.unique(mask)) == set(range(spec["num_classes"]))


@pytest.mark.parametrize("name, shape", CASES)
def test_determinism(name, shape):
    images, masks = synthetic_arrays(name, 4, shape, seed=3)
    again_images, again_masks = synthetic_arrays(name, 4, shape, seed=3)
    np.testing.assert_array_equal(images, again_images)
    np.testing.assert_array_equal(masks, again_masks)
    other_images, other_masks = synthetic_arrays(name, 4, shape, seed=4)
    for i in range(4):
        assert not np.array_equal(masks[i], other_masks[i])
        assert not np.allclose(images[i], other_images[i])
    # Examples within one call differ, too.
    assert not np.array_equal(masks[0], masks[1])


@pytest.mark.parametrize("name", sorted(SYNTHETIC_SETS))
def test_example_does_not_depend_on_n(name):
    shape = SHAPES[name][-1]
    few_images, few_masks = synthetic_arrays(name, 3, shape, seed=7)
    many_images, many_masks = synthetic_arrays(name, 12, shape, seed=7)
    np.testing.assert_array_equal(few_images, many_images[:3])
    np.testing.assert_array_equal(few_masks, many_masks[:3])


def test_zero_examples():
    images, masks = make_glands_2d(0, (16, 16))
    assert images.shape == (0, 16, 16, 3) and masks.shape == (0, 16, 16)


@pytest.mark.parametrize("fn", [make_glands_2d, make_echo_2d])
def test_small_odd_sizes_work(fn):
    images, masks = fn(3, (17, 23), seed=0)
    assert images.shape[1:3] == masks.shape[1:] == (17, 23)
    assert np.all(masks.reshape(3, -1).max(axis=1) >= 1)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="size"):
        make_glands_2d(2, (64,))
    with pytest.raises(ValueError, match="shape"):
        make_knee_3d(2, (32, 32))
    with pytest.raises(ValueError, match="size"):
        make_echo_2d(2, (0, 32))
    with pytest.raises(ValueError, match="n must"):
        make_echo_2d(-1)


def test_generation_is_fast():
    make_glands_2d(2)  # warm-up (numpy FFT plan caches, imports)
    # CPU time of this process, not wall-clock: other jobs sharing the cores
    # do not count. Typical is ~0.2 s.
    start = time.process_time()
    make_glands_2d(64, (64, 64))
    make_echo_2d(64, (64, 64))
    assert time.process_time() - start < 3.0


# ------------------------------------------------------------------- glands
def test_glands_foreground_fraction(glands):
    _, masks = glands
    fractions = masks.reshape(len(masks), -1).mean(axis=1)
    assert np.all((fractions >= 0.15) & (fractions <= 0.45)), fractions
    _, wide = make_glands_2d(8, (48, 80), seed=5)
    fractions = wide.reshape(len(wide), -1).mean(axis=1)
    assert np.all((fractions >= 0.15) & (fractions <= 0.45)), fractions


def test_glands_look_like_he(glands):
    images, masks = glands
    stroma = images[masks == 0].mean(axis=0)
    gland = images[masks == 1].mean(axis=0)
    # Pink stroma: red above green; glands are on average darker/more purple in red.
    assert stroma[0] > stroma[1] and stroma[2] > stroma[1]
    assert gland[0] < stroma[0]
    # Several separate glands per image, on average.
    counts = [ndimage.label(m)[1] for m in masks]
    assert 2 <= np.mean(counts) <= 6
    # Textured background, not a flat colour.
    assert images[0][masks[0] == 0].std(axis=0).min() > 0.02


def test_some_glands_touch_the_border(glands):
    _, masks = glands
    border = np.concatenate(
        [masks[:, 0, :], masks[:, -1, :], masks[:, :, 0], masks[:, :, -1]], axis=1
    )
    assert border.any(axis=1).sum() >= 3


# --------------------------------------------------------------------- echo
def test_echo_anatomy(echo):
    images, masks = echo
    for image, mask in zip(images[..., 0], masks):
        lv_rows = np.nonzero(mask == 1)[0]
        la_rows = np.nonzero(mask == 2)[0]
        # LA lies below the LV and is the smaller chamber.
        assert la_rows.mean() > lv_rows.mean()
        assert la_rows.size < lv_rows.size
        # The LV is one connected blob.
        assert ndimage.label(mask == 1)[1] == 1
        # Dark blood pool inside a brighter wall.
        lv = mask == 1
        wall = ndimage.binary_dilation(lv, iterations=2) & ~lv
        assert image[lv].mean() < 0.6 * image[wall].mean()
    # Outside the fan (top corners) the image is exactly 0.
    assert np.all(images[:, 0, 0] == 0) and np.all(images[:, 0, -1] == 0)


def test_echo_has_speckle(echo):
    images, masks = echo
    for image, mask in zip(images[..., 0], masks):
        core = ndimage.binary_erosion(mask == 1, iterations=2)
        values = image[core]
        assert values.size > 20
        # Multiplicative gamma speckle: coefficient of variation well above 0.
        assert values.std() > 0.2 * values.mean() > 0


# --------------------------------------------------------------------- knee
def test_knee_two_separated_structures(knee):
    images, masks = knee
    for mask in masks:
        labelled, count = ndimage.label(mask > 0)
        assert count == 2
        # Each component is one structure.
        for component in (1, 2):
            assert np.unique(mask[labelled == component]).size == 1
        # Also separated under full (26-)connectivity.
        full = ndimage.generate_binary_structure(3, 3)
        assert ndimage.label(mask > 0, structure=full)[1] == 2
        # Femur above tibia along axis 1 with a gap in between.
        femur_rows = np.nonzero(mask == 1)[1]
        tibia_rows = np.nonzero(mask == 2)[1]
        assert femur_rows.max() < tibia_rows.min() - 1


def test_knee_intensities(knee):
    images, masks = knee
    for image, mask in zip(images[..., 0], masks):
        background, femur, tibia = (image[mask == c].mean() for c in range(3))
        assert femur > tibia > background
        # Gaussian noise within a structure.
        assert image[mask == 1].std() > 0.01


@pytest.mark.parametrize("size", [(64, 64), (256, 256)])
def test_lines_are_thin_dark_and_branching_at_any_size(size):
    images, masks = make_lines_2d(3, size, seed=4)
    for image, mask in zip(images, masks):
        # 1-2 px wide whatever the image size: (nearly) no line pixel is
        # farther than one pixel from the background (crossings may be).
        depth = ndimage.distance_transform_edt(mask)[mask == 1]
        assert np.mean(depth <= 1.0) >= 0.99
        assert 0.003 < mask.mean() < 0.15
        # Vessel-like: darker than the background, a few connected trees.
        gray = image.mean(-1)
        assert gray[mask == 1].mean() < gray[mask == 0].mean() - 0.05
        assert 1 <= ndimage.label(mask, structure=np.ones((3, 3)))[1] <= 12


def test_knee_small_volume_still_separated():
    _, masks = make_knee_3d(4, (12, 16, 10), seed=2)
    for mask in masks:
        assert ndimage.label(mask > 0)[1] == 2
        assert set(np.unique(mask)) == {0, 1, 2}


# ----------------------------------------------------------------- registry
def test_registry_entries():
    from ldseg_tf.data.sources import get_source

    for name, spec in SYNTHETIC_SETS.items():
        assert len(spec["class_names"]) == spec["num_classes"]
        assert spec["class_names"][0] == "background"
        shape = SHAPES[name][0]
        assert len(shape) == spec["spatial_dims"]
        images, masks = spec["fn"](2, shape, seed=5)
        np.testing.assert_array_equal(images, synthetic_arrays(name, 2, shape, seed=5)[0])
        # What the entry declares is what the generator draws.
        assert images.shape[-1] == spec["channels"]
        assert set(np.unique(masks)) <= set(range(spec["num_classes"]))
        # Every set is a data source of the CLI with the same classes and input rank.
        source = get_source(f"synthetic:{name}")
        assert (source.num_classes, source.class_names) == (spec["num_classes"],
                                                            spec["class_names"])
        assert source.image_shape[-1] == spec["channels"]
        assert len(source.image_shape) == spec["spatial_dims"] + 1


def test_synthetic_arrays_errors():
    with pytest.raises(ValueError, match=r"'mri'.*echo.*glands.*knee"):
        synthetic_arrays("mri", 2, (32, 32))
    with pytest.raises(ValueError, match=r"knee.*3D.*rank 2"):
        synthetic_arrays("knee", 2, (32, 32))
    with pytest.raises(ValueError, match=r"echo.*2D.*rank 3"):
        synthetic_arrays("echo", 2, (16, 16, 16))


@pytest.mark.parametrize("name, shape", [("echo", (32, 48)), ("knee", (16, 16, 16))])
def test_synthetic_dataset(name, shape):
    spec = SYNTHETIC_SETS[name]
    ds = synthetic_dataset(name, 3, shape, seed=2)
    assert isinstance(ds, tf.data.Dataset)
    image_spec, mask_spec = ds.element_spec
    assert image_spec.dtype == tf.float32 and mask_spec.dtype == tf.int32
    assert tuple(image_spec.shape) == (*shape, spec["channels"])
    assert tuple(mask_spec.shape) == shape
    assert int(ds.cardinality()) == 3
    images, masks = synthetic_arrays(name, 3, shape, seed=2)
    for i, (image, mask) in enumerate(ds):
        np.testing.assert_array_equal(image.numpy(), images[i])
        np.testing.assert_array_equal(mask.numpy(), masks[i])


def test_module_has_no_hidden_global_rng():
    # Drawing from numpy's global RNG must not change the data.
    first = make_echo_2d(2, (24, 24), seed=0)[0]
    np.random.seed(123)
    np.random.random(10)
    np.testing.assert_array_equal(first, make_echo_2d(2, (24, 24), seed=0)[0])
