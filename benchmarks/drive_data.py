"""DRIVE arrays for the latent-capacity benchmarks: images, vessel masks and
field-of-view masks at a model's input size, with the fixed 15/5 split of the
20 training images (the last quarter is validation, as in `ldseg reproduce`).

Not part of the library: the benchmarks need the FOV next to every example,
which `make_dataset` (pairs of image and mask) does not carry.
"""

import os
import tempfile

import numpy as np
import tensorflow as tf

from ldseg_tf.data.pipeline import augment as library_augment
from ldseg_tf.data.pipeline import load_builder, preprocess, resize
from ldseg_tf.metrics import per_image_dice

def fold_splits(fold):
    """TFDS split strings `(train, validation)` of fold 0..3: validation is the
    fold-th quarter of the 20 images, training the other three. Fold 3 (the
    last quarter validates, as in `ldseg reproduce`) is `SPLITS`."""
    if fold not in range(4):
        raise SystemExit(f"--fold must be 0, 1, 2 or 3; got {fold}.")
    lo, hi = 25 * fold, 25 * (fold + 1)
    train = "+".join(part for part, keep in ((f"train[:{lo}%]", lo > 0),
                                             (f"train[{hi}%:]", hi < 100)) if keep)
    return train, f"train[{lo}%:{hi}%]"


#: The default split: images 16-20 validate.
SPLITS = dict(zip(("train", "validation"), fold_splits(3)))
DEFAULT_DRIVE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                             "data", "drive")


def drive_arrays(config, split, data_dir=DEFAULT_DRIVE, tfds_dir=None):
    """`(images float32 (N, *image_shape), masks int32 (N, H, W), fovs bool (N, H, W))`.

    Images and masks go through the library's `preprocess` (bilinear image,
    nearest mask); the FOV is resized with nearest neighbour too.
    """
    if not os.path.isdir(data_dir):
        raise SystemExit(f"DRIVE not found at {data_dir} (expected training/images, "
                         f"training/1st_manual, training/mask); pass --drive.")
    tfds_dir = tfds_dir or os.path.join(tempfile.gettempdir(), "ldseg_drive_tfds")
    builder = load_builder("drive", data_dir=data_dir, tfds_dir=tfds_dir)
    images, masks, fovs = [], [], []
    for ex in builder.as_dataset(split=SPLITS.get(split, split)):
        image, mask = preprocess(ex["image"], ex["label"], config)
        fov = resize(tf.cast(ex["fov"], tf.int32), config.image_shape[:-1], "nearest")[..., 0]
        images.append(image.numpy())
        masks.append(mask.numpy())
        fovs.append(fov.numpy() > 0)
    return np.stack(images), np.stack(masks), np.stack(fovs)


def load_split_arrays(config, drive_dir=DEFAULT_DRIVE, fold=3):
    """`(train, validation)`: `drive_arrays` of the 15 training and the 5
    validation images of `fold` (see `fold_splits`) at `config`'s input size."""
    train, validation = fold_splits(fold)
    return drive_arrays(config, train, drive_dir), drive_arrays(config, validation, drive_dir)


def dice_in_fov(pred, truth, fov):
    """Vessel DSC per image, counting only pixels inside the field of view."""
    return per_image_dice(pred, truth, label=1, mask=fov)


#: `train_dataset`'s augmentations: "none", "turns" (flips and quarter turns,
#: the earlier reports) or "full" (those, then the library's `augment` without
#: its flips: a rotation of up to 10 degrees and brightness/contrast jitter of 0.1).
AUGMENTATIONS = ("none", "turns", "full")


def train_dataset(images, masks, batch_size, seed=0, augment="turns"):
    """Repeating, shuffled, augmented batches of `(image, mask)`; `augment`
    is one of `AUGMENTATIONS`."""
    if augment not in AUGMENTATIONS:
        raise SystemExit(f"augment must be one of {AUGMENTATIONS}; got {augment!r}.")
    ds = tf.data.Dataset.from_tensor_slices((images, masks)).cache()
    ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).repeat()
    if augment != "none":
        def augment_pair(x, y, s):
            # Flips and 90-degree turns move vessels without interpolating them.
            k = tf.random.stateless_uniform([], s, 0, 4, tf.int32)
            x, y = tf.image.rot90(x, k), tf.image.rot90(y[..., None], k)[..., 0]
            f = tf.random.stateless_uniform([], s + 1, 0, 2, tf.int32)
            x = tf.cond(f > 0, lambda: tf.image.flip_left_right(x), lambda: x)
            y = tf.cond(f > 0, lambda: tf.image.flip_left_right(y[..., None])[..., 0],
                        lambda: y)
            if augment == "full":
                # Images are min-max normalized: keep the jitter inside [0, 1].
                x, y = library_augment(x, y, s + 2, flip=False, clip=(0.0, 1.0))
            return x, y

        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(lambda p, s: augment_pair(p[0], p[1], s),
                                                   num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
