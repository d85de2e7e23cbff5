"""Benchmark: LDSeg configurations on the synthetic thin lines (1-2 px).

Trains each configuration on `synthetic:lines` and logs, every `--eval-every`
steps, the line DSC of 16 held-out images with 1, 2 and 10 DDIM steps and
the autoencoder ceiling (DSC of decode(encode(y))). The README's table of
denoiser levers (`prediction`, `pure_noise_fraction`, `image_embedding_channels`)
comes from

    python benchmarks/lines_levers.py --out /tmp/lines_levers.json

Configurations are `LDSegConfig.from_spec` strings: a preset with optional
overrides, e.g. `fine`, `fine:pure_noise_fraction=0`, `fine:image_embedding_channels=32`.
Prints a table and writes JSON (atomically). Not a test: minutes per entry.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from specs import FINE_BEFORE_ISSUE_17 as OLD_FINE  # noqa: E402

# The README table's rows: the `fine` preset of before issue 17 with eps-, v-
# and x0-prediction at uniform t, then that preset itself (x0, half of the
# samples at t = T), eps-prediction with a wider image embedding, and today's
# `fine`.
EPS = OLD_FINE + ":prediction=epsilon:pure_noise_fraction=0"
DEFAULT = ",".join([EPS, OLD_FINE + ":prediction=v:pure_noise_fraction=0",
                    OLD_FINE + ":pure_noise_fraction=0", OLD_FINE,
                    EPS + ":image_embedding_channels=32", "fine"])


def line_dice(pred, truth):
    """Mean over images of the DSC of class 1."""
    from ldseg_tf.metrics import per_image_dice

    return float(np.mean(per_image_dice(pred, truth)))


def run_entry(spec, args):
    import keras
    import tensorflow as tf

    from ldseg_tf import LDSeg, LDSegConfig
    from ldseg_tf.data.synthetic import make_lines_2d

    size = (args.size, args.size)
    config = LDSegConfig.from_spec(spec, image_shape=size + (3,), seed=args.seed)
    keras.utils.set_random_seed(args.seed)
    model = LDSeg(config)
    model.compile()
    x, y = make_lines_2d(args.train, size, seed=args.seed)
    xv, yv = make_lines_2d(16, size, seed=args.seed + 123)
    ds = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=args.seed).repeat()
          .batch(args.batch_size))
    curve, cpu = [], time.process_time()
    for done in range(args.eval_every, args.steps + 1, args.eval_every):
        model.fit(ds, steps_per_epoch=args.eval_every, epochs=1, verbose=0, shuffle=False)
        point = {"step": done, "cpu_seconds": round(time.process_time() - cpu, 1),
                 "ceiling_dsc": line_dice(np.argmax(model.reconstruct(yv).numpy(), -1), yv)}
        for k in (1, 2, 10):
            point[f"dsc_{k}"] = line_dice(model.segment(xv, steps=k, seed=0)["labels"], yv)
        curve.append(point)
        print(f"  {spec}: " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                        for k, v in point.items()), flush=True)
    return {"spec": spec, "config": config.to_dict(), "curve": curve}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default=DEFAULT, help="comma-separated LDSegConfig specs")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--train", type=int, default=64, help="training images")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--eval-every", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="lines_levers.json")
    args = p.parse_args(argv)

    from ldseg_tf.environment import environment_info
    from ldseg_tf.utils import write_json

    results = [run_entry(spec.strip(), args) for spec in args.configs.split(",")]
    print(f"\nThin lines {args.size}x{args.size}: line DSC with 1 / 2 / 10 DDIM steps "
          f"(ceiling) at steps {[c['step'] for c in results[0]['curve']]}")
    for r in results:
        cells = [f"{c['dsc_1']:.2f}/{c['dsc_2']:.2f}/{c['dsc_10']:.2f} ({c['ceiling_dsc']:.2f})"
                 for c in r["curve"]]
        print(f"{r['spec']:40} " + "  ".join(cells))
    write_json(args.out, {"benchmark": "lines_levers", "args": vars(args),
                          "environment": environment_info(args.seed), "results": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
