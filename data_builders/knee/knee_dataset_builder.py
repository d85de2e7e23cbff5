"""Knee: 3D knee MRI with femur and tibia (bone + cartilage) labels.

The LDSeg paper uses OAI knee MRI (https://nda.nih.gov/oai/) cropped around the
femoral and tibial cartilage. Each case is a NIfTI image with a NIfTI label map
(0 background, 1 femur + femoral cartilage, 2 tibia + tibial cartilage). Cases
are split 80/20 into train/test **by patient**, and 10% of the training patients
form `validation` (as in the paper); the voxel spacing and the affine are kept so
that predictions can be written back in the scanner geometry.
"""

from __future__ import annotations

import os
import sys

# `tfds build data_builders/knee` imports this file as `knee.knee_dataset_builder`
# with only `data_builders/` on sys.path; the shared code needs the repo root.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _REPO_ROOT not in sys.path:
    sys.path.append(_REPO_ROOT)

import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from data_builders import _common  # noqa: E402
from data_builders._common import LayoutError  # noqa: E402

CLASS_NAMES = ["background", "femur", "tibia"]
PATIENTS_FILE = "patients.csv"
SPLIT_SEED = 0


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for 3D knee MRI NIfTI pairs."""

    name = "knee"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put the NIfTI cases in --manual_dir:
        <manual_dir>/Image/CaseN.nii.gz          3D MRI (any numeric dtype)
        <manual_dir>/Label/CaseN_label.nii.gz    0 background, 1 femur(+cartilage),
                                                 2 tibia(+cartilage); same shape
        <manual_dir>/patients.csv                optional: header 'case,patient',
                                                 one row per case (CaseN,<patient id>)
    Images and labels are paired by name (CaseN <-> CaseN_label). Without
    patients.csv every case is its own patient. The split (test 20% of patients,
    validation 10% of the remaining patients, train the rest) is by patient and
    deterministic.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    # (D, H, W, 1) in NIfTI voxel order; float32 holds any MRI dtype.
                    "image": tfds.features.Tensor(
                        shape=(None, None, None, 1), dtype=np.float32, encoding="zlib"
                    ),
                    "label": tfds.features.Tensor(
                        shape=(None, None, None), dtype=np.uint8, encoding="zlib"
                    ),
                    "spacing": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                    "affine": tfds.features.Tensor(shape=(4, 4), dtype=np.float64),
                    "case_id": tfds.features.Text(),
                    "patient_id": tfds.features.Text(),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://nda.nih.gov/oai/",
            metadata=tfds.core.MetadataDict(num_classes=3, class_names=CLASS_NAMES),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = os.fspath(dl_manager.manual_dir)
        cases = find_cases(root)
        patients = patient_of_case(root, [c["key"] for c in cases])
        by_split = _common.split_by_group(
            [dict(case, patient=patients[case["key"]]) for case in cases],
            lambda case: case["patient"],
            seed=SPLIT_SEED,
            what="patient",
            where=root,
        )
        return {split: self._generate_examples(items) for split, items in by_split.items()}

    def _generate_examples(self, cases):
        for case in cases:
            image, meta = _common.read_array(case["image"])
            if image.ndim == 4 and image.shape[-1] == 1:
                image = image[..., 0]
            if image.ndim != 3:
                raise LayoutError(
                    f"{case['image']}: expected a 3D volume, got shape {image.shape}."
                )
            if not np.all(np.isfinite(image)):
                raise LayoutError(f"{case['image']}: image contains NaN or infinite values.")
            label, _ = _common.read_label(
                case["label"], range(len(CLASS_NAMES)), what="classes (0 bg, 1 femur, 2 tibia)"
            )
            if label.ndim == 4 and label.shape[-1] == 1:
                label = label[..., 0]
            _common.check_same_shape(image.shape, label.shape, case["image"], case["label"])
            yield case["key"], {
                "image": image.astype(np.float32)[..., None],
                "label": label.astype(np.uint8),
                "spacing": np.asarray(meta["spacing"], np.float32),
                "affine": meta["affine"],
                "case_id": case["key"],
                "patient_id": case["patient"],
            }


def find_cases(root: str):
    """`[{"key", "image", "label"}, ...]` paired by name, or a LayoutError."""
    image_dir, label_dir = os.path.join(root, "Image"), os.path.join(root, "Label")
    images = _common.keyed_by_stem(
        _common.list_files(image_dir, _common.NIFTI_SUFFIXES, "NIfTI images CaseN.nii.gz"),
        what="image",
    )
    labels = _common.keyed_by_stem(
        _common.list_files(label_dir, _common.NIFTI_SUFFIXES, "NIfTI labels CaseN_label.nii.gz"),
        "_label",
        what="label map",
    )
    pairs = _common.pair_by_key(
        images,
        labels,
        expected_label=lambda p: os.path.join(label_dir, _common.stem(p) + "_label.nii.gz"),
        image_dir=image_dir,
        label_dir=label_dir,
    )
    return [{"key": k, "image": i, "label": lab} for k, i, lab in pairs]


def patient_of_case(root: str, keys):
    """Case -> patient id from the optional `patients.csv` (each case is its own
    patient without it)."""
    path = os.path.join(root, PATIENTS_FILE)
    if not os.path.isfile(path):
        return {k: k for k in keys}
    table = _common.read_group_csv(path, "case", "patient")
    missing = [k for k in keys if k not in table]
    if missing:
        raise LayoutError(f"{path}: no patient for case(s) {missing[:5]}; add a row per case.")
    return {k: table[k] for k in keys}
