"""Benchmark: does this checkout train and sample the reproduce models exactly as an
earlier commit did?

Checks out `--base` (a git revision of this repository) into a temporary worktree, then,
in one child process per checkout, trains each model below for a few optimizer steps on
fixed random data with a fixed seed and samples it with 2 DDIM steps. Prints the losses,
a checksum of the weights and of the sampled probabilities for both, and whether they
are equal. Equal numbers mean a change left those models as they were, so their measured
figures (`ldseg reproduce --profile cpu` on the GlaS and knee samples) still hold without
rerunning them for an hour each.

    python benchmarks/same_numbers.py --base 865555a --out /tmp/same_numbers

Models: the `cpu` profile's LDSeg for GlaS (128², 2 classes) and knee (32×32×64, 3
classes), its two-stage variant, the `paper` preset at 128², and the ResUNet; `fine_128`
(the `fine` preset) on request, to check a refactoring.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

# The reproduce `cpu` profile's model (ldseg_tf/experiments/profiles.py), written out
# here so that the same fields reach checkouts that predate that module.
_CPU_FIELDS = dict(downsamplings=3, label_encoder_widths=[8, 16, 16, 16],
                   image_encoder_widths=[16, 16, 16], decoder_widths=[16, 16, 16],
                   denoiser_widths=[16, 32], learning_rate=2e-3, timesteps=1000, seed=0)

CASES = {
    "glas_cpu": ("ldseg", "small", [128, 128, 3], 2, dict(_CPU_FIELDS)),
    "knee_cpu": ("ldseg", "small", [32, 32, 64, 1], 3,
                 dict(_CPU_FIELDS, image_encoder_attention_levels=0)),
    "glas_cpu_two_stage": ("ldseg", "small", [128, 128, 3], 2,
                           dict(_CPU_FIELDS, training="two_stage")),
    "paper_128": ("ldseg", "paper", [128, 128, 3], 2, dict(seed=0)),
    "resunet_128": ("resunet", "small", [128, 128, 3], 2, dict(_CPU_FIELDS)),
    # Not in the default set: `fine` is meant to change between commits.
    "fine_128": ("ldseg", "fine", [128, 128, 3], 2, dict(seed=0)),
}
DEFAULT_MODELS = "glas_cpu,knee_cpu,glas_cpu_two_stage,paper_128,resunet_128"

# Runs inside the child process, with the checkout under test first on sys.path.
_CHILD = r"""
import json, sys
import numpy as np, keras
from ldseg_tf.config import LDSegConfig
from ldseg_tf.models import LDSeg
from ldseg_tf.models.resunet import ResUNet

cases, epochs = json.loads(sys.argv[1]), int(sys.argv[2])
out = {}
for name, (kind, preset, shape, classes, fields) in cases.items():
    keras.utils.set_random_seed(0)
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    config = LDSegConfig.preset(preset, image_shape=tuple(shape), num_classes=classes, **fields)
    rng = np.random.default_rng(0)
    x = rng.random((8, *shape), dtype=np.float32)
    y = (rng.random((8, *shape[:-1])) * classes).astype(np.int32)
    model = (LDSeg if kind == "ldseg" else ResUNet)(config)
    model.compile()
    history = model.fit(x, y, batch_size=4, epochs=epochs, verbose=0, shuffle=False)
    probs = np.asarray(model.segment(x[:2], steps=2, seed=1)["probs"], np.float64)
    out[name] = {"loss": [float(v) for v in history.history["loss"]],
                 "weights_abs_sum": float(sum(np.abs(w).astype(np.float64).sum()
                                              for w in model.get_weights())),
                 "probs_sq_sum": float((probs ** 2).sum())}
print("RESULT " + json.dumps(out))
"""


def run_checkout(root, cases, epochs):
    env = dict(os.environ, PYTHONPATH=root)
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(cases), str(epochs)],
                          cwd=root, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise SystemExit(f"the run in {root} failed (exit {proc.returncode}):\n"
                     f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="git revision to compare against")
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"subset of {','.join(CASES)}")
    p.add_argument("--epochs", type=int, default=3, help="epochs of 2 steps each")
    p.add_argument("--out", default=None, help="directory for same_numbers.json")
    args = p.parse_args(argv)
    unknown = sorted(set(args.models.split(",")) - set(CASES))
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; choose from {sorted(CASES)}.")
    cases = {k: CASES[k] for k in args.models.split(",")}
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        base_root = os.path.join(tmp, "base")
        subprocess.run(["git", "-C", repo, "worktree", "add", "--detach", "-q", base_root,
                        args.base], check=True)
        try:
            base = run_checkout(base_root, cases, args.epochs)
        finally:
            subprocess.run(["git", "-C", repo, "worktree", "remove", "--force", base_root],
                           check=False)
    head = run_checkout(repo, cases, args.epochs)
    rows = [{"model": k, "base": base[k], "head": head[k], "equal": base[k] == head[k]}
            for k in cases]
    print(f"| model | losses {args.base} | losses this checkout | weights, probs equal |")
    print("|---|---|---|---|")
    for r in rows:
        fmt = lambda d: " ".join(f"{v:.6f}" for v in d["loss"])  # noqa: E731
        print(f"| {r['model']} | {fmt(r['base'])} | {fmt(r['head'])} | "
              f"{'yes' if r['equal'] else 'NO'} |")
    if args.out:
        from ldseg_tf.utils import write_json

        os.makedirs(args.out, exist_ok=True)
        write_json(os.path.join(args.out, "same_numbers.json"),
                   {"benchmark": "same_numbers", "args": vars(args), "rows": rows})
    return 0 if all(r["equal"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
