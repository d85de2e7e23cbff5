"""Case-level segmentation metrics for evaluation reports (numpy / scipy).

Overlap metrics follow the paper exactly: DSC = 2|A∩B| / (|A| + |B|) and
IoU = |A∩B| / |A∪B|. Surface-distance metrics (HD95, ASSD) use the surface voxels of
each mask (the mask minus its binary erosion with face connectivity; the image border
counts as outside, so an object touching the border has a surface there) and
Euclidean distance transforms, in physical units when a voxel spacing is given.

Empty-mask conventions:

- DSC / IoU: both empty -> 1.0, exactly one empty -> 0.0.
- HD95 / ASSD: both empty -> 0.0, exactly one empty -> `inf`; `summarize` leaves
  `inf` out of the means and reports how many cases were infinite.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from ldseg_tf import utils
from ldseg_tf.config import default_class_names

UNION_KEY = "all"


# ------------------------------------------------------------------------ checks
def _as_bool_pair(pred, target) -> Tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred).astype(bool)
    target = np.asarray(target).astype(bool)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target shapes differ: pred {pred.shape}, target {target.shape}."
        )
    return pred, target


def _check_spacing(spacing, ndim: int) -> Optional[Tuple[float, ...]]:
    if spacing is None:
        return None
    spacing = tuple(float(s) for s in np.atleast_1d(spacing))
    if len(spacing) != ndim:
        raise ValueError(
            f"spacing needs one value per axis ({ndim}); got {spacing}."
        )
    if any(not s > 0 or math.isinf(s) for s in spacing):
        raise ValueError(f"spacing values must be positive and finite; got {spacing}.")
    return spacing


def _check_labels(labels, num_classes: int, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.astype(np.int64)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.floating) or not np.all(
            np.isfinite(labels) & (labels == np.round(labels))
        ):
            raise ValueError(
                f"{name} must hold integer class labels; got dtype {labels.dtype} "
                f"with non-integer values."
            )
        labels = labels.astype(np.int64)
    bad = (labels < 0) | (labels >= num_classes)
    if np.any(bad):
        offending = np.unique(labels[bad])
        shown = ", ".join(str(v) for v in offending[:10])
        more = f" and {offending.size - 10} more" if offending.size > 10 else ""
        raise ValueError(
            f"{name} has labels outside 0..{num_classes - 1} "
            f"(num_classes={num_classes}): {shown}{more}."
        )
    return labels


# ----------------------------------------------------------------------- overlap
def dice(pred, target) -> float:
    """Dice similarity coefficient 2|A∩B| / (|A| + |B|) of two boolean masks.

    Both empty -> 1.0; exactly one empty -> 0.0.
    """
    pred, target = _as_bool_pair(pred, target)
    total = int(pred.sum()) + int(target.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, target).sum()) / total


def per_image_dice(pred, target, label: int = 1, mask=None) -> np.ndarray:
    """DSC of class `label` for every image of a batch.

    Args:
        pred, target: int label maps `(N, *spatial)`.
        label: the class scored.
        mask: optional bool `(N, *spatial)`; only pixels where it is True count
            (e.g. a retina's field of view).

    Returns:
        float64 `(N,)`, with `dice`'s convention for empty masks.
    """
    pred, target = _as_bool_pair(np.asarray(pred) == label, np.asarray(target) == label)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != pred.shape:
            raise ValueError(f"mask shape {mask.shape} differs from the label maps' "
                             f"{pred.shape}.")
        pred, target = pred & mask, target & mask
    return np.array([dice(p, t) for p, t in zip(pred, target)], dtype=np.float64)


def iou(pred, target) -> float:
    """Intersection over union |A∩B| / |A∪B| of two boolean masks.

    Both empty -> 1.0; exactly one empty -> 0.0.
    """
    pred, target = _as_bool_pair(pred, target)
    union = int(np.logical_or(pred, target).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(pred, target).sum()) / union


# ----------------------------------------------------------------------- surface
def _surface(mask: np.ndarray) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    # border_value=0: the outside of the image is background, so voxels on the image
    # border belong to the surface (the usual convention, e.g. MedPy).
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def surface_distances(pred, target, spacing=None) -> Tuple[np.ndarray, np.ndarray]:
    """Directed surface distances between two non-empty boolean masks.

    Args:
        pred, target: boolean arrays of the same shape (any rank >= 1).
        spacing: voxel size per axis; distances are in voxels when None.

    Returns:
        `(pred_to_target, target_to_pred)`: for each surface voxel of `pred` the
        distance to the nearest surface voxel of `target`, and vice versa (float64,
        1D).

    Raises:
        ValueError: on different shapes, a bad spacing, or an empty mask.
    """
    pred, target = _as_bool_pair(pred, target)
    if pred.ndim == 0:
        raise ValueError("surface distances need masks of rank >= 1; got scalars.")
    spacing = _check_spacing(spacing, pred.ndim)
    if not pred.any() or not target.any():
        raise ValueError("surface distances are undefined for an empty mask.")
    pred_surface, target_surface = _surface(pred), _surface(target)
    # Every nearest surface voxel lies inside the bounding box of both surfaces, so
    # the distance transforms can run on that crop only.
    box = ndimage.find_objects((pred_surface | target_surface).astype(np.int8))[0]
    pred_surface, target_surface = pred_surface[box], target_surface[box]
    to_target = ndimage.distance_transform_edt(~target_surface, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=spacing)
    return to_target[pred_surface], to_pred[target_surface]


def _empty_distance(pred: np.ndarray, target: np.ndarray) -> Optional[float]:
    has_pred, has_target = bool(pred.any()), bool(target.any())
    if not has_pred and not has_target:
        return 0.0
    if has_pred != has_target:
        return math.inf
    return None


def hd95(pred, target, spacing=None) -> float:
    """95th-percentile symmetric Hausdorff distance of two boolean masks.

    The 95th percentile (numpy's default linear interpolation) of the pooled set of
    both directed surface-distance sets, pred -> target and target -> pred.

    Args:
        pred, target: boolean arrays of the same shape (2D, 3D or any rank >= 1).
        spacing: voxel size per axis for a result in physical units; voxels when None.

    Returns:
        The distance; 0.0 when both masks are empty, `inf` when exactly one is.
    """
    pred, target = _as_bool_pair(pred, target)
    empty = _empty_distance(pred, target)
    if empty is not None:
        return empty
    forward, backward = surface_distances(pred, target, spacing)
    return float(np.percentile(np.concatenate([forward, backward]), 95))


def assd(pred, target, spacing=None) -> float:
    """Average symmetric surface distance of two boolean masks.

    The mean over the surface voxels of both masks of the distance to the other
    mask's surface: (sum(d_pred->target) + sum(d_target->pred)) / (|S_pred| + |S_target|).

    Args:
        pred, target: boolean arrays of the same shape (2D, 3D or any rank >= 1).
        spacing: voxel size per axis for a result in physical units; voxels when None.

    Returns:
        The distance; 0.0 when both masks are empty, `inf` when exactly one is.
    """
    pred, target = _as_bool_pair(pred, target)
    empty = _empty_distance(pred, target)
    if empty is not None:
        return empty
    forward, backward = surface_distances(pred, target, spacing)
    return float((forward.sum() + backward.sum()) / (forward.size + backward.size))


# ------------------------------------------------------------------------ cases
def _class_keys(num_classes: int, class_names: Optional[Sequence[str]]) -> List[str]:
    if class_names is None:
        class_names = default_class_names(num_classes)
    class_names = [str(c) for c in class_names]
    if len(class_names) != num_classes:
        raise ValueError(
            f"class_names has {len(class_names)} names but num_classes is {num_classes}."
        )
    keys = class_names[1:]
    if len(set(keys)) != len(keys) or UNION_KEY in keys:
        raise ValueError(
            f"foreground class names must be unique and differ from {UNION_KEY!r}; "
            f"got {keys}."
        )
    return keys


def evaluate_case(
    pred_labels,
    true_labels,
    num_classes: int,
    spacing=None,
    class_names: Optional[Sequence[str]] = None,
    distances: bool = True,
) -> Dict[str, Dict[str, float]]:
    """Metrics of one predicted label map against the ground truth.

    Args:
        pred_labels, true_labels: integer label maps of the same shape, `(H, W)` or
            `(D, H, W)`, values in `0..num_classes - 1` (0 is background).
        num_classes: number of classes, background included (>= 2).
        spacing: voxel size per axis, for HD95 / ASSD in physical units.
        class_names: `num_classes` names (background first); the result's keys.
            Defaults to "class_1", "class_2", ...
        distances: also compute HD95 and ASSD (the slow part).

    Returns:
        `{class_name: {"dsc", "iou", "hd95", "assd"}}` for each foreground class
        1..C-1 (no distances when `distances=False`), plus, when there are several
        foreground classes, `"all": {"dsc", "iou"}` for the union of the foreground
        (e.g. the paper's LV+LA).

    Raises:
        ValueError: on different shapes or labels outside `0..num_classes - 1`.
    """
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(
            f"num_classes counts the background and must be an integer >= 2; "
            f"got {num_classes!r}."
        )
    num_classes = int(num_classes)
    pred_shape, true_shape = np.shape(pred_labels), np.shape(true_labels)
    if pred_shape != true_shape:
        raise ValueError(
            f"pred_labels and true_labels shapes differ: pred_labels {pred_shape}, "
            f"true_labels {true_shape}."
        )
    pred = _check_labels(pred_labels, num_classes, "pred_labels")
    true = _check_labels(true_labels, num_classes, "true_labels")
    spacing = _check_spacing(spacing, pred.ndim)
    keys = _class_keys(num_classes, class_names)

    result: Dict[str, Dict[str, float]] = {}
    for c, key in enumerate(keys, start=1):
        p, t = pred == c, true == c
        metrics = {"dsc": dice(p, t), "iou": iou(p, t)}
        if distances:
            metrics["hd95"] = hd95(p, t, spacing)
            metrics["assd"] = assd(p, t, spacing)
        result[key] = metrics
    if num_classes > 2:
        p, t = pred > 0, true > 0
        result[UNION_KEY] = {"dsc": dice(p, t), "iou": iou(p, t)}
    return result


def summarize(cases: Sequence[Dict[str, Dict[str, float]]]) -> Dict[str, Dict[str, dict]]:
    """Mean and standard deviation of every metric of every class over cases.

    Args:
        cases: results of `evaluate_case`.

    Returns:
        `{class_name: {metric: {"mean", "sd", "n", "n_inf"}}}`: mean and population
        standard deviation (numpy's default, ddof=0) over the `n` cases with a finite
        value; `n_inf` counts the cases left out because the value was infinite (an
        empty prediction or ground truth). Mean and sd are NaN when `n` is 0.
    """
    values: Dict[str, Dict[str, List[float]]] = {}
    for case in cases:
        for key, metrics in case.items():
            for metric, value in metrics.items():
                values.setdefault(key, {}).setdefault(metric, []).append(float(value))
    summary: Dict[str, Dict[str, dict]] = {}
    for key, metrics in values.items():
        summary[key] = {}
        for metric, vals in metrics.items():
            vals = np.asarray(vals)
            finite = vals[np.isfinite(vals)]
            summary[key][metric] = {
                "mean": float(finite.mean()) if finite.size else math.nan,
                "sd": float(finite.std()) if finite.size else math.nan,
                "n": int(finite.size),
                "n_inf": int(np.isinf(vals).sum()),
            }
    return summary


def format_summary(summary: Dict[str, Dict[str, dict]], digits: int = 4) -> str:
    """One line per class, e.g. `LV  dsc 0.9123 ± 0.0312  hd95 2.10 ± 0.80 (1 inf)`."""
    width = max((len(k) for k in summary), default=0)
    lines = []
    for key, metrics in summary.items():
        parts = []
        for metric, s in metrics.items():
            text = f"{metric} {s['mean']:.{digits}f} ± {s['sd']:.{digits}f}"
            if s["n_inf"]:
                text += f" ({s['n_inf']} inf)"
            parts.append(text)
        lines.append(f"{key:<{width}}  " + "  ".join(parts))
    return "\n".join(lines)


def to_csv_rows(
    cases: Sequence[Dict[str, Dict[str, float]]], case_ids: Optional[Iterable] = None
) -> List[Dict[str, object]]:
    """Flattens `evaluate_case` results into one dict per case for `csv.DictWriter`.

    Columns are `"case"` (the id, or the index when `case_ids` is None) and
    `"<class>/<metric>"`, e.g. `"LV/dsc"`, `"all/iou"`.
    """
    case_ids = list(range(len(cases))) if case_ids is None else list(case_ids)
    if len(case_ids) != len(cases):
        raise ValueError(f"got {len(case_ids)} case ids for {len(cases)} cases.")
    rows = []
    for case_id, case in zip(case_ids, cases):
        row: Dict[str, object] = {"case": case_id}
        for key, metrics in case.items():
            for metric, value in metrics.items():
                row[f"{key}/{metric}"] = value
        rows.append(row)
    return rows


def write_csv(
    path: str,
    cases: Sequence[Dict[str, Dict[str, float]]],
    case_ids: Optional[Iterable] = None,
) -> None:
    """Writes the per-case metrics to a CSV file (atomically; `inf` as "inf")."""
    rows = to_csv_rows(cases, case_ids)
    utils.write_csv(path, rows)
