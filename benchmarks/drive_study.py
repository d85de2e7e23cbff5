"""Benchmark: LDSeg presets vs a residual U-Net on DRIVE vessels at equal CPU time.

Every model trains for the same CPU time (`--cpu-minutes`) on 15 DRIVE
training images (flips and 90-degree turns; `--augment full` adds a
small rotation and intensity jitter) and is scored on the other 5 (`--fold`
picks which quarter validates; the default, 3, is the last):
vessel DSC inside the field of view with 1, 2 and 50 DDIM steps, the
autoencoder ceiling (DSC of decode(encode(y))), and seconds per image.

    python benchmarks/drive_study.py --cpu-minutes 20 --out /tmp/drive_study
    python benchmarks/drive_study.py --models resunet,fine --size 256 --cpu-minutes 2
    python benchmarks/drive_study.py --models fine --cpu-minutes 15,45   # scored at both

Prints a table and writes `study.json` and `study.md` (atomically) into --out.
Not a test: it runs for `len(models) * cpu_minutes / cores` plus evaluation.
"""

import argparse
import functools
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from drive_data import (AUGMENTATIONS, DEFAULT_DRIVE, dice_in_fov,  # noqa: E402
                        load_split_arrays, train_dataset)
from report_rows import run_jobs  # noqa: E402

MODELS = ("resunet", "paper", "fine")


def is_resunet(name):
    """True for `resunet` and `resunet:<overrides>`."""
    return name.split(":")[0] == "resunet"


def model_config(name, size, seed):
    """LDSegConfig of a study entry: `resunet` uses the paper preset's depth (4
    down-samplings, widths 16..128) and its optimizer fields, the others are
    presets; both take overrides (`LDSegConfig.from_spec`: `fine:prediction=v`,
    `resunet:learning_rate=0.002`)."""
    from ldseg_tf.config import LDSegConfig

    common = dict(image_shape=(size, size, 3), num_classes=2, seed=seed,
                  class_names=("background", "vessel"))
    spec = "paper" + name[len("resunet"):] if is_resunet(name) else name
    try:
        return LDSegConfig.from_spec(spec, **common)
    except ValueError as err:
        raise SystemExit(str(err)) from err


def train_for(model, it, cpu_seconds, chunk=5):
    """Trains on batches from iterator `it` in chunks of `chunk` steps until
    the process has used `cpu_seconds` more CPU time (all cores together).

    CPU time rather than wall time, so that the comparison stays fair when
    other work shares the machine; on an otherwise idle machine with N cores,
    wall time is about cpu_seconds / N.
    """
    steps = 0
    start, cpu = time.time(), time.process_time()
    while time.process_time() - cpu < cpu_seconds:
        for _ in range(chunk):
            model.train_on_batch(*next(it))
        steps += chunk
    return steps, time.time() - start, time.process_time() - cpu


def predict(model, images, steps, batch=1, seed=0):
    labels, start = [], time.time()
    for i in range(0, len(images), batch):
        labels.append(model.segment(images[i:i + batch], steps=steps, seed=seed + i)["labels"])
    return np.concatenate(labels), (time.time() - start) / len(images)


def run_model(name, args, data):
    """Trains one model and scores it at each budget of `args.cpu_minutes`
    (ascending, one training run): one row per budget."""
    import keras

    from ldseg_tf.experiments.models import build_model

    (x_tr, y_tr, _), validation = data
    config = model_config(name, args.size, args.seed)
    keras.utils.set_random_seed(args.seed)
    model = build_model("resunet" if is_resunet(name) else "ldseg", config)
    params = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    it = iter(train_dataset(x_tr, y_tr, args.batch_size, args.seed, args.augment))
    rows, steps, seconds, cpu = [], 0, 0.0, 0.0
    for budget in args.cpu_minutes:
        print(f"{name}: {params} parameters, training to {budget:g} CPU-minutes", flush=True)
        more = train_for(model, it, budget * 60 - cpu)
        steps, seconds, cpu = steps + more[0], seconds + more[1], cpu + more[2]
        row = {"model": name, "cpu_minutes": budget, "parameters": params,
               "train_steps": steps, "train_wall_seconds": round(seconds, 1),
               "train_cpu_seconds": round(cpu, 1), "latent": None, "ceiling_dsc": None,
               "augment": args.augment}
        row.update(score(model, name, config, validation))
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def score(model, name, config, validation):
    """DSC (mean and sd over the images) and seconds per image with 1, 2 and 50
    DDIM steps (ResUNet: one pass), and LDSeg's autoencoder ceiling."""
    x_va, y_va, f_va = validation
    row = {}
    # 1 step: with x0-prediction the first denoiser call already gives the
    # answer, and one step is the cheapest inference LDSeg has.
    sample_steps = (1,) if is_resunet(name) else (1, 2, 50)
    for k in sample_steps:
        predict(model, x_va[:1], k)  # trace outside the timing
        labels, per_image = predict(model, x_va, k)
        scores = dice_in_fov(labels, y_va, f_va)
        row[f"dsc_{k}"] = float(np.mean(scores))
        row[f"dsc_{k}_sd"] = float(np.std(scores))
        row[f"seconds_per_image_{k}"] = per_image
    if not is_resunet(name):
        if model.ema_denoiser is not None:
            row.update(score_raw_weights(model, validation))
        row["latent"] = "x".join(map(str, config.latent_shape))
        row["ceiling_dsc"] = ceiling_dsc(model, validation)
    return row


def ceiling_dsc(model, validation):
    """LDSeg's autoencoder ceiling: the mean DSC in the FOV of decode(encode(y))."""
    _, y_va, f_va = validation
    rec = np.argmax(model.reconstruct(y_va).numpy(), -1)
    return float(np.mean(dice_in_fov(rec, y_va, f_va)))


def score_raw_weights(model, validation, steps=2):
    """`dsc_K_raw`: the DSC with K steps when sampling uses the current weights
    instead of their moving average (`LDSeg.ema_pairs`), to see what the EMA
    costs or gives."""
    x_va, y_va, f_va = validation
    pairs = [(e, w) for averaged, trained in model.ema_pairs()
             for e, w in zip(averaged.weights, trained.weights)]
    saved = [e.numpy() for e, _ in pairs]
    for e, w in pairs:
        e.assign(w)
    try:
        labels, _ = predict(model, x_va, steps)
    finally:
        for (e, _), value in zip(pairs, saved):
            e.assign(value)
    return {f"dsc_{steps}_raw": float(np.mean(dice_in_fov(labels, y_va, f_va)))}


def markdown(rows, args):
    budgets = "/".join(f"{m:g}" for m in args.cpu_minutes)
    lines = [f"DRIVE, {args.size}x{args.size}, 15 train / 5 validation images (fold "
             f"{args.fold}), "
             f"{budgets} CPU-minutes of training each (one run per model, scored at each "
             f"budget); vessel DSC inside the FOV (mean ± sd over the 5 images); seconds "
             f"per image with batch 1 on this machine.", "",
             "| model | CPU-min | latent | params | steps | ceiling DSC | DSC 1 step | "
             "DSC 2 steps | DSC 50 steps | s/image (1 / 2 steps) |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def dsc(r, k):
        return f"{r[f'dsc_{k}']:.3f} ± {r[f'dsc_{k}_sd']:.3f}" if f"dsc_{k}" in r else "–"

    for r in rows:
        if is_resunet(r["model"]):
            dsc1, dsc2, dsc50 = f"{dsc(r, 1)} (one pass)", "–", "–"
            sec = f"{r['seconds_per_image_1']:.3f}"
        else:
            dsc1, dsc2, dsc50 = dsc(r, 1), dsc(r, 2), dsc(r, 50)
            sec = " / ".join(f"{r[f'seconds_per_image_{k}']:.3f}" for k in (1, 2)
                             if f"seconds_per_image_{k}" in r)
        ceiling = "–" if r["ceiling_dsc"] is None else f"{r['ceiling_dsc']:.3f}"
        budget = f"{r['cpu_minutes']:g}" if "cpu_minutes" in r else "–"
        lines.append(f"| {r['model']} | {budget} | {r['latent'] or '–'} | "
                     f"{r['parameters'] / 1e6:.2f} M | "
                     f"{r['train_steps']} | {ceiling} | {dsc1} | {dsc2} | {dsc50} | {sec} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--drive", default=DEFAULT_DRIVE)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--models", default=",".join(MODELS),
                   help="comma-separated: resunet, or an LDSegConfig preset with optional "
                        "overrides, e.g. fine:prediction=v:image_embedding_channels=32")
    p.add_argument("--cpu-minutes", default="20",
                   help="training budget per model in CPU-minutes (all cores together); "
                        "several, comma-separated (15,45), score one run at each")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fold", type=int, default=3,
                   help="which quarter of the 20 images validates (0-3; 3, the last, is "
                        "the split of `ldseg reproduce` and of the earlier reports)")
    p.add_argument("--augment", choices=AUGMENTATIONS, default="turns",
                   help="turns: flips and quarter turns (the earlier reports); full: also "
                        "the library's rotation (up to 10 degrees) and intensity jitter")
    p.add_argument("--out", default="drive_study")
    args = p.parse_args(argv)
    args.cpu_minutes = sorted(float(m) for m in str(args.cpu_minutes).split(","))

    data = load_split_arrays(model_config("paper", args.size, args.seed), args.drive,
                             args.fold)
    jobs = [functools.partial(run_model, name.strip(), args, data)
            for name in args.models.split(",")]
    run_jobs(jobs, "study", args, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
