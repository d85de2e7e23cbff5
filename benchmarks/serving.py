"""Latency of the exported SavedModel against the Keras model it came from.

For each DDIM step count (default 1, 2, 10) and batch size (default 1, 8) it times

* ``saved_model``: the ``segment`` signature of the SavedModel written by
  `ldseg_tf.export.export_saved_model`, reloaded with `tf.saved_model.load` (raw
  images in; normalization, sampling and decoding in the graph), and
* ``keras``: `normalize_intensity` followed by `LDSeg.segment` on the in-memory
  Keras model (the same computation, driven from Python),

and reports the median time per batch and per image over `--repeats` calls, after
`--warmup` untimed calls (tracing and first-call costs are excluded from both).

Without `--model` it benchmarks an untrained ``small``-preset model of
`--image-size` (weights do not change the latency). Prints a table and writes
JSON to `--out` (default ``benchmarks/results/serving.json``).

    python benchmarks/serving.py                       # a few minutes on a CPU
    python benchmarks/serving.py --model RUN/model.keras --steps 1 2 10 --batch 1 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a trained RUN/model.keras (default: untrained small model)")
    p.add_argument("--preset", default="small", help="preset of the default model")
    p.add_argument("--image-size", type=int, default=64,
                   help="H = W of the default 2D model (multiple of 4)")
    p.add_argument("--channels", type=int, default=3, help="channels of the default model")
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 10], help="DDIM steps")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes")
    p.add_argument("--samples", type=int, default=1, help="samples per image")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per setting")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per setting")
    p.add_argument("--export-dir", help="where to export (default: a temporary folder)")
    p.add_argument("--out", default=os.path.join("benchmarks", "results", "serving.json"),
                   help="JSON results path")
    return p.parse_args(argv)


def _timed(fn, repeats, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from ldseg_tf import LDSeg, LDSegConfig
    from ldseg_tf.data.normalization import normalize_intensity
    from ldseg_tf.environment import environment_info
    from ldseg_tf.export import export_saved_model
    from ldseg_tf.utils import write_json

    if args.model:
        model = keras.models.load_model(args.model)
        source = args.model
    else:
        cfg = LDSegConfig.preset(args.preset,
                                 image_shape=(args.image_size, args.image_size, args.channels))
        model = LDSeg(cfg)
        source = f"untrained preset {args.preset!r} {cfg.image_shape}"
    c = model.config
    bad = [s for s in args.steps if not 1 <= s <= c.timesteps]
    if bad:
        raise SystemExit(f"--steps {bad} outside 1..{c.timesteps} (the model's timesteps)")

    tmp = None
    export_base = args.export_dir
    if export_base is None:
        tmp = tempfile.TemporaryDirectory(prefix="ldseg-bench-")
        export_base = os.path.join(tmp.name, "ldseg")
    t0 = time.perf_counter()
    path = export_saved_model(model, export_base, warmup=False, allow_untrained=True)
    export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    loaded = tf.saved_model.load(path)
    load_s = time.perf_counter() - t0
    signature = loaded.signatures["segment"]
    print(f"model: {source}\nexported to {path} in {export_s:.1f} s, loaded in {load_s:.1f} s")

    # Warm-up: traces LDSeg.segment before anything is timed.
    model.segment(np.zeros((1,) + c.image_shape, np.float32), steps=1, seed=0)

    rng = np.random.default_rng(0)
    results = []
    for batch in args.batch:
        raw = rng.integers(0, 256, size=(batch,) + c.image_shape).astype(np.float32)
        raw_t = tf.constant(raw)
        for steps in args.steps:
            feeds = dict(image=raw_t, steps=tf.constant(steps, tf.int32),
                         samples=tf.constant(args.samples, tf.int32),
                         seed=tf.constant(0, tf.int64))

            def serve():
                out = signature(**feeds)
                return {k: v.numpy() for k, v in out.items()}

            def direct():
                x = normalize_intensity(raw_t, method=c.normalization,
                                        spatial_dims=c.spatial_dims)
                return model.segment(x.numpy(), steps=steps, samples=args.samples, seed=0)

            sm = _timed(serve, args.repeats, args.warmup)
            kr = _timed(direct, args.repeats, args.warmup)
            row = {
                "steps": steps, "batch": batch, "samples": args.samples,
                "saved_model_ms_per_batch": 1e3 * statistics.median(sm),
                "keras_ms_per_batch": 1e3 * statistics.median(kr),
            }
            row["saved_model_ms_per_image"] = row["saved_model_ms_per_batch"] / batch
            row["keras_ms_per_image"] = row["keras_ms_per_batch"] / batch
            row["saved_model_over_keras"] = (row["saved_model_ms_per_batch"]
                                             / row["keras_ms_per_batch"])
            results.append(row)

    header = (f"{'steps':>5} {'batch':>5} {'SavedModel ms/img':>18} {'Keras ms/img':>13} "
              f"{'ratio':>6}")
    print(header)
    print("-" * len(header))
    for r in sorted(results, key=lambda r: (r["steps"], r["batch"])):
        print(f"{r['steps']:>5} {r['batch']:>5} {r['saved_model_ms_per_image']:>18.2f} "
              f"{r['keras_ms_per_image']:>13.2f} {r['saved_model_over_keras']:>6.2f}")

    report = {
        "benchmark": "serving",
        "model": source,
        "config": c.to_dict(),
        "export_seconds": export_s,
        "load_seconds": load_s,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "environment": environment_info(None),  # no seed option: inputs use a fixed seed
        "results": results,
    }
    write_json(args.out, report)
    print(f"wrote {args.out}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
