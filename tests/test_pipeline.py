"""The tf.data input pipeline: preprocessing, augmentation, determinism, sources,
and writing predictions back in the original geometry."""

import shutil
import subprocess
import sys
import textwrap
import time

import nibabel as nib
import numpy as np
import pytest
import tensorflow as tf

from ldseg_tf.config import LDSegConfig
from ldseg_tf.data.io import read_image, write_mask
from ldseg_tf.data.pipeline import augment, make_dataset, preprocess, resize, restore_geometry


def small(image_shape, **kw):
    return LDSegConfig.preset("small", image_shape=image_shape, **kw)


def blocks(shape, labels=(0, 1, 2), seed=0):
    """A label map of axis-aligned blocks (few boundaries, so nearest and bilinear
    resampling agree almost everywhere)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, np.int32)
    for _ in range(6):
        lo = [rng.integers(0, s - 2) for s in shape]
        hi = [lo_ + rng.integers(2, max(3, s // 2)) for lo_, s in zip(lo, shape)]
        mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = rng.choice(labels[1:])
    return mask


def writable_copy(src, dst):
    """Copies the (read-only) shared sample so that records can be written next to it."""
    shutil.copytree(src, dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


# ---------------------------------------------------------------------- resizing
@pytest.mark.parametrize(
    "shape, size",
    [((37, 53), (16, 16)), ((16, 16), (48, 24)), ((9, 30, 14), (16, 8, 32)), ((21, 19, 20), (8, 16, 8))],
)
def test_resize_never_creates_new_label_values(shape, size):
    mask = blocks(shape, labels=(0, 3, 7, 250))
    resized = resize(mask[..., None], size, "nearest")[..., 0].numpy()
    assert resized.shape == size and resized.dtype == np.int32
    assert set(np.unique(resized)) <= set(np.unique(mask))
    # ...while the image path does interpolate.
    smooth = resize(mask[..., None].astype(np.float32), size, "bilinear").numpy()
    assert not set(np.unique(smooth)) <= set(np.unique(mask))
    # The same through `preprocess`, which the pipeline and `ldseg predict` use.
    config = small(size + (1,), num_classes=251)
    _, labels = preprocess(mask.astype(np.float32), mask.astype(np.uint8), config)
    assert labels.shape == size and set(np.unique(labels)) <= set(np.unique(mask))


def test_preprocess_keeps_the_knee_label_set(shared_data):
    image, _ = read_image(str(shared_data / "knee_sample" / "Image" / "Case1.nii.gz"))
    labels, _ = read_image(str(shared_data / "knee_sample" / "Label" / "Case1_label.nii.gz"))
    config = small((32, 16, 32, 1), num_classes=3)
    x, y = preprocess(image, labels, config)
    assert x.shape == (32, 16, 32, 1) and x.dtype == tf.float32
    assert y.shape == (32, 16, 32) and y.dtype == tf.int32
    assert set(np.unique(y)) == {0, 1, 2}
    assert float(tf.reduce_min(x)) == 0.0 and float(tf.reduce_max(x)) == pytest.approx(1.0)


# ---------------------------------------------------------------------- preprocess
def test_preprocess_channels_and_normalization():
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[...] = (200, 100, 50)
    gray = preprocess(rgb, None, small((16, 16, 1), normalization="none"))
    np.testing.assert_allclose(gray.numpy(), 0.2989 * 200 + 0.587 * 100 + 0.114 * 50, rtol=1e-5)

    ramp = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    rgb_out = preprocess(ramp, None, small((16, 16, 3))).numpy()
    assert rgb_out.shape == (16, 16, 3)
    np.testing.assert_array_equal(rgb_out[..., 0], rgb_out[..., 2])
    assert rgb_out.min() == 0.0 and rgb_out.max() == pytest.approx(1.0)

    z = preprocess(ramp, None, small((16, 16, 1), normalization="zscore")).numpy()
    assert abs(z.mean()) < 1e-4 and z.std() == pytest.approx(1.0, abs=1e-3)

    with pytest.raises(ValueError, match=r"2 channel\(s\) but config.image_shape expects 3"):
        preprocess(np.zeros((8, 8, 2)), None, small((16, 16, 3)))
    with pytest.raises(ValueError, match=r"expected a 3D image"):
        preprocess(np.zeros((8, 8)), None, small((16, 16, 16, 1)))


def test_preprocess_rejects_bad_labels_and_size_mismatch():
    config = small((16, 16, 1), num_classes=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="config.num_classes = 3"):
        preprocess(np.zeros((8, 8)), np.full((8, 8), 3), config)
    with pytest.raises(tf.errors.InvalidArgumentError, match="different spatial shapes"):
        preprocess(np.zeros((8, 8)), np.zeros((8, 9)), config)
    # In a dataset the same check fires while iterating.
    ds = tf.data.Dataset.from_tensors((np.zeros((8, 8, 1), np.float32), np.full((8, 8), 5, np.int32)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="config.num_classes = 3"):
        batches(make_dataset(ds, config))


# ---------------------------------------------------------------------- augment
@pytest.mark.parametrize("shape", [(32, 24), (12, 20, 16)])
def test_augment_moves_image_and_mask_together(shape):
    mask = blocks(shape, seed=1)
    # Channel 0 of the image *is* the mask, channel 1 a ramp that breaks symmetry.
    ramp = np.linspace(0, 1, mask.size, dtype=np.float32).reshape(shape)
    image = np.stack([mask.astype(np.float32), ramp], axis=-1)

    flipped_any = False
    for i in range(8):
        x, y = augment(image, mask, tf.constant([i, 7]), max_rotation=0.0, brightness=0.0, contrast=0.0)
        np.testing.assert_array_equal(x[..., 0].numpy(), y.numpy())
        flipped_any |= not np.array_equal(y.numpy(), mask)
        assert y.dtype == tf.int32 and x.shape == image.shape
    assert flipped_any

    for i in range(4):
        x, y = augment(image, mask, tf.constant([i, 3]), max_rotation=20.0, brightness=0.0, contrast=0.0)
        y = y.numpy()
        assert set(np.unique(y)) <= set(np.unique(mask))
        # Bilinear image and nearest mask agree except on a thin band of block edges.
        assert np.mean(np.round(x[..., 0].numpy()) == y) > 0.95


def test_augment_jitters_the_image_only_and_is_deterministic():
    mask = blocks((16, 16))
    image = np.random.default_rng(0).uniform(size=(16, 16, 1)).astype(np.float32)
    options = dict(flip=False, max_rotation=0.0, brightness=0.2, contrast=0.2, clip=(0.0, 1.0))
    x1, y1 = augment(image, mask, tf.constant([1, 2]), **options)
    x2, y2 = augment(image, mask, tf.constant([1, 2]), **options)
    x3, _ = augment(image, mask, tf.constant([9, 2]), **options)
    np.testing.assert_array_equal(y1.numpy(), mask)
    np.testing.assert_array_equal(x1.numpy(), x2.numpy())
    np.testing.assert_array_equal(y1.numpy(), y2.numpy())
    assert not np.allclose(x1.numpy(), image) and not np.allclose(x1.numpy(), x3.numpy())
    assert x1.numpy().min() >= 0.0 and x1.numpy().max() <= 1.0
    # The jitter is (x - mean) * c + mean + b for one (c, b) per image.
    unclipped = augment(image, mask, tf.constant([1, 2]), **dict(options, clip=None))[0].numpy()
    inside = (x1.numpy() > 0.0) & (x1.numpy() < 1.0)
    np.testing.assert_array_equal(x1.numpy()[inside], unclipped[inside])
    c, b = np.polyfit(image.ravel() - image.mean(), unclipped.ravel() - image.mean(), 1)
    assert 0.8 <= c <= 1.2 and abs(b) <= 0.2 and c != 1.0
    np.testing.assert_allclose(unclipped, (image - image.mean()) * c + image.mean() + b, atol=1e-6)


# ---------------------------------------------------------------------- make_dataset
def test_synthetic_pipeline_shapes_and_determinism():
    config = small((32, 32, 3))
    kwargs = dict(batch_size=3, augment=True, seed=5, num_examples=6)
    ds = make_dataset("synthetic", config, **kwargs)
    epoch1, epoch2 = batches(ds), batches(ds)
    assert [x.shape for x, _ in epoch1] == [(3, 32, 32, 3)] * 2
    assert all(x.dtype == np.float32 and y.dtype == np.int32 and y.shape == (3, 32, 32) for x, y in epoch1)
    assert all(x.min() >= 0.0 and x.max() <= 1.0 for x, _ in epoch1)
    # A fresh pipeline with the same seed replays the same epochs...
    again = make_dataset("synthetic", config, **kwargs)
    for (a, b), (c, d) in zip(epoch1 + epoch2, batches(again) + batches(again)):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    # ...while the second epoch and another seed differ.
    assert not np.array_equal(epoch1[0][0], epoch2[0][0])
    other = batches(make_dataset("synthetic", config, **dict(kwargs, seed=6)))
    assert not np.array_equal(epoch1[0][0], other[0][0])
    # A different split is a different stream of examples.
    test = batches(make_dataset("synthetic", config, split="test", shuffle=False, num_examples=3, batch_size=3))
    train = batches(make_dataset("synthetic", config, shuffle=False, num_examples=3, batch_size=3))
    assert not np.array_equal(test[0][0], train[0][0])


def test_synthetic_choice_follows_the_config():
    (x, y), = batches(make_dataset("synthetic", small((16, 16, 16, 1), num_classes=3), num_examples=2))
    assert x.shape == (2, 16, 16, 16, 1) and set(np.unique(y)) <= {0, 1, 2}
    (x, y), = batches(make_dataset("synthetic:glands", small((16, 16, 1)), num_examples=2))
    assert x.shape == (2, 16, 16, 1)  # RGB glands converted to grayscale
    with pytest.raises(ValueError, match=r"3 classes .* config.num_classes is 2"):
        make_dataset("synthetic:echo", small((16, 16, 1), num_classes=2))


def test_tf_dataset_source_with_dict_elements():
    images = np.random.default_rng(0).uniform(size=(4, 20, 20, 1)).astype(np.float32)
    masks = np.stack([blocks((20, 20), seed=i) for i in range(4)])
    ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": masks})
    out = batches(make_dataset(ds, small((16, 16, 1), num_classes=3), batch_size=4, shuffle=False))
    (x, y), = out
    assert x.shape == (4, 16, 16, 1) and y.shape == (4, 16, 16)
    np.testing.assert_array_equal(y[0], resize(masks[0][..., None], (16, 16), "nearest")[..., 0])
    with pytest.raises(ValueError, match=r"keys \['x'\]"):
        make_dataset(tf.data.Dataset.from_tensor_slices({"x": images}), small((16, 16, 1)))


def test_glas_pipeline_and_default_records_folder(shared_data, tmp_path):
    raw = writable_copy(shared_data / "glas_sample", tmp_path / "glas")
    config = small((64, 64, 3))
    ds = make_dataset("glas", config, data_dir=str(raw), batch_size=2, augment=True)
    out = batches(ds)
    assert [x.shape for x, _ in out] == [(2, 64, 64, 3), (2, 64, 64, 3), (1, 64, 64, 3)]
    labels = np.concatenate([y.ravel() for _, y in out])
    assert set(np.unique(labels)) == {0, 1}
    # Records went to <data_dir>/.tfds; a second pipeline reads them without the raw data.
    assert (raw / ".tfds" / "glas" / "1.0.0" / "dataset_info.json").is_file()
    shutil.rmtree(raw / "Image")
    ds = make_dataset("glas", config, tfds_dir=str(raw / ".tfds"), shuffle=False, batch_size=5)
    assert batches(ds)[0][0].shape == (5, 64, 64, 3)
    with pytest.raises(ValueError, match=r"2D images .* config.image_shape .* is 3D"):
        make_dataset("glas", small((16, 16, 16, 1)), tfds_dir=str(raw / ".tfds"))
    with pytest.raises(ValueError, match=r"not prepared .* pass data_dir="):
        make_dataset("glas", config, tfds_dir=str(tmp_path / "empty"))


def test_read_only_raw_folder_needs_tfds_dir(shared_data, tmp_path):
    raw = writable_copy(shared_data / "glas_sample", tmp_path / "glas")
    raw.chmod(0o555)  # refused even when running as root
    try:
        with pytest.raises(ValueError, match=r"glas.* is read-only; pass tfds_dir="):
            make_dataset("glas", small((32, 32, 3)), data_dir=str(raw))
        assert not (raw / ".tfds").exists()
        ds = make_dataset("glas", small((32, 32, 3)), data_dir=str(raw), tfds_dir=str(tmp_path / "rec"))
        assert sum(int(x.shape[0]) for x, _ in ds) == 5
    finally:
        raw.chmod(0o755)


# Each process imports everything, then waits for `go` so that both builds run
# at the same moment; without the build lock the second one fails renaming its
# records over the first one's.
_CONCURRENT_BUILD = textwrap.dedent("""
    import os, sys, time
    from ldseg_tf.data.pipeline import load_builder, register_builders
    register_builders()
    raw, rec, ready, go = sys.argv[1:]
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
    builder = load_builder("glas", data_dir=raw, tfds_dir=rec)
    print(builder.info.splits["train"].num_examples)
""")


def test_two_processes_building_the_same_dataset_take_turns(shared_data, tmp_path):
    raw = writable_copy(shared_data / "glas_sample", tmp_path / "glas")
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", _CONCURRENT_BUILD, str(raw),
                               str(tmp_path / "rec"), str(r), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in ready]
    deadline = time.monotonic() + 300
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        assert out.split()[-1] == "5"
    assert not list((tmp_path / "rec" / "glas").glob("incomplete*"))


def test_3d_tfds_pipeline_with_augmentation(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(1, 4):
        for sub, name, array in (
            ("Image", f"Case{i}", rng.integers(0, 255, (12, 10, 14)).astype(np.int16)),
            ("Label", f"Case{i}_label", blocks((12, 10, 14), seed=i).astype(np.uint8)),
        ):
            (tmp_path / "raw" / sub).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(array, np.eye(4)), str(tmp_path / "raw" / sub / f"{name}.nii.gz"))
    config = small((8, 8, 16, 1), num_classes=3)
    ds = make_dataset("knee", config, data_dir=str(tmp_path / "raw"), augment=True, batch_size=2)
    (x, y), = batches(ds)  # 3 cases: 1 train
    assert x.shape == (1, 8, 8, 16, 1) and y.shape == (1, 8, 8, 16)
    assert set(np.unique(y)) <= {0, 1, 2}
    val = batches(make_dataset("knee", config, "validation", tfds_dir=str(tmp_path / "raw" / ".tfds")))
    assert val[0][0].shape == (1, 8, 8, 16, 1)


# ---------------------------------------------------------------------- write-back
def test_predictions_are_written_back_in_the_original_geometry(shared_data, tmp_path):
    source = str(shared_data / "knee_sample" / "Label" / "Case3_label.nii.gz")
    labels, meta = read_image(source)
    config = small((64, 32, 64, 1), num_classes=3)
    _, prediction = preprocess(labels.astype(np.float32), labels, config)  # a perfect "model"
    restored = restore_geometry(prediction, meta)
    assert restored.shape == (240, 104, 160)
    out = str(tmp_path / "Case3_pred.nii.gz")
    write_mask(out, restored, meta)
    written = nib.load(out)
    original = nib.load(source)
    assert written.shape == original.shape
    np.testing.assert_allclose(written.affine, original.affine)
    back = np.asanyarray(written.dataobj)
    assert set(np.unique(back)) == {0, 1, 2}
    assert np.mean(back == labels) > 0.97

    # A 2D slice stored as X x Y x 1 gets its singleton axis back.
    assert restore_geometry(np.ones((4, 4), np.int32), (10, 6, 1)).shape == (10, 6, 1)
    with pytest.raises(ValueError, match="cannot restore"):
        restore_geometry(np.ones((4, 4)), (10, 6, 3))


def test_2d_prediction_round_trip_png(shared_data, tmp_path):
    image, meta = read_image(str(shared_data / "glas_sample" / "Image" / "Case2.bmp"))
    x = preprocess(image, None, small((64, 64, 3)))
    fake = tf.cast(x[..., 0] > 0.5, tf.int32)
    restored = restore_geometry(fake, meta)
    assert restored.shape == image.shape[:2] == (453, 589)
    path = write_mask(str(tmp_path / "Case2_pred.png"), restored, meta)
    back, back_meta = read_image(path, label=True)
    np.testing.assert_array_equal(back, restored)
    assert back_meta["spatial_shape"] == meta["spatial_shape"]
