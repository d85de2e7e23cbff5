"""The experiments of the paper's Sections V–VI, one function each, listed in
`REGISTRY`.

Every experiment takes the run's `Context`, writes its CSV table and figures
into `ctx.out`, and returns an `Outcome`: its results (merged into
`results.json`) and its section of `report.md`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Dict, Tuple

import numpy as np

from ldseg_tf.experiments import figures, report
from ldseg_tf.experiments.context import Context
from ldseg_tf.experiments.measure import (LEARNED_DSC, PeakMemory, ceiling_dsc, error_vs_sd, evaluate,
                                          mean_dsc, noise_verdict, time_segment)
from ldseg_tf.experiments.models import build_model
from ldseg_tf.experiments.profiles import MODELS, base_config, model_config
from ldseg_tf.utils import write_csv


@dataclasses.dataclass(frozen=True)
class Outcome:
    results: dict  # top-level entries of results.json
    section: str  # Markdown of report.md


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    title: str  # the paper's table or figure
    needs: Tuple[str, ...]  # model keys (see MODELS) it uses
    run: Callable[[Context], Outcome]


def accuracy(ctx: Context) -> Outcome:
    """Tables I–III: DSC/IoU/HD95/ASSD per class of the four models; the autoencoder
    ceilings of the latent models."""
    keys = REGISTRY["accuracy"].needs
    rows, md_rows = [], []
    for key in keys:
        s = ctx.evaluation(key)["summary"]
        rows += report.summary_rows(key, s, {"steps": ctx.eval_steps(key) if key != "resunet"
                                             else ""})
        for cls, ms in s.items():
            md_rows.append([MODELS[key][0], cls, report.fmt(ms.get("dsc")),
                            report.fmt(ms.get("iou")), report.fmt(ms.get("hd95"), 2),
                            report.fmt(ms.get("assd"), 2)])
    write_csv(ctx.path("accuracy.csv"), rows)
    ranking = sorted(((mean_dsc(ctx.evaluation(k)["summary"]), k) for k in keys), reverse=True)
    # The autoencoder ceiling tells whether a weak latent model is limited by
    # its latent or by its denoiser.
    ceilings = {k: ceiling_dsc(ctx.models[k], ctx.test) for k in ("ldseg", "two_stage")
                if k in ctx.models}
    section = report.accuracy_section(
        ctx.split, ctx.test_cases, ctx.steps, ctx.profile.pixel_steps, ctx.config.image_shape[:-1],
        md_rows, ranking, mean_dsc(ctx.evaluation("ldseg")["summary"]), ceilings)
    return Outcome({"accuracy": {k: ctx.evaluation(k)["summary"] for k in keys},
                    "ceiling_dsc": ceilings}, section)


def speed(ctx: Context) -> Outcome:
    """Table IV: seconds per image with T and with 2 DDIM steps; the baselines at
    the settings of the accuracy table."""
    images = np.concatenate([x for x, _ in ctx.test])[:ctx.profile.speed_images]
    T = ctx.config.timesteps
    slow = time_segment(ctx.models["ldseg"], images, T)
    fast = time_segment(ctx.models["ldseg"], images, 2)
    rows = [{"model": "ldseg", "steps": T, "seconds_per_image": slow},
            {"model": "ldseg", "steps": 2, "seconds_per_image": fast}]
    md = [["LDSeg", T, f"{slow:.4f}", ""], ["LDSeg", 2, f"{fast:.4f}", f"{slow / fast:.1f}×"]]
    for key, steps in (("pixel_diffusion", ctx.profile.pixel_steps), ("resunet", None)):
        if key in ctx.models:
            sec = time_segment(ctx.models[key], images, steps)
            rows.append({"model": key, "steps": steps or "", "seconds_per_image": sec})
            md.append([MODELS[key][0], steps or "–", f"{sec:.4f}", ""])
            if key == "pixel_diffusion" and steps and steps < T:
                est = sec / steps * T
                rows.append({"model": key, "steps": T, "seconds_per_image": est,
                             "note": "extrapolated linearly from the measured steps"})
                md.append([MODELS[key][0], f"{T} (extrapolated)", f"{est:.4f}", ""])
    write_csv(ctx.path("speed.csv"), rows)
    env = ctx.environment
    device = ", ".join(env["gpus"]) if env["gpus"] != ["none"] else env["cpu"]
    return Outcome({"speed": {"ldseg_T": slow, "ldseg_2": fast, "speedup": slow / fast,
                              "rows": rows}},
                   report.speed_section(len(images), ctx.config.image_shape, device, md))


def steps(ctx: Context) -> Outcome:
    """Fig. 5: DSC vs DDIM steps for LDSeg and the two-stage model."""
    sweep = [k for k in ctx.profile.step_sweep if k <= ctx.config.timesteps]
    rows, curves = [], {}
    for key in REGISTRY["steps"].needs:
        curves[key] = []
        for k in sweep:
            s = evaluate(ctx.models[key], ctx.test, k, ctx.seed, distances=False)["summary"]
            curves[key].append(mean_dsc(s))
            rows.append({"model": key, "steps": k, "dsc": curves[key][-1],
                         "iou": mean_dsc(s, "iou")})
    write_csv(ctx.path("steps.csv"), rows)
    figures.steps_figure(ctx.path("fig5_steps.png"), sweep, curves)
    top = max(curves["ldseg"])
    saturates_at = next(k for k, y in zip(sweep, curves["ldseg"]) if y >= top - 0.01)
    return Outcome({"steps": {"sweep": sweep, "dsc": curves, "saturates_at": saturates_at}},
                   report.steps_section(sweep, curves, top, saturates_at))


def _size_row(key, cfg, steps):
    """Seconds per image and peak memory of an untrained model `key` at `cfg`'s size."""
    model = build_model(key, cfg)
    x = np.random.default_rng(0).random((1,) + cfg.image_shape).astype(np.float32)
    model.segment(x, steps=1, seed=0)  # warm-up: traces the sampler
    with PeakMemory() as mem:
        start = time.perf_counter()
        model.segment(x, steps=steps, seed=1)
        sec = time.perf_counter() - start
    return {"model": key, "size": cfg.image_shape[0], "steps": steps, "seconds_per_image": sec,
            "peak_memory_mib": mem.peak_mib, "memory_kind": mem.kind}


def sizes(ctx: Context) -> Outcome:
    """Fig. 6(b): time and peak memory vs image size (2D, untrained weights: the
    cost of sampling does not depend on them)."""
    import keras

    prof, base = ctx.profile, ctx.config
    k_steps = min(prof.size_sweep_steps, base.timesteps)
    rows, skipped = [], []
    if base.spatial_dims != 2:
        skipped.append("the size sweep runs on 2D models only")
    for size in (prof.size_sweep if base.spatial_dims == 2 else ()):
        for key in ("ldseg", "two_stage", "pixel_diffusion"):
            try:
                cfg = model_config(base_config(prof, ctx.data, ctx.seed, (size, size)), key)
            except ValueError as e:
                skipped.append(f"{size}²: {e}")
                break
            rows.append(_size_row(key, cfg, k_steps))
            keras.backend.clear_session()
    write_csv(ctx.path("sizes.csv"), rows)
    if rows:
        figures.sizes_figure(ctx.path("fig6b_sizes.png"), rows, k_steps)
    return Outcome({"sizes": {"rows": rows, "skipped": skipped}},
                   report.sizes_section(rows, k_steps, skipped))


def noise(ctx: Context) -> Outcome:
    """Fig. 8: DSC vs Gaussian noise on the normalized test images, LDSeg vs ResUNet."""
    sigmas = ctx.profile.noise_sigmas
    rows, curves = [], {key: [] for key in REGISTRY["noise"].needs}
    for sigma in sigmas:
        for key in curves:
            s = evaluate(ctx.models[key], ctx.test, ctx.eval_steps(key), ctx.seed,
                         distances=False, noise_sigma=sigma)["summary"]
            curves[key].append(mean_dsc(s))
            rows.append({"model": key, "sigma": sigma, "dsc": curves[key][-1],
                         "iou": mean_dsc(s, "iou")})
    write_csv(ctx.path("noise.csv"), rows)
    figures.noise_figure(ctx.path("fig8_noise.png"), sigmas, curves)
    drops = {k: v[-1] - v[0] for k, v in curves.items()}
    return Outcome({"noise": {"sigmas": list(sigmas), "dsc": curves, "change": drops}},
                   report.noise_section(sigmas, curves, drops, noise_verdict(curves)))


_ENCODERS = {"ldseg": ("learned", "learned"), "ablation_label": ("NN down-sampling", "learned"),
             "ablation_image": ("learned", "down-sampling"),
             "ablation_both": ("NN down-sampling", "down-sampling")}


def ablation(ctx: Context) -> Outcome:
    """Table V: label encoder / image encoder / both replaced by down-sampling."""
    rows, md = [], []
    for key in REGISTRY["ablation"].needs:
        label, image = _ENCODERS[key]
        s = ctx.evaluation(key)["summary"]
        rows += report.summary_rows(key, s, {"label_encoder": label, "image_encoder": image})
        md += [[label, image, cls, report.fmt(ms.get("dsc")), report.fmt(ms.get("iou"))]
               for cls, ms in s.items()]
    write_csv(ctx.path("ablation.csv"), rows)
    return Outcome({"ablation": {k: ctx.evaluation(k)["summary"]
                                 for k in REGISTRY["ablation"].needs}},
                   report.ablation_section(ctx.steps, md))


def uncertainty(ctx: Context) -> Outcome:
    """Fig. 10: mean and SD maps from N samples, error rate per SD decile, AUROC
    of the SD as a detector of wrong pixels."""
    n, ldseg = ctx.profile.uncertainty_samples, ctx.models["ldseg"]
    all_std, all_err, shown = [], [], []
    for i, (x, y) in enumerate(ctx.test):
        o = ldseg.segment(x, steps=ctx.steps, samples=n, seed=ctx.seed + 1000 + i)
        all_std.append(o["std"])
        all_err.append(o["labels"] != y)
        shown += [(x[j], y[j], o["labels"][j], o["std"][j]) for j in range(len(x))]
    shown = shown[:ctx.profile.uncertainty_cases]
    stats = error_vs_sd(np.concatenate([s.ravel() for s in all_std]),
                        np.concatenate([e.ravel() for e in all_err]))
    write_csv(ctx.path("uncertainty.csv"), stats["deciles"])
    figures.uncertainty_figure(ctx.path("fig10_uncertainty.png"), shown, n,
                               ctx.config.spatial_dims)
    figures.error_vs_sd_figure(ctx.path("fig10_error_vs_sd.png"), stats)
    learned = (not ctx.evaluated("ldseg")
               or mean_dsc(ctx.evaluation("ldseg")["summary"]) >= LEARNED_DSC)
    return Outcome({"uncertainty": dict(stats, samples=n)},
                   report.uncertainty_section(n, ctx.steps, stats, learned))


#: Every experiment, in report order.
REGISTRY: Dict[str, Experiment] = {e.name: e for e in (
    Experiment("accuracy", "Tables I–III",
               ("ldseg", "two_stage", "pixel_diffusion", "resunet"), accuracy),
    Experiment("speed", "Table IV", ("ldseg",), speed),
    Experiment("steps", "Fig. 5", ("ldseg", "two_stage"), steps),
    Experiment("sizes", "Fig. 6(b)", (), sizes),
    Experiment("noise", "Fig. 8", ("ldseg", "resunet"), noise),
    Experiment("ablation", "Table V",
               ("ldseg", "ablation_label", "ablation_image", "ablation_both"), ablation),
    Experiment("uncertainty", "Fig. 10", ("ldseg",), uncertainty),
)}
EXPERIMENTS = tuple(REGISTRY)
