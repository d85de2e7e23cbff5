"""The data sources `make_dataset`, the CLI, tuning and `reproduce` know by name.

One entry per source: where its examples come from (a TFDS builder of
`data_builders/` or a synthetic set), its classes, the model input that trains in
reasonable time on a CPU (override with `--image-shape`/`--config`; the paper used
512x512, 512x768 and 128x128x256) and its default train / validation / test
splits. Sources whose release has only a ``train`` split (GlaS's demo layout,
DRIVE's training images, a folder without `labelsTs/`) hold out its last
quarter: ``train[:75%]`` to train on, ``train[75%:]`` to validate *and* test.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from ldseg_tf.data.synthetic import SYNTHETIC_SETS

#: (train, validation, test) of a source with its own validation and test splits.
OWN_SPLITS = ("train", "validation", "test")
#: (train, validation, test) of a source with one `train` split: its last quarter is held out.
HELD_OUT_QUARTER = ("train[:75%]", "train[75%:]", "train[75%:]")


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A named source of `(image, mask)` examples.

    Attributes:
        name: what `--data` and `make_dataset` accept ("glas", "synthetic:echo", ...).
        builder: the TFDS builder name (with its config, e.g. "echo/camus"), or
            None for synthetic data.
        synthetic: the synthetic set (see `SYNTHETIC_SETS`), "" for the set that
            fits the config, None for builders.
        num_classes: classes including background, or None when only the data
            knows (a folder).
        class_names: names of the classes, background first, or None.
        image_shape: default model input `(H, W, C)` / `(D, H, W, C)`, or None.
        splits: default (train, validation, test) split names.
    """

    name: str
    builder: Optional[str] = None
    synthetic: Optional[str] = None
    num_classes: Optional[int] = None
    class_names: Optional[Tuple[str, ...]] = None
    image_shape: Optional[Tuple[int, ...]] = None
    splits: Tuple[str, str, str] = HELD_OUT_QUARTER

    @property
    def is_synthetic(self) -> bool:
        return self.synthetic is not None

    @property
    def base(self) -> str:
        """The builder without its config ("echo/camus" -> "echo"), or "synthetic"."""
        return "synthetic" if self.is_synthetic else self.builder.split("/")[0]


def _synthetic(name: str, side: int) -> DataSource:
    spec = SYNTHETIC_SETS[name]
    shape = (side,) * spec["spatial_dims"] + (spec["channels"],)
    return DataSource(f"synthetic:{name}", synthetic=name, num_classes=spec["num_classes"],
                      class_names=spec["class_names"], image_shape=shape, splits=OWN_SPLITS)


def _builder(name: str, num_classes=None, class_names=None, image_shape=None,
             splits=HELD_OUT_QUARTER) -> DataSource:
    return DataSource(name, builder=name, num_classes=num_classes, class_names=class_names,
                      image_shape=image_shape, splits=splits)


_VOLUME_SIDE = 32  # synthetic knee volumes; 2D synthetic images are 64x64
SOURCES = {s.name: s for s in (
    # Plain "synthetic" picks the set that fits the config (3D: knee, 1 channel: echo).
    DataSource("synthetic", synthetic="", num_classes=2, image_shape=(64, 64, 3),
               splits=OWN_SPLITS),
    *(_synthetic(name, _VOLUME_SIDE if SYNTHETIC_SETS[name]["spatial_dims"] == 3 else 64)
      for name in ("glands", "echo", "knee", "lines")),
    _builder("glas", 2, ("background", "gland"), (256, 256, 3)),
    _builder("echo", 3, ("background", "LV", "LA"), (256, 384, 1), OWN_SPLITS),
    _builder("echo/camus", 3, ("background", "LV", "LA"), (256, 256, 1), OWN_SPLITS),
    _builder("knee", 3, ("background", "femur", "tibia"), (64, 64, 128, 1), OWN_SPLITS),
    _builder("drive", 2, ("background", "vessel"), (256, 256, 3)),
    _builder("folder"),
    _builder("folder/3d"),
)}

#: Every name `--data` accepts.
SOURCE_NAMES = tuple(SOURCES)
#: TFDS builders shipped in `data_builders/`.
BUILDER_NAMES = tuple(dict.fromkeys(s.base for s in SOURCES.values() if not s.is_synthetic))


def get_source(name: str) -> DataSource:
    """The `DataSource` called `name`; a `ValueError` naming the known ones otherwise."""
    if name not in SOURCES:
        raise ValueError(f"unknown data source {name!r}; known: {', '.join(SOURCE_NAMES)}.")
    return SOURCES[name]


def default_splits(name: str) -> Tuple[str, str, str]:
    """(train, validation, test) split names of source `name`."""
    return get_source(name).splits
