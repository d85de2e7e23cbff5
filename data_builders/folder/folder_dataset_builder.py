"""Folder: bring-your-own data in the nnU-Net raw layout (2D or 3D).

`imagesTr/` + `labelsTr/` -> split `train`; `imagesTs/` + `labelsTs/` -> split
`test` when `labelsTs/` exists (nnU-Net leaves test labels out; unlabelled test
images are for `ldseg predict`, not for TFDS). `dataset.json` declares the
labels and the channels (nnU-Net v2 `channel_names`/`labels`/`file_ending`, or
v1 `modality`/`labels`). Case `C` has one image file per channel,
`imagesTr/C_0000.<ext>`, `C_0001.<ext>`, ..., and one label map
`labelsTr/C.<ext>`; an RGB PNG counts as three channels (nnU-Net's convention for
natural images). Formats: PNG, BMP, TIFF (2D config) and NIfTI (both configs).

Images are stored as float32 `(H, W, C)` / `(D, H, W, C)` (any input dtype),
labels as uint8; the class names and channel names go to the dataset metadata.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys

# `tfds build data_builders/folder` imports this file as `folder.folder_dataset_builder`
# with only `data_builders/` on sys.path; the shared code needs the repo root.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _REPO_ROOT not in sys.path:
    sys.path.append(_REPO_ROOT)

import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from absl import logging  # noqa: E402

from data_builders import _common  # noqa: E402
from data_builders._common import LayoutError  # noqa: E402
from ldseg_tf.data import io as ldseg_io  # noqa: E402

_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
SPLIT_FOLDERS = {"train": ("imagesTr", "labelsTr"), "test": ("imagesTs", "labelsTs")}


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
    """`spatial_dims`: 2 for images, 3 for volumes."""

    spatial_dims: int = 2


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for a dataset in the nnU-Net raw layout."""

    name = "folder"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 2d and 3d configs."}
    BUILDER_CONFIGS = [
        FolderConfig(name="2d", description="2D images (PNG/BMP/TIFF/NIfTI).", spatial_dims=2),
        FolderConfig(name="3d", description="3D volumes (NIfTI).", spatial_dims=3),
    ]
    DEFAULT_CONFIG_NAME = "2d"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put your data in the nnU-Net raw layout and pass its folder as --manual_dir:
        <manual_dir>/dataset.json
            {"channel_names": {"0": "CT"},            (v1: "modality")
             "labels": {"background": 0, "tumor": 1}, (v1: {"0": "background", ...})
             "file_ending": ".nii.gz"}                (optional; detected if absent)
        <manual_dir>/imagesTr/<case>_0000<ext>  [<case>_0001<ext> ...]  one file per channel
        <manual_dir>/labelsTr/<case><ext>                               labels 0..K-1
        <manual_dir>/imagesTs/..., labelsTs/...                          optional test split
    <ext>: .png .bmp .tif .tiff (config 2d) or .nii.gz/.nii (configs 2d and 3d).
    Build with `--config 2d` (default) or `--config 3d`.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        dims = self.builder_config.spatial_dims
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(
                        shape=(None,) * (dims + 1), dtype=np.float32, encoding="zlib"
                    ),
                    "label": tfds.features.Tensor(
                        shape=(None,) * dims, dtype=np.uint8, encoding="zlib"
                    ),
                    "case_id": tfds.features.Text(),
                    # Voxel size and affine of NIfTI inputs (1s and identity otherwise).
                    "spacing": tfds.features.Tensor(shape=(dims,), dtype=np.float32),
                    "affine": tfds.features.Tensor(shape=(4, 4), dtype=np.float64),
                }
            ),
            supervised_keys=("image", "label"),
            homepage=(
                "https://github.com/MIC-DKFZ/nnUNet/blob/master/documentation/dataset_format.md"
            ),
            # Filled from dataset.json when the dataset is built.
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = os.fspath(dl_manager.manual_dir)
        spec = read_dataset_json(root)
        cases = {}
        for split, (image_folder, label_folder) in SPLIT_FOLDERS.items():
            image_dir = os.path.join(root, image_folder)
            label_dir = os.path.join(root, label_folder)
            if split == "test" and not os.path.isdir(label_dir):
                if os.path.isdir(image_dir):
                    logging.info("folder: %s has no labels; no test split.", image_dir)
                continue
            cases[split] = find_cases(image_dir, label_dir, spec)
        self.info.metadata.update(
            num_classes=len(spec["class_names"]),
            class_names=spec["class_names"],
            channel_names=spec["channel_names"],
            num_channels=len(spec["channel_names"]),
            spatial_dims=self.builder_config.spatial_dims,
            dataset_name=spec["name"],
            file_ending=spec["file_ending"],
        )
        return {split: self._generate_examples(items, spec) for split, items in cases.items()}

    def _generate_examples(self, cases, spec):
        dims = self.builder_config.spatial_dims
        n_channels = len(spec["channel_names"])
        for case in cases:
            channels, meta = [], None
            for path in case["images"]:
                array, file_meta = _common.read_array(path)
                array = _to_spatial_rank(array, dims, path, channels_allowed=True)
                meta = meta or file_meta
                channels.append(_common.with_channel_axis(array, dims))
                if channels[-1].shape[:dims] != channels[0].shape[:dims]:
                    raise LayoutError(
                        f"{path}: channel has spatial shape {channels[-1].shape[:dims]} but "
                        f"{case['images'][0]} has {channels[0].shape[:dims]}."
                    )
            image = np.concatenate(channels, axis=-1)
            if image.shape[-1] != n_channels:
                raise LayoutError(
                    f"{case['images'][0]}: case {case['key']!r} has {image.shape[-1]} channel(s) "
                    f"in {len(case['images'])} file(s); dataset.json declares {n_channels} "
                    f"({spec['channel_names']})."
                )
            if not np.all(np.isfinite(image)):
                raise LayoutError(f"{case['images'][0]}: image contains NaN or infinite values.")
            label, _ = _common.read_label(
                case["label"], spec["label_values"], what="labels declared in dataset.json"
            )
            label = _to_spatial_rank(label, dims, case["label"], channels_allowed=False)
            _common.check_same_shape(
                image.shape[:dims], label.shape, case["images"][0], case["label"]
            )
            spacing = np.ones(dims, np.float32)
            affine = np.eye(4)
            if meta.get("format") == "nifti":
                spacing[: len(meta["spacing"][:dims])] = meta["spacing"][:dims]
                affine = meta["affine"]
            yield case["key"], {
                "image": image.astype(np.float32),
                "label": label.astype(np.uint8),
                "case_id": case["key"],
                "spacing": spacing,
                "affine": affine,
            }


def _to_spatial_rank(array, dims, path, *, channels_allowed):
    """Brings a file's array to `dims` spatial axes (+ channels for images):
    a 2D NIfTI stored as X x Y x 1 loses the singleton axis."""
    if dims == 2 and array.ndim == 3 and ldseg_io.split_extension(path)[1].lower() in (
        ".nii", ".nii.gz"
    ) and array.shape[2] == 1:
        array = array[:, :, 0]
    if dims == 3 and array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    nifti = ldseg_io.split_extension(path)[1].lower() in (".nii", ".nii.gz")
    if dims == 2 and nifti and array.ndim >= 3:
        # nnU-Net keeps channels in separate files: a NIfTI's third axis is space.
        raise LayoutError(f"{path}: expected a 2D NIfTI image (X x Y or X x Y x 1) for "
                          f"--config 2d; got a volume of shape {array.shape}: use --config 3d.")
    ok = array.ndim == dims or (channels_allowed and array.ndim == dims + 1)
    if not ok:
        raise LayoutError(
            f"{path}: expected a {dims}D {'image' if channels_allowed else 'label map'}, "
            f"got shape {array.shape} (use --config {'3d' if array.ndim >= 3 else '2d'}?)."
        )
    return array


def read_dataset_json(root: str):
    """Parses `dataset.json` (nnU-Net v1 or v2).

    Returns:
        dict with `class_names` (indexed by label value), `label_values`,
        `channel_names`, `file_ending` (or None), `name`.
    """
    path = os.path.join(root, "dataset.json")
    if not os.path.isfile(path):
        raise LayoutError(
            f"{path}: file not found; the nnU-Net layout needs dataset.json with "
            f"'labels' and 'channel_names'."
        )
    try:
        spec = json.loads(_common.read_text(path))
    except (json.JSONDecodeError, RecursionError) as e:
        raise LayoutError(f"{path}: cannot parse JSON ({e}).") from e
    if not isinstance(spec, dict):
        raise LayoutError(f"{path}: expected a JSON object with 'labels' and 'channel_names'; "
                          f"got a {type(spec).__name__}.")
    labels = spec.get("labels")
    if not isinstance(labels, dict) or not labels:
        raise LayoutError(f"{path}: expected a non-empty 'labels' object, got {labels!r}.")
    by_value = {}
    for k, v in labels.items():
        if isinstance(v, int) and not isinstance(v, bool):  # v2: {"liver": 1}
            name, value = k, v
        elif isinstance(v, str) and str(k).isdigit():  # v1: {"1": "liver"}
            name, value = v, int(k)
        else:
            raise LayoutError(
                f"{path}: cannot read label entry {k!r}: {v!r}; expected "
                f'{{"name": value}} (nnU-Net v2; region lists are not supported) or '
                f'{{"value": "name"}} (v1).'
            )
        if value in by_value:
            raise LayoutError(f"{path}: label value {value} is declared twice.")
        by_value[value] = name
    values = sorted(by_value)
    if values != list(range(len(values))) or len(values) < 2:
        raise LayoutError(
            f"{path}: label values must be consecutive from 0 (background) with at least "
            f"2 classes; got {values}."
        )
    channels = spec.get("channel_names", spec.get("modality"))
    if not isinstance(channels, dict) or not channels:
        raise LayoutError(f"{path}: expected a 'channel_names' (or v1 'modality') object.")
    try:
        order = sorted(channels, key=int)
    except ValueError:
        raise LayoutError(
            f"{path}: channel keys must be '0', '1', ...; got {list(channels)}."
        ) from None
    if [int(k) for k in order] != list(range(len(order))):
        raise LayoutError(f"{path}: channel keys must be 0..{len(order) - 1}; got {order}.")
    ending = spec.get("file_ending")
    if ending is not None and not isinstance(ending, str):
        raise LayoutError(f"{path}: expected 'file_ending' to be a string such as "
                          f"\".nii.gz\"; got {ending!r}.")
    if ending is not None and ending.lower() not in ldseg_io.IMAGE_EXTENSIONS:
        raise LayoutError(f"{path}: unsupported file_ending {ending!r}.")
    return {
        "class_names": [by_value[v] for v in values],
        "label_values": values,
        "channel_names": [str(channels[k]) for k in order],
        "file_ending": ending,
        "name": str(spec.get("name", "")),
    }


def find_cases(image_dir: str, label_dir: str, spec):
    """`[{"key", "images": [channel files], "label"}, ...]`, paired by case name."""
    endings = (spec["file_ending"],) if spec["file_ending"] else ldseg_io.IMAGE_EXTENSIONS
    label_files = _common.list_files(label_dir, endings, "label maps <case><ext>")
    image_files = _common.list_files(image_dir, endings, "images <case>_0000<ext>")
    if spec["file_ending"] is None:
        found = {ldseg_io.split_extension(p)[1].lower() for p in label_files + image_files}
        if len(found) > 1:
            raise LayoutError(
                f"{os.path.dirname(image_dir)}: mixed file types {sorted(found)}; set "
                f"'file_ending' in dataset.json."
            )
        if found:
            spec["file_ending"] = found.pop()
    images = {}
    for path in image_files:
        m = _CHANNEL_FILE.match(_common.stem(path))
        if not m:
            raise LayoutError(
                f"{path}: expected an image named '<case>_XXXX<ext>' with a 4-digit channel index."
            )
        images.setdefault(m.group("case"), {})[int(m.group("channel"))] = path
    labels = _common.keyed_by_stem(label_files, what="label map")
    ending = spec["file_ending"] or ""
    pairs = _common.pair_by_key(
        {k: v[min(v)] for k, v in images.items()},
        labels,
        expected_label=lambda p: os.path.join(
            label_dir, _CHANNEL_FILE.match(_common.stem(p)).group("case") + ending
        ),
        image_dir=image_dir,
        label_dir=label_dir,
    )
    cases = []
    for key, _, label in pairs:
        channel_files = images[key]
        indices = sorted(channel_files)
        if indices != list(range(len(indices))):
            raise LayoutError(
                f"{channel_files[indices[0]]}: case {key!r} has channel files {indices}; "
                f"expected consecutive indices from _0000."
            )
        cases.append({"key": key, "images": [channel_files[i] for i in indices], "label": label})
    return cases
