"""Measurements the experiments share: per-case metrics of a model on
in-memory batches, sampling time, peak memory, and how well the sampling SD
marks errors."""

from __future__ import annotations

import os
import threading
import time
from typing import Dict, Sequence

import numpy as np

from ldseg_tf.evaluation import mean_foreground
from ldseg_tf.experiments.profiles import MODELS

def evaluate(model, batches, steps=None, seed=0, distances=True, noise_sigma=0.0,
             samples=1) -> dict:
    """Per-case metrics of `model` on in-memory batches (optionally with
    Gaussian noise of SD `noise_sigma` added to the normalized images)."""
    from ldseg_tf import metrics

    cfg = model.config
    rng = np.random.default_rng(seed + 7919)
    cases = []
    for i, (x, y) in enumerate(batches):
        if noise_sigma:
            x = (x + rng.normal(0.0, noise_sigma, x.shape)).astype(np.float32)
        out = model.segment(x, steps=steps, samples=samples, seed=seed + i)
        for pred, truth in zip(out["labels"], y):
            cases.append(metrics.evaluate_case(pred, truth, cfg.num_classes,
                                               class_names=cfg.names_of_classes,
                                               distances=distances))
    return {"cases": cases, "summary": metrics.summarize(cases)}


#: Below this mean foreground DSC a model has not learned the task: curves and
#: comparisons built on it (steps, noise, uncertainty) say nothing.
LEARNED_DSC = 0.05


def ceiling_dsc(model, batches) -> float:
    """Mean foreground DSC of decode(encode(y)) on `batches`: the best any
    denoiser could reach through the model's latent (see `LDSeg.reconstruct`)."""
    from ldseg_tf.evaluation import autoencoder_ceiling

    return mean_dsc(autoencoder_ceiling(model, batches)["summary"])


def noise_verdict(curves: Dict[str, Sequence[float]]) -> str:
    """Which model loses less DSC from the first to the last noise level; none
    when a model had not learned the task (it has nothing to lose)."""
    untrained = [k for k, v in curves.items() if v[0] < LEARNED_DSC]
    if untrained:
        return (f"no comparison: {', '.join(MODELS[k][0] for k in untrained)} did not learn "
                f"the task (DSC < {LEARNED_DSC} without noise), so it has nothing to lose.")
    more = max(curves, key=lambda k: curves[k][-1] - curves[k][0])
    return f"the more robust here: {MODELS[more][0]}."


def mean_dsc(summary: dict, metric: str = "dsc") -> float:
    """Mean over the foreground classes of `metric` in a `summarize` result."""
    return mean_foreground(summary, metric)


def time_segment(model, images, steps, repeats=1) -> float:
    """Seconds per image of `model.segment` on batches of one image, after
    warm-up calls that trace."""
    warm = min(steps, 2) if steps else steps
    model.segment(images[:1], steps=warm, seed=0)
    start = time.perf_counter()
    for r in range(repeats):
        for i in range(len(images)):
            model.segment(images[i:i + 1], steps=steps, seed=r)
    return (time.perf_counter() - start) / (repeats * len(images))


class PeakMemory:
    """Peak memory during a block: the GPU allocator's peak on a GPU, else the
    peak of the process's resident set size above its value at entry (polled
    every 2 ms), in MiB."""

    def __init__(self):
        import tensorflow as tf

        self.gpu = bool(tf.config.list_physical_devices("GPU"))
        self.peak_mib = float("nan")
        self.kind = ("GPU allocator peak" if self.gpu else
                     "CPU resident-set increase (near 0 when TF reuses freed memory)")

    @staticmethod
    def _rss():
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # pragma: no cover - not Linux
            return 0

    def __enter__(self):
        import tensorflow as tf

        if self.gpu:
            tf.config.experimental.reset_memory_stats("GPU:0")
            return self
        self._base = self._rss()
        self._peak = self._base
        self._stop = threading.Event()

        def poll():
            while not self._stop.is_set():
                self._peak = max(self._peak, self._rss())
                time.sleep(0.002)

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        import tensorflow as tf

        if self.gpu:
            self.peak_mib = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mib = max(self._peak, self._rss()) - self._base
            self.peak_mib /= 2**20
        return False


def error_vs_sd(stds: np.ndarray, errors: np.ndarray, bins: int = 10) -> dict:
    """How well the SD marks errors: pixels sorted by SD (ties in a fixed
    random order) and cut into `bins` equal groups; the error rate and SD range
    of each, and the AUROC of SD as a score for "this pixel is wrong"
    (0.5 = no better than chance; ties count half)."""
    from sklearn.metrics import roc_auc_score

    s = np.asarray(stds, np.float64).ravel()
    e = np.asarray(errors, bool).ravel()
    tie = np.random.default_rng(0).random(s.size)
    order = np.lexsort((tie, s))
    groups = np.array_split(order, bins)
    rows = []
    for k, g in enumerate(groups):
        if g.size == 0:
            continue
        rows.append({"decile": k + 1, "sd_min": float(s[g].min()), "sd_max": float(s[g].max()),
                     "pixels": int(g.size), "error_rate": float(e[g].mean())})
    n_pos, n_neg = int(e.sum()), int((~e).sum())
    auroc = roc_auc_score(e, s) if n_pos and n_neg else float("nan")
    return {"deciles": rows, "auroc": float(auroc), "error_rate": float(e.mean()),
            "errors": n_pos, "pixels": int(e.size)}
