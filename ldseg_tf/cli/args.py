"""Argument groups shared by the `ldseg` verbs, and what they turn into: a
config (`build_config`), datasets (`make_data`), a loaded model (`load_model`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Tuple

from ldseg_tf.config import PRESETS, parse_overrides
from ldseg_tf.data.sources import SOURCE_NAMES, default_splits
from ldseg_tf.errors import UserError

#: The config fields that have a flag of their own (`--gamma`, ...).
CONFIG_FLAGS = ("image_shape", "num_classes", "gamma", "lambda_", "timesteps", "learning_rate")


def parse_shape(text: str) -> Tuple[int, ...]:
    """"64,64,3" or "64x64" -> (64, 64, 3) / (64, 64), for argparse `type=`."""
    try:
        return tuple(int(s) for s in text.replace("x", ",").split(",") if s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape like 64,64,3; got {text!r}")


def positive(text: str) -> int:
    """An integer >= 1, for argparse `type=` (`--epochs`, `--steps`, ...)."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


_SPLIT_ROLES = {"train": "training", "val": "validation", "test": "test"}


def add_data_arguments(p, splits: Tuple[str, ...] = ("train", "val"), batch_size=True,
                       tfds_help="where prepared TFRecords live (default DATA_DIR/.tfds)"):
    """--data, --data-dir, --tfds-dir, one `--<name>-split` per entry of `splits`
    ("train", "val", "test"), and --num-examples, --batch-size."""
    p.add_argument("--data", default="synthetic", choices=SOURCE_NAMES,
                   help="dataset: a TFDS builder of data_builders/ or a built-in synthetic set")
    p.add_argument("--data-dir", help="raw data in the builder's on-disk layout (manual_dir)")
    p.add_argument("--tfds-dir", help=tfds_help)
    for name in splits:
        p.add_argument(f"--{name}-split", help=f"default: the data's {_SPLIT_ROLES[name]} split "
                                               f"(see ldseg_tf.data.sources)")
    if batch_size:
        p.add_argument("--num-examples", type=positive,
                       help="use only the first N examples of a split")
        p.add_argument("--batch-size", type=positive, default=4)


def add_overrides_argument(p):
    """`--set KEY=VALUE` (repeatable): any LDSegConfig field, read by `build_config`."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any LDSegConfig field, e.g. --set prediction=x0 --set "
                        "denoiser_widths=[16,32]; applied last (repeatable)")


def add_config_arguments(p, loss_weights=True):
    """--config, --preset, the shape/class/step flags and --set."""
    p.add_argument("--config", help="LDSegConfig JSON file")
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a named preset")
    p.add_argument("--image-shape", type=parse_shape,
                   help="model input, e.g. 256,256,3 or 64,64,128,1")
    p.add_argument("--num-classes", type=int, help="classes including background")
    if loss_weights:
        p.add_argument("--gamma", type=float, help="Dice loss weight (paper: 2)")
        p.add_argument("--lambda", dest="lambda_", type=float, help="denoiser MSE weight (paper: 1)")
    p.add_argument("--timesteps", type=int, help="diffusion steps T (paper: 1000)")
    p.add_argument("--learning-rate", type=float)
    add_overrides_argument(p)


def build_config(args):
    """`LDSegConfig` from --config / --preset / flags / --set / the data's defaults;
    an invalid field or value ends the command with one line."""
    from ldseg_tf.config import LDSegConfig, build_config as config_for_source

    try:
        overrides = {k: getattr(args, k) for k in CONFIG_FLAGS if getattr(args, k, None) is not None}
        overrides.update(parse_overrides(getattr(args, "overrides", None) or []))
        base = LDSegConfig.from_json(args.config) if getattr(args, "config", None) else None
        return config_for_source(getattr(args, "data", "synthetic"), getattr(args, "preset", None),
                                 overrides, base=base)
    except ValueError as err:
        raise UserError.wrap(err, getattr(args, "config", None) or "configuration") from err


def splits(args) -> Tuple[str, str, str]:
    """(train, validation, test) split names: the flags given, else the data's defaults."""
    train, val, test = default_splits(args.data)
    return (getattr(args, "train_split", None) or train, getattr(args, "val_split", None) or val,
            getattr(args, "test_split", None) or test)


def make_data(args, config, split, training, num_examples=None, full_resolution=False):
    """The batched `(image, mask)` dataset of `split` from the data flags.

    A model trained on patches (`config.inference == "tiles"`) gets random
    patches; `full_resolution` gives the whole normalized images one by one
    instead (sliding-window evaluation)."""
    from ldseg_tf.data import make_dataset

    patches = config.inference == "tiles" and not full_resolution
    try:
        return make_dataset(args.data, config, split, data_dir=args.data_dir,
                            tfds_dir=args.tfds_dir,
                            batch_size=1 if full_resolution else args.batch_size,
                            shuffle=training, seed=args.seed,
                            augment=training and getattr(args, "augment", True),
                            num_examples=num_examples or args.num_examples,
                            patch_size=config.image_shape[:-1] if patches else None,
                            full_resolution=full_resolution)
    except (ValueError, OSError) as err:
        # Builders and the pipeline name the bad file; otherwise name the data.
        raise UserError.wrap(err, args.data_dir or f"--data {args.data}") from err


@contextlib.contextmanager
def reading_data(args):
    """Turns a corrupt prepared record met while iterating the data (TensorFlow's
    `DataLossError`) into a `UserError` naming the data's folder."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.DataLossError as err:
        where = args.tfds_dir or args.data_dir or f"--data {args.data}"
        raise UserError(where, "readable prepared records", f"corrupt data ({err.message})",
                        "Rebuild them (delete the prepared folder).") from err


def overlap_fraction(text: str) -> float:
    """argparse type of --overlap: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1); got {text!r}")
    return value


def add_tile_arguments(p):
    """--tiles, --overlap: sliding-window inference at full resolution."""
    p.add_argument("--tiles", action="store_true",
                   help="segment at full resolution with a sliding window of the model's input "
                        "(automatic for a model trained with --patch-size)")
    p.add_argument("--overlap", type=overlap_fraction,
                   help="tile overlap in [0, 1) (default: the config's tile_overlap, 0.5)")


def use_tiles(args, config) -> bool:
    """Whether to segment with `segment_tiled`: asked for, or the model was
    trained on patches."""
    return bool(getattr(args, "tiles", False)) or config.inference == "tiles"


def with_patch_size(config, patch_size):
    """`config` for training on patches of `patch_size` (spatial, from
    --patch-size): the patch is the model's input, and inference tiles."""
    from ldseg_tf.config import LDSegConfig

    if not patch_size:
        return config
    try:
        return LDSegConfig.from_dict({**config.to_dict(), "inference": "tiles",
                                      "image_shape": list(patch_size) + [config.in_channels]})
    except ValueError as err:
        raise UserError("--patch-size", "a patch the model can take", str(patch_size),
                        str(err)) from err


def load_model(path):
    """The Keras model saved at `path`, or one line saying why it cannot be loaded."""
    from ldseg_tf.models.loading import load_model as load

    return load(path)
