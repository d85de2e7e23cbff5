"""Rendering `report.md`: Markdown tables, one section per experiment, and
the run's header (data, versions, hardware, training of every model)."""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

from ldseg_tf.experiments.measure import LEARNED_DSC
from ldseg_tf.experiments.profiles import MODELS
from ldseg_tf.utils import atomic_write_text


def fmt(m: Optional[dict], digits=3) -> str:
    """"mean ± sd" of one `summarize` entry ("–" when it has no value)."""
    if m is None or not m.get("n"):
        return "–"
    text = f"{m['mean']:.{digits}f} ± {m['sd']:.{digits}f}"
    return text + (f" ({m['n_inf']} inf)" if m.get("n_inf") else "")


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def summary_rows(name: str, summary: dict, extra: Optional[dict] = None) -> List[dict]:
    """CSV rows (one per class) of a `summarize` result: `<metric>_mean`, `_sd`, `_n_inf`."""
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


# ------------------------------------------------------------------ sections
def accuracy_section(split, n_test, steps, pixel_steps, grid, md_rows, ranking, ldseg_dsc,
                     ceilings) -> str:
    best_dsc, best = ranking[0]
    lines = ["## Segmentation accuracy (Tables I–III style)", "",
             f"Test split `{split}` ({n_test} cases). LDSeg and the two-stage model "
             f"sample with {steps} DDIM steps, the pixel-space diffusion with "
             f"{pixel_steps}; one sample each. HD95/ASSD in pixels of the "
             f"{grid} model grid. Mean ± sd over cases.", "",
             md_table(["model", "class", "DSC", "IoU", "HD95", "ASSD"], md_rows), "",
             "Mean foreground DSC, best first: " + ", ".join(
                 f"{MODELS[k][0]} {v:.3f}" for v, k in ranking) + ".", ""]
    if best != "ldseg":
        lines.append(f"**{MODELS[best][0]} beats LDSeg here** "
                     f"({best_dsc:.3f} vs {ldseg_dsc:.3f}).")
    else:
        lines.append("LDSeg has the highest mean DSC in this run.")
    lines += ["", "Autoencoder ceiling (DSC of decode(encode(ground truth)), the best any "
              "denoiser could reach through the latent): " + ", ".join(
                  f"{MODELS[k][0]} {v:.3f}" for k, v in ceilings.items()) + "."]
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
    return "\n".join(lines)


def speed_section(n_images, image_shape, device, md_rows) -> str:
    return "\n".join([
        "## Inference time (Table IV style)", "",
        f"Seconds per image, batch of 1, {n_images} image(s) of {image_shape}, one sample, "
        f"after a warm-up call; on {device}.", "",
        md_table(["model", "steps", "s / image", "speed-up vs T steps"], md_rows), ""])


def steps_section(sweep, curves, best, saturates_at) -> str:
    return "\n".join([
        "## DSC vs number of DDIM steps (Fig. 5)", "",
        md_table(["steps"] + [MODELS[k][0] for k in curves],
                 [[k] + [f"{curves[m][i]:.3f}" for m in curves] for i, k in enumerate(sweep)]),
        "",
        (f"LDSeg reaches within 0.01 of its best DSC ({best:.3f}) at {saturates_at} step(s)."
         if best >= LEARNED_DSC else
         f"LDSeg did not learn this task (best DSC {best:.3f} < {LEARNED_DSC}): this "
         f"curve says nothing about where sampling saturates."), "",
        "![DSC vs steps](fig5_steps.png)", ""])


def sizes_section(rows, steps, skipped) -> str:
    return "\n".join([
        "## Time and memory vs image size (Fig. 6(b))", "",
        f"Untrained models of this profile's architecture at each size (sampling cost "
        f"does not depend on the weights), batch of 1, {steps} DDIM steps, after a "
        f"warm-up call. The two-stage model has LDSeg's architecture at inference, so "
        f"its cost should match LDSeg's. Memory: "
        f"{rows[0]['memory_kind'] if rows else '–'}.", "",
        md_table(["model", "size", "s / image", "peak MiB"],
                 [[MODELS[r['model']][0], f"{r['size']}²", f"{r['seconds_per_image']:.4f}",
                   f"{r['peak_memory_mib']:.0f}"] for r in rows]), "",
        *(f"- skipped: {s}" for s in skipped),
        "" if not rows else "![time and memory vs size](fig6b_sizes.png)", ""])


def noise_section(sigmas, curves, drops, verdict) -> str:
    return "\n".join([
        "## Robustness to noise (Fig. 8)", "",
        "Gaussian noise of SD σ added to the normalized test images (fixed seed).", "",
        md_table(["σ"] + [MODELS[k][0] for k in curves],
                 [[s] + [f"{curves[k][i]:.3f}" for k in curves] for i, s in enumerate(sigmas)]),
        "",
        f"DSC change from σ = {sigmas[0]} to {sigmas[-1]}: " +
        ", ".join(f"{MODELS[k][0]} {d:+.3f}" for k, d in drops.items()) + "; " + verdict, "",
        "![DSC vs noise](fig8_noise.png)", ""])


def ablation_section(steps, md_rows) -> str:
    return "\n".join([
        "## Ablations (Table V)", "",
        f"Same training budget and sampling ({steps} DDIM steps) as LDSeg.", "",
        md_table(["label encoder", "image encoder", "class", "DSC", "IoU"], md_rows), ""])


def uncertainty_section(samples, steps, stats, learned: bool) -> str:
    return "\n".join([
        "## Uncertainty (Fig. 10)", "",
        f"{samples} DDIM samples ({steps} steps, eta 0, different initial noise) per test "
        f"image; the SD map is the per-pixel SD of the class probabilities. Overall pixel "
        f"error rate {stats['error_rate']:.4f} ({stats['errors']} of {stats['pixels']} "
        f"pixels); AUROC of the SD as a detector of wrong pixels: {stats['auroc']:.3f} "
        f"(0.5 = chance)." + (
            "" if learned else
            f" LDSeg did not learn this task (DSC < {LEARNED_DSC}): these maps show "
            f"the spread of an untrained model."), "",
        md_table(["SD decile", "SD range", "error rate"],
                 [[d["decile"], f"{d['sd_min']:.3g}–{d['sd_max']:.3g}",
                   f"{d['error_rate']:.4f}"] for d in stats["deciles"]]), "",
        "![uncertainty maps](fig10_uncertainty.png)", "",
        "![error rate per SD decile](fig10_error_vs_sd.png)", ""])


# ------------------------------------------------------------------ the report
def _run_table(results: dict) -> str:
    env, cfg = results["environment"], results["config"]
    return md_table(["", ""], [
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
    ])


def write_report(out: str, results: dict, sections: Dict[str, str], train_info: dict,
                 order: Sequence[str]) -> str:
    """Writes `out/report.md`: the run, the training of every model, then the
    `sections` in `order`; returns its path."""
    prof = results["profile"]
    lines = [
        f"# LDSeg reproduction report — {results['data']}, profile `{prof['name']}`", "",
        "Generated by `ldseg reproduce`. Results are what this run produced, on this data "
        "and budget; they are not the paper's numbers.", "",
        "## Run", "", _run_table(results), "",
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
        md_table(["model", "what", "steps", "train s", "reused"],
                 [[MODELS[k][0], MODELS[k][1], v["steps"], f"{v['seconds']:.0f}",
                   "yes" if v.get("reused") else "no"] for k, v in train_info.items()]), "",
    ]
    for name in order:
        if name in sections:
            lines += [sections[name], ""]
    path = os.path.join(out, "report.md")
    atomic_write_text(path, "\n".join(lines))
    return path
