"""Benchmark: can a latent of a given size hold a DRIVE vessel tree?

Trains the label autoencoder alone (label encoder + decoder, CE + gamma * Dice:
stage 1 of `training="two_stage"`) for each latent shape, and logs the
*autoencoder ceiling* -- vessel DSC inside the field of view of
decode(encode(y)) on the 5 validation images -- along the way. A curve that
keeps rising says "trains slowly"; one that flattens low says "too small".

    python benchmarks/latent_capacity.py --size 256 --steps 1500 --out /tmp/capacity.json
    python benchmarks/latent_capacity.py --variants paper,d2c4 --seconds 300

Variants are `d<downsamplings>c<latent_channels>` (e.g. d4c1 is the paper's
16x16x1 latent at 256x256), optionally `w` for a 2x wider autoencoder and `a`
for `autoencoder_weight=1` (`d4c1wa`), or a preset name from
`LDSegConfig.preset`. With `--mode end_to_end` the whole LDSeg trains
(Algorithm 1) and the sampled DSC is logged next to the ceiling. Prints a table and
writes JSON (atomically).
"""

import argparse
import os
import re
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from drive_data import DEFAULT_DRIVE, dice_in_fov, load_split_arrays, train_dataset  # noqa: E402

DEFAULT_VARIANTS = "d4c1,d4c4,d4c16,d3c1,d3c4,d2c1,d2c4"


def variant_config(name, size, seed, mode="autoencoder"):
    from ldseg_tf.config import LDSegConfig, PRESETS

    base = dict(image_shape=(size, size, 3), num_classes=2, seed=seed,
                training="two_stage" if mode == "autoencoder" else "end_to_end",
                class_names=("background", "vessel"))
    if name in PRESETS:
        return LDSegConfig.preset(name, **base)
    m = re.fullmatch(r"d(\d)c(\d+)(w?)(a?)", name)
    if not m:
        raise SystemExit(f"unknown variant {name!r}: use d<downsamplings>c<channels>[w][a] or "
                         f"one of {sorted(PRESETS)}.")
    d, c, wide = int(m.group(1)), int(m.group(2)), m.group(3) == "w"
    fields = dict(base, downsamplings=d, latent_channels=c,
                  autoencoder_weight=1.0 if m.group(4) else 0.0,
                  denoiser_widths=(16, 32, 64)[: max(1, min(3, 6 - d))])
    if wide:
        probe = LDSegConfig(**fields)
        fields.update(label_encoder_widths=tuple(2 * w for w in probe.label_encoder_widths),
                      decoder_widths=tuple(2 * w for w in probe.decoder_widths))
    return LDSegConfig(**fields)


def ceiling(model, masks, fovs, batch=4):
    preds = [np.argmax(model.reconstruct(masks[i:i + batch]).numpy(), -1)
             for i in range(0, len(masks), batch)]
    return float(np.mean(dice_in_fov(np.concatenate(preds), masks, fovs)))


def sampled_dsc(model, images, masks, fovs, steps, batch=4, seed=0):
    preds = [model.segment(images[i:i + batch], steps=steps, seed=seed + i)["labels"]
             for i in range(0, len(images), batch)]
    return float(np.mean(dice_in_fov(np.concatenate(preds), masks, fovs)))


def run_variant(name, args, data):
    import keras

    from ldseg_tf.models.ldseg import LDSeg

    config = variant_config(name, args.size, args.seed, args.mode)
    keras.utils.set_random_seed(args.seed)
    model = LDSeg(config)
    if args.mode == "autoencoder":
        model.set_training_stage(1)
    model.compile()
    (x_tr, y_tr, _), (x_va, y_va, f_va) = data
    ds = train_dataset(x_tr, y_tr, args.batch_size, seed=args.seed)
    params = sum(int(np.prod(w.shape)) for w in
                 model.label_encoder.weights + model.label_decoder.weights)
    curve, trained, start = [], 0, time.time()
    it = iter(ds)
    while True:
        chunk = min(args.eval_every, args.steps - trained)
        if chunk <= 0 or (args.seconds and time.time() - start >= args.seconds):
            break
        for _ in range(chunk):
            model.train_on_batch(*next(it))
        trained += chunk
        elapsed = time.time() - start
        point = {"step": trained, "seconds": round(elapsed, 1),
                 "ceiling_dsc": ceiling(model, y_va, f_va)}
        if args.mode == "end_to_end":
            for k in args.sample_steps:
                point[f"dsc_{k}_steps"] = sampled_dsc(model, x_va, y_va, f_va, k)
        curve.append(point)
        print(f"  {name}: " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                        for k, v in point.items()), flush=True)
    return {"variant": name, "latent_shape": list(config.latent_shape),
            "latent_values": int(np.prod(config.latent_shape)),
            "autoencoder_parameters": params, "curve": curve,
            "final_ceiling_dsc": curve[-1]["ceiling_dsc"] if curve else None,
            "best_ceiling_dsc": max(c["ceiling_dsc"] for c in curve) if curve else None}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--drive", default=DEFAULT_DRIVE)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--variants", default=DEFAULT_VARIANTS)
    p.add_argument("--mode", choices=("autoencoder", "end_to_end"), default="autoencoder",
                   help="train the label autoencoder alone, or the whole LDSeg (then also "
                        "report sampled DSC)")
    p.add_argument("--sample-steps", type=lambda s: [int(v) for v in s.split(",")],
                   default=[2])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--seconds", type=float, default=None, help="per-variant time limit")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="latent_capacity.json")
    args = p.parse_args(argv)

    from ldseg_tf.environment import environment_info
    from ldseg_tf.utils import write_json

    data = load_split_arrays(variant_config("d4c1", args.size, args.seed), args.drive)
    results = []
    for name in args.variants.split(","):
        results.append(run_variant(name.strip(), args, data))
    print(f"\nAutoencoder ceiling on DRIVE validation (5 images, {args.size}x{args.size}, "
          f"vessel DSC inside the FOV)")
    keys = sorted({k for r in results for c in r["curve"] for k in c} - {"step", "seconds"})
    print(f"{'variant':10} {'latent':>12} {'values':>7} {'AE params':>10} {'steps':>6} "
          f"{'seconds':>8} " + " ".join(f"{k:>14}" for k in keys))
    for r in results:
        last = r["curve"][-1] if r["curve"] else {"step": 0, "seconds": 0}
        print(f"{r['variant']:10} {'x'.join(map(str, r['latent_shape'])):>12} "
              f"{r['latent_values']:7d} {r['autoencoder_parameters']:10d} {last['step']:6d} "
              f"{last['seconds']:8.1f} " + " ".join(f"{last.get(k, float('nan')):14.3f}"
                                                    for k in keys))
    write_json(args.out, {"benchmark": "latent_capacity", "args": vars(args),
                          "environment": environment_info(args.seed), "results": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
