"""Figures: segmentation overlays with errors marked (paper Fig. 4) and
uncertainty maps (paper Fig. 10)."""

from __future__ import annotations

import numpy as np

from ldseg_tf.utils import atomic_path

# Fig. 4: dark red marks false negatives, light red false positives.
FALSE_NEGATIVE = (0.55, 0.0, 0.0)
FALSE_POSITIVE = (1.0, 0.55, 0.55)


def display_image(image: np.ndarray) -> np.ndarray:
    """`(H, W, C)` float image -> `(H, W, 3)` in [0, 1] for display."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    image = image[..., :3]
    lo, hi = float(image.min()), float(image.max())
    return (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)


def error_overlay(image, truth, pred, alpha=0.6) -> np.ndarray:
    """RGB image with correct foreground tinted by class and errors coloured:
    dark red false negatives, light red false positives (any foreground class).

    `image` `(H, W, C)`, `truth`/`pred` int `(H, W)`; returns float `(H, W, 3)`.
    """
    import matplotlib

    rgb = display_image(image)
    out = rgb.copy()
    cmap = matplotlib.colormaps["tab10"]
    for c in np.unique(truth[truth > 0]):
        hit = (truth == c) & (pred == c)
        out[hit] = (1 - alpha) * rgb[hit] + alpha * np.array(cmap(int(c) % 10)[:3])
    fn = (truth > 0) & (pred != truth)
    fp = (pred > 0) & (truth != pred) & ~fn
    out[fn] = (1 - alpha) * rgb[fn] + alpha * np.array(FALSE_NEGATIVE)
    out[fp] = (1 - alpha) * rgb[fp] + alpha * np.array(FALSE_POSITIVE)
    return out


def new_figure(figsize):
    """A figure that belongs to no pyplot window: drawing on it neither needs
    nor changes the active backend (so notebooks keep their inline backend)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def save_figure(fig, path: str) -> str:
    """Writes `fig` as a PNG at `path` atomically (a temporary file renamed into
    place) and releases it. Works for `Figure` objects and pyplot figures."""
    import sys

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    if "matplotlib.pyplot" in sys.modules:
        # A figure made with pyplot stays registered until closed; for a bare
        # `Figure` this does nothing.
        sys.modules["matplotlib.pyplot"].close(fig)
    return path


def save_overlay_figure(path, images, truths, preds, titles=None) -> str:
    """One row per case: image, ground truth, prediction with errors marked.

    Writes a PNG at `path` (atomically) and returns `path`. Uses no pyplot state
    and does not switch the matplotlib backend."""
    n = len(images)
    fig = new_figure((9, 3 * n))
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        rgb = display_image(images[i])
        axes[i, 0].imshow(rgb)
        axes[i, 1].imshow(error_overlay(images[i], truths[i], truths[i]))
        axes[i, 2].imshow(error_overlay(images[i], truths[i], preds[i]))
        for j, name in enumerate(["image", "ground truth", titles[i] if titles else "LDSeg"]):
            axes[i, j].set_title(name)
            axes[i, j].axis("off")
    fig.suptitle("dark red: false negative, light red: false positive")
    return save_figure(fig, path)


def save_uncertainty_figure(path, images, mean_labels, stds, samples) -> str:
    """One row per case: image, mean segmentation, SD map over `samples` runs.

    Writes a PNG at `path` (atomically) and returns `path`. Uses no pyplot state
    and does not switch the matplotlib backend."""
    n = len(images)
    fig = new_figure((9.6, 3 * n))
    axes = fig.subplots(n, 3, squeeze=False)
    vmax = max(float(np.max(stds)), 1e-6)
    for i in range(n):
        axes[i, 0].imshow(display_image(images[i]))
        axes[i, 0].set_title("image")
        axes[i, 1].imshow(mean_labels[i], cmap="viridis", interpolation="nearest")
        axes[i, 1].set_title(f"mean of {samples} samples")
        im = axes[i, 2].imshow(stds[i], cmap="magma", vmin=0, vmax=vmax)
        axes[i, 2].set_title("standard deviation")
        fig.colorbar(im, ax=axes[i, 2], fraction=0.046)
        for ax in axes[i]:
            ax.axis("off")
    return save_figure(fig, path)
