"""Code shared by the LDSeg TFDS builders: file discovery, pairing images with
label maps by name, validation, and deterministic group-wise splits.

Every check raises `LayoutError` (a `ValueError`) whose message names the file or
folder at fault and says what was expected, so a build over thousands of files
fails with an actionable message. TFDS writes into an `incomplete.*` folder and
renames it only when every split is written, so a failed build never leaves a
finished-looking dataset behind.
"""

from __future__ import annotations

import csv
import math
import os
import re
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow_datasets as tfds

from ldseg_tf.data import io as ldseg_io

NIFTI_SUFFIXES = (".nii.gz", ".nii")


class LayoutError(ValueError):
    """The raw data does not have the documented layout or content."""


# ------------------------------------------------------------------ discovery
def _is_hidden(name: str) -> bool:
    # `.DS_Store`, `.ipynb_checkpoints`, editor swap files, `._foo` AppleDouble files.
    return name.startswith(".")


def require_dir(path: str, what: str) -> str:
    """Returns `path` if it is a folder, else raises naming it and `what` it
    should contain."""
    if not os.path.isdir(path):
        raise LayoutError(f"{path}: folder not found; expected {what}.")
    return path


def list_files(directory: str, suffixes: Sequence[str], what: str = "") -> List[str]:
    """Sorted paths of the non-hidden files in `directory` whose name ends with
    one of `suffixes` (case-insensitive).

    Raises:
        LayoutError: if `directory` is missing.
    """
    require_dir(directory, what or f"files ending in {', '.join(suffixes)}")
    lower = tuple(s.lower() for s in suffixes)
    return sorted(
        os.path.join(directory, name)
        for name in os.listdir(directory)
        if not _is_hidden(name)
        and name.lower().endswith(lower)
        and os.path.isfile(os.path.join(directory, name))
    )


def list_subdirs(directory: str) -> List[str]:
    """Sorted non-hidden sub-folders of `directory`."""
    return sorted(
        os.path.join(directory, name)
        for name in os.listdir(directory)
        if not _is_hidden(name) and os.path.isdir(os.path.join(directory, name))
    )


def stem(path: str) -> str:
    """File name without folder and extension (`.nii.gz` counts as one)."""
    return ldseg_io.split_extension(os.path.basename(path))[0]


def natural_key(text: str):
    """Sort key that orders `Case2` before `Case10`."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def pair_by_key(
    images: Mapping[str, str],
    labels: Mapping[str, str],
    *,
    expected_label: Callable[[str], str],
    image_dir: str,
    label_dir: str,
) -> List[Tuple[str, str, str]]:
    """Pairs images with label maps by key (never by sorted position).

    Args:
        images: key -> image path.
        labels: key -> label path.
        expected_label: image path -> the label path it needs (for messages).
        image_dir, label_dir: the folders, for messages.

    Returns:
        `[(key, image_path, label_path), ...]` in natural key order.

    Raises:
        LayoutError: naming the first image without a label (and the file that
            was expected) or the first label without an image.
    """
    for key in sorted(images, key=natural_key):
        if key not in labels:
            raise LayoutError(
                f"{images[key]}: no label map found; expected {expected_label(images[key])}."
            )
    for key in sorted(labels, key=natural_key):
        if key not in images:
            raise LayoutError(
                f"{labels[key]}: label map without an image; expected a matching image "
                f"in {image_dir}."
            )
    if not images:
        raise LayoutError(f"{image_dir}: no images found (labels in {label_dir}).")
    return [(k, images[k], labels[k]) for k in sorted(images, key=natural_key)]


def keyed_by_stem(
    paths: Iterable[str], suffix: str = "", what: str = "file"
) -> Dict[str, str]:
    """Maps each path to its stem minus `suffix` (e.g. `Case1_label.nii.gz` ->
    `Case1` for `suffix="_label"`).

    Raises:
        LayoutError: a name lacks `suffix`, or two files give the same key
            (e.g. `Case1.png` and `Case1.bmp`).
    """
    out: Dict[str, str] = {}
    for path in paths:
        name = stem(path)
        if suffix:
            if not name.endswith(suffix):
                raise LayoutError(f"{path}: expected a {what} named '<case>{suffix}.<ext>'.")
            name = name[: -len(suffix)]
        if name in out:
            raise LayoutError(f"{path} and {out[name]}: two {what}s for case {name!r}.")
        out[name] = path
    return out


# ------------------------------------------------------------------ reading
def read_array(path: str, *, label: bool = False):
    """`ldseg_io.read_image`, re-raising its errors as `LayoutError`s (they
    already name the file)."""
    try:
        return ldseg_io.read_image(path, label=label)
    except (OSError, ValueError) as e:
        raise LayoutError(str(e)) from e


def read_label(
    path: str,
    allowed: Optional[Iterable[int]] = None,
    *,
    what: str = "label values",
) -> Tuple[np.ndarray, dict]:
    """Reads a single-channel integer label map and checks its values.

    Args:
        path: the label file.
        allowed: the permitted label values, or None to accept any value >= 0.
        what: wording for the error message (e.g. "classes 0 background, 1 LV").

    Returns:
        `(labels, meta)`; `labels` keeps the file's integer dtype.

    Raises:
        LayoutError: unreadable file, more than one channel, non-integer values,
            or values outside `allowed` (all named with the file).
    """
    array, meta = read_array(path, label=True)
    if array.ndim == 3 and meta["format"] != "nifti" and array.shape[-1] in (3, 4):
        # An RGB(A) label image is fine when it is really grey (all channels equal).
        if np.all(array[..., :3] == array[..., :1]):
            array = array[..., 0]
        else:
            raise LayoutError(
                f"{path}: expected a single-channel label map, got a colour image of "
                f"shape {array.shape}."
            )
    if array.dtype.kind == "f":
        if not np.all(array == np.round(array)):
            raise LayoutError(f"{path}: label maps must hold integers; found fractional values.")
        array = array.astype(np.int64)
    elif array.dtype.kind not in "iub":
        raise LayoutError(f"{path}: label maps must hold integers; got dtype {array.dtype}.")
    values = np.unique(array)
    if allowed is None:
        bad = values[values < 0]
        expected = "non-negative labels"
    else:
        allowed = sorted(int(v) for v in allowed)
        bad = np.setdiff1d(values, allowed)
        expected = f"{what} {allowed}"
    if bad.size:
        raise LayoutError(
            f"{path}: label values {bad.tolist()[:10]} are outside the declared classes; "
            f"expected {expected}."
        )
    return array, meta


def check_same_shape(image_shape, label_shape, image_path: str, label_path: str) -> None:
    """Raises naming both files when the spatial shapes differ."""
    if tuple(image_shape) != tuple(label_shape):
        raise LayoutError(
            f"{label_path}: label map has shape {tuple(label_shape)} but its image "
            f"{image_path} has spatial shape {tuple(image_shape)}; they must match."
        )


def as_uint8_frames(array: np.ndarray, path: str) -> np.ndarray:
    """Returns `array` as uint8: unchanged if it already holds integers in
    [0, 255], else min-max rescaled over the whole array (one video or volume
    keeps its relative intensities)."""
    if array.dtype == np.uint8:
        return array
    if array.size == 0:
        raise LayoutError(f"{path}: empty image.")
    finite = np.isfinite(array)
    if not finite.all():
        raise LayoutError(f"{path}: image contains NaN or infinite values.")
    lo, hi = float(array.min()), float(array.max())
    if lo >= 0 and hi <= 255 and np.all(array == np.round(array)):
        return array.astype(np.uint8)
    scaled = (array.astype(np.float64) - lo) / max(hi - lo, 1e-12) * 255.0
    return np.round(scaled).astype(np.uint8)


def with_channel_axis(array: np.ndarray, spatial_rank: int) -> np.ndarray:
    """Appends a channel axis to a single-channel image."""
    return array[..., None] if array.ndim == spatial_rank else array


# ------------------------------------------------------------------ features
def image_label_features(channels: int, **extra) -> tfds.features.FeaturesDict:
    """The features of the 2D builders: `image` (uint8 `(H, W, channels)`),
    `label` (uint8 `(H, W, 1)` class map, shown with a colour map by
    `tfds.visualization`) and the builder's `extra` features."""
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(None, None, channels), dtype=np.uint8),
            "label": tfds.features.Image(shape=(None, None, 1), dtype=np.uint8, use_colormap=True),
            **extra,
        }
    )


# ------------------------------------------------------------------ splits
def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def split_groups(
    groups: Sequence[str],
    *,
    test_fraction: float = 0.2,
    validation_fraction: float = 0.1,
    seed: int = 0,
    what: str = "group",
    where: str = "",
) -> Dict[str, List[str]]:
    """Deterministic train/validation/test assignment of whole groups (videos,
    patients), so that no group's examples land in two splits.

    The sorted group ids are permuted with `numpy.random.default_rng(seed)`
    (stable across platforms and numpy versions); the first
    `round(test_fraction * n)` form `test`, the next
    `round(validation_fraction * n_train)` form `validation`, the rest `train`.
    Each split gets at least one group, so at least 3 groups are needed.

    Returns:
        `{"train": [...], "validation": [...], "test": [...]}`, each sorted.

    Raises:
        LayoutError: fewer than 3 groups (some split would be empty).
    """
    ids = sorted(set(groups), key=natural_key)
    n = len(ids)
    if n < 3:
        raise LayoutError(
            f"{where}: found {n} {what}(s) {ids}; at least 3 are needed to fill the "
            f"train, validation and test splits (split by {what}, never by example)."
        )
    order = [ids[i] for i in np.random.default_rng(seed).permutation(n)]
    n_test = min(max(1, _round_half_up(test_fraction * n)), n - 2)
    n_val = min(max(1, _round_half_up(validation_fraction * (n - n_test))), n - n_test - 1)
    splits = {
        "test": order[:n_test],
        "validation": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }
    return {k: sorted(v, key=natural_key) for k, v in splits.items()}


def split_by_group(
    items: Sequence[dict],
    group_of: Callable[[dict], str],
    *,
    seed: int,
    what: str,
    where: str,
) -> Dict[str, List[dict]]:
    """`split_groups` over the groups of `items`, then every item goes to its
    group's split (items keep their order).

    Returns:
        `{"test": [...], "validation": [...], "train": [...]}`.
    """
    groups = split_groups([group_of(item) for item in items], seed=seed, what=what, where=where)
    split_of = {group: split for split, members in groups.items() for group in members}
    return {split: [item for item in items if split_of[group_of(item)] == split] for split in groups}


def read_text(path: str) -> str:
    """The UTF-8 text of `path` (a byte-order mark is dropped); a `LayoutError`
    naming the file when it is not UTF-8 or cannot be read."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise LayoutError(f"{path}: expected UTF-8 text; got a byte {e.object[e.start]:#04x} "
                          f"at offset {e.start} that is not UTF-8 (save it as UTF-8).") from e
    except OSError as e:
        raise LayoutError(f"{path}: cannot read ({e.strerror or e}).") from e


def read_csv_rows(path: str) -> List[List[str]]:
    """The rows of the CSV file `path`, read by `read_text`."""
    import io

    return list(csv.reader(io.StringIO(read_text(path), newline="")))


def read_group_csv(path: str, key_column: str, group_column: str) -> Dict[str, str]:
    """Reads an optional `case -> patient` table (header row required; spaces
    around values are ignored)."""
    rows = read_csv_rows(path)
    if not rows:
        raise LayoutError(f"{path}: empty file; expected a header '{key_column},{group_column}'.")
    header = [h.strip().lower() for h in rows[0]]
    try:
        ki, gi = header.index(key_column), header.index(group_column)
    except ValueError:
        raise LayoutError(
            f"{path}: header {rows[0]} lacks the columns '{key_column}' and '{group_column}'."
        ) from None
    table = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(ki, gi):
            raise LayoutError(f"{path}:{line}: expected at least {max(ki, gi) + 1} columns.")
        table[row[ki].strip()] = row[gi].strip()
    return table
