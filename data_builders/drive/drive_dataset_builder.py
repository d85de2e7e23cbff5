"""DRIVE: Digital Retinal Images for Vessel Extraction.

40 colour fundus photographs (565 x 584) with manual vessel segmentations and a
field-of-view (FOV) mask each: `training` (IDs 21-40) -> split `train`, `test`
(IDs 01-20) -> split `test`. The first observer's annotation (`1st_manual`,
0/255) is the binary target `label` (0 background, 1 vessel); the FOV mask is the
feature `fov` (0/1), so metrics can be restricted to the FOV.
"""

from __future__ import annotations

import os
import re
import sys

# `tfds build data_builders/drive` imports this file as `drive.drive_dataset_builder`
# with only `data_builders/` on sys.path; the shared code needs the repo root.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _REPO_ROOT not in sys.path:
    sys.path.append(_REPO_ROOT)

import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from absl import logging  # noqa: E402

from data_builders import _common  # noqa: E402
from data_builders._common import LayoutError  # noqa: E402

SPLIT_FOLDERS = {"train": "training", "test": "test"}
_ID = re.compile(r"^(\d+)_")


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for DRIVE retinal vessel segmentation."""

    name = "drive"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download DRIVE (https://drive.grand-challenge.org/) and pass the folder that
    holds `training/` and/or `test/` (or its parent `DRIVE/`) as --manual_dir:
        <manual_dir>/training/images/21_training.tif ... 40_training.tif
        <manual_dir>/training/1st_manual/21_manual1.gif ...   (vessels, 0/255)
        <manual_dir>/training/mask/21_training_mask.gif ...   (field of view, 0/255)
        <manual_dir>/test/images/01_test.tif ...              (optional)
        <manual_dir>/test/1st_manual/01_manual1.gif ...
        <manual_dir>/test/mask/01_test_mask.gif ...
    Files are paired by their numeric ID. A `test/` folder without `1st_manual/`
    (the challenge release withholds the test labels) is skipped with a warning.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=_common.image_label_features(
                3,
                fov=tfds.features.Image(shape=(None, None, 1), dtype=np.uint8),
                image_id=tfds.features.Text(),
            ),
            supervised_keys=("image", "label"),
            homepage="https://drive.grand-challenge.org/",
            metadata=tfds.core.MetadataDict(num_classes=2, class_names=["background", "vessel"]),
            citation="""@article{staal2004drive,
  title={Ridge-based vessel segmentation in color images of the retina},
  author={Staal, Joes and Abr{\\`a}moff, Michael D and Niemeijer, Meindert and
          Viergever, Max A and Van Ginneken, Bram},
  journal={IEEE Transactions on Medical Imaging}, volume={23}, number={4},
  pages={501--509}, year={2004}}""",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = find_root(os.fspath(dl_manager.manual_dir))
        splits = {}
        for split, folder in SPLIT_FOLDERS.items():
            directory = os.path.join(root, folder)
            if not os.path.isdir(directory):
                continue
            if not os.path.isdir(os.path.join(directory, "1st_manual")):
                if split == "train":
                    _common.require_dir(
                        os.path.join(directory, "1st_manual"), "the manual vessel masks"
                    )
                logging.warning(
                    "drive: %s has no 1st_manual/; skipping split %r.", directory, split
                )
                continue
            splits[split] = self._generate_examples(find_cases(directory))
        return splits

    def _generate_examples(self, cases):
        for case in cases:
            image, _ = _common.read_array(case["image"])
            if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
                raise LayoutError(
                    f"{case['image']}: expected an 8-bit RGB image (H, W, 3), got "
                    f"shape {image.shape} and dtype {image.dtype}."
                )
            vessels = _binary(case["label"], "vessel mask")
            fov = _binary(case["fov"], "field-of-view mask")
            for path, mask in ((case["label"], vessels), (case["fov"], fov)):
                _common.check_same_shape(image.shape[:2], mask.shape, case["image"], path)
            yield case["key"], {
                "image": image,
                "label": vessels[..., None],
                "fov": fov[..., None],
                "image_id": case["key"],
            }


def _binary(path: str, what: str) -> np.ndarray:
    """Reads a 0/255 (or 0/1) mask as 0/1 uint8."""
    mask, _ = _common.read_label(path, (0, 1, 255), what=f"{what} values")
    if np.isin(1, mask) and np.isin(255, mask):
        raise LayoutError(f"{path}: {what} mixes 1 and 255; expected 0/255 (or 0/1).")
    return (mask > 0).astype(np.uint8)


def find_root(manual_dir: str) -> str:
    """The folder that holds `training/` or `test/` (`manual_dir` or its `DRIVE/`)."""
    _common.require_dir(manual_dir, "the DRIVE data")
    for root in (manual_dir, os.path.join(manual_dir, "DRIVE")):
        if any(os.path.isdir(os.path.join(root, f)) for f in SPLIT_FOLDERS.values()):
            return root
    raise LayoutError(
        f"{manual_dir}: not a DRIVE folder; expected training/images/*.tif, "
        f"training/1st_manual/*_manual1.gif and training/mask/*_mask.gif (and/or test/...)."
    )


def _by_id(paths, what: str):
    out = {}
    for path in paths:
        m = _ID.match(os.path.basename(path))
        if not m:
            raise LayoutError(f"{path}: expected a {what} named '<ID>_...' (e.g. 21_training.tif).")
        key = m.group(1)
        if key in out:
            raise LayoutError(f"{path} and {out[key]}: two {what}s for ID {key}.")
        out[key] = path
    return out


def find_cases(directory: str):
    """`[{"key", "image", "label", "fov"}, ...]` of one DRIVE split folder."""
    image_dir = os.path.join(directory, "images")
    manual_dir = os.path.join(directory, "1st_manual")
    fov_dir = os.path.join(directory, "mask")
    kind = os.path.basename(os.path.normpath(directory))
    masks = (".gif", ".png", ".tif")
    images = _by_id(_common.list_files(image_dir, (".tif", ".tiff"), "images *.tif"), "image")
    manual = _by_id(_common.list_files(manual_dir, masks, "*_manual1.gif"), "mask")
    fovs = _by_id(_common.list_files(fov_dir, masks, "*_mask.gif"), "FOV mask")

    def image_id(path):
        return _ID.match(os.path.basename(path)).group(1)

    pairs = _common.pair_by_key(
        images,
        manual,
        expected_label=lambda p: os.path.join(manual_dir, f"{image_id(p)}_manual1.gif"),
        image_dir=image_dir,
        label_dir=manual_dir,
    )
    _common.pair_by_key(
        images,
        fovs,
        expected_label=lambda p: os.path.join(fov_dir, f"{image_id(p)}_{kind}_mask.gif"),
        image_dir=image_dir,
        label_dir=fov_dir,
    )
    return [{"key": k, "image": i, "label": lab, "fov": fovs[k]} for k, i, lab in pairs]
