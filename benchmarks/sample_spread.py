"""Benchmark: how much LDSeg's samples differ, i.e. how informative its SD maps are.

Trains each config on the synthetic thin lines of `test_fine_preset_learns_thin_lines`
(32², 64 training / 16 held-out images, batch 8, seed 0) and, every `--every` steps,
draws `--samples` samples of the held-out images with 2 and 10 DDIM steps: the mean
per-pixel SD (`segment(...)["std"]`) over all pixels and over line pixels, and the share
of pixels whose SD exceeds 0.1. Near zero means every sample gives the same mask.

    python benchmarks/sample_spread.py --configs fine,fine:pure_noise_warmup_steps=1000,paper
"""

import argparse
import json
import os
import sys


def spread(model, images, truth, steps, samples):
    import numpy as np

    sd = np.asarray(model.segment(images, steps=steps, samples=samples, seed=0)["std"])
    return {f"mean_sd_{steps}": float(sd.mean()), f"sd_on_lines_{steps}": float(sd[truth > 0].mean()),
            f"share_sd_over_0.1_{steps}": float((sd > 0.1).mean())}


def run(spec, args):
    import keras
    import tensorflow as tf

    from ldseg_tf import LDSeg, LDSegConfig
    from ldseg_tf.data.synthetic import make_lines_2d

    config = LDSegConfig.from_spec(spec, image_shape=(args.size, args.size, 3), seed=args.seed)
    keras.utils.set_random_seed(args.seed)
    model = LDSeg(config)
    model.compile()
    x, y = make_lines_2d(64, (args.size, args.size), seed=0)
    xv, yv = make_lines_2d(16, (args.size, args.size), seed=123)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(64, seed=0).repeat().batch(8)
    rows = []
    for done in range(args.every, args.steps + 1, args.every):
        model.fit(ds, steps_per_epoch=args.every, epochs=1, verbose=0)
        row = {"config": spec, "step": done}
        for steps in (2, 10):
            row.update(spread(model, xv, yv, steps, args.samples))
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="fine", help="comma-separated LDSegConfig specs")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=700)
    p.add_argument("--every", type=int, default=350)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="directory for sample_spread.json")
    args = p.parse_args(argv)
    rows = [row for spec in args.configs.split(",") for row in run(spec, args)]
    if args.out:
        from ldseg_tf.utils import write_json

        os.makedirs(args.out, exist_ok=True)
        write_json(os.path.join(args.out, "sample_spread.json"),
                   {"benchmark": "sample_spread", "args": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
