"""Figures (`ldseg_tf.visualize`): drawn without pyplot state or a backend switch."""

import os

import matplotlib
import numpy as np
import pytest

from ldseg_tf import visualize


@pytest.fixture
def other_backend():
    """A non-Agg backend is active during the test (as the inline backend is in a
    notebook); the original backend is restored afterwards."""
    original = matplotlib.get_backend()
    matplotlib.use("svg")
    yield "svg"
    matplotlib.use(original)


def _cases(n=2, size=24, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((n, size, size, 3)).astype(np.float32)
    yy, xx = np.mgrid[:size, :size]
    truth = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2).astype(np.int32)
    truths = np.stack([truth] * n)
    preds = np.roll(truths, 2, axis=2)
    return images, truths, preds


def _check_png(path, min_height):
    import matplotlib.image

    assert os.path.isfile(path) and os.path.getsize(path) > 5000
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] >= min_height
    assert float(pixels[..., :3].std()) > 0.05  # drawn, not blank
    assert [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".tmp")] == []


def test_save_figures_keep_the_backend_and_write_pngs(tmp_path, other_backend):
    import matplotlib.pyplot as plt

    figures_before = plt.get_fignums()
    images, truths, preds = _cases()
    overlay = visualize.save_overlay_figure(str(tmp_path / "overlay.png"), images, truths, preds,
                                            titles=["LDSeg", "LDSeg"])
    std = np.abs(np.random.default_rng(1).normal(size=truths.shape)).astype(np.float32)
    uncertainty = visualize.save_uncertainty_figure(str(tmp_path / "uncertainty.png"), images,
                                                    preds, std, samples=10)
    assert overlay == str(tmp_path / "overlay.png")
    assert uncertainty == str(tmp_path / "uncertainty.png")
    assert matplotlib.get_backend() == other_backend
    assert plt.get_fignums() == figures_before  # no pyplot figure created or left open
    _check_png(overlay, min_height=300)
    _check_png(uncertainty, min_height=300)


def test_save_replaces_an_existing_figure(tmp_path):
    images, truths, preds = _cases(n=1)
    path = tmp_path / "overlay.png"
    path.write_bytes(b"old")
    visualize.save_overlay_figure(str(path), images, truths, preds)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _check_png(str(path), min_height=150)


def test_error_overlay_marks_errors():
    images, truths, preds = _cases(n=1)
    out = visualize.error_overlay(images[0], truths[0], preds[0], alpha=1.0)
    fn = (truths[0] > 0) & (preds[0] == 0)
    fp = (preds[0] > 0) & (truths[0] == 0)
    assert fn.any() and fp.any()
    np.testing.assert_allclose(out[fn], np.broadcast_to(visualize.FALSE_NEGATIVE, out[fn].shape))
    np.testing.assert_allclose(out[fp], np.broadcast_to(visualize.FALSE_POSITIVE, out[fp].shape))
