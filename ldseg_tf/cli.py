"""The `ldseg` command: demo, train, evaluate, predict, export, tune, reproduce.

Every subcommand builds its model from an `LDSegConfig` (a JSON file, a preset,
or the defaults for the chosen data) and its data from
`ldseg_tf.data.make_dataset`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# Quiet TensorFlow's C++ start-up logging unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ldseg_tf.config import PRESETS  # noqa: E402  (no TensorFlow import)

DATA_SOURCES = ("synthetic", "synthetic:glands", "synthetic:echo", "synthetic:knee",
                "synthetic:lines", "glas",
                "echo", "echo/camus", "knee", "drive", "folder", "folder/3d")

# Model input sizes that train in reasonable time on a CPU; override with
# --image-shape or --config (the paper used 512x512, 512x768 and 128x128x256).
DATA_DEFAULTS = {
    "synthetic": dict(image_shape=(64, 64, 3), num_classes=2),
    "synthetic:glands": dict(image_shape=(64, 64, 3), num_classes=2),
    "synthetic:echo": dict(image_shape=(64, 64, 1), num_classes=3,
                           class_names=("background", "LV", "LA")),
    "synthetic:knee": dict(image_shape=(32, 32, 32, 1), num_classes=3,
                           class_names=("background", "femur", "tibia")),
    "synthetic:lines": dict(image_shape=(64, 64, 3), num_classes=2,
                            class_names=("background", "line")),
    "glas": dict(image_shape=(256, 256, 3), num_classes=2, class_names=("background", "gland")),
    "echo": dict(image_shape=(256, 384, 1), num_classes=3,
                 class_names=("background", "LV", "LA")),
    "echo/camus": dict(image_shape=(256, 256, 1), num_classes=3,
                       class_names=("background", "LV", "LA")),
    "knee": dict(image_shape=(64, 64, 128, 1), num_classes=3,
                 class_names=("background", "femur", "tibia")),
    "drive": dict(image_shape=(256, 256, 3), num_classes=2, class_names=("background", "vessel")),
}

# (train split, validation split) per source.
DEFAULT_SPLITS = {
    "synthetic": ("train", "validation"),
    "echo": ("train", "validation"),
    "echo/camus": ("train", "validation"),
    "knee": ("train", "validation"),
}


def _shape(text: str):
    try:
        return tuple(int(s) for s in text.replace("x", ",").split(",") if s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape like 64,64,3; got {text!r}")


def _add_data_arguments(p, split_help="split to use"):
    p.add_argument("--data", default="synthetic", choices=DATA_SOURCES,
                   help="dataset: a TFDS builder of data_builders/ or the built-in synthetic set")
    p.add_argument("--data-dir", help="raw data in the builder's on-disk layout (manual_dir)")
    p.add_argument("--tfds-dir", help="where prepared TFRecords live (default DATA_DIR/.tfds)")
    p.add_argument("--num-examples", type=int, help="use only the first N examples of a split")
    p.add_argument("--batch-size", type=int, default=4)


def _add_config_arguments(p):
    p.add_argument("--config", help="LDSegConfig JSON file")
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a named preset")
    p.add_argument("--image-shape", type=_shape, help="model input, e.g. 256,256,3 or 64,64,128,1")
    p.add_argument("--num-classes", type=int, help="classes including background")
    p.add_argument("--gamma", type=float, help="Dice loss weight (paper: 2)")
    p.add_argument("--lambda", dest="lambda_", type=float, help="denoiser MSE weight (paper: 1)")
    p.add_argument("--timesteps", type=int, help="diffusion steps T (paper: 1000)")
    p.add_argument("--learning-rate", type=float)
    add_overrides_argument(p)


def add_overrides_argument(p):
    """`--set KEY=VALUE` (repeatable): any LDSegConfig field, read by `build_config`."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any LDSegConfig field, e.g. --set prediction=x0 --set "
                        "denoiser_widths=[16,32]; applied last (repeatable)")


def _data_base(source: str) -> str:
    return "synthetic" if source.startswith("synthetic") else source


def build_config(args):
    """LDSegConfig from --config / --preset / flags / --set / the data's defaults."""
    try:
        return _build_config(args)
    except ValueError as err:
        # An invalid field or value is a usage error, not a crash.
        raise SystemExit(f"ldseg: invalid configuration: {err}") from err


def _build_config(args):
    from ldseg_tf.config import LDSegConfig, parse_overrides

    overrides = {k: getattr(args, k) for k in ("image_shape", "num_classes", "gamma", "lambda_",
                                               "timesteps", "learning_rate")
                 if getattr(args, k, None) is not None}
    overrides.update(parse_overrides(getattr(args, "overrides", None) or []))
    if getattr(args, "config", None):
        cfg = LDSegConfig.from_json(args.config)
        return LDSegConfig.from_dict({**cfg.to_dict(), **overrides}) if overrides else cfg
    source = getattr(args, "data", "synthetic")
    defaults = dict(DATA_DEFAULTS.get(source, {}))
    if not defaults and "image_shape" not in overrides:
        raise SystemExit(f"ldseg: --data {source} needs --image-shape and --num-classes "
                         f"(or --config).")
    defaults.update(overrides)
    if defaults.get("class_names") and len(defaults["class_names"]) != defaults.get("num_classes"):
        defaults.pop("class_names")
    return LDSegConfig.preset(args.preset or ("small" if source.startswith("synthetic") else "paper"),
                              **defaults)


def _dataset(args, config, split, training):
    from ldseg_tf.data import make_dataset

    return make_dataset(args.data, config, split, data_dir=args.data_dir, tfds_dir=args.tfds_dir,
                        batch_size=args.batch_size, shuffle=training, augment=training,
                        seed=args.seed, num_examples=args.num_examples)


def _splits(args):
    train, val = DEFAULT_SPLITS.get(_data_base(args.data), ("train[:90%]", "train[90%:]"))
    return (args.train_split or train, args.val_split or val)


def _strategy(name):
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        # Reads the cluster from the TF_CONFIG environment variable.
        return tf.distribute.MultiWorkerMirroredStrategy()
    return None


# ------------------------------------------------------------------- commands
def cmd_train(args):
    from ldseg_tf.training import NonFiniteLossError, train

    # First: a multi-worker strategy must exist before TensorFlow runs anything.
    strategy = _strategy(args.strategy)
    config = build_config(args)
    train_split, val_split = _splits(args)
    train_ds = _dataset(args, config, train_split, training=True)
    val_ds = None if args.no_validation else _dataset(args, config, val_split, training=False)
    try:
        train(config, train_ds, args.out, epochs=args.epochs, val_ds=val_ds, resume=args.resume,
              time_limit=args.time_limit, strategy=strategy,
              verbose=0 if args.quiet else 1, jit_compile=args.jit_compile)
    except (NonFiniteLossError, FileExistsError) as e:
        raise SystemExit(f"ldseg train: {e}")
    print(f"trained model written to {os.path.join(args.out, 'model.keras')}")


def _load_model(path):
    import keras

    import ldseg_tf  # noqa: F401  registers the classes for deserialization

    if not os.path.exists(path):
        raise SystemExit(f"ldseg: model file {path} does not exist.")
    try:
        return keras.models.load_model(path)
    except Exception as e:  # noqa: BLE001 - Keras raises many kinds
        raise SystemExit(f"ldseg: cannot load model {path}: {e}")


def cmd_evaluate(args):
    from ldseg_tf.evaluation import evaluate_model, mean_foreground, write_report
    from ldseg_tf.metrics import format_summary, write_csv

    model = _load_model(args.model)
    split = args.split or _splits(args)[1]
    ds = _dataset(args, model.config, split, training=False)
    result = evaluate_model(model, ds, steps=args.steps, samples=args.samples, seed=args.seed,
                            distances=not args.no_distances)
    print(format_summary(result["summary"]))
    print(f"mean foreground DSC {mean_foreground(result['summary'], 'dsc'):.4f}  "
          f"IoU {mean_foreground(result['summary'], 'iou'):.4f}")
    if "ceiling" in result:
        # Far above the DSC: the denoiser is the bottleneck; close to it or low:
        # the latent (its size or the autoencoder's training) is.
        print(f"autoencoder ceiling (DSC of decode(encode(mask))) "
              f"{mean_foreground(result['ceiling'], 'dsc'):.4f}")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        write_report(result, os.path.join(args.out, "metrics.json"),
                     {"model": args.model, "data": args.data, "split": split})
        write_csv(os.path.join(args.out, "cases.csv"), result["cases"])
        print(f"metrics written to {args.out}")


def _input_files(path):
    from ldseg_tf.data.io import IMAGE_EXTENSIONS, split_extension

    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise SystemExit(f"ldseg predict: input {path} does not exist.")
    files = sorted(os.path.join(path, f) for f in os.listdir(path)
                   if split_extension(f)[1] in IMAGE_EXTENSIONS)
    if not files:
        raise SystemExit(f"ldseg predict: no images ({', '.join(IMAGE_EXTENSIONS)}) in {path}.")
    return files


def cmd_predict(args):
    import numpy as np
    from tqdm.auto import tqdm

    from ldseg_tf.data.io import read_image, write_mask
    from ldseg_tf.data.pipeline import preprocess, restore_geometry

    files = _input_files(args.input)
    os.makedirs(args.output, exist_ok=True)
    model = None if args.server else _load_model(args.model)
    for path in tqdm(files, desc="predicting", unit="image"):
        try:
            image, meta = read_image(path)
        except (OSError, ValueError) as e:
            raise SystemExit(f"ldseg predict: {e}")
        out_path = os.path.join(args.output, os.path.basename(path))
        if args.server:
            from ldseg_tf import serving

            outputs = serving.rest_predict(
                args.server, {"image": image[None].astype(np.float32)},
                signature_name="segment_any_size")
            labels = restore_geometry(outputs["labels"][0], meta)
        else:
            try:
                x = preprocess(image, config=model.config).numpy()
            except ValueError as e:
                raise SystemExit(f"ldseg predict: {path}: {e}")
            out = model.segment(x[None], steps=args.steps, samples=args.samples, seed=args.seed)
            labels = restore_geometry(out["labels"][0], meta)
            if args.samples > 1:
                np.save(os.path.splitext(out_path)[0] + "_std.npy",
                        restore_geometry(out["std"][0], meta))
        write_mask(out_path, labels.astype(np.uint8), meta)
    print(f"{len(files)} segmentation(s) written to {args.output}")


def cmd_demo(args):
    import numpy as np

    from ldseg_tf.config import LDSegConfig
    from ldseg_tf.data import make_dataset
    from ldseg_tf.evaluation import evaluate_model, mean_foreground, predict_dataset, write_report
    from ldseg_tf.metrics import format_summary
    from ldseg_tf.training import load_state, train
    from ldseg_tf.visualize import save_overlay_figure, save_uncertainty_figure

    out = args.out
    run_dir = os.path.join(out, "run")
    config = LDSegConfig.preset("small", image_shape=(args.size, args.size, 3),
                                downsamplings=2, seed=args.seed)
    print(f"LDSeg demo: synthetic gland images {args.size}x{args.size}, training for at most "
          f"{args.minutes:g} min on {os.cpu_count()} CPU core(s); output in {out}")
    train_ds = make_dataset("synthetic:glands", config, "train", batch_size=8, seed=args.seed,
                            num_examples=args.train_examples, augment=False)
    test_ds = make_dataset("synthetic:glands", config, "test", batch_size=8, shuffle=False,
                           seed=args.seed, num_examples=args.test_examples)
    start = time.time()
    model = train(config, train_ds, run_dir, epochs=args.max_epochs, resume=True,
                  time_limit=args.minutes * 60, verbose=2)
    train_seconds = time.time() - start
    result = evaluate_model(model, test_ds, steps=2, samples=1, seed=args.seed)
    print(format_summary(result["summary"]))
    dsc = mean_foreground(result["summary"], "dsc")
    iou = mean_foreground(result["summary"], "iou")
    print(f"held-out synthetic images, 2 DDIM steps: DSC {dsc:.3f}  IoU {iou:.3f}")

    images, truths, outputs = predict_dataset(model, test_ds.take(1), steps=2, samples=1,
                                              seed=args.seed, progress=False)
    n = min(4, len(images))
    overlay = save_overlay_figure(os.path.join(out, "overlay.png"), images[:n], truths[:n],
                                  outputs["labels"][:n], titles=["LDSeg, 2 DDIM steps"] * n)
    seg = model.segment(np.stack(images[:n]), steps=2, samples=args.samples, seed=args.seed,
                        eta=1.0)
    uncertainty = save_uncertainty_figure(os.path.join(out, "uncertainty.png"), images[:n],
                                          seg["labels"], seg["std"], args.samples)
    metrics_path = write_report(
        result, os.path.join(out, "metrics.json"),
        {"dsc": dsc, "iou": iou, "train_seconds": train_seconds,
         "epochs": load_state(run_dir)["epoch"], "steps": int(model.optimizer.iterations),
         "config": config.to_dict()})
    for path in (overlay, uncertainty, metrics_path):
        print(f"wrote {path}")


# ------------------------------------------------------------------- parser
def build_parser():
    parser = argparse.ArgumentParser(
        prog="ldseg", description="LDSeg: latent diffusion for medical image segmentation.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train on synthetic images, sample, write figures and metrics")
    p.add_argument("--out", default="ldseg_demo", help="output directory")
    p.add_argument("--minutes", type=float, default=3.0, help="training time budget")
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--size", type=int, default=64, help="image side (a multiple of 4)")
    p.add_argument("--train-examples", type=int, default=256)
    p.add_argument("--test-examples", type=int, default=32)
    p.add_argument("--samples", type=int, default=10, help="samples for the uncertainty map")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a model into a run directory")
    _add_config_arguments(p)
    _add_data_arguments(p)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--time-limit", type=float, help="stop after this many seconds")
    p.add_argument("--train-split")
    p.add_argument("--val-split")
    p.add_argument("--no-validation", action="store_true")
    p.add_argument("--strategy", choices=("none", "mirrored", "multiworker"), default="none",
                   help="tf.distribute strategy (multiworker reads TF_CONFIG)")
    p.add_argument("--jit-compile", action="store_true", help="XLA-compile the train step")
    p.add_argument("--seed", type=int, default=0, help="data shuffling/augmentation seed")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="per-case DSC/IoU/HD95/ASSD on a split")
    p.add_argument("--model", required=True)
    _add_data_arguments(p)
    p.add_argument("--split")
    p.add_argument("--train-split", help=argparse.SUPPRESS)
    p.add_argument("--val-split", help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, help="DDIM steps (default: the config's)")
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-distances", action="store_true", help="skip HD95/ASSD")
    p.add_argument("--out", help="directory for metrics.json and cases.csv")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="segment image files (PNG/BMP/TIFF/NIfTI)")
    p.add_argument("--model", help="a .keras model (or use --server)")
    p.add_argument("--server", help="TF Serving REST URL ending in ':predict'")
    p.add_argument("--input", required=True, help="an image file or a folder of them")
    p.add_argument("--output", required=True, help="folder for the masks (same names/format)")
    p.add_argument("--steps", type=int)
    p.add_argument("--samples", type=int, default=1, help=">1 also writes NAME_std.npy")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_predict)

    try:
        from ldseg_tf.export import add_export_arguments

        add_export_arguments(sub)
    except ImportError:  # pragma: no cover - the exporter ships with the package
        pass
    from ldseg_tf.reproduce import add_reproduce_arguments
    from ldseg_tf.tuning import add_tune_arguments

    add_tune_arguments(sub)
    add_reproduce_arguments(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "predict" and not (args.model or args.server):
        parser.error("predict needs --model or --server")
    status = args.func(args)
    # Handlers return an exit status, or a result (a dict) when they succeed.
    return status if isinstance(status, int) and not isinstance(status, bool) else 0


if __name__ == "__main__":
    sys.exit(main())
