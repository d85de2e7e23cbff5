"""The report's figures (paper Figs. 5, 6(b), 8 and 10).

Drawn on bare `matplotlib.figure.Figure` objects, as in `ldseg_tf.visualize`: no
pyplot state and no backend switch (a notebook keeps its inline backend). Each
function takes plain arrays / dicts, writes a PNG at `path` atomically and
returns `path`.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from ldseg_tf.experiments.profiles import MODELS
from ldseg_tf.visualize import display_image, error_overlay, new_figure, save_figure


def _curves_figure(path: str, xs: Sequence[float], curves: Dict[str, Sequence[float]],
                   xlabel: str, ylabel: str, title: Optional[str] = None,
                   log_x: bool = False) -> str:
    """One line per model: `curves` maps a model key (see `MODELS`) to one
    value per entry of `xs`."""
    fig = new_figure((5, 3.5))
    ax = fig.subplots()
    for key, ys in curves.items():
        ax.plot(xs, ys, marker="o", label=MODELS[key][0])
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def steps_figure(path: str, sweep: Sequence[int], curves: Dict[str, Sequence[float]]) -> str:
    """Fig. 5: mean foreground DSC vs DDIM steps; `curves` maps a model key to
    one DSC per entry of `sweep`."""
    return _curves_figure(path, sweep, curves, "DDIM steps", "mean foreground DSC",
                          log_x=True)


def sizes_figure(path: str, rows: Sequence[dict], steps: int) -> str:
    """Fig. 6(b): seconds per image and peak memory vs image size; `rows` are
    the rows of ``sizes.csv`` (model, size, seconds_per_image, peak_memory_mib,
    memory_kind)."""
    fig = new_figure((9, 3.5))
    axes = fig.subplots(1, 2)
    for key in ("ldseg", "two_stage", "pixel_diffusion"):
        r = [row for row in rows if row["model"] == key]
        axes[0].plot([q["size"] for q in r], [q["seconds_per_image"] for q in r],
                     marker="o", label=MODELS[key][0])
        axes[1].plot([q["size"] for q in r], [q["peak_memory_mib"] for q in r],
                     marker="o", label=MODELS[key][0])
    axes[0].set_ylabel(f"s / image ({steps} steps)")
    axes[1].set_ylabel(f"peak memory, MiB ({rows[0]['memory_kind']})")
    for ax in axes:
        ax.set_xlabel("image side (pixels)")
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)


def noise_figure(path: str, sigmas: Sequence[float], curves: Dict[str, Sequence[float]]) -> str:
    """Fig. 8: mean foreground DSC vs noise SD; `curves` maps a model key to one
    DSC per entry of `sigmas`."""
    return _curves_figure(path, sigmas, curves, "noise σ (normalized intensity)",
                          "mean foreground DSC")


def uncertainty_figure(path: str, shown: Sequence[tuple], samples: int,
                       spatial_dims: int = 2) -> str:
    """Fig. 10 maps: one row per `(image, truth, labels, sd)` case of `shown`
    (the middle slice of volumes when `spatial_dims` is 3): image, ground
    truth, mean segmentation with errors marked, SD map."""
    def mid(a):  # a 2D slice of a volume
        return a[a.shape[0] // 2] if spatial_dims == 3 else a

    fig = new_figure((12, 3 * len(shown)))
    axes = fig.subplots(len(shown), 4, squeeze=False)
    vmax = max(max(float(np.max(s[3])) for s in shown), 1e-6)
    for r, (img, truth, lab, sd) in enumerate(shown):
        img, truth, lab, sd = mid(img), mid(truth), mid(lab), mid(sd)
        axes[r, 0].imshow(display_image(img))
        axes[r, 1].imshow(truth, cmap="viridis", interpolation="nearest")
        axes[r, 2].imshow(error_overlay(img, truth, lab))
        im = axes[r, 3].imshow(sd, cmap="magma", vmin=0, vmax=vmax)
        fig.colorbar(im, ax=axes[r, 3], fraction=0.046)
        for c, t in enumerate(["image", "ground truth", f"mean of {samples} (errors red)",
                               "SD"]):
            axes[r, c].set_title(t)
            axes[r, c].axis("off")
    return save_figure(fig, path)


def error_vs_sd_figure(path: str, stats: dict) -> str:
    """Fig. 10 (right): error rate per SD decile, from `error_vs_sd`'s result."""
    fig = new_figure((5, 3.5))
    ax = fig.subplots()
    ax.bar([d["decile"] for d in stats["deciles"]],
           [d["error_rate"] for d in stats["deciles"]])
    ax.set_xlabel("SD decile (1 = most certain)")
    ax.set_ylabel("error rate")
    ax.set_title(f"AUROC of SD for errors: {stats['auroc']:.3f}")
    return save_figure(fig, path)
