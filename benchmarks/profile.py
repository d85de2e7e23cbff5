"""Benchmark: where an LDSeg training step and inference spend their time, against
the library's residual U-Net, in one run.

For every model spec (`resunet`, or an `LDSegConfig` preset with overrides,
`fine:label_resampling=pixel_shuffle`):

* **components** (LDSeg only): forward + backward of each of the four
  components alone, with sum(output^2) as the loss;
* **train step**: one `train_on_batch` on a random batch of `--batch` images;
* **inference**: `segment` on the same batch with 1, 2 and 10 DDIM steps
  (ResUNet: one forward pass);
* **peak memory** (`--memory`): the peak resident set size of a child process
  that builds the model, trains 3 steps and segments once with 2 steps.

Times are CPU seconds of this process per call (all threads together), the
median over `--repeats` calls after one untimed call, and the models are timed
round-robin (every repeat times every model once), so that the ratios to the
ResUNet stay fair when other work shares the machine. Wall seconds are
reported beside them.

    python benchmarks/profile.py --out /tmp/profile           # 256^2, batch 4
    python benchmarks/profile.py --size 64 --repeats 2 --models resunet,fine
    python benchmarks/profile.py --models resunet,fine,fine@mixed_bfloat16,fine@jit

A spec may end in `@OPTIONS`: a dtype policy and/or `jit` joined by `+`
(`resunet@mixed_bfloat16+jit`); the ratios are always to the float32 `resunet`.

Prints a table and writes `profile.json` and `profile.md` into --out.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sampling import make_sampler  # noqa: E402
from specs import FINE_BEFORE_ISSUE_17  # noqa: E402

DEFAULT_MODELS = ("resunet", "fine", FINE_BEFORE_ISSUE_17)
INFERENCE_STEPS = (1, 2, 10)


POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def parse_spec(spec):
    """`(model, policy, jit)` of `MODEL[@OPTION+OPTION]`, options being a dtype
    policy (`POLICIES`) and `jit` (XLA for the train step and the sampler):
    `fine@mixed_bfloat16+jit`."""
    model, _, options = spec.partition("@")
    options = [o for o in options.split("+") if o]
    unknown = [o for o in options if o not in POLICIES + ("jit",)]
    if unknown:
        raise SystemExit(f"unknown option(s) {unknown} in {spec!r}; use {POLICIES} or jit.")
    policies = [o for o in options if o in POLICIES]
    return model, (policies[-1] if policies else "float32"), "jit" in options


def build(spec, size, seed=0):
    """The compiled model of a spec: `resunet` (the `paper` preset's depth) or a
    preset with overrides, built under the spec's dtype policy (the global
    policy is restored afterwards) and compiled with its `jit`."""
    import keras

    from ldseg_tf.config import LDSegConfig
    from ldseg_tf.models.ldseg import LDSeg
    from ldseg_tf.models.resunet import ResUNet

    name, policy, jit = parse_spec(spec)
    keras.utils.set_random_seed(seed)
    config = LDSegConfig.from_spec("paper" if name == "resunet" else name,
                                   image_shape=(size, size, 3), seed=seed)
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        model = ResUNet(config) if name == "resunet" else LDSeg(config)
        model.compile(jit_compile=jit)
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    return model


def component_steps(model, batch):
    """`{component: fn}`: each fn runs forward + backward of one component on a
    random input of its real shape, loss sum(output^2)."""
    import tensorflow as tf

    c = model.config
    rng = np.random.default_rng(0)
    images = tf.constant(rng.random((batch,) + c.image_shape, dtype=np.float32))
    onehot = tf.one_hot(rng.integers(0, c.num_classes, (batch,) + c.image_shape[:-1]),
                        c.num_classes)
    z_t = tf.constant(rng.standard_normal((batch,) + c.latent_shape, dtype=np.float32))
    t = tf.constant(rng.integers(1, c.timesteps + 1, batch), tf.int32)
    z_i, features = model.encode_image(images)

    def grad_fn(layer, call):
        @tf.function(autograph=False)
        def step():
            with tf.GradientTape() as tape:
                out = tf.nest.flatten(call())
                loss = tf.add_n([tf.reduce_sum(tf.square(tf.cast(o, tf.float32))) for o in out])
            return tape.gradient(loss, layer.trainable_weights)
        return step

    return {
        "image_encoder": grad_fn(model.image_encoder,
                                 lambda: model.image_encoder(images, training=True)),
        "label_encoder": grad_fn(model.label_encoder,
                                 lambda: model.label_encoder(onehot, training=True)),
        "denoiser": grad_fn(model.denoiser, lambda: model.denoiser(
            z_t, z_i, t, features=features, training=True)),
        "label_decoder": grad_fn(model.label_decoder,
                                 lambda: model.label_decoder(z_t, training=True)),
    }


def timed_calls(model, spec, batch):
    """`{measurement: fn}` for one model: train step, inference, components."""
    rng = np.random.default_rng(1)
    c = model.config
    images = rng.random((batch,) + c.image_shape, dtype=np.float32)
    masks = (rng.random((batch,) + c.image_shape[:-1]) > 0.85).astype(np.int32)
    calls = {"train_step": lambda: model.train_on_batch(images, masks)}
    name, _, jit = parse_spec(spec)
    run = make_sampler(model, jit)
    if name == "resunet":
        calls["segment"] = lambda: run(images, 1)
    else:
        for k in INFERENCE_STEPS:
            calls[f"segment_{k}"] = (lambda k=k: run(images, k))
        calls.update({f"component_{name}": fn
                      for name, fn in component_steps(model, batch).items()})
    return calls


def measure(specs, args):
    """Round-robin timing: `{spec: {measurement: {cpu, wall, n}}}`."""
    models = {spec: build(spec, args.size) for spec in specs}
    calls = {spec: timed_calls(models[spec], spec, args.batch) for spec in specs}
    for spec in specs:  # untimed first calls: tracing, optimizer slots
        for fn in calls[spec].values():
            fn()
    samples = {spec: {k: [] for k in calls[spec]} for spec in specs}
    for _ in range(args.repeats):
        for spec in specs:
            for name, fn in calls[spec].items():
                cpu, wall = time.process_time(), time.perf_counter()
                fn()
                samples[spec][name].append((time.process_time() - cpu,
                                            time.perf_counter() - wall))
    return {spec: {name: {"cpu_s": statistics.median(s[0] for s in v),
                          "wall_s": statistics.median(s[1] for s in v), "n": len(v)}
                   for name, v in samples[spec].items()}
            for spec in specs}, {spec: int(sum(np.prod(w.shape) for w in
                                               models[spec].trainable_weights))
                                 for spec in specs}


def peak_memory_mib(spec, args):
    """Peak RSS (MiB) of a child process (this script with `--memory-of`)."""
    argv = [sys.executable, os.path.abspath(__file__), "--memory-of", spec,
            "--size", str(args.size), "--batch", str(args.batch)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return float(out.stdout.strip().splitlines()[-1])


def child_memory(spec, args):
    """In the child: build, train 3 steps, segment once (2 steps); print peak RSS.

    VmHWM, not `getrusage`: a child's ru_maxrss starts from its parent's peak
    at fork, so every model would report the parent's footprint."""
    calls = timed_calls(build(spec, args.size), spec, args.batch)
    for _ in range(3):
        calls["train_step"]()
    calls.get("segment_2", calls.get("segment"))()
    with open("/proc/self/status") as f:
        hwm = next(line for line in f if line.startswith("VmHWM:"))
    print(int(hwm.split()[1]) / 1024)


def markdown(results, params, memory, args):
    base = results.get("resunet", {})
    cols = ["train_step"] + [f"segment_{k}" for k in INFERENCE_STEPS]
    lines = [f"{args.size}x{args.size}, batch {args.batch}: CPU seconds per call (median of "
             f"{args.repeats}, round-robin), ratio to the ResUNet in brackets.", "",
             "| model | params | train step | segment 1 step | segment 2 steps | "
             "segment 10 steps | peak RSS |", "|---|---|---|---|---|---|---|"]
    for spec, r in results.items():
        cells = []
        for col in cols:
            key = ("segment" if parse_spec(spec)[0] == "resunet" and col.startswith("segment")
                   else col)
            if key not in r:
                cells.append("–")
                continue
            ref = base.get("segment" if col.startswith("segment") else col)
            ratio = f" ({r[key]['cpu_s'] / ref['cpu_s']:.2f}×)" if ref else ""
            cells.append(f"{r[key]['cpu_s']:.2f}{ratio}")
        mem = f"{memory[spec]:.0f} MiB" if spec in memory else "–"
        lines.append(f"| {spec} | {params[spec] / 1e6:.2f} M | " + " | ".join(cells) +
                     f" | {mem} |")
    lines += ["", "Forward + backward per component (CPU seconds):", "",
              "| model | image encoder | label encoder | denoiser | label decoder |",
              "|---|---|---|---|---|"]
    for spec, r in results.items():
        if parse_spec(spec)[0] != "resunet":
            lines.append(f"| {spec} | " + " | ".join(
                f"{r[f'component_{n}']['cpu_s']:.2f}" for n in
                ("image_encoder", "label_encoder", "denoiser", "label_decoder")) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help="comma-separated: resunet, or a preset with overrides "
                        "(fine:label_resampling=pixel_shuffle)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--memory", action="store_true", help="also measure peak RSS per model")
    p.add_argument("--out", default="profile")
    p.add_argument("--memory-of", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_of:
        child_memory(args.memory_of, args)
        return 0

    from ldseg_tf.environment import environment_info
    from ldseg_tf.utils import atomic_write_text, write_json

    specs = [s.strip() for s in args.models.split(",")]
    results, params = measure(specs, args)
    memory = {spec: peak_memory_mib(spec, args) for spec in specs} if args.memory else {}
    os.makedirs(args.out, exist_ok=True)
    write_json(os.path.join(args.out, "profile.json"),
               {"benchmark": "profile", "args": vars(args), "environment": environment_info(0),
                "parameters": params, "results": results, "peak_rss_mib": memory})
    table = markdown(results, params, memory, args)
    atomic_write_text(os.path.join(args.out, "profile.md"), table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
