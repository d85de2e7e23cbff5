"""Sampling latency, training step time, peak memory and the 2-vs-1000-step DSC of LDSeg.

Checks the paper's claims (Table IV, Fig. 5, Fig. 6b) on the machine at hand:

* **steps sweep**: latency per image of `LDSeg.segment` for DDIM steps
  (default 1, 2, 10, 50, 1000) at one image size (`--step-size`, default the
  config's own size); the 1000-step / 2-step ratio is the speed-up of Table IV
  (paper: ~268x, 80.37 s vs 0.30 s per GlaS image on an A100);
* **size sweep**: latency per image at image sizes (default 64, 128, 256, 512)
  with 2 and 50 steps (`--size-steps`; Fig. 6b used 50), to see whether latency
  stays nearly flat in image size. The model is the config with only
  `image_shape` changed, so the latent grows with the image
  (size / 2**downsamplings); the table shows the latent size;
* **training step**: seconds per `LDSeg.train_step` on a batch of
  `--train-batch` images, per size;
* **peak memory** of each measurement: on a GPU the TensorFlow allocator's peak
  on GPU:0 (`tf.config.experimental.get_memory_info`, reset before each
  measurement); on a CPU the process' peak resident set size (VmHWM, reset
  through /proc/self/clear_refs where the kernel allows it, else
  `resource.getrusage`, which cannot be reset). The JSON says which;
* **DSC** (`--train-seconds S`, 0 to skip): trains the model of `--train-size`
  for S seconds on the built-in synthetic set (`ldseg_tf.data.synthetic`,
  chosen by the config's channels/rank: glands for RGB 2D) and reports the
  held-out foreground DSC with 2 and with the largest of `--steps` DDIM steps
  (`--dsc-steps` to choose). Short CPU runs train little: compare the two
  columns with each other, not with the paper's absolute DSC.

Timing: every setting gets `--warmup` untimed calls (the first call of a model
also traces its function; that time is reported separately as `first_call_s`),
then up to `--repeats` timed calls, the median is reported. A setting stops
repeating once its timed calls add up to `--budget` seconds (at least one timed
call is always made); the tables and JSON give the number of timed calls `n`.
Nothing is skipped: slow settings (1000 steps at 512^2 on a CPU) are avoided by
choosing `--steps`, `--size-steps`, `--step-size` and `--sizes`.

`--jit` XLA-compiles the train step (`model.compile(jit_compile=True)`) and
times sampling through `tf.function(LDSeg.segment_graph, jit_compile=True)`
instead of `LDSeg.segment` (same graph, same arguments; stateless random
numbers differ under XLA, so samples are not bit-identical to `segment`'s).

    python benchmarks/sampling.py --quick --out /tmp/s.json   # CPU smoke run, 3-5 min on 2 cores
    python benchmarks/sampling.py --out benchmarks/results/sampling.json
    python benchmarks/sampling.py --policy mixed_bfloat16 --jit --train-seconds 600
    python benchmarks/sampling.py --config RUN/config.json --sizes 128 256 --steps 2 1000
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import resource
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Defaults of a full run and of --quick; an option given on the command line wins.
FULL = dict(sizes=[64, 128, 256, 512], steps=[1, 2, 10, 50, 1000], size_steps=[2, 50],
            step_size=None, repeats=5, budget=120.0, train_seconds=120.0, train_size=None,
            train_examples=256, test_examples=32)
QUICK = dict(sizes=[64, 128], steps=[1, 2, 10, 50, 1000], size_steps=[2, 50],
             step_size=64, repeats=3, budget=20.0, train_seconds=30.0, train_size=64,
             train_examples=64, test_examples=16)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Defaults in [brackets] are those of a full run; --quick changes them to "
               + ", ".join(f"{k}={v}" for k, v in QUICK.items()) + ".")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="paper", choices=("paper", "small"),
                     help="LDSegConfig preset [paper]")
    src.add_argument("--config", help="an LDSegConfig JSON file (e.g. RUN/config.json)")
    p.add_argument("--quick", action="store_true",
                   help="small sizes and short training: a CPU smoke run of a few minutes")
    p.add_argument("--sizes", type=int, nargs="+",
                   help="image sizes (H = W, or D = H = W for 3D) of the size sweep "
                        "[64 128 256 512]")
    p.add_argument("--steps", type=int, nargs="+", help="DDIM steps of the steps sweep "
                                                        "[1 2 10 50 1000]")
    p.add_argument("--step-size", type=int,
                   help="image size of the steps sweep [the config's own size]")
    p.add_argument("--size-steps", type=int, nargs="+",
                   help="DDIM steps of the size sweep [2 50]")
    p.add_argument("--batch", type=int, default=1, help="images per segment call [1]")
    p.add_argument("--train-batch", type=int, default=8, help="images per train step [8]")
    p.add_argument("--repeats", type=int, help="timed calls per setting, at most [5]")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per setting [1]")
    p.add_argument("--budget", type=float,
                   help="stop repeating a setting once its timed calls took this many "
                        "seconds (>= 1 timed call) [120]")
    p.add_argument("--policy", default="float32",
                   choices=("float32", "mixed_float16", "mixed_bfloat16"),
                   help="Keras dtype policy [float32]")
    p.add_argument("--jit", action="store_true",
                   help="XLA-compile the train step and the sampler")
    p.add_argument("--train-seconds", type=float,
                   help="train this long for the DSC comparison; 0 skips it [120]")
    p.add_argument("--train-size", type=int,
                   help="image size of the DSC training [the config's own size]")
    p.add_argument("--train-examples", type=int, help="synthetic training images [256]")
    p.add_argument("--test-examples", type=int, help="held-out synthetic images [32]")
    p.add_argument("--eval-batch", type=int, default=8, help="images per batch in the DSC "
                                                             "evaluation [8]")
    p.add_argument("--dsc-steps", type=int, nargs="+",
                   help="DDIM steps compared by DSC [2 and the largest of --steps]")
    p.add_argument("--seed", type=int, default=0, help="data and sampling seed [0]")
    p.add_argument("--out", default=os.path.join("benchmarks", "results", "sampling.json"),
                   help="JSON results path (written atomically) "
                        "[benchmarks/results/sampling.json]")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for name in ("batch", "train_batch", "repeats", "eval_batch", "train_examples",
                 "test_examples"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if args.warmup < 0 or args.budget <= 0 or args.train_seconds < 0:
        p.error("--warmup and --train-seconds must be >= 0 and --budget > 0")
    return args


# ----------------------------------------------------------------------- memory
class PeakMemory:
    """Peak memory of a measurement: the TF allocator's peak on GPU:0, or the
    process' peak RSS on a CPU."""

    def __init__(self, tf, on_gpu: bool):
        self.tf = tf
        self.on_gpu = on_gpu
        if on_gpu:
            self.kind = "gpu_allocator_peak (tf.config.experimental.get_memory_info('GPU:0'))"
        elif self._clear_hwm():
            self.kind = ("cpu_peak_rss (VmHWM of the whole process, reset via "
                         "/proc/self/clear_refs before each measurement)")
        else:
            self.kind = ("cpu_peak_rss (resource.getrusage ru_maxrss: process lifetime peak, "
                         "cannot be reset)")

    @staticmethod
    def _clear_hwm() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return PeakMemory._status("VmHWM") is not None
        except OSError:
            return False

    @staticmethod
    def _status(field):
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def reset(self):
        if self.on_gpu:
            self.tf.config.experimental.reset_memory_stats("GPU:0")
        else:
            self._clear_hwm()

    def peak(self) -> int:
        if self.on_gpu:
            return int(self.tf.config.experimental.get_memory_info("GPU:0")["peak"])
        hwm = self._status("VmHWM")
        if hwm is not None and "clear_refs" in self.kind:
            return hwm
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

    def current(self) -> int:
        if self.on_gpu:
            return int(self.tf.config.experimental.get_memory_info("GPU:0")["current"])
        return self._status("VmRSS") or 0


# ----------------------------------------------------------------------- timing
def timed(fn, repeats: int, warmup: int, budget: float, memory: PeakMemory) -> dict:
    """Median seconds of up to `repeats` calls of `fn` after `warmup` calls, and
    the peak memory over the timed calls."""
    for _ in range(warmup):
        fn()
    memory.reset()
    before = memory.current()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if sum(times) >= budget:
            break
    return {"median_s": statistics.median(times), "min_s": min(times), "n": len(times),
            "times_s": times, "memory_before_bytes": before,
            "peak_memory_bytes": memory.peak()}


def config_for_size(base, size: int):
    from ldseg_tf import LDSegConfig

    shape = (size,) * base.spatial_dims + (base.in_channels,)
    d = base.to_dict()
    d["image_shape"] = list(shape)
    try:
        return LDSegConfig.from_dict(d)
    except ValueError as e:
        raise SystemExit(f"image size {size} does not fit this config: {e}")


def synthetic_batch(cfg, n: int, split: str, seed: int):
    """`n` synthetic (images, masks) of the config's shape, as numpy arrays."""
    from ldseg_tf.data import make_dataset

    ds = make_dataset("synthetic", cfg, split, batch_size=n, shuffle=False, seed=seed,
                      num_examples=n, cache=False)
    x, y = next(iter(ds))
    return x.numpy(), y.numpy()


def make_sampler(model, jit: bool):
    """`run(images, steps)` -> numpy outputs, through `LDSeg.segment` or, with
    `jit`, through an XLA-compiled `segment_graph`."""
    import tensorflow as tf

    if not jit:
        def run(images, steps, seed=0):
            return model.segment(images, steps=steps, samples=1, seed=seed)
        return run

    fn = tf.function(lambda x, k, n, s, e: model.segment_graph(x, k, n, s, e),
                     jit_compile=True, reduce_retracing=True)

    def run(images, steps, seed=0):
        out = fn(tf.constant(images, tf.float32), tf.constant(steps, tf.int32),
                 tf.constant(1, tf.int32), tf.constant(seed, tf.int64),
                 tf.constant(0.0, tf.float32))
        return {k: v.numpy() for k, v in out.items()}
    return run


def make_train_step(model, jit: bool):
    """One traced `LDSeg.train_step` (what `fit` runs per batch); returns a
    callable that runs it on fixed tensors and waits for the result."""
    import tensorflow as tf

    fn = tf.function(model.train_step, jit_compile=jit, reduce_retracing=True)

    def run(x, y):
        logs = fn((x, y))
        return float(logs["loss"])  # forces completion
    return run


# ------------------------------------------------------------------ measurement
def measure_size(size, args, base, memory, keep: bool):
    import keras
    import tensorflow as tf

    from ldseg_tf import LDSeg

    cfg = config_for_size(base, size)
    entry = {"size": size, "image_shape": list(cfg.image_shape),
             "latent_shape": list(cfg.latent_shape)}
    keras.utils.set_random_seed(args.seed)
    t0 = time.perf_counter()
    model = LDSeg(cfg)
    model.compile(jit_compile=args.jit)
    entry["build_s"] = time.perf_counter() - t0
    sampler = make_sampler(model, args.jit)
    images, _ = synthetic_batch(cfg, args.batch, "test", args.seed)
    t0 = time.perf_counter()
    sampler(images, 2)
    entry["first_call_s"] = time.perf_counter() - t0  # tracing (+ XLA compile) + one call
    print(f"[{size}] built in {entry['build_s']:.1f} s, first segment call (tracing) "
          f"{entry['first_call_s']:.1f} s", flush=True)

    steps_rows, size_rows = [], []
    wanted = []
    if size == args.step_size:
        wanted += [("steps", k) for k in args.steps]
    if size in args.sizes:
        wanted += [("size", k) for k in args.size_steps]
    done = {}
    for sweep, k in wanted:
        if k not in done:
            r = timed(lambda: sampler(images, k), args.repeats, args.warmup, args.budget, memory)
            r.update(size=size, steps=k, batch=args.batch,
                     ms_per_image=1e3 * r["median_s"] / args.batch,
                     latent_shape=entry["latent_shape"])
            done[k] = r
            print(f"[{size}] {k:>4} steps: {r['ms_per_image']:9.1f} ms/image "
                  f"(n={r['n']})", flush=True)
        (steps_rows if sweep == "steps" else size_rows).append(done[k])

    train_row = None
    step_fn = None
    if size in args.sizes or (keep and args.train_seconds > 0):
        x, y = synthetic_batch(cfg, args.train_batch, "train", args.seed)
        x, y = tf.constant(x), tf.constant(y)
        step_fn = make_train_step(model, args.jit)
        t0 = time.perf_counter()
        step_fn(x, y)
        entry["first_train_step_s"] = time.perf_counter() - t0
        if size in args.sizes:
            r = timed(lambda: step_fn(x, y), args.repeats, args.warmup, args.budget, memory)
            r.update(size=size, batch=args.train_batch,
                     ms_per_image=1e3 * r["median_s"] / args.train_batch,
                     latent_shape=entry["latent_shape"])
            train_row = r
            print(f"[{size}] train step: {r['median_s']:.3f} s per batch of "
                  f"{args.train_batch} (n={r['n']}; tracing {entry['first_train_step_s']:.1f} s)",
                  flush=True)
    entry["parameters"] = model.component_parameter_counts()["total"]
    if not keep:
        del model, sampler, step_fn
        gc.collect()
        return entry, steps_rows, size_rows, train_row, None
    return entry, steps_rows, size_rows, train_row, (model, step_fn)


def dsc_comparison(model, step_fn, args):
    """Trains `model` for `args.train_seconds` on synthetic data with the traced
    `step_fn`, then evaluates held-out foreground DSC per number of DDIM steps."""
    from ldseg_tf.data import make_dataset
    from ldseg_tf.evaluation import evaluate_model, mean_foreground

    cfg = model.config
    train_ds = make_dataset("synthetic", cfg, "train", batch_size=args.train_batch,
                            seed=args.seed, num_examples=args.train_examples, repeat=True,
                            drop_remainder=True)
    test_ds = make_dataset("synthetic", cfg, "test", batch_size=args.eval_batch, shuffle=False,
                           seed=args.seed, num_examples=args.test_examples)
    start_iter = int(model.optimizer.iterations)
    losses = []
    start = time.perf_counter()
    for x, y in train_ds:
        losses.append(step_fn(x, y))
        if not np.isfinite(losses[-1]):
            raise SystemExit(f"training diverged (loss {losses[-1]}) at step {len(losses)}")
        if time.perf_counter() - start >= args.train_seconds:
            break
    train_s = time.perf_counter() - start
    steps_done = int(model.optimizer.iterations) - start_iter
    print(f"[dsc] trained {steps_done} steps ({steps_done * args.train_batch} images) in "
          f"{train_s:.0f} s at {cfg.image_shape}; last loss {losses[-1]:.4f}", flush=True)
    result = {"size": cfg.image_shape[0], "image_shape": list(cfg.image_shape),
              "dataset": "synthetic (ldseg_tf.data.synthetic, chosen by make_dataset)",
              "train_seconds": train_s, "train_steps": steps_done,
              "train_batch": args.train_batch, "train_examples": args.train_examples,
              "test_examples": args.test_examples, "first_loss": losses[0],
              "last_loss": losses[-1], "ema": cfg.ema, "evaluations": []}
    # Trace segment for the evaluation batch shape first, so that the timings
    # below are sampling only.
    model.segment(next(iter(test_ds))[0].numpy(), steps=1, seed=args.seed)
    for k in args.dsc_steps:
        t0 = time.perf_counter()
        ev = evaluate_model(model, test_ds, steps=k, seed=args.seed, distances=False,
                            progress=False)
        seconds = time.perf_counter() - t0
        row = {"steps": k, "dsc": mean_foreground(ev["summary"], "dsc"),
               "iou": mean_foreground(ev["summary"], "iou"), "eval_seconds": seconds,
               "ms_per_image": 1e3 * seconds / args.test_examples}
        result["evaluations"].append(row)
        print(f"[dsc] {k:>4} steps: foreground DSC {row['dsc']:.4f}  IoU {row['iou']:.4f} "
              f"({seconds:.1f} s for {args.test_examples} images)", flush=True)
    return result


# ---------------------------------------------------------------------- report
def _mb(n):
    return f"{n / 2**20:,.0f}"


def print_report(report):
    res = report["results"]
    mem = "GPU MiB" if report["environment"]["device"]["type"] == "GPU" else "RSS MiB"
    dev = report["environment"]["device"]
    print()
    print(f"device: {dev['type']} {dev['name']} | TF {report['environment']['tensorflow']} "
          f"Keras {report['environment']['keras']} | policy {report['policy']} | "
          f"jit {report['jit_compile']} | sampler {report['sampler']}")
    print(f"memory: {report['memory_kind']}")
    if res["steps_sweep"]:
        r0 = res["steps_sweep"][0]
        print(f"\nLatency vs DDIM steps (image {r0['size']}, latent {r0['latent_shape']}, "
              f"batch {r0['batch']})")
        print(f"{'steps':>6} {'ms/image':>11} {'n':>3} {'peak ' + mem:>14}")
        for r in res["steps_sweep"]:
            print(f"{r['steps']:>6} {r['ms_per_image']:>11.1f} {r['n']:>3} "
                  f"{_mb(r['peak_memory_bytes']):>14}")
    if res["size_sweep"]:
        steps = sorted({r["steps"] for r in res["size_sweep"]})
        print(f"\nLatency vs image size (ms/image, batch {res['size_sweep'][0]['batch']}) "
              f"and training step time")
        head = f"{'size':>5} {'latent':>10} " + " ".join(f"{f'{k} steps':>10}" for k in steps)
        head += f" {'train s/step':>13} {'train batch':>11} {'peak ' + mem + ' (train)':>20}"
        print(head)
        for size in sorted({r["size"] for r in res["size_sweep"]}):
            rows = {r["steps"]: r for r in res["size_sweep"] if r["size"] == size}
            line = f"{size:>5} {'x'.join(map(str, rows[steps[0]]['latent_shape'])):>10} "
            line += " ".join(f"{rows[k]['ms_per_image']:>10.1f}" for k in steps)
            tr = next((t for t in res["train_step"] if t["size"] == size), None)
            if tr:
                line += (f" {tr['median_s']:>13.3f} {tr['batch']:>11} "
                         f"{_mb(tr['peak_memory_bytes']):>20}")
            print(line)
    if res.get("dsc"):
        d = res["dsc"]
        print(f"\nDSC on {d['test_examples']} held-out synthetic images "
              f"({d['image_shape']}, after {d['train_steps']} training steps / "
              f"{d['train_seconds']:.0f} s)")
        print(f"{'steps':>6} {'DSC':>7} {'IoU':>7} {'eval ms/image':>14}")
        for r in d["evaluations"]:
            print(f"{r['steps']:>6} {r['dsc']:>7.4f} {r['iou']:>7.4f} {r['ms_per_image']:>14.1f}")
    claims = report["claims"]
    print("\nPaper claims")
    for key, c in claims.items():
        print(f"  {key}: {c['summary']}")
    if not claims:
        print("  none measured (they need 2 and more --steps, two or more --sizes, or "
              "--train-seconds > 0 with two --dsc-steps)")


def claims_of(report, args):
    res = report["results"]
    claims = {}
    by_steps = {r["steps"]: r for r in res["steps_sweep"]}
    hi = max(args.steps)
    if 2 in by_steps and hi in by_steps and hi != 2:
        ratio = by_steps[hi]["median_s"] / by_steps[2]["median_s"]
        claims["speedup"] = {
            "ratio": ratio, "steps": [hi, 2], "size": by_steps[2]["size"], "paper": 268.0,
            "summary": f"{hi} steps / 2 steps latency = {ratio:.1f}x at size "
                       f"{by_steps[2]['size']} (paper Table IV: ~268x for 1000 vs 2)"}
    for k in sorted({r["steps"] for r in res["size_sweep"]}):
        rows = sorted((r for r in res["size_sweep"] if r["steps"] == k), key=lambda r: r["size"])
        if len(rows) >= 2:
            ratio = rows[-1]["median_s"] / rows[0]["median_s"]
            pixels = (rows[-1]["size"] / rows[0]["size"]) ** (len(rows[0]["latent_shape"]) - 1)
            claims[f"size_flatness_{k}_steps"] = {
                "ratio": ratio, "sizes": [rows[0]["size"], rows[-1]["size"]],
                "pixel_ratio": pixels,
                "summary": f"{k} steps: latency x{ratio:.2f} from {rows[0]['size']} to "
                           f"{rows[-1]['size']} ({pixels:.0f}x the pixels; paper Fig. 6b: "
                           f"nearly flat)"}
    if res.get("dsc"):
        ev = {r["steps"]: r for r in res["dsc"]["evaluations"]}
        ks = sorted(ev)
        if len(ks) >= 2:
            lo, top = ks[0], ks[-1]
            diff = ev[lo]["dsc"] - ev[top]["dsc"]
            claims["dsc_few_vs_many_steps"] = {
                "dsc": {str(k): ev[k]["dsc"] for k in ks}, "difference": diff,
                "summary": f"DSC {ev[lo]['dsc']:.4f} with {lo} steps vs {ev[top]['dsc']:.4f} "
                           f"with {top} ({diff:+.4f}; paper Fig. 5: 2 steps as good as 1000)"}
    return claims


# ------------------------------------------------------------------------ main
def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from ldseg_tf import LDSegConfig
    from ldseg_tf.environment import environment_info
    from ldseg_tf.utils import write_json

    keras.mixed_precision.set_dtype_policy(args.policy)
    keras.utils.set_random_seed(args.seed)
    if args.config:
        base = LDSegConfig.from_json(args.config)
        source = args.config
    else:
        base = LDSegConfig.preset(args.preset)
        source = f"preset {args.preset!r}"
    own_size = base.image_shape[0]
    if args.step_size is None:
        args.step_size = own_size
    if args.train_size is None:
        args.train_size = own_size
    if args.dsc_steps is None:
        args.dsc_steps = sorted({2, max(args.steps)})
    bad = sorted(k for k in set(args.steps + args.size_steps + args.dsc_steps)
                 if not 1 <= k <= base.timesteps)
    if bad:
        raise SystemExit(f"steps {bad} outside 1..{base.timesteps} (the config's timesteps)")
    train = args.train_seconds > 0
    sizes = sorted(set(args.sizes) | {args.step_size} | ({args.train_size} if train else set()))
    for s in sizes:  # fail before any work
        config_for_size(base, s)

    environment = environment_info(args.seed)
    device = environment["device"]
    memory = PeakMemory(tf, device["type"] == "GPU")
    print(f"LDSeg sampling benchmark: {source}, sizes {sizes}, policy {args.policy}, "
          f"jit {args.jit}, on {device['type']} {device['name']}", flush=True)

    entries, steps_rows, size_rows, train_rows, dsc = [], [], [], [], None
    started = time.perf_counter()
    for size in sizes:
        keep = train and size == args.train_size
        entry, s_rows, z_rows, t_row, kept = measure_size(size, args, base, memory, keep)
        entries.append(entry)
        steps_rows += s_rows
        size_rows += z_rows
        if t_row:
            train_rows.append(t_row)
        if kept:
            dsc = dsc_comparison(*kept, args)
            del kept
            gc.collect()

    report = {
        "benchmark": "sampling",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": [os.path.basename(sys.argv[0])] + (sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "model": source,
        "config": base.to_dict(),
        "policy": args.policy,
        "jit_compile": args.jit,
        "sampler": ("tf.function(LDSeg.segment_graph, jit_compile=True)" if args.jit
                    else "LDSeg.segment"),
        "memory_kind": memory.kind,
        "settings": {k: getattr(args, k) for k in (
            "sizes", "steps", "step_size", "size_steps", "batch", "train_batch", "repeats",
            "warmup", "budget", "train_seconds", "train_size", "dsc_steps", "seed")},
        "environment": environment,
        "models": entries,
        "results": {"steps_sweep": steps_rows, "size_sweep": size_rows,
                    "train_step": train_rows, "dsc": dsc},
        "wall_seconds": time.perf_counter() - started,
    }
    report["claims"] = claims_of(report, args)
    print_report(report)
    write_json(args.out, report)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
