"""`ldseg reproduce`: the paper's Sections V-VI side by side, with one command.

Trains LDSeg and every comparison model on the same data with the same input
pipeline (or reuses models trained earlier in the same output folder), runs the
experiments and writes `report.md`, CSV tables and PNG figures:

- Tables I-III (`accuracy.csv`): DSC / IoU (and HD95 / ASSD in pixels of the
  model's input grid) per class, mean ± sd over test cases, for LDSeg, the
  two-stage latent diffusion (LSegDiff-style), the pixel-space diffusion
  (MedSegDiff-style, simplified) and the ResUNet.
- Table IV (`speed.csv`): seconds per image with T (the paper: 1000) and with 2
  DDIM steps, and the speed-up.
- Fig. 5 (`steps.csv`, `fig5_steps.png`): DSC vs number of DDIM steps.
- Fig. 6(b) (`sizes.csv`, `fig6b_sizes.png`): seconds per image and peak memory
  vs image size for LDSeg, two-stage and pixel diffusion (untrained weights: the
  cost of sampling does not depend on them).
- Fig. 8 (`noise.csv`, `fig8_noise.png`): DSC vs Gaussian noise added to the
  normalized test images, LDSeg vs ResUNet.
- Table V (`ablation.csv`): label encoder / image encoder / both replaced by
  parameter-free down-sampling.
- Fig. 10 (`uncertainty.csv`, `fig10_uncertainty.png`,
  `fig10_error_vs_sd.png`): mean and SD maps from N samples, error rate per SD
  decile and the AUROC of the SD as a detector of errors.

Profiles: `tiny` (synthetic data, minutes, what the tests run), `cpu` (a
benchmark on DRIVE / the GlaS and knee samples; target: under 1 h on 2 CPU
cores), `paper` (the paper's sizes, T = 1000, long GPU training).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ldseg_tf.environment import environment_info  # noqa: F401 - public here too
from ldseg_tf.utils import atomic_write_text, write_json

EXPERIMENTS = ("accuracy", "speed", "steps", "sizes", "noise", "ablation", "uncertainty")

#: Model keys, their report names and what they are.
MODELS = {
    "ldseg": ("LDSeg", "end-to-end latent diffusion (the paper)"),
    "two_stage": ("Two-stage LDM", "LSegDiff-style: frozen label autoencoder, then latent MSE"),
    "pixel_diffusion": ("Pixel diffusion", "MedSegDiff-style, simplified: DDIM on the mask"),
    "resunet": ("ResUNet", "deterministic residual U-Net"),
    "ablation_label": ("LDSeg, label enc. -> NN down-sampling", "Table V"),
    "ablation_image": ("LDSeg, image enc. -> down-sampling", "Table V"),
    "ablation_both": ("LDSeg, both -> down-sampling", "Table V"),
}

#: Models each experiment needs.
NEEDS = {
    "accuracy": ("ldseg", "two_stage", "pixel_diffusion", "resunet"),
    "speed": ("ldseg",),
    "steps": ("ldseg", "two_stage"),
    "sizes": (),
    "noise": ("ldseg", "resunet"),
    "ablation": ("ldseg", "ablation_label", "ablation_image", "ablation_both"),
    "uncertainty": ("ldseg",),
}

#: (train split, test split) per data source; DRIVE ships only its 20 training
#: images here, of which the last quarter (5 images) is the fixed test set.
SPLITS = {
    "synthetic": ("train", "test"),
    "drive": ("train[:75%]", "train[75%:]"),
    "glas": ("train[:60%]", "train[60%:]"),
    "knee": ("train", "test"),
    "echo": ("train", "test"),
    "echo/camus": ("train", "test"),
}


@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes and schedules of a reproduction run.

    `image_shapes` maps a data source ("synthetic:knee", "drive", ..., with
    "2d"/"3d" as fall-backs; the channel count always comes from the data) to
    the model input; `config` holds `LDSegConfig` overrides on top of `preset`.
    Training runs `train_steps` optimizer steps per model, or for
    `train_seconds` when that is set (then `train_steps` is an upper bound).
    """

    name: str
    preset: str
    image_shapes: Dict[str, Tuple[int, ...]]
    config: Dict[str, object]
    timesteps: int
    train_examples: Optional[int]
    test_examples: Optional[int]
    batch_size: int
    train_steps: int
    train_seconds: Optional[float]
    steps_per_epoch: int
    augment: bool
    stage1_fraction: float  # two-stage: share of the steps / time for the autoencoder
    pixel_steps: int  # DDIM steps of the pixel-space diffusion in the accuracy table
    step_sweep: Tuple[int, ...]
    speed_images: int
    size_sweep: Tuple[int, ...]
    size_sweep_steps: int
    noise_sigmas: Tuple[float, ...]
    uncertainty_samples: int
    uncertainty_cases: int
    distances: bool

    def image_shape(self, data: str, channels: int, spatial_dims: int) -> Tuple[int, ...]:
        for key in (data, data.split(":")[0], f"{spatial_dims}d"):
            if key in self.image_shapes:
                return tuple(self.image_shapes[key]) + (channels,)
        raise ValueError(f"profile {self.name!r} has no image shape for {data!r}.")


_PAPER_STEPS = (1, 2, 5, 10, 50, 100, 1000)
_SIGMAS = (0.0, 0.05, 0.1, 0.15, 0.2)

PROFILES = {
    "tiny": Profile(
        name="tiny", preset="small",
        image_shapes={"2d": (32, 32), "3d": (16, 16, 16)},
        config=dict(ema=0.9), timesteps=100, train_examples=16, test_examples=4,
        batch_size=4, train_steps=4, train_seconds=None, steps_per_epoch=4, augment=False,
        stage1_fraction=0.5, pixel_steps=5, step_sweep=_PAPER_STEPS, speed_images=1,
        size_sweep=(32, 64), size_sweep_steps=5, noise_sigmas=_SIGMAS,
        uncertainty_samples=6, uncertainty_cases=2, distances=True),
    "cpu": Profile(
        name="cpu", preset="small",
        image_shapes={"2d": (128, 128), "knee": (32, 32, 64), "3d": (32, 32, 32)},
        config=dict(downsamplings=3, label_encoder_widths=(8, 16, 16, 16),
                    image_encoder_widths=(16, 16, 16), decoder_widths=(16, 16, 16),
                    denoiser_widths=(16, 32), learning_rate=2e-3),
        timesteps=1000, train_examples=None, test_examples=None, batch_size=4,
        train_steps=100_000, train_seconds=270.0, steps_per_epoch=25, augment=True,
        stage1_fraction=0.4, pixel_steps=50, step_sweep=_PAPER_STEPS, speed_images=2,
        size_sweep=(64, 128, 256), size_sweep_steps=50, noise_sigmas=_SIGMAS,
        uncertainty_samples=100, uncertainty_cases=3, distances=True),
    "paper": Profile(
        name="paper", preset="paper",
        image_shapes={"2d": (512, 512), "glas": (512, 768), "knee": (128, 128, 256),
                      "3d": (128, 128, 128)},
        config=dict(), timesteps=1000, train_examples=None, test_examples=None,
        batch_size=4, train_steps=50_000, train_seconds=None, steps_per_epoch=500,
        augment=True, stage1_fraction=0.4, pixel_steps=100, step_sweep=_PAPER_STEPS,
        speed_images=5, size_sweep=(64, 128, 256, 512), size_sweep_steps=50,
        noise_sigmas=_SIGMAS, uncertainty_samples=100, uncertainty_cases=4, distances=True),
}


# ------------------------------------------------------------------ set-up
def data_defaults(data: str) -> dict:
    """num_classes, class_names, channels, spatial dims of a data source."""
    from ldseg_tf.cli import DATA_DEFAULTS

    if data not in DATA_DEFAULTS:
        raise ValueError(f"no defaults for --data {data!r}; known: {sorted(DATA_DEFAULTS)}.")
    d = DATA_DEFAULTS[data]
    return {"num_classes": d["num_classes"], "class_names": d.get("class_names"),
            "channels": d["image_shape"][-1], "spatial_dims": len(d["image_shape"]) - 1}


def base_config(profile: Profile, data: str, seed: int = 0, image_shape=None):
    """The LDSeg config of a profile for a data source (end-to-end, learned encoders)."""
    from ldseg_tf.config import LDSegConfig

    d = data_defaults(data)
    if image_shape:
        shape = tuple(int(s) for s in image_shape)
        if len(shape) == d["spatial_dims"]:
            shape += (d["channels"],)
    else:
        shape = profile.image_shape(data, d["channels"], d["spatial_dims"])
    fields = dict(profile.config)
    fields.update(image_shape=shape, num_classes=d["num_classes"], timesteps=profile.timesteps,
                  seed=seed)
    if d["class_names"]:
        fields["class_names"] = d["class_names"]
    if len(shape) == 4 and profile.preset == "small":
        # Self-attention over a volume is costly; the small 3D model does without.
        fields.setdefault("image_encoder_attention_levels", 0)
    return LDSegConfig.preset(profile.preset, **fields)


def model_config(base, key: str):
    from ldseg_tf.config import LDSegConfig

    changes = {
        "two_stage": dict(training="two_stage"),
        "ablation_label": dict(label_encoder="downsample"),
        "ablation_image": dict(image_encoder="downsample"),
        "ablation_both": dict(label_encoder="downsample", image_encoder="downsample"),
    }.get(key, {})
    return LDSegConfig.from_dict({**base.to_dict(), **changes}) if changes else base


def build_model(key: str, config):
    """A fresh, compiled model of kind `key` (see `MODELS`)."""
    if key == "resunet":
        from ldseg_tf.models.resunet import ResUNet

        model = ResUNet(config)
    elif key == "pixel_diffusion":
        from ldseg_tf.models.pixel_diffusion import PixelDiffusion

        model = PixelDiffusion(config)
    else:
        from ldseg_tf.models.ldseg import LDSeg

        model = LDSeg(config)
    model.compile()
    return model


# ----------------------------------------------------------------- training
class _TimeLimit:
    """Keras callback factory: stop after `seconds` (checked every batch)."""

    @staticmethod
    def make(seconds):
        import keras

        class TimeLimit(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.start = time.time()

            def on_train_batch_end(self, batch, logs=None):
                if time.time() - self.start >= seconds:
                    self.model.stop_training = True

        return TimeLimit()


def _fit(model, dataset, steps: int, seconds: Optional[float], per_epoch: int,
         verbose: int) -> dict:
    callbacks = [_TimeLimit.make(seconds)] if seconds else []
    per_epoch = max(1, min(per_epoch, steps))
    start = time.time()
    before = int(model.optimizer.iterations)
    # The dataset is shuffled by tf.data; Keras' own shuffle would be ignored
    # for a dataset and only warn.
    history = model.fit(dataset, epochs=max(1, steps // per_epoch), steps_per_epoch=per_epoch,
                        callbacks=callbacks, verbose=verbose, shuffle=False)
    last = {k: float(v[-1]) for k, v in history.history.items() if v}
    return {"steps": int(model.optimizer.iterations) - before, "seconds": time.time() - start,
            "final": last}


def train_model(key: str, config, dataset, profile: Profile, verbose: int = 0) -> Tuple[object, dict]:
    """Builds and trains model `key`; returns it and a training summary."""
    model = build_model(key, config)
    if key != "two_stage":
        return model, _fit(model, dataset, profile.train_steps, profile.train_seconds,
                           profile.steps_per_epoch, verbose)
    f = profile.stage1_fraction
    s1 = max(1, int(round(profile.train_steps * f)))
    t1 = profile.train_seconds * f if profile.train_seconds else None
    stage1 = _fit(model, dataset, s1, t1, profile.steps_per_epoch, verbose)
    model.set_training_stage(2)
    model.compile()
    t2 = profile.train_seconds - stage1["seconds"] if profile.train_seconds else None
    stage2 = _fit(model, dataset, max(1, profile.train_steps - s1), t2,
                  profile.steps_per_epoch, verbose)
    return model, {"steps": stage1["steps"] + stage2["steps"],
                   "seconds": stage1["seconds"] + stage2["seconds"],
                   "final": stage2["final"], "stage1": stage1, "stage2": stage2}


_TRAINING_FIELDS = ("train_examples", "batch_size", "train_steps", "train_seconds",
                    "steps_per_epoch", "augment", "stage1_fraction")


def _same_ident(stored, ident: dict) -> bool:
    """Whether a saved run's identity equals `ident`. The stored config is read
    back through `LDSegConfig`, so that a run saved before a config field was
    added (which then takes its default, the old behaviour) is still reused."""
    from ldseg_tf.config import LDSegConfig

    if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict):
        return False
    try:
        config = LDSegConfig.from_dict(stored["config"]).to_dict()
    except (TypeError, ValueError):
        return False
    return json.loads(json.dumps(dict(stored, config=config))) == ident


def get_model(key, config, dataset, profile, run_root, data, retrain=False, log=print,
              verbose=0):
    """Loads model `key` from `run_root/key` when it was trained there with the
    same config, profile and data; otherwise trains and saves it."""
    run_dir = os.path.join(run_root, key)
    weights = os.path.join(run_dir, "model.weights.h5")
    meta_path = os.path.join(run_dir, "meta.json")
    # What determines the trained weights (not the experiment settings).
    training = {k: getattr(profile, k) for k in _TRAINING_FIELDS}
    ident = {"model": key, "config": config.to_dict(), "training": training, "data": data}
    ident = json.loads(json.dumps(ident))
    if not retrain and os.path.exists(weights) and os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if _same_ident(meta.get("ident"), ident):
            model = build_model(key, config)
            if key == "two_stage":
                model.set_training_stage(2)
            model.load_weights(weights)
            log(f"  {key}: reusing {run_dir} ({meta['train']['steps']} steps)")
            return model, dict(meta["train"], reused=True)
    log(f"  {key}: training ...")
    model, info = train_model(key, config, dataset, profile, verbose=verbose)
    log(f"  {key}: {info['steps']} steps in {info['seconds']:.0f} s")
    os.makedirs(run_dir, exist_ok=True)
    model.save_weights(weights)
    write_json(meta_path, {"ident": ident, "train": info}, indent=1)
    return model, dict(info, reused=False)


# --------------------------------------------------------------- evaluation
def _batches(dataset) -> List[Tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in dataset]


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
    from ldseg_tf.evaluation import mean_foreground

    return mean_foreground(summary, metric)


def time_segment(model, images, steps, repeats=1) -> float:
    """Seconds per image of `model.segment` on batches of one image, after
    warm-up calls that trace."""
    warm = min(steps, 2) if steps else steps
    # A batch of 2 first: LDSeg's sampler cannot be traced first with a static
    # batch of 1 (a while-loop shape invariant); the batch-1 call that follows
    # retraces with a dynamic batch.
    model.segment(np.repeat(images[:1], 2, axis=0), steps=warm, seed=0)
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
    from scipy.stats import rankdata

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
    if n_pos and n_neg:
        ranks = rankdata(s)
        auroc = (ranks[e].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    else:
        auroc = float("nan")
    return {"deciles": rows, "auroc": float(auroc), "error_rate": float(e.mean()),
            "errors": n_pos, "pixels": int(e.size)}


# ------------------------------------------------------------------ writing
def _fmt(m: dict, digits=3) -> str:
    if m is None or not m.get("n"):
        return "–"
    text = f"{m['mean']:.{digits}f} ± {m['sd']:.{digits}f}"
    return text + (f" ({m['n_inf']} inf)" if m.get("n_inf") else "")


def _write_csv(path: str, rows: List[dict]) -> str:
    import csv
    import io

    columns: Dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return path


def _md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def _summary_rows(name: str, summary: dict, extra: Optional[dict] = None) -> List[dict]:
    rows = []
    for cls, metrics in summary.items():
        row = {"model": name, "class": cls}
        row.update(extra or {})
        for metric, s in metrics.items():
            row[f"{metric}_mean"] = s["mean"]
            row[f"{metric}_sd"] = s["sd"]
            row[f"{metric}_n_inf"] = s["n_inf"]
        rows.append(row)
    return rows


# ----------------------------------------------------------------- figures
# Drawn on bare `matplotlib.figure.Figure` objects, as in `ldseg_tf.visualize`:
# no pyplot state and no backend switch (a notebook keeps its inline backend).
# Each helper takes plain arrays / dicts, writes a PNG at `path` atomically and
# returns `path`.
def _new_figure(figsize):
    from ldseg_tf.visualize import _new_figure

    return _new_figure(figsize)


def _save_fig(fig, path):
    from ldseg_tf.visualize import _save

    return _save(fig, path)


def _curves_figure(path: str, xs: Sequence[float], curves: Dict[str, Sequence[float]],
                   xlabel: str, ylabel: str, title: Optional[str] = None,
                   log_x: bool = False) -> str:
    """One line per model: `curves` maps a model key (see `MODELS`) to one
    value per entry of `xs`."""
    fig = _new_figure((5, 3.5))
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
    return _save_fig(fig, path)


def steps_figure(path: str, sweep: Sequence[int], curves: Dict[str, Sequence[float]]) -> str:
    """Fig. 5: mean foreground DSC vs DDIM steps; `curves` maps a model key to
    one DSC per entry of `sweep`."""
    return _curves_figure(path, sweep, curves, "DDIM steps", "mean foreground DSC",
                          log_x=True)


def sizes_figure(path: str, rows: Sequence[dict], steps: int) -> str:
    """Fig. 6(b): seconds per image and peak memory vs image size; `rows` are
    the rows of ``sizes.csv`` (model, size, seconds_per_image, peak_memory_mib,
    memory_kind)."""
    fig = _new_figure((9, 3.5))
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
    return _save_fig(fig, path)


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
    from ldseg_tf.visualize import _display_image, error_overlay

    def mid(a):  # a 2D slice of a volume
        return a[a.shape[0] // 2] if spatial_dims == 3 else a

    fig = _new_figure((12, 3 * len(shown)))
    axes = fig.subplots(len(shown), 4, squeeze=False)
    vmax = max(max(float(np.max(s[3])) for s in shown), 1e-6)
    for r, (img, truth, lab, sd) in enumerate(shown):
        img, truth, lab, sd = mid(img), mid(truth), mid(lab), mid(sd)
        axes[r, 0].imshow(_display_image(img))
        axes[r, 1].imshow(truth, cmap="viridis", interpolation="nearest")
        axes[r, 2].imshow(error_overlay(img, truth, lab))
        im = axes[r, 3].imshow(sd, cmap="magma", vmin=0, vmax=vmax)
        fig.colorbar(im, ax=axes[r, 3], fraction=0.046)
        for c, t in enumerate(["image", "ground truth", f"mean of {samples} (errors red)",
                               "SD"]):
            axes[r, c].set_title(t)
            axes[r, c].axis("off")
    return _save_fig(fig, path)


def error_vs_sd_figure(path: str, stats: dict) -> str:
    """Fig. 10 (right): error rate per SD decile, from `error_vs_sd`'s result."""
    fig = _new_figure((5, 3.5))
    ax = fig.subplots()
    ax.bar([d["decile"] for d in stats["deciles"]],
           [d["error_rate"] for d in stats["deciles"]])
    ax.set_xlabel("SD decile (1 = most certain)")
    ax.set_ylabel("error rate")
    ax.set_title(f"AUROC of SD for errors: {stats['auroc']:.3f}")
    return _save_fig(fig, path)


# ------------------------------------------------------------------- runner
def run(data: str = "synthetic", out: str = "reproduce_report", profile: str = "tiny",
        data_dir: Optional[str] = None, tfds_dir: Optional[str] = None, seed: int = 0,
        experiments: Sequence[str] = EXPERIMENTS, retrain: bool = False,
        train_split: Optional[str] = None, test_split: Optional[str] = None,
        image_shape: Optional[Sequence[int]] = None, log: Callable[[str], None] = print,
        verbose: int = 0) -> dict:
    """Runs the experiments and writes the report into `out`.

    Returns a dict of all results (also written to `results.json`).
    """
    import keras

    from ldseg_tf.data import make_dataset

    wall0 = time.time()
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    unknown = set(experiments) - set(EXPERIMENTS)
    experiments = [e for e in EXPERIMENTS if e in set(experiments)]
    if unknown:
        raise ValueError(f"unknown experiments {sorted(unknown)}; known: {EXPERIMENTS}.")
    os.makedirs(out, exist_ok=True)
    keras.utils.set_random_seed(seed)
    base = base_config(prof, data, seed, image_shape)
    base_src = "synthetic" if data.startswith("synthetic") else data
    tr_split, te_split = SPLITS.get(base_src, ("train[:75%]", "train[75%:]"))
    tr_split, te_split = train_split or tr_split, test_split or te_split
    if tfds_dir is None and data_dir is not None:
        from ldseg_tf.data.pipeline import _writable

        if not _writable(data_dir):
            # e.g. the shared read-only copy of DRIVE: prepare the records here.
            tfds_dir = os.path.join(out, "tfds")
    env = environment_info(seed)
    results: dict = {"data": data, "profile": dataclasses.asdict(prof), "environment": env,
                     "config": base.to_dict(), "splits": [tr_split, te_split],
                     "experiments": experiments, "timings": {}}
    timings = results["timings"]
    log(f"ldseg reproduce: data {data}, profile {prof.name}, image {base.image_shape}, "
        f"T={base.timesteps}, output {out}")

    t0 = time.time()
    common = dict(data_dir=data_dir, tfds_dir=tfds_dir, seed=seed)
    train_ds = make_dataset(data, base, tr_split, batch_size=prof.batch_size, shuffle=True,
                            augment=prof.augment, repeat=True, num_examples=prof.train_examples,
                            drop_remainder=False, **common)
    test_ds = make_dataset(data, base, te_split, batch_size=prof.batch_size, shuffle=False,
                           num_examples=prof.test_examples, **common)
    test = _batches(test_ds)
    n_test = sum(len(x) for x, _ in test)
    if not n_test:
        raise ValueError(f"the test split {te_split!r} of {data!r} is empty.")
    results["test_cases"] = n_test
    timings["data"] = time.time() - t0

    needed = []
    for e in experiments:
        needed += [k for k in NEEDS[e] if k not in needed]
    models, train_info = {}, {}
    t0 = time.time()
    for key in needed:
        cfg = model_config(base, key)
        models[key], train_info[key] = get_model(key, cfg, train_ds, prof,
                                                 os.path.join(out, "runs"),
                                                 f"{data} {tr_split} {data_dir or ''}",
                                                 retrain=retrain, log=log, verbose=verbose)
    results["training"] = train_info
    timings["training"] = time.time() - t0
    sections: Dict[str, str] = {}
    steps_default = base.sampling_steps

    def eval_steps(key):
        return prof.pixel_steps if key == "pixel_diffusion" else steps_default

    evals: Dict[str, dict] = {}

    def get_eval(key):
        if key not in evals:
            evals[key] = evaluate(models[key], test, eval_steps(key), seed, prof.distances)
            from ldseg_tf import metrics as m

            m.write_csv(os.path.join(out, f"cases_{key}.csv"), evals[key]["cases"])
        return evals[key]

    # ------------------------------------------------ Tables I-III: accuracy
    if "accuracy" in experiments:
        t0 = time.time()
        log("accuracy (Tables I-III) ...")
        rows, md_rows = [], []
        for key in NEEDS["accuracy"]:
            s = get_eval(key)["summary"]
            rows += _summary_rows(key, s, {"steps": eval_steps(key) if key != "resunet" else ""})
            for cls, ms in s.items():
                md_rows.append([MODELS[key][0], cls, _fmt(ms.get("dsc")), _fmt(ms.get("iou")),
                                _fmt(ms.get("hd95"), 2), _fmt(ms.get("assd"), 2)])
        _write_csv(os.path.join(out, "accuracy.csv"), rows)
        ranking = sorted(((mean_dsc(get_eval(k)["summary"]), k) for k in NEEDS["accuracy"]),
                         reverse=True)
        results["accuracy"] = {k: get_eval(k)["summary"] for k in NEEDS["accuracy"]}
        best = ranking[0]
        lines = ["## Segmentation accuracy (Tables I–III style)", "",
                 f"Test split `{te_split}` ({n_test} cases). LDSeg and the two-stage model "
                 f"sample with {steps_default} DDIM steps, the pixel-space diffusion with "
                 f"{prof.pixel_steps}; one sample each. HD95/ASSD in pixels of the "
                 f"{base.image_shape[:-1]} model grid. Mean ± sd over cases.", "",
                 _md_table(["model", "class", "DSC", "IoU", "HD95", "ASSD"], md_rows), "",
                 "Mean foreground DSC, best first: " + ", ".join(
                     f"{MODELS[k][0]} {v:.3f}" for v, k in ranking) + ".", ""]
        if best[1] != "ldseg":
            lines.append(f"**{MODELS[best[1]][0]} beats LDSeg here** "
                         f"({best[0]:.3f} vs {mean_dsc(get_eval('ldseg')['summary']):.3f}).")
        else:
            lines.append("LDSeg has the highest mean DSC in this run.")
        # The autoencoder ceiling tells whether a weak latent model is limited
        # by its latent or by its denoiser.
        ceilings = {k: ceiling_dsc(models[k], test) for k in ("ldseg", "two_stage")
                    if k in models}
        results["ceiling_dsc"] = ceilings
        lines += ["", "Autoencoder ceiling (DSC of decode(encode(ground truth)), the best any "
                  "denoiser could reach through the latent): " + ", ".join(
                      f"{MODELS[k][0]} {v:.3f}" for k, v in ceilings.items()) + "."]
        ldseg_dsc = mean_dsc(get_eval("ldseg")["summary"])
        if ldseg_dsc < LEARNED_DSC:
            low = ceilings.get("ldseg", 1.0) < 0.5
            lines += ["", f"**LDSeg did not learn this task in this budget** (DSC "
                      f"{ldseg_dsc:.3f}). " + (
                          "Its ceiling is low too: the latent cannot hold these structures "
                          "(a latent cell is wider than them); use a larger latent (fewer "
                          "`downsamplings`, more `latent_channels`, the `fine` preset; see "
                          "*Latent capacity* in the README)." if low else
                          "Its ceiling is high: the denoiser, not the latent, is the "
                          "bottleneck; it needs more training.")]
        sections["accuracy"] = "\n".join(lines)
        timings["accuracy"] = time.time() - t0

    # ------------------------------------------------------ Table IV: speed
    if "speed" in experiments:
        t0 = time.time()
        log("speed (Table IV) ...")
        images = np.concatenate([x for x, _ in test])[:prof.speed_images]
        ldseg = models["ldseg"]
        T = base.timesteps
        slow = time_segment(ldseg, images, T)
        fast = time_segment(ldseg, images, 2)
        rows = [{"model": "ldseg", "steps": T, "seconds_per_image": slow},
                {"model": "ldseg", "steps": 2, "seconds_per_image": fast}]
        md = [["LDSeg", T, f"{slow:.4f}", ""], ["LDSeg", 2, f"{fast:.4f}", f"{slow / fast:.1f}×"]]
        # The baselines, at the settings of the accuracy table.
        for key, steps in (("pixel_diffusion", prof.pixel_steps), ("resunet", None)):
            if key in models:
                sec = time_segment(models[key], images, steps)
                rows.append({"model": key, "steps": steps or "", "seconds_per_image": sec})
                md.append([MODELS[key][0], steps or "–", f"{sec:.4f}", ""])
                if key == "pixel_diffusion" and steps and steps < T:
                    est = sec / steps * T
                    rows.append({"model": key, "steps": T, "seconds_per_image": est,
                                 "note": "extrapolated linearly from the measured steps"})
                    md.append([MODELS[key][0], f"{T} (extrapolated)", f"{est:.4f}", ""])
        _write_csv(os.path.join(out, "speed.csv"), rows)
        results["speed"] = {"ldseg_T": slow, "ldseg_2": fast, "speedup": slow / fast,
                            "rows": rows}
        sections["speed"] = "\n".join([
            "## Inference time (Table IV style)", "",
            f"Seconds per image, batch of 1, {len(images)} image(s) of "
            f"{base.image_shape}, one sample, after a warm-up call; on "
            f"{', '.join(env['gpus']) if env['gpus'] != ['none'] else env['cpu']}.", "",
            _md_table(["model", "steps", "s / image", "speed-up vs T steps"], md), ""])
        timings["speed"] = time.time() - t0

    # ------------------------------------------------------ Fig. 5: steps
    if "steps" in experiments:
        t0 = time.time()
        log("DSC vs DDIM steps (Fig. 5) ...")
        sweep = [k for k in prof.step_sweep if k <= base.timesteps]
        rows = []
        curves = {}
        for key in ("ldseg", "two_stage"):
            curves[key] = []
            for k in sweep:
                s = evaluate(models[key], test, k, seed, distances=False)["summary"]
                d = mean_dsc(s)
                curves[key].append(d)
                rows.append({"model": key, "steps": k, "dsc": d, "iou": mean_dsc(s, "iou")})
        _write_csv(os.path.join(out, "steps.csv"), rows)
        steps_figure(os.path.join(out, "fig5_steps.png"), sweep, curves)
        ys = curves["ldseg"]
        top = max(ys)
        sat = next(k for k, y in zip(sweep, ys) if y >= top - 0.01)
        results["steps"] = {"sweep": sweep, "dsc": curves, "saturates_at": sat}
        sections["steps"] = "\n".join([
            "## DSC vs number of DDIM steps (Fig. 5)", "",
            _md_table(["steps"] + [MODELS[k][0] for k in curves],
                      [[k] + [f"{curves[m][i]:.3f}" for m in curves]
                       for i, k in enumerate(sweep)]), "",
            (f"LDSeg reaches within 0.01 of its best DSC ({top:.3f}) at {sat} step(s)."
             if top >= LEARNED_DSC else
             f"LDSeg did not learn this task (best DSC {top:.3f} < {LEARNED_DSC}): this "
             f"curve says nothing about where sampling saturates."), "",
            "![DSC vs steps](fig5_steps.png)", ""])
        timings["steps"] = time.time() - t0

    # ---------------------------------------------------- Fig. 6(b): sizes
    if "sizes" in experiments:
        t0 = time.time()
        log("time and memory vs image size (Fig. 6b) ...")
        rows = []
        k_steps = min(prof.size_sweep_steps, base.timesteps)
        skipped = []
        if base.spatial_dims != 2:
            skipped.append("the size sweep runs on 2D models only")
        for size in (prof.size_sweep if base.spatial_dims == 2 else ()):
            for key in ("ldseg", "two_stage", "pixel_diffusion"):
                try:
                    cfg = model_config(base_config(prof, data, seed,
                                                   (size, size)), key)
                except ValueError as e:
                    skipped.append(f"{size}²: {e}")
                    break
                model = build_model(key, cfg)
                x = np.random.default_rng(0).random((1,) + cfg.image_shape).astype(np.float32)
                model.segment(np.repeat(x, 2, axis=0), steps=1, seed=0)
                model.segment(x, steps=1, seed=0)
                with PeakMemory() as mem:
                    start = time.perf_counter()
                    model.segment(x, steps=k_steps, seed=1)
                    sec = time.perf_counter() - start
                rows.append({"model": key, "size": size, "steps": k_steps,
                             "seconds_per_image": sec, "peak_memory_mib": mem.peak_mib,
                             "memory_kind": mem.kind})
                del model
                keras.backend.clear_session()
        _write_csv(os.path.join(out, "sizes.csv"), rows)
        results["sizes"] = {"rows": rows, "skipped": skipped}
        if rows:
            sizes_figure(os.path.join(out, "fig6b_sizes.png"), rows, k_steps)
        sections["sizes"] = "\n".join([
            "## Time and memory vs image size (Fig. 6(b))", "",
            f"Untrained models of this profile's architecture at each size (sampling cost "
            f"does not depend on the weights), batch of 1, {k_steps} DDIM steps, after a "
            f"warm-up call. The two-stage model has LDSeg's architecture at inference, so "
            f"its cost should match LDSeg's. Memory: "
            f"{rows[0]['memory_kind'] if rows else '–'}.", "",
            _md_table(["model", "size", "s / image", "peak MiB"],
                      [[MODELS[r['model']][0], f"{r['size']}²", f"{r['seconds_per_image']:.4f}",
                        f"{r['peak_memory_mib']:.0f}"] for r in rows]), "",
            *(f"- skipped: {s}" for s in skipped),
            "" if not rows else "![time and memory vs size](fig6b_sizes.png)", ""])
        timings["sizes"] = time.time() - t0

    # ------------------------------------------------------ Fig. 8: noise
    if "noise" in experiments:
        t0 = time.time()
        log("robustness to noise (Fig. 8) ...")
        rows, curves = [], {"ldseg": [], "resunet": []}
        for sigma in prof.noise_sigmas:
            for key in curves:
                s = evaluate(models[key], test, eval_steps(key), seed, distances=False,
                             noise_sigma=sigma)["summary"]
                curves[key].append(mean_dsc(s))
                rows.append({"model": key, "sigma": sigma, "dsc": curves[key][-1],
                             "iou": mean_dsc(s, "iou")})
        _write_csv(os.path.join(out, "noise.csv"), rows)
        noise_figure(os.path.join(out, "fig8_noise.png"), prof.noise_sigmas, curves)
        drops = {k: v[-1] - v[0] for k, v in curves.items()}
        results["noise"] = {"sigmas": list(prof.noise_sigmas), "dsc": curves, "change": drops}
        verdict = noise_verdict(curves)
        sections["noise"] = "\n".join([
            "## Robustness to noise (Fig. 8)", "",
            "Gaussian noise of SD σ added to the normalized test images (fixed seed).", "",
            _md_table(["σ"] + [MODELS[k][0] for k in curves],
                      [[s] + [f"{curves[k][i]:.3f}" for k in curves]
                       for i, s in enumerate(prof.noise_sigmas)]), "",
            f"DSC change from σ = {prof.noise_sigmas[0]} to {prof.noise_sigmas[-1]}: " +
            ", ".join(f"{MODELS[k][0]} {d:+.3f}" for k, d in drops.items()) + "; " + verdict,
            "",
            "![DSC vs noise](fig8_noise.png)", ""])
        timings["noise"] = time.time() - t0

    # ------------------------------------------------- Table V: ablations
    if "ablation" in experiments:
        t0 = time.time()
        log("ablations (Table V) ...")
        rows, md = [], []
        labels = {"ldseg": ("learned", "learned"), "ablation_label": ("NN down-sampling", "learned"),
                  "ablation_image": ("learned", "down-sampling"),
                  "ablation_both": ("NN down-sampling", "down-sampling")}
        for key in NEEDS["ablation"]:
            s = get_eval(key)["summary"]
            rows += _summary_rows(key, s, {"label_encoder": labels[key][0],
                                           "image_encoder": labels[key][1]})
            for cls, ms in s.items():
                md.append([labels[key][0], labels[key][1], cls, _fmt(ms.get("dsc")),
                           _fmt(ms.get("iou"))])
        _write_csv(os.path.join(out, "ablation.csv"), rows)
        results["ablation"] = {k: get_eval(k)["summary"] for k in NEEDS["ablation"]}
        sections["ablation"] = "\n".join([
            "## Ablations (Table V)", "",
            f"Same training budget and sampling ({steps_default} DDIM steps) as LDSeg.", "",
            _md_table(["label encoder", "image encoder", "class", "DSC", "IoU"], md), ""])
        timings["ablation"] = time.time() - t0

    # ---------------------------------------------- Fig. 10: uncertainty
    if "uncertainty" in experiments:
        t0 = time.time()
        n = prof.uncertainty_samples
        log(f"uncertainty from {n} samples (Fig. 10) ...")
        ldseg = models["ldseg"]
        all_std, all_err, shown = [], [], []
        for i, (x, y) in enumerate(test):
            o = ldseg.segment(x, steps=steps_default, samples=n, seed=seed + 1000 + i)
            all_std.append(o["std"])
            all_err.append(o["labels"] != y)
            for j in range(len(x)):
                if len(shown) < prof.uncertainty_cases:
                    shown.append((x[j], y[j], o["labels"][j], o["std"][j]))
        stats = error_vs_sd(np.concatenate([s.ravel() for s in all_std]),
                            np.concatenate([e.ravel() for e in all_err]))
        _write_csv(os.path.join(out, "uncertainty.csv"), stats["deciles"])
        results["uncertainty"] = dict(stats, samples=n)
        uncertainty_figure(os.path.join(out, "fig10_uncertainty.png"), shown, n,
                           base.spatial_dims)
        error_vs_sd_figure(os.path.join(out, "fig10_error_vs_sd.png"), stats)
        sections["uncertainty"] = "\n".join([
            "## Uncertainty (Fig. 10)", "",
            f"{n} DDIM samples ({steps_default} steps, eta 0, different initial noise) per test "
            f"image; the SD map is the per-pixel SD of the class probabilities. Overall pixel "
            f"error rate {stats['error_rate']:.4f} ({stats['errors']} of {stats['pixels']} "
            f"pixels); AUROC of the SD as a detector of wrong pixels: {stats['auroc']:.3f} "
            f"(0.5 = chance)." + (
                "" if "ldseg" not in evals or mean_dsc(evals["ldseg"]["summary"]) >= LEARNED_DSC
                else f" LDSeg did not learn this task (DSC < {LEARNED_DSC}): these maps show "
                     f"the spread of an untrained model."), "",
            _md_table(["SD decile", "SD range", "error rate"],
                      [[d["decile"], f"{d['sd_min']:.3g}–{d['sd_max']:.3g}",
                        f"{d['error_rate']:.4f}"] for d in stats["deciles"]]), "",
            "![uncertainty maps](fig10_uncertainty.png)", "",
            "![error rate per SD decile](fig10_error_vs_sd.png)", ""])
        timings["uncertainty"] = time.time() - t0

    timings["total"] = time.time() - wall0
    results["wall_seconds"] = timings["total"]
    write_report(out, results, sections, train_info)
    write_json(os.path.join(out, "results.json"), results, indent=1)
    log(f"wrote {os.path.join(out, 'report.md')} ({timings['total']:.0f} s)")
    return results


def write_report(out: str, results: dict, sections: Dict[str, str], train_info: dict) -> str:
    env = results["environment"]
    prof = results["profile"]
    cfg = results["config"]
    lines = [
        f"# LDSeg reproduction report — {results['data']}, profile `{prof['name']}`", "",
        "Generated by `ldseg reproduce`. Results are what this run produced, on this data "
        "and budget; they are not the paper's numbers.", "",
        "## Run", "",
        _md_table(["", ""], [
            ["data", f"`{results['data']}`, train `{results['splits'][0]}`, test "
                     f"`{results['splits'][1]}` ({results.get('test_cases')} cases)"],
            ["model input", f"{tuple(cfg['image_shape'])}, {cfg['num_classes']} classes, "
                            f"latent ×{2 ** cfg['downsamplings']} smaller, T = {cfg['timesteps']}"],
            ["seed", env["seed"]],
            ["versions", f"Python {env['python']}, TensorFlow {env['tensorflow']}, Keras "
                         f"{env['keras']}, NumPy {env['numpy']}, git {env['git']}"],
            ["hardware", f"{env['cpu']} ({env['cpu_count']} logical CPUs); GPU: "
                         f"{', '.join(env['gpus'])}"],
            ["platform", env["platform"]],
            ["wall time", f"{results['wall_seconds']:.0f} s"],
        ]), "",
        "Wall time per phase (s): " + ", ".join(
            f"{k} {v:.0f}" for k, v in results["timings"].items()) + ".", "",
        "## Models and training", "",
        f"Every model sees the same training batches (batch {prof['batch_size']}, "
        f"augmentation {'on' if prof['augment'] else 'off'}) and gets the same budget: "
        + (f"{prof['train_seconds']:.0f} s" if prof["train_seconds"] else
           f"{prof['train_steps']} optimizer steps") +
        " (the two-stage model splits it "
        f"{prof['stage1_fraction']:.0%} autoencoder / {1 - prof['stage1_fraction']:.0%} "
        "diffusion).", "",
        _md_table(["model", "what", "steps", "train s", "reused"],
                  [[MODELS[k][0], MODELS[k][1], v["steps"], f"{v['seconds']:.0f}",
                    "yes" if v.get("reused") else "no"] for k, v in train_info.items()]), "",
    ]
    for name in EXPERIMENTS:
        if name in sections:
            lines += [sections[name], ""]
    path = os.path.join(out, "report.md")
    atomic_write_text(path, "\n".join(lines))
    return path


# ---------------------------------------------------------------------- CLI
def add_reproduce_arguments(subparsers):
    """Adds the `reproduce` subcommand to an argparse subparsers object."""
    from ldseg_tf.cli import DATA_SOURCES

    p = subparsers.add_parser(
        "reproduce", help="train LDSeg and the comparison models; write the paper's tables "
                          "and figures (report.md, CSV, PNG)")
    p.add_argument("--data", default="synthetic", choices=DATA_SOURCES)
    p.add_argument("--data-dir", help="raw data in the builder's layout")
    p.add_argument("--tfds-dir", help="prepared records (default: DATA_DIR/.tfds, or OUT/tfds "
                                      "when DATA_DIR is read-only)")
    p.add_argument("--profile", default="tiny", choices=sorted(PROFILES),
                   help="tiny: minutes, synthetic; cpu: a benchmark (target: under 1 h on "
                        "2 CPU cores); paper: GPU")
    p.add_argument("--out", required=True, help="report directory (trained models go to "
                                                "OUT/runs and are reused)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--experiments", default=",".join(EXPERIMENTS),
                   help=f"comma-separated subset of {','.join(EXPERIMENTS)}")
    p.add_argument("--retrain", action="store_true", help="ignore models trained earlier")
    p.add_argument("--train-split")
    p.add_argument("--test-split")
    p.add_argument("--image-shape", help="override the profile's spatial size, e.g. 64,64")
    p.add_argument("--verbose", action="store_true", help="Keras progress output")
    p.set_defaults(func=run_reproduce)
    return p


def run_reproduce(args) -> dict:
    experiments = [e.strip() for e in args.experiments.split(",") if e.strip()]
    bad = sorted(set(experiments) - set(EXPERIMENTS))
    if bad:
        raise SystemExit(f"ldseg reproduce: unknown experiments {bad}; choose from "
                         f"{', '.join(EXPERIMENTS)}.")
    shape = None
    if args.image_shape:
        shape = tuple(int(s) for s in args.image_shape.replace("x", ",").split(",") if s)
    return run(data=args.data, out=args.out, profile=args.profile, data_dir=args.data_dir,
               tfds_dir=args.tfds_dir, seed=args.seed, experiments=experiments,
               retrain=args.retrain, train_split=args.train_split, test_split=args.test_split,
               image_shape=shape, verbose=1 if args.verbose else 0)


def main(argv=None):  # pragma: no cover - `python -m ldseg_tf.reproduce`
    import argparse

    parser = argparse.ArgumentParser(prog="ldseg")
    add_reproduce_arguments(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["reproduce"] + list(argv if argv is not None else sys.argv[1:]))
    run_reproduce(args)


if __name__ == "__main__":  # pragma: no cover
    main()
