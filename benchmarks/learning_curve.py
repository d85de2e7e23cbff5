"""Benchmark: how fast one model learns DRIVE vessels, step by step.

Trains one `drive_study` model (`resunet`, a preset, or either with overrides)
on 15 DRIVE images and, every `--every` steps, scores it on the other 5: vessel
DSC inside the field of view with 2 DDIM steps (sampling weights, and for LDSeg
also 1 step and the current weights in place of their moving average), the autoencoder
ceiling, and the training losses averaged since the last row. Made to find
*when* a model starts to segment, which the equal-CPU-time study cannot show.

    python benchmarks/learning_curve.py --model fine --steps 400 --every 100
    python benchmarks/learning_curve.py --model fine:latent_target_gradient=false

Prints one JSON row per evaluation and rewrites `--out` (atomically) after each,
so that a run stopped early keeps its rows.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from drive_data import DEFAULT_DRIVE, dice_in_fov, load_split_arrays, train_dataset  # noqa: E402
from drive_study import (ceiling_dsc, is_resunet, model_config, predict,  # noqa: E402
                         score_raw_weights)


def evaluate(model, name, validation):
    """DSC with 2 steps (ResUNet: one pass), and LDSeg's 1-step DSC, raw-weight DSC
    and ceiling."""
    x_va, y_va, f_va = validation
    labels, _ = predict(model, x_va, 1 if is_resunet(name) else 2)
    row = {"dsc": float(np.mean(dice_in_fov(labels, y_va, f_va)))}
    if not is_resunet(name):
        labels, _ = predict(model, x_va, 1)
        row["dsc_1"] = float(np.mean(dice_in_fov(labels, y_va, f_va)))
        if model.ema_denoiser is not None:
            row.update(score_raw_weights(model, validation))
        row["ceiling_dsc"] = ceiling_dsc(model, validation)
    return row


def curve(args):
    import keras

    from ldseg_tf.experiments.models import build_model
    from ldseg_tf.utils import write_json

    (x_tr, y_tr, _), validation = load_split_arrays(
        model_config("paper", args.size, args.seed), args.drive, args.fold)
    config = model_config(args.model, args.size, args.seed)
    keras.utils.set_random_seed(args.seed)
    model = build_model("resunet" if is_resunet(args.model) else "ldseg", config)
    it = iter(train_dataset(x_tr, y_tr, args.batch_size, args.seed))
    rows, losses, cpu = [], [], time.process_time()
    for step in range(1, args.steps + 1):
        losses.append(model.train_on_batch(*next(it), return_dict=True))
        if step % args.every == 0:
            row = {"model": args.model, "fold": args.fold, "seed": args.seed, "step": step,
                   "train_cpu_seconds": round(time.process_time() - cpu, 1)}
            row.update({k: float(np.mean([float(d[k]) for d in losses])) for k in losses[0]})
            row.update(evaluate(model, args.model, validation))
            print(json.dumps(row), flush=True)
            rows.append(row)
            losses = []
            if args.out:
                write_json(args.out, rows, indent=1)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="fine",
                   help="resunet or an LDSegConfig preset with overrides (drive_study.py)")
    p.add_argument("--drive", default=DEFAULT_DRIVE)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fold", type=int, default=1)
    p.add_argument("--out", default=None, help="JSON file for the rows")
    args = p.parse_args(argv)
    curve(args)


if __name__ == "__main__":
    main()
