"""Benchmark: full resolution -- patch training with sliding-window inference
against training on whole images resized to the model's input, at equal CPU time.

DRIVE (native 584x565): the first 15 training images train, the last 5 score:
vessel DSC inside the field of view *at full resolution*. Each model (ResUNet;
LDSeg presets such as `fine`) trains twice for the same CPU time, with the
library's own pipeline (`make_dataset`, augmentation on):

- `patches`: random `--patch` crops of the full-resolution images (foreground
  oversampled, 1/3), scored by `segment_tiled` (`--overlap`, Gaussian weights);
- `resized`: whole images resized to `--size`, scored by `segment` and the
  labels resized back with nearest neighbour (what `ldseg predict` does).

Knee (shared sample, 3D, femur and tibia): the same comparison with
`--knee-patch` patches against volumes resized to `--knee-size`; mean
foreground DSC on the test split at full resolution.

    python benchmarks/full_resolution.py --cpu-minutes 15 --out benchmarks/reports/full_resolution
    python benchmarks/full_resolution.py --models resunet --cpu-minutes 0.05 --skip-knee  # smoke

Prints a table and writes `full_resolution.json` and `full_resolution.md`
(atomically) into --out. Not a test: it runs for about
`2 * (len(models) + 1) * cpu_minutes / cores` plus evaluation.
"""

import argparse
import functools
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from drive_data import DEFAULT_DRIVE, SPLITS, dice_in_fov  # noqa: E402
from drive_study import train_for  # noqa: E402
from report_rows import run_jobs  # noqa: E402

DEFAULT_KNEE = os.path.join(os.path.dirname(DEFAULT_DRIVE), "knee_sample")
MODES = ("patches", "resized")


def native_examples(name, split, data_dir):
    """Raw full-resolution `(images, masks, fovs)` lists of a builder split
    (fovs None where the data has none)."""
    import tempfile

    from ldseg_tf.data.pipeline import load_builder

    if not os.path.isdir(data_dir):
        raise SystemExit(f"{name} data not found at {data_dir}; pass --{name}.")
    tfds_dir = os.path.join(tempfile.gettempdir(), f"ldseg_{name}_tfds")
    builder = load_builder(name, data_dir=data_dir, tfds_dir=tfds_dir)
    images, masks, fovs = [], [], []
    for ex in builder.as_dataset(split=split).as_numpy_iterator():
        image, mask = ex["image"].astype(np.float32), ex["label"].astype(np.int32)
        images.append(image)
        masks.append(mask[..., 0] if mask.ndim == image.ndim else mask)
        fovs.append(ex["fov"][..., 0] > 0 if "fov" in ex else None)
    return images, masks, fovs


def make_config(spec, shape, num_classes, seed, mode, overlap):
    from ldseg_tf.config import LDSegConfig

    # "resunet[:overrides]": the paper preset's depth (ResUNet reads downsamplings).
    name, sep, rest = spec.partition(":")
    spec = "paper" + sep + rest if name == "resunet" else spec
    try:
        return LDSegConfig.from_spec(
            spec, image_shape=shape, num_classes=num_classes,
            seed=seed, inference="tiles" if mode == "patches" else "resize",
            tile_overlap=overlap)
    except ValueError as err:
        raise SystemExit(str(err)) from err


def batches(config, images, masks, mode, batch_size, seed):
    """The library's pipeline: patches of the full images, or the images resized."""
    import tensorflow as tf

    from ldseg_tf.data import make_dataset

    # One example at a time: full-resolution images may differ in size.
    source = tf.data.Dataset.from_generator(
        lambda: zip(images, masks),
        output_signature=(tf.TensorSpec((None,) * (images[0].ndim - 1) + images[0].shape[-1:],
                                        tf.float32),
                          tf.TensorSpec((None,) * masks[0].ndim, tf.int32)))
    patch = config.image_shape[:-1] if mode == "patches" else None
    return iter(make_dataset(source, config, batch_size=batch_size, repeat=True, augment=True,
                             seed=seed, patch_size=patch, shuffle_buffer=len(images)))


def predict_full(model, image, mode, steps, seed=0):
    """Labels of one raw image at its own resolution."""
    from ldseg_tf.data.pipeline import preprocess, restore_geometry

    config = model.config
    if mode == "patches":
        x = preprocess(image, config=config, keep_size=True).numpy()
        return model.segment_tiled(x[None], steps=steps, seed=seed)["labels"][0]
    x = preprocess(image, config=config).numpy()
    labels = model.segment(x[None], steps=steps, seed=seed)["labels"][0]
    return restore_geometry(labels, image.shape[:-1])


def score(model, mode, test, steps, scorer):
    """Mean/sd DSC and seconds per full image (the first call traces, untimed)."""
    images, masks, fovs = test
    predict_full(model, images[0], mode, steps)
    start, scores = time.time(), []
    for i, (image, mask, fov) in enumerate(zip(images, masks, fovs)):
        scores.append(scorer(predict_full(model, image, mode, steps, seed=i), mask, fov))
    return {"dsc": float(np.mean(scores)), "dsc_sd": float(np.std(scores)),
            "seconds_per_image": (time.time() - start) / len(images)}


def vessel_dsc(pred, truth, fov):
    return float(dice_in_fov(pred[None], truth[None], fov[None])[0])


def foreground_dsc(pred, truth, _fov, classes=(1, 2)):
    from ldseg_tf.metrics import per_image_dice

    return float(np.mean([per_image_dice(pred[None], truth[None], label=c)[0] for c in classes]))


def run(task, spec, mode, shape, args, train, test):
    """Trains one (model, mode) pair for the budget; returns its table row."""
    import keras

    from ldseg_tf.experiments.models import build_model

    num_classes = 2 if task == "drive" else 3
    config = make_config(spec, shape, num_classes, args.seed, mode, args.overlap)
    keras.utils.set_random_seed(args.seed)
    resunet = spec.split(":")[0] == "resunet"
    model = build_model("resunet" if resunet else "ldseg", config)
    it = batches(config, train[0], train[1], mode, args.batch_size, args.seed)
    steps, wall, cpu = train_for(model, it, args.cpu_minutes * 60)
    row = {"task": task, "model": spec, "mode": mode, "input": "x".join(map(str, shape[:-1])),
           "cpu_minutes": args.cpu_minutes, "train_steps": steps,
           "train_wall_seconds": round(wall, 1), "train_cpu_seconds": round(cpu, 1)}
    sampling = None if resunet else config.sampling_steps
    row.update(score(model, mode, test, sampling,
                     vessel_dsc if task == "drive" else foreground_dsc))
    print(row, flush=True)
    return row


def markdown(rows, args):
    lines = [f"Full resolution, {args.cpu_minutes:g} CPU-minutes of training per row; DSC at "
             f"the images' native resolution (DRIVE: vessel DSC inside the FOV, 5 validation "
             f"images; knee: mean femur/tibia DSC on the test split), mean ± sd; seconds per "
             f"full image with batch 1 (patches: overlap {args.overlap:g}, Gaussian weights).",
             "", "| data | model | trained on | input | steps | DSC | s/image |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['model']} | {r['mode']} | {r['input']} | "
                     f"{r['train_steps']} | {r['dsc']:.3f} ± {r['dsc_sd']:.3f} | "
                     f"{r['seconds_per_image']:.2f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv):
    from ldseg_tf.cli.args import parse_shape

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--drive", default=DEFAULT_DRIVE)
    p.add_argument("--knee", default=DEFAULT_KNEE)
    p.add_argument("--models", default="resunet,fine",
                   help="comma-separated: resunet or an LDSegConfig preset spec (fine, "
                        "fine:prediction=v, ...)")
    p.add_argument("--knee-model", default="resunet:downsamplings=2",
                   help="the model of the knee rows (its patch is small: fewer down-samplings)")
    p.add_argument("--patch", type=parse_shape, default=(128, 128))
    p.add_argument("--size", type=parse_shape, default=(256, 256))
    p.add_argument("--knee-patch", type=parse_shape, default=(32, 32, 32))
    p.add_argument("--knee-size", type=parse_shape, default=(32, 32, 64))
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--cpu-minutes", type=float, default=15.0,
                   help="training budget of every row, in CPU-minutes (all cores together)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-knee", action="store_true")
    p.add_argument("--out", default=os.path.join("benchmarks", "reports", "full_resolution"))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    drive_train = native_examples("drive", SPLITS["train"], args.drive)
    drive_test = native_examples("drive", SPLITS["validation"], args.drive)
    jobs = [functools.partial(run, "drive", spec.strip(), mode,
                              (args.patch if mode == "patches" else args.size) + (3,), args,
                              drive_train, drive_test)
            for spec in filter(None, args.models.split(",")) for mode in MODES]
    if not args.skip_knee:
        knee = native_examples("knee", "train", args.knee), native_examples("knee", "test",
                                                                               args.knee)
        jobs += [functools.partial(run, "knee", args.knee_model, mode,
                                   (args.knee_patch if mode == "patches" else args.knee_size)
                                   + (1,), args, *knee) for mode in MODES]
    run_jobs(jobs, "full_resolution", args, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
