"""GlaS: gland segmentation in H&E-stained colon histology (MICCAI 2015 challenge).

Two on-disk layouts are detected automatically in the manual folder:

- the official Warwick-QU release (`train_N.bmp` + `train_N_anno.bmp`,
  `testA_N...`, `testB_N...`, `Grade.csv`), directly in the manual folder or in
  the single sub-folder the zip extracts to -> splits `train`, `testA`, `testB`;
- the LDSeg authors' demo layout (`Image/CaseN.bmp` + `Label/CaseN_label.bmp`)
  -> a `train` split only, grade "unknown".

The annotations are instance maps (0 background, 1..K one gland each): `label`
is the binary target (instance > 0) and `instances` keeps the map.
"""

from __future__ import annotations

import os
import sys

# `tfds build data_builders/glas` imports this file as `glas.glas_dataset_builder`
# with only `data_builders/` on sys.path; the shared code needs the repo root.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _REPO_ROOT not in sys.path:
    sys.path.append(_REPO_ROOT)

import numpy as np  # noqa: E402
from absl import logging  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from data_builders import _common  # noqa: E402
from data_builders._common import LayoutError  # noqa: E402

OFFICIAL_SPLITS = {"train": 85, "testA": 60, "testB": 20}
GRADES = ("benign", "malignant", "unknown")
_IMAGE_SUFFIXES = (".bmp", ".png", ".tif", ".tiff")


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for GlaS (official Warwick-QU release or demo layout)."""

    name = "glas"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: official and demo layouts."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Download the GlaS data (Warwick-QU release, "Warwick QU Dataset (Released
    2016_07_08)") and pass its folder as --manual_dir. Either layout works:

    Official release (splits train/testA/testB, with the grade):
        <manual_dir>/                 (or its single sub-folder)
            Grade.csv                 name,patient ID, grade (GlaS), grade (Sirinuk...)
            train_1.bmp  train_1_anno.bmp   ... train_85...
            testA_1.bmp  testA_1_anno.bmp   ... testA_60...
            testB_1.bmp  testB_1_anno.bmp   ... testB_20...

    LDSeg demo layout (split train only, grade "unknown"):
        <manual_dir>/Image/CaseN.bmp
        <manual_dir>/Label/CaseN_label.bmp

    Annotations are instance maps (0 = background, 1..K = glands).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=_common.image_label_features(
                3,
                instances=tfds.features.Image(
                    shape=(None, None, 1), dtype=np.uint16, use_colormap=True
                ),
                grade=tfds.features.ClassLabel(names=GRADES),
                grade_sirinukunwattana=tfds.features.Text(),
                patient_id=np.int32,
                file_name=tfds.features.Text(),
            ),
            supervised_keys=("image", "label"),
            homepage="https://warwick.ac.uk/fac/cross_fac/tia/data/glascontest/",
            metadata=tfds.core.MetadataDict(
                num_classes=2, class_names=["background", "gland"], layout=None
            ),
            citation="""@article{sirinukunwattana2017glas,
  title={Gland segmentation in colon histology images: The GlaS challenge contest},
  author={Sirinukunwattana, Korsuk and others},
  journal={Medical Image Analysis}, volume={35}, pages={489--502}, year={2017}}""",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = os.fspath(dl_manager.manual_dir)
        layout, root = detect_layout(root)
        self.info.metadata["layout"] = layout
        if layout == "official":
            splits = official_split_cases(root)
        else:
            splits = {"train": demo_cases(root)}
        # Every pair is resolved (and every missing file reported) before the
        # first record is written.
        return {split: self._generate_examples(cases) for split, cases in splits.items()}

    def _generate_examples(self, cases):
        for case in cases:
            image, _ = _common.read_array(case["image"])
            if image.ndim != 3 or image.shape[-1] != 3:
                raise LayoutError(
                    f"{case['image']}: expected an RGB image (H, W, 3), got shape {image.shape}."
                )
            if image.dtype != np.uint8:
                raise LayoutError(f"{case['image']}: expected 8-bit RGB, got {image.dtype}.")
            instances, _ = _common.read_label(case["label"], what="instance labels >= 0")
            _common.check_same_shape(image.shape[:2], instances.shape, case["image"], case["label"])
            if instances.max() > np.iinfo(np.uint16).max:
                raise LayoutError(f"{case['label']}: more than 65535 instances.")
            yield case["key"], {
                "image": image,
                "label": (instances > 0).astype(np.uint8)[..., None],
                "instances": instances.astype(np.uint16)[..., None],
                "grade": case.get("grade", "unknown"),
                "grade_sirinukunwattana": case.get("grade_sirinukunwattana", ""),
                "patient_id": case.get("patient_id", -1),
                "file_name": os.path.basename(case["image"]),
            }


# ---------------------------------------------------------------------- layouts
def _has_official_files(folder: str) -> bool:
    names = os.listdir(folder)
    return "Grade.csv" in names or any(
        n.startswith(tuple(f"{s}_" for s in OFFICIAL_SPLITS)) and n.lower().endswith(".bmp")
        for n in names
    )


def _has_demo_folders(folder: str) -> bool:
    return os.path.isdir(os.path.join(folder, "Image")) and os.path.isdir(
        os.path.join(folder, "Label")
    )


def detect_layout(manual_dir: str):
    """Returns `("official" | "demo", root)`.

    Raises:
        LayoutError: neither layout is present, or both are.
    """
    _common.require_dir(manual_dir, "the GlaS data")
    candidates = [manual_dir]
    subdirs = _common.list_subdirs(manual_dir)
    if len(subdirs) == 1 and not _has_demo_folders(manual_dir):
        # The official zip extracts to one folder "Warwick QU Dataset (...)".
        candidates.append(subdirs[0])
    for root in candidates:
        official, demo = _has_official_files(root), _has_demo_folders(root)
        if official and demo:
            raise LayoutError(
                f"{root}: holds both the official GlaS files (train_N.bmp, Grade.csv) and "
                f"the demo folders Image/ and Label/; keep one layout per manual_dir."
            )
        if official:
            return "official", root
        if demo:
            return "demo", root
    raise LayoutError(
        f"{manual_dir}: not a GlaS folder; expected the official release "
        f"(Grade.csv, train_N.bmp, train_N_anno.bmp, testA_N..., testB_N...) or the "
        f"demo layout (Image/CaseN.bmp, Label/CaseN_label.bmp)."
    )


def read_grades(path: str):
    """Parses the official `Grade.csv`.

    The header is `name,patient ID, grade (GlaS), grade (Sirinukunwattana et al.
    2015)` and the rows look like `testA_1,4, benign, adenomatous`: values carry
    a leading space, which is stripped.

    Returns:
        `{name: {"patient_id": int, "grade": str, "grade_sirinukunwattana": str}}`.
    """
    if not os.path.isfile(path):
        raise LayoutError(f"{path}: file not found; the official GlaS layout needs Grade.csv.")
    rows = [r for r in _common.read_csv_rows(path) if any(c.strip() for c in r)]
    if not rows:
        raise LayoutError(f"{path}: empty; expected a header 'name,patient ID, grade (GlaS), ...'.")
    header = [h.strip().lower() for h in rows[0]]
    try:
        name_col = header.index("name")
        patient_col = next(i for i, h in enumerate(header) if h.startswith("patient"))
        grade_col = header.index("grade (glas)")
    except (ValueError, StopIteration):
        raise LayoutError(
            f"{path}: unexpected header {rows[0]}; expected 'name,patient ID, grade (GlaS), "
            f"grade (Sirinukunwattana et al. 2015)'."
        ) from None
    extra_col = next((i for i, h in enumerate(header) if "sirinukunwattana" in h), None)
    grades = {}
    for line, row in enumerate(rows[1:], start=2):
        row = [c.strip() for c in row]
        try:
            name, patient, grade = row[name_col], int(row[patient_col]), row[grade_col].lower()
        except (IndexError, ValueError):
            raise LayoutError(
                f"{path}:{line}: cannot parse {row}; expected 'name,patient ID,grade,...'."
            ) from None
        if grade not in GRADES[:2]:
            raise LayoutError(
                f"{path}:{line}: grade {grade!r} for {name}; expected 'benign' or 'malignant'."
            )
        grades[name] = {
            "patient_id": patient,
            "grade": grade,
            "grade_sirinukunwattana": (
                row[extra_col] if extra_col is not None and extra_col < len(row) else ""
            ),
        }
    return grades


def official_split_cases(root: str):
    """`{split: [case, ...]}` for the official layout; a case is a dict with
    `key`, `image`, `label`, `grade`, `grade_sirinukunwattana`, `patient_id`."""
    grades = read_grades(os.path.join(root, "Grade.csv"))
    files = _common.list_files(root, (".bmp",), "the GlaS .bmp files")
    splits = {}
    for split, expected_count in OFFICIAL_SPLITS.items():
        prefix = f"{split}_"
        mine = [f for f in files if os.path.basename(f).startswith(prefix)]
        images = _common.keyed_by_stem(
            [f for f in mine if not _common.stem(f).endswith("_anno")], what="image"
        )
        labels = _common.keyed_by_stem(
            [f for f in mine if _common.stem(f).endswith("_anno")], "_anno", what="annotation"
        )
        if not images and not labels:
            raise LayoutError(
                f"{root}: split {split!r} is empty; expected {split}_1.bmp .. "
                f"{split}_{expected_count}.bmp with their {split}_N_anno.bmp annotations."
            )
        pairs = _common.pair_by_key(
            images,
            labels,
            expected_label=lambda p: _common.stem(p) + "_anno.bmp",
            image_dir=root,
            label_dir=root,
        )
        cases = []
        for key, image, label in pairs:
            if key not in grades:
                raise LayoutError(
                    f"{image}: no row for {key!r} in {os.path.join(root, 'Grade.csv')}."
                )
            cases.append({"key": key, "image": image, "label": label, **grades[key]})
        if len(cases) != expected_count:
            # Subsets are allowed (e.g. a quick experiment), but say so.
            logging.warning(
                "glas: split %r has %d images in %s (the official release has %d).",
                split, len(cases), root, expected_count,
            )
        splits[split] = cases
    return splits


def demo_cases(root: str):
    """Cases of the demo layout `Image/CaseN.bmp` + `Label/CaseN_label.bmp`."""
    image_dir, label_dir = os.path.join(root, "Image"), os.path.join(root, "Label")
    images = _common.keyed_by_stem(
        _common.list_files(image_dir, _IMAGE_SUFFIXES, "RGB images CaseN.bmp"), what="image"
    )
    labels = _common.keyed_by_stem(
        _common.list_files(label_dir, _IMAGE_SUFFIXES, "label maps CaseN_label.bmp"),
        "_label",
        what="label map",
    )
    pairs = _common.pair_by_key(
        images,
        labels,
        expected_label=lambda p: os.path.join(
            label_dir, _common.stem(p) + "_label" + os.path.splitext(p)[1]
        ),
        image_dir=image_dir,
        label_dir=label_dir,
    )
    return [{"key": key, "image": image, "label": label} for key, image, label in pairs]
