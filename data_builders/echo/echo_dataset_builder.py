"""Echo: apical four-chamber echocardiography frames with LV and LA labels.

The LDSeg paper's Echo set (65 videos, 2230 labelled frames, University of Iowa)
is private. Two builder configs read the two supported layouts:

- `iowa` (default): one folder per video, holding a 2D+time image NIfTI
  (`X x Y x T`, as saved by ITK-SNAP) and its label NIfTI (0 background, 1 LV,
  2 LA). Every frame whose label map is not all background is an example.
- `camus`: the public CAMUS release (NIfTI), apical four-chamber ED and ES frames
  (`patientXXXX/patientXXXX_4CH_{ED,ES}.nii.gz` + `_gt`). CAMUS labels 1 LV
  endocardium, 2 myocardium, 3 LA are mapped to LV=1, LA=2, myocardium ->
  background, so that a model can be reproduced on public data.

Both split **by video** (a CAMUS patient is one video): 20% of the videos form
`test`, 10% of the others `validation`, the rest `train`; the assignment is
deterministic and no video contributes frames to two splits. Frames keep
NIfTI voxel order `(X, Y)` (transpose them for display). Images are stored as
uint8: files already holding integers in [0, 255] are stored unchanged, others
are min-max rescaled per video.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys

# `tfds build data_builders/echo` imports this file as `echo.echo_dataset_builder`
# with only `data_builders/` on sys.path; the shared code needs the repo root.
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _REPO_ROOT not in sys.path:
    sys.path.append(_REPO_ROOT)

import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from data_builders import _common  # noqa: E402
from data_builders._common import LayoutError  # noqa: E402

CLASS_NAMES = ["background", "LV", "LA"]
#: CAMUS label -> LDSeg Echo label (1 LV endocardium, 2 myocardium, 3 LA).
CAMUS_TO_ECHO = np.array([0, 1, 0, 2], dtype=np.uint8)
#: A label NIfTI's name (without extension) ends with one of these words.
_LABEL_NAME = re.compile(r"(^|[_\-. ])(label|labels|seg|segmentation|gt|mask)$", re.IGNORECASE)


@dataclasses.dataclass
class EchoConfig(tfds.core.BuilderConfig):
    """`layout`: "iowa" or "camus"; `split_seed`: seed of the video split."""

    layout: str = "iowa"
    split_seed: int = 0


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for 2D+time echocardiography (Iowa layout or CAMUS)."""

    name = "echo"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: iowa and camus configs."}
    BUILDER_CONFIGS = [
        EchoConfig(
            name="iowa",
            description="One folder per video: 2D+time image and label NIfTI (ITK-SNAP).",
            layout="iowa",
        ),
        EchoConfig(
            name="camus",
            description="Public CAMUS NIfTI release, 4-chamber ED/ES frames.",
            layout="camus",
        ),
    ]
    DEFAULT_CONFIG_NAME = "iowa"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Config `iowa` (default): one folder per video in --manual_dir:
        <manual_dir>/<video_id>/<name>.nii.gz          2D+time image, X x Y x T
        <manual_dir>/<video_id>/<name>_label.nii.gz    labels 0 bg, 1 LV, 2 LA
    The label file is the NIfTI whose name ends in label, labels, seg,
    segmentation, gt or mask (after '_', '-', '.' or ' '); the other NIfTI is the
    image. Frames whose labels are all background are skipped.

    Config `camus`: the CAMUS NIfTI release (https://www.creatis.insa-lyon.fr/Challenge/camus/),
    --manual_dir = the folder with the patient folders (or its `database_nifti/`):
        <manual_dir>/patient0001/patient0001_4CH_ED.nii.gz
        <manual_dir>/patient0001/patient0001_4CH_ED_gt.nii.gz
        <manual_dir>/patient0001/patient0001_4CH_ES.nii.gz
        <manual_dir>/patient0001/patient0001_4CH_ES_gt.nii.gz
    Build one config at a time: `tfds build data_builders/echo --config camus ...`.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=_common.image_label_features(
                1,
                video_id=tfds.features.Text(),
                # Index of the frame in its image file (0 for CAMUS ED/ES files).
                frame_index=np.int32,
                # "ED" / "ES" for CAMUS, "" for the iowa layout.
                phase=tfds.features.Text(),
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/FahimZaman/LDSeg",
            metadata=tfds.core.MetadataDict(num_classes=3, class_names=CLASS_NAMES),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = os.fspath(dl_manager.manual_dir)
        if self.builder_config.layout == "camus":
            videos = find_camus_videos(root)
        else:
            videos = find_iowa_videos(root)
        by_split = _common.split_by_group(
            videos,
            lambda video: video["video_id"],
            seed=self.builder_config.split_seed,
            what="video",
            where=root,
        )
        return {split: self._generate_examples(items) for split, items in by_split.items()}

    def _generate_examples(self, videos):
        for video in videos:
            for key, example in _video_examples(video):
                yield key, example


# ----------------------------------------------------------------------- iowa
def _squeeze_to(array: np.ndarray, rank: int, path: str, what: str) -> np.ndarray:
    """Drops singleton axes after the first two (ITK-SNAP writes 2D+t as
    X x Y x 1 x T) until `array` has `rank` axes."""
    while array.ndim > rank:
        singleton = [ax for ax in range(2, array.ndim) if array.shape[ax] == 1]
        if not singleton:
            break
        array = np.squeeze(array, axis=singleton[0])
    if array.ndim == rank - 1:
        array = array[..., None]
    if array.ndim != rank:
        raise LayoutError(f"{path}: expected a {what}, got shape {array.shape}.")
    return array


def find_iowa_videos(root: str):
    """`[{"video_id", "image", "label"}, ...]`: one entry per video folder."""
    _common.require_dir(root, "one folder per echo video")
    videos = []
    for folder in _common.list_subdirs(root):
        niftis = _common.list_files(folder, _common.NIFTI_SUFFIXES)
        labels = [p for p in niftis if _LABEL_NAME.search(_common.stem(p))]
        images = [p for p in niftis if p not in labels]
        if len(images) != 1 or len(labels) != 1:
            found = [os.path.basename(p) for p in niftis] or "nothing"
            raise LayoutError(
                f"{folder}: expected exactly one image NIfTI and one label NIfTI named "
                f"'<name>_label.nii.gz' (or _seg/_gt/_mask); found {found}."
            )
        videos.append(
            {"video_id": os.path.basename(folder), "image": images[0], "label": labels[0],
             "layout": "iowa"}
        )
    if not videos:
        raise LayoutError(
            f"{root}: no video folders found; expected <video_id>/<name>.nii.gz with "
            f"<video_id>/<name>_label.nii.gz (config 'iowa'; use config 'camus' for CAMUS)."
        )
    return videos


def _iowa_examples(video):
    image, _ = _common.read_array(video["image"])
    image = _squeeze_to(image, 3, video["image"], "2D+time image X x Y x T")
    labels, _ = _common.read_label(video["label"], range(3), what="classes (0 bg, 1 LV, 2 LA)")
    labels = _squeeze_to(labels, 3, video["label"], "2D+time label map X x Y x T")
    _common.check_same_shape(image.shape, labels.shape, video["image"], video["label"])
    frames = _common.as_uint8_frames(image, video["image"])
    labelled = [t for t in range(labels.shape[-1]) if labels[..., t].any()]
    if not labelled:
        raise LayoutError(f"{video['label']}: no frame has a label (all background).")
    for t in labelled:
        yield f"{video['video_id']}/{t:05d}", {
            "image": frames[..., t, None],
            "label": labels[..., t, None].astype(np.uint8),
            "video_id": video["video_id"],
            "frame_index": t,
            "phase": "",
        }


# ----------------------------------------------------------------------- camus
def find_camus_videos(root: str):
    """`[{"video_id", "frames": [(phase, image, gt), ...]}, ...]`, one per patient."""
    _common.require_dir(root, "the CAMUS patient folders")
    base = root
    if not any(os.path.basename(d).startswith("patient") for d in _common.list_subdirs(root)):
        nested = os.path.join(root, "database_nifti")
        if os.path.isdir(nested):
            base = nested
    folders = [d for d in _common.list_subdirs(base) if os.path.basename(d).startswith("patient")]
    if not folders:
        raise LayoutError(
            f"{root}: no CAMUS patient folders; expected patientXXXX/patientXXXX_4CH_ED.nii.gz "
            f"and _4CH_ED_gt.nii.gz (config 'camus')."
        )
    videos = []
    for folder in folders:
        patient = os.path.basename(folder)
        frames = []
        for phase in ("ED", "ES"):
            image = _find_nifti(folder, f"{patient}_4CH_{phase}")
            gt = _find_nifti(folder, f"{patient}_4CH_{phase}_gt")
            if image is None:
                raise LayoutError(
                    f"{folder}: missing {patient}_4CH_{phase}.nii.gz (the CAMUS 4-chamber "
                    f"{phase} frame)."
                )
            if gt is None:
                raise LayoutError(
                    f"{image}: no label map found; expected "
                    f"{os.path.join(folder, patient + '_4CH_' + phase + '_gt.nii.gz')}."
                )
            frames.append((phase, image, gt))
        videos.append({"video_id": patient, "frames": frames, "layout": "camus"})
    return videos


def _find_nifti(folder: str, name: str):
    for suffix in _common.NIFTI_SUFFIXES:
        path = os.path.join(folder, name + suffix)
        if os.path.isfile(path):
            return path
    return None


def _camus_examples(video):
    for phase, image_path, gt_path in video["frames"]:
        image, _ = _common.read_array(image_path)
        image = _squeeze_to(image, 2, image_path, "2D frame X x Y")
        gt, _ = _common.read_label(
            gt_path, range(4), what="CAMUS classes (0 bg, 1 LV, 2 myocardium, 3 LA)"
        )
        gt = _squeeze_to(gt, 2, gt_path, "2D label map X x Y")
        _common.check_same_shape(image.shape, gt.shape, image_path, gt_path)
        yield f"{video['video_id']}/{phase}", {
            "image": _common.as_uint8_frames(image, image_path)[..., None],
            "label": CAMUS_TO_ECHO[gt][..., None],
            "video_id": video["video_id"],
            "frame_index": 0,
            "phase": phase,
        }


def _video_examples(video):
    if video["layout"] == "camus":
        return _camus_examples(video)
    return _iowa_examples(video)
