"""Evaluate a model on a dataset: per-case metrics by sampling, and a summary."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ldseg_tf import metrics as case_metrics
from ldseg_tf.utils import write_json


def predict_dataset(model, dataset, steps=None, samples=1, seed=0, progress=True, tiles=None):
    """Runs `model.segment` over a batched `(images, masks)` dataset, or
    `model.segment_tiled(**tiles)` when `tiles` is a dict (e.g. `{"overlap":
    0.5}`; full-resolution images of any size).

    Returns `(images, truths, outputs)`: lists of numpy arrays per case, and a
    dict of per-case lists for `labels`, `probs` and `std`.
    """
    from tqdm.auto import tqdm

    images, truths = [], []
    outputs = {"labels": [], "probs": [], "std": []}
    for i, (x, y) in enumerate(tqdm(dataset, desc="segmenting", disable=not progress,
                                    unit="batch")):
        # Each batch gets its own seed so that results do not depend on the
        # batch composition more than necessary, yet repeat exactly.
        if tiles is not None:
            out = model.segment_tiled(x.numpy(), steps=steps, samples=samples, seed=seed + i,
                                      **tiles)
        else:
            out = model.segment(x.numpy(), steps=steps, samples=samples, seed=seed + i)
        images.extend(x.numpy())
        truths.extend(y.numpy())
        for k in outputs:
            outputs[k].extend(out[k])
    return images, truths, outputs


def evaluate_model(model, dataset, steps=None, samples=1, seed=0, spacing=None, distances=True,
                   progress=True, tiles=None):
    """Per-case DSC/IoU (and HD95/ASSD when `distances`) of `model` on `dataset`
    (`tiles`: see `predict_dataset`; then no autoencoder ceiling, whose label
    encoder needs the model's input size).

    Returns a dict with `cases` (list of per-case dicts from
    `ldseg_tf.metrics.evaluate_case`) and `summary` (mean ± sd per class).
    """
    cfg = model.config
    _, truths, outputs = predict_dataset(model, dataset, steps, samples, seed, progress, tiles)
    cases = [
        case_metrics.evaluate_case(pred, truth, cfg.num_classes, spacing=spacing,
                                   class_names=cfg.names_of_classes, distances=distances)
        for pred, truth in zip(outputs["labels"], truths)
    ]
    result = {"cases": cases, "summary": case_metrics.summarize(cases),
              "steps": steps or cfg.sampling_steps, "samples": samples, "seed": seed}
    if hasattr(model, "reconstruct") and tiles is None:
        result["ceiling"] = autoencoder_ceiling(model, dataset)["summary"]
    return result


def autoencoder_ceiling(model, dataset):
    """DSC/IoU of decode(encode(y)) per case: the best any denoiser could reach
    through `model`'s latent (see `LDSeg.reconstruct`).

    Args:
        model: an `LDSeg`.
        dataset: batched `(images, masks)` (tensors or numpy arrays); only
            the masks are used.

    Returns:
        dict with `cases` (per-case metrics, no surface distances) and `summary`.
    """
    cfg = model.config
    cases = []
    for _, y in dataset:
        rebuilt = np.argmax(model.reconstruct(y).numpy(), axis=-1)
        truth = np.asarray(y)
        if truth.ndim == rebuilt.ndim + 1:
            truth = (np.argmax(truth, axis=-1) if truth.shape[-1] == cfg.num_classes
                     else truth[..., 0])
        cases.extend(case_metrics.evaluate_case(r, t, cfg.num_classes,
                                                class_names=cfg.names_of_classes,
                                                distances=False)
                     for r, t in zip(rebuilt, truth))
    return {"cases": cases, "summary": case_metrics.summarize(cases)}


def write_report(result: dict, path: str, extra: Optional[dict] = None) -> str:
    """Writes an evaluation result as JSON (atomically)."""
    doc = dict(result)
    doc.update(extra or {})
    return write_json(path, doc)


def mean_foreground(summary: dict, metric: str) -> float:
    """Mean over foreground classes of a metric's mean (the "union" entry,
    when present, is left out)."""
    values = [v[metric]["mean"] for k, v in summary.items()
              if k != case_metrics.UNION_KEY and metric in v]
    return float(np.mean(values)) if values else float("nan")
