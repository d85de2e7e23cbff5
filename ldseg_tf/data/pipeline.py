"""The input pipeline: any dataset -> batched `(image float32, mask int32)` for
`LDSeg.fit`, shaped by an `LDSegConfig`.

Sources:

- a TFDS builder of `data_builders/` ("glas", "echo", "echo/camus", "knee",
  "drive", "folder", "folder/3d"), built from the raw files on first use;
- "synthetic" (the synthetic set that fits the config: 3D -> "knee", 1 channel ->
  "echo", else "glands") or "synthetic:<name>";
- an existing unbatched `tf.data.Dataset` of `(image, mask)` pairs or of dicts
  with "image" and "label" (or "mask").

Per example (`preprocess`): a missing channel axis is added; RGB -> grayscale
(ITU-R 601 luma, as `tf.image.rgb_to_grayscale`) when the config has 1 channel,
grayscale -> RGB by repetition when it has 3, anything else is a `ValueError`;
the image is resized to `config.image_shape` with (anti-aliased) bilinear
interpolation, or trilinear for volumes; the mask with nearest neighbour, so no
new label value can appear; the image is normalized on its own with
`normalize_intensity(config.normalization)` ("minmax": to [0, 1]; "zscore": zero
mean, unit variance; statistics over all voxels and channels of that image);
labels outside `[0, config.num_classes)` raise an error.

Then: `cache` (after the deterministic preprocessing), `shuffle`, `repeat`,
`augment` (random flips along every spatial axis, a small rotation, intensity
jitter; see `augment`), `batch`, `prefetch`. All randomness derives from `seed`
(stateless ops, seeded shuffle, `tf.data.Dataset.random`), so two pipelines with
the same arguments yield the same batches, and each epoch differs from the last.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import sys
import zlib
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import keras
import numpy as np
import tensorflow as tf

from ldseg_tf.data.normalization import normalize_intensity
from ldseg_tf.data.sources import BUILDER_NAMES, SOURCES
#: Prepared records go to `<data_dir>/TFDS_SUBDIR` unless `tfds_dir` is given.
#: Hidden, so that the builders' folder scans never see it.
TFDS_SUBDIR = ".tfds"
_SYNTHETIC_SIZE = 32


# ---------------------------------------------------------------------- builders
def register_builders() -> None:
    """Imports `data_builders.<name>` for every builder, which registers them
    with TFDS (so `tfds.builder(name, data_dir=...)` can also *build*).

    The repository root (the folder holding `ldseg_tf/` and `data_builders/`) is
    put on `sys.path` when `data_builders` is not importable otherwise.
    """
    try:
        importlib.import_module("data_builders")
    except ImportError:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if not os.path.isdir(os.path.join(root, "data_builders")):
            raise ImportError(
                f"data_builders/ not found next to ldseg_tf/ ({root}); prepared datasets "
                f"can still be read with tfds.builder(name, data_dir=...)."
            ) from None
        sys.path.append(root)
    for name in BUILDER_NAMES:
        importlib.import_module(f"data_builders.{name}")


def load_builder(name: str, *, data_dir: Optional[str] = None, tfds_dir: Optional[str] = None):
    """Returns the prepared TFDS builder `name`, building it first if needed.

    Args:
        name: "glas", "echo" (= "echo/iowa"), "echo/camus", "knee", "drive",
            "folder" (= "folder/2d") or "folder/3d"; any TFDS name works for
            reading an already prepared dataset.
        data_dir: the folder with the raw files in the builder's layout (TFDS's
            `manual_dir`). Needed only when the dataset is not prepared yet.
        tfds_dir: where the prepared TFRecords live (TFDS's `data_dir`).
            Default: `<data_dir>/.tfds`, or TFDS's default (`~/tensorflow_datasets`,
            `$TFDS_DATA_DIR`) when `data_dir` is None.

    Returns:
        A `tfds.core.DatasetBuilder` whose `info.splits` are ready to read.

    Raises:
        ValueError: the dataset is not prepared and no `data_dir` was given, or
            the raw data is invalid (the message names the file).
    """
    import tensorflow_datasets as tfds

    base = name.split("/")[0].split(":")[0]
    if base in BUILDER_NAMES:
        register_builders()
    if tfds_dir is None and data_dir is not None:
        tfds_dir = os.path.join(os.fspath(data_dir), TFDS_SUBDIR)
    builder = tfds.builder(name, data_dir=tfds_dir)
    if builder.is_prepared():
        return builder
    if data_dir is None:
        raise ValueError(
            f"dataset {name!r} is not prepared in {builder.data_dir}; pass data_dir= (the raw "
            f"files, see data_builders/{base}) to build it."
        )
    if not os.path.isdir(data_dir):
        raise ValueError(f"{data_dir}: folder not found (raw data for {name!r}).")
    target = _existing_ancestor(os.path.dirname(os.path.abspath(builder.data_dir)))
    if not is_writable(target):
        raise ValueError(
            f"cannot write the prepared {name!r} records to {builder.data_dir}: {target} is "
            f"read-only; pass tfds_dir= a writable folder."
        )
    with _build_lock(os.fspath(builder.data_dir)):
        # Another process may have finished the same build while this one
        # waited for the lock: TFDS would then fail renaming its records over
        # the finished ones.
        builder = tfds.builder(name, data_dir=tfds_dir)
        if not builder.is_prepared():
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(
                    manual_dir=os.fspath(data_dir), try_download_gcs=False
                ),
            )
    return builder


@contextlib.contextmanager
def _build_lock(version_dir: str):
    """Holds an exclusive lock on `<version_dir>.lock` (an advisory `flock`,
    released when the process ends, even when killed) so that processes
    preparing the same dataset version at once (two notebooks, tuner workers,
    workers of one multi-worker job) build it one after the other. Without
    `fcntl` (Windows) it does nothing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    os.makedirs(os.path.dirname(version_dir), exist_ok=True)
    with open(version_dir.rstrip("/") + ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _existing_ancestor(path: str) -> str:
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def is_writable(path: str) -> bool:
    """Whether records can be written into the existing folder `path`."""
    # The permission bits are checked too: root passes `os.access` even on a
    # folder marked read-only (e.g. a shared copy of the raw data), and the
    # records must not land there.
    return os.access(path, os.W_OK) and bool(os.stat(path).st_mode & 0o222)


def _tfds_examples(name, split, data_dir, tfds_dir):
    """Unbatched `(image, mask)` of a TFDS split plus the builder's metadata."""
    import tensorflow_datasets as tfds

    builder = load_builder(name, data_dir=data_dir, tfds_dir=tfds_dir)
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ValueError(
            f"dataset {name!r} has features {list(features)}; the pipeline needs 'image' and "
            f"'label'."
        )
    ds = builder.as_dataset(
        split=split,
        shuffle_files=False,
        # Only decode what the model needs (not GlaS instance maps, DRIVE FOVs...).
        decoders=tfds.decode.PartialDecoding({"image": True, "label": True}),
        # We cache after preprocessing ourselves; TFDS's auto-cache would hold
        # the full-resolution images too.
        read_config=tfds.ReadConfig(try_autocache=False),
    )
    metadata = dict(builder.info.metadata or {})
    ds = ds.map(lambda ex: (ex["image"], ex["label"]), num_parallel_calls=tf.data.AUTOTUNE)
    channels = metadata.get("num_channels")
    if channels is not None and ds.element_spec[0].shape[-1] is None:
        # `folder` stores a channel count that is only known after the build.
        rank = ds.element_spec[0].shape.rank
        ds = ds.map(
            lambda x, y: (tf.ensure_shape(x, [None] * (rank - 1) + [int(channels)]), y)
        )
    return ds, metadata


def _synthetic_examples(source, config, split, seed, num_examples):
    from ldseg_tf.data import synthetic

    if source in SOURCES and SOURCES[source].synthetic:
        name = SOURCES[source].synthetic
    elif ":" in source:
        name = source.split(":", 1)[1]
    elif config.spatial_dims == 3:
        name = "knee"
    elif config.in_channels == 1:
        name = "echo"
    else:
        name = "glands"
    # Each split is its own stream of examples (train with `seed`, the others
    # offset by a hash of the split name), so train and test never coincide.
    split_seed = seed if split == "train" else seed + zlib.crc32(split.encode()) % 100_003 + 1
    n = num_examples or _SYNTHETIC_SIZE
    ds = synthetic.synthetic_dataset(name, n, config.image_shape[:-1], seed=split_seed)
    spec = synthetic.SYNTHETIC_SETS.get(name, {})
    return ds, {"num_classes": spec.get("num_classes"), "class_names": spec.get("class_names")}


def _as_pairs(ds: tf.data.Dataset) -> tf.data.Dataset:
    spec = ds.element_spec
    if isinstance(spec, Mapping):
        mask_key = "label" if "label" in spec else "mask" if "mask" in spec else None
        if "image" not in spec or mask_key is None:
            raise ValueError(
                f"dataset elements are dicts with keys {list(spec)}; expected 'image' and "
                f"'label' (or 'mask')."
            )
        return ds.map(lambda ex: (ex["image"], ex[mask_key]))
    if isinstance(spec, tuple) and len(spec) == 2:
        return ds
    raise ValueError(f"expected (image, mask) pairs or dicts; got element_spec {spec}.")


# ---------------------------------------------------------------------- the pipeline
def make_dataset(
    source: Union[str, tf.data.Dataset],
    config,
    split: str = "train",
    *,
    data_dir: Optional[str] = None,
    tfds_dir: Optional[str] = None,
    batch_size: int = 2,
    shuffle: bool = True,
    augment: bool = False,
    seed: int = 0,
    cache: Union[bool, str] = True,
    repeat: bool = False,
    num_examples: Optional[int] = None,
    drop_remainder: bool = False,
    shuffle_buffer: int = 1024,
    augment_options: Optional[Dict[str, Any]] = None,
    patch_size: Optional[Sequence[int]] = None,
    foreground_fraction: Optional[float] = None,
    full_resolution: bool = False,
) -> tf.data.Dataset:
    """Builds the training/evaluation input pipeline.

    Args:
        source: a builder name ("glas", "echo", "echo/camus", "knee", "drive",
            "folder", "folder/3d"), "synthetic" / "synthetic:<glands|echo|knee>",
            or an unbatched `tf.data.Dataset` of `(image, mask)` pairs (or dicts
            with "image" and "label"/"mask").
        config: the `LDSegConfig`; fixes output shape, channels, normalization and
            the number of classes.
        split: a TFDS split, including slices such as "train[:90%]" (GlaS:
            "train", "testA", "testB"; Echo/Knee: "train", "validation", "test";
            DRIVE: "train", "test"; folder: "train" and "test" if labelsTs/
            exists). For synthetic data, a name that selects the example stream.
        data_dir: raw data in the builder's layout (TFDS `manual_dir`); used to
            build the records the first time.
        tfds_dir: prepared records (TFDS `data_dir`); default `<data_dir>/.tfds`.
        batch_size: examples per batch.
        shuffle: shuffle examples (seeded, reshuffled every epoch).
        augment: apply `augment` to every example.
        seed: seed of shuffling and augmentation.
        cache: cache preprocessed examples in memory (True), in files with this
            prefix (a string), or not (False).
        repeat: repeat forever (then pass `steps_per_epoch` to `fit`).
        num_examples: use only the first N examples of the split (and, for
            synthetic data, generate N; default 32).
        drop_remainder: drop the last incomplete batch.
        shuffle_buffer: shuffle buffer size.
        augment_options: keyword arguments for `augment` (e.g.
            `{"max_rotation": 0.0}`).
        patch_size: train on patches: the spatial shape of random crops of the
            full-resolution (normalized, not resized) examples, which must be
            `config.image_shape[:-1]` (the model's input is the patch). See
            `ldseg_tf.data.patches`: smaller images are padded (mask
            `IGNORE_LABEL`), foreground is oversampled. The crops are drawn
            after `cache`, so every epoch sees new ones.
        foreground_fraction: share of foreground-centred patches (default
            1/3, nnU-Net's).
        full_resolution: no resizing and no cropping: full-resolution
            normalized examples, for sliding-window evaluation
            (`segment_tiled`). Examples of different sizes need
            `batch_size=1`.

    Returns:
        A `tf.data.Dataset` of `(images, masks)`: float32
        `(B, *config.image_shape)` and int32 `(B, *config.image_shape[:-1])`
        (with `full_resolution`: the examples' own spatial size).

    Raises:
        ValueError: unknown source, dimensionality or channel mismatch, a dataset
            with more classes than `config.num_classes`, missing data.
    """
    ds = _examples(source, config, split, data_dir, tfds_dir, seed, num_examples)
    # Builders and synthetic sets always yield a channel axis; a user's dataset may not.
    user_dataset = isinstance(source, tf.data.Dataset)
    _check_rank(ds.element_spec, config, source, channel_axis=not user_dataset)

    if num_examples is not None:
        ds = ds.take(num_examples)
    patches = _check_patch_size(patch_size, config)
    native = bool(patches) or full_resolution
    ds = ds.map(lambda x, y: preprocess(x, y, config, keep_size=native),
                num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if patches:
        ds = _crop_patches(ds, patches, seed, foreground_fraction)
    if augment:
        ds = _augment_examples(ds, config, seed, augment_options)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def _augment_examples(ds, config, seed, augment_options):
    options = {"clip": (0.0, 1.0) if config.normalization == "minmax" else None}
    options.update(augment_options or {})
    # One stateless seed per example: a new sequence every epoch, but the same
    # sequences for the same `seed`.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip((ds, seeds)).map(
        lambda pair, s: augment_fn(pair[0], pair[1], s, **options),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _examples(source, config, split, data_dir, tfds_dir, seed, num_examples):
    """The unbatched `(image, mask)` pairs of `source`, its classes checked
    against the config."""
    if isinstance(source, tf.data.Dataset):
        ds, metadata = _as_pairs(source), {}
    elif not isinstance(source, str):
        raise ValueError(f"source must be a dataset name or a tf.data.Dataset; got {source!r}.")
    elif source == "synthetic" or source.startswith("synthetic:"):
        ds, metadata = _synthetic_examples(source, config, split, seed, num_examples)
    else:
        ds, metadata = _tfds_examples(source, split, data_dir, tfds_dir)

    declared = metadata.get("num_classes")
    if declared is not None and declared > config.num_classes:
        names = metadata.get("class_names")
        raise ValueError(
            f"{source!r} has {declared} classes {list(names) if names else ''} but "
            f"config.num_classes is {config.num_classes}."
        )
    return ds


def _check_patch_size(patch_size, config) -> Optional[Tuple[int, ...]]:
    if patch_size is None:
        return None
    patch = tuple(int(p) for p in patch_size)
    if patch != tuple(config.image_shape[:-1]):
        raise ValueError(
            f"patch_size {patch} must be the model's input size config.image_shape[:-1] = "
            f"{tuple(config.image_shape[:-1])}: the model is trained on the patches.")
    return patch


def _crop_patches(ds, patch, seed, foreground_fraction):
    """One random patch per example (`ldseg_tf.data.patches.random_patch`), from
    a stateless seed per example (new crops every epoch, the same for `seed`)."""
    from ldseg_tf.data.patches import DEFAULT_FOREGROUND_FRACTION, random_patch

    fraction = DEFAULT_FOREGROUND_FRACTION if foreground_fraction is None else foreground_fraction
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"foreground_fraction must be in [0, 1]; got {fraction}.")
    # Offset from the augmentation's seed stream, so crops and flips are independent.
    seeds = tf.data.Dataset.random(seed=seed + 7919, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip((ds, seeds)).map(
        lambda pair, s: random_patch(pair[0], pair[1], patch, s, fraction),
        num_parallel_calls=tf.data.AUTOTUNE)


def _check_rank(spec, config, source, channel_axis: bool) -> None:
    dims = config.spatial_dims
    rank = spec[0].shape.rank
    allowed = (dims + 1,) if channel_axis else (dims, dims + 1)
    if rank is not None and rank not in allowed:
        kind = {3: "2D images (H, W, C)", 4: "3D volumes (D, H, W, C)"}.get(rank, f"rank {rank}")
        raise ValueError(
            f"{source!r} yields {kind} but config.image_shape {config.image_shape} is "
            f"{dims}D."
        )


# ---------------------------------------------------------------------- per example
def resize(x, size: Sequence[int], method: str = "bilinear", antialias: bool = False):
    """Resizes the spatial axes of one example `(H, W, C)` / `(D, H, W, C)` or of
    a batch `(B, H, W, C)` / `(B, D, H, W, C)` to `size` (2 or 3 ints or int
    scalar tensors). The one resize of training, `preprocess`, `predict` and the
    exported graph (`segment_any_size`).

    3D resizing is separable: (H, W) first with D as a batch axis, then (D, W)
    with H as a batch axis, which for "bilinear" is trilinear interpolation and
    for "nearest" is nearest-neighbour (the W pass is an identity). "nearest"
    keeps the dtype; "bilinear" returns float32.
    """
    size = list(size)
    x = tf.convert_to_tensor(x)
    if len(size) == 2:
        return tf.image.resize(x, size, method=method, antialias=antialias)
    batched = x.shape.rank == 5
    if not batched:
        x = x[None]
    d, h, w = size
    shape = tf.shape(x)
    b, depth, c = shape[0], shape[1], shape[4]
    x = tf.reshape(x, tf.concat([[b * depth], shape[2:]], axis=0))
    x = tf.image.resize(x, (h, w), method=method, antialias=antialias)
    x = tf.transpose(tf.reshape(x, [b, depth, h, w, c]), [0, 2, 1, 3, 4])
    x = tf.image.resize(tf.reshape(x, [b * h, depth, w, c]), (d, w), method=method,
                        antialias=antialias)
    x = tf.transpose(tf.reshape(x, [b, h, d, w, c]), [0, 2, 1, 3, 4])
    return x if batched else x[0]


def resize_image(x, size: Sequence[int]) -> tf.Tensor:
    """The image resize of the whole library: anti-aliased (bi/trilinear)
    `resize`, float32. Training data, `predict` and the served graph all go
    through it, so a down-scaled image reaches the model the same way in each."""
    return resize(tf.cast(x, tf.float32), size, "bilinear", antialias=True)


def _match_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    have = image.shape[-1]
    if have == channels:
        return image
    if have == 3 and channels == 1:
        return tf.image.rgb_to_grayscale(image)
    if have == 1 and channels == 3:
        return tf.repeat(image, 3, axis=-1)
    raise ValueError(
        f"the image has {have} channel(s) but config.image_shape expects {channels}; only "
        f"RGB -> grayscale (3 -> 1) and grayscale -> RGB (1 -> 3) are converted."
    )


def preprocess(image, mask=None, config=None, keep_size: bool = False):
    """Brings one example to the model's input: shape, channels, intensities.

    Args:
        image: `(H, W)`, `(H, W, C)`, `(D, H, W)` or `(D, H, W, C)`, any dtype
            (numpy or tensor; the channel count must be known statically).
        mask: integer labels with the image's spatial shape (a trailing axis of
            size 1 is dropped), or None.
        config: the `LDSegConfig`.
        keep_size: keep the image's own spatial size instead of resizing to
            `config.image_shape` (patch training, sliding-window inference).

    Returns:
        float32 image `config.image_shape`, and when `mask` is given the int32
        mask `config.image_shape[:-1]` (resized with nearest neighbour); with
        `keep_size`, the input's spatial size.

    Raises:
        ValueError: wrong rank or channel count. Label values outside
            `[0, config.num_classes)` or an image/mask size mismatch raise
            `tf.errors.InvalidArgumentError` (at iteration time in a dataset).
    """
    if config is None:
        raise ValueError("preprocess needs an LDSegConfig.")
    dims = config.spatial_dims
    spatial = config.image_shape[:-1]
    image = tf.convert_to_tensor(image)
    if image.shape.rank == dims:
        image = image[..., None]
    if image.shape.rank != dims + 1:
        raise ValueError(
            f"expected a {dims}D image of rank {dims} or {dims + 1} for config.image_shape "
            f"{config.image_shape}; got shape {image.shape}."
        )
    in_shape = tf.shape(image)[:dims]
    image = _match_channels(tf.cast(image, tf.float32), config.in_channels)
    if keep_size:
        spatial = [None] * dims
    else:
        image = resize_image(image, spatial)
    image = normalize_intensity(image, config.normalization, spatial_dims=dims)
    image = tf.ensure_shape(image, list(spatial) + [config.in_channels])
    if mask is None:
        return image

    mask = tf.convert_to_tensor(mask)
    if mask.shape.rank == dims + 1 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.shape.rank != dims:
        raise ValueError(f"expected a {dims}D mask; got shape {mask.shape}.")
    if mask.dtype.is_floating:
        mask = tf.round(mask)
    mask = tf.cast(mask, tf.int32)
    checks = [
        tf.debugging.assert_equal(
            tf.shape(mask), in_shape,
            message="mask and image have different spatial shapes",
        ),
        tf.debugging.assert_non_negative(mask, message="negative label values"),
        tf.debugging.assert_less(
            mask, config.num_classes,
            message=f"label values must be < config.num_classes = {config.num_classes}",
        ),
    ]
    with tf.control_dependencies(checks):
        mask = tf.identity(mask)
    if not keep_size:
        mask = resize(mask[..., None], spatial, "nearest")[..., 0]
    return image, tf.ensure_shape(mask, spatial)


def _rotate(x: tf.Tensor, angle: tf.Tensor, interpolation: str) -> tf.Tensor:
    """Rotates `(N, H, W, C)` float images by `angle` radians about their centre,
    filling with zeros."""
    shape = tf.shape(x)
    h = tf.cast(shape[1], tf.float32)
    w = tf.cast(shape[2], tf.float32)
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Maps output to input pixel coordinates (as tfa.image.rotate / keras
    # RandomRotation build it).
    x_offset = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2.0
    y_offset = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2.0
    transform = tf.stack([cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0])[None]
    return keras.ops.image.affine_transform(
        x, transform, interpolation=interpolation, fill_mode="constant", fill_value=0.0,
        data_format="channels_last")


def augment(
    image,
    mask,
    seed,
    *,
    flip: bool = True,
    max_rotation: float = 10.0,
    brightness: float = 0.1,
    contrast: float = 0.1,
    clip: Optional[Tuple[float, float]] = None,
):
    """Random geometric and intensity augmentation of one preprocessed example.

    The same random flips and rotation move the image (bilinear) and the mask
    (nearest neighbour, so labels stay labels); intensity jitter touches the image
    only. Everything is drawn with stateless ops from `seed`, so the result is a
    pure function of `(image, mask, seed)`.

    - flips: along each spatial axis with probability 1/2 (2D: H, W; 3D: D, H, W);
    - rotation: by an angle uniform in `[-max_rotation, max_rotation]` degrees in
      the (H, W) plane; for volumes every D-slice turns by the same angle (one
      in-plane rotation). Uncovered corners become 0 in the image (black after
      "minmax", the mean after "zscore") and background in the mask;
    - intensity: `(x - mean) * c + mean + b` with `c` uniform in
      `[1 - contrast, 1 + contrast]` and `b` in `[-brightness, brightness]`
      (on the normalized scale), clipped to `clip` if given.

    Args:
        image: float32 `(H, W, C)` or `(D, H, W, C)`.
        mask: integer `(H, W)` or `(D, H, W)`.
        seed: int32/int64 tensor of shape (2,).
        flip, max_rotation, brightness, contrast, clip: see above; 0/False
            disables a transform.

    Returns:
        `(image, mask)` with the input shapes and dtypes.
    """
    image = tf.convert_to_tensor(image)
    mask = tf.convert_to_tensor(mask)
    mask_dtype = mask.dtype
    dims = image.shape.rank - 1
    seed = tf.convert_to_tensor(seed)

    def sub_seed(i):
        return tf.random.experimental.stateless_fold_in(seed, i)

    if flip:
        for axis in range(dims):
            do = tf.random.stateless_uniform([], sub_seed(axis)) < 0.5
            image, mask = tf.cond(
                do,
                lambda: (tf.reverse(image, [axis]), tf.reverse(mask, [axis])),
                lambda: (image, mask),
            )
    if max_rotation:
        limit = math.radians(max_rotation)
        angle = tf.random.stateless_uniform([], sub_seed(10), -limit, limit)
        batch_image = image[None] if dims == 2 else image  # D is the batch for volumes
        batch_mask = tf.cast(mask[..., None], tf.float32)
        batch_mask = batch_mask[None] if dims == 2 else batch_mask
        rotated = _rotate(batch_image, angle, "bilinear")
        rotated_mask = _rotate(batch_mask, angle, "nearest")
        image = rotated[0] if dims == 2 else rotated
        mask = tf.cast(rotated_mask[0, ..., 0] if dims == 2 else rotated_mask[..., 0], mask_dtype)
    if contrast or brightness:
        c = tf.random.stateless_uniform([], sub_seed(20), 1.0 - contrast, 1.0 + contrast)
        b = tf.random.stateless_uniform([], sub_seed(21), -brightness, brightness)
        # A CI run once saw two pipelines with the same seed differ by 1 ulp over
        # a whole image with `(x - mean) * c + mean + b` (cause not pinned down:
        # a summation order or a graph rewrite). So the mean is summed in float64
        # (then exact for 8-bit-like data, whatever the order) and the jitter is
        # one multiply and one add with a scalar offset, nothing to re-associate.
        mean = tf.cast(tf.reduce_mean(tf.cast(image, tf.float64)), image.dtype)
        image = image * c + (b + mean * (1.0 - c))
    if clip is not None:
        image = tf.clip_by_value(image, clip[0], clip[1])
    return image, mask


#: `make_dataset` has an argument named `augment`.
augment_fn = augment


# ---------------------------------------------------------------------- predictions
def restore_geometry(labels, meta: Union[Mapping[str, Any], Sequence[int]]) -> np.ndarray:
    """Resizes a predicted label map back to the original image with nearest
    neighbour, ready for `ldseg_tf.data.io.write_mask`.

    Args:
        labels: integer `config.image_shape[:-1]` prediction (numpy or tensor).
        meta: the `meta` of `read_image` (its `spatial_shape` is used) or a shape.
            A target with extra singleton axes (a 2D slice stored as X x Y x 1)
            gets them back.

    Returns:
        numpy array with the original spatial shape and the dtype of `labels`.
    """
    target = tuple(int(s) for s in (meta["spatial_shape"] if isinstance(meta, Mapping) else meta))
    labels = np.asarray(labels)
    core = target
    if labels.ndim < len(target):
        extra = target[labels.ndim:]
        if any(s != 1 for s in extra):
            raise ValueError(f"cannot restore a {labels.ndim}D label map to shape {target}.")
        core = target[: labels.ndim]
    elif labels.ndim > len(target):
        raise ValueError(f"cannot restore a label map of shape {labels.shape} to shape {target}.")
    if labels.shape != core:
        resized = resize(tf.convert_to_tensor(labels.astype(np.int32))[..., None], core, "nearest")
        labels = resized.numpy()[..., 0].astype(labels.dtype)
    return labels.reshape(target)
