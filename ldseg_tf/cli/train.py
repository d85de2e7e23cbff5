"""`ldseg train`: train a model into a run directory."""

import os

from ldseg_tf.cli.args import (add_config_arguments, add_data_arguments, build_config,
                               make_data, parse_shape, positive, reading_data, splits,
                               with_patch_size)


def register(subparsers):
    p = subparsers.add_parser("train", help="train a model into a run directory")
    add_config_arguments(p)
    add_data_arguments(p)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--epochs", type=positive, default=100)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true",
                   help="discard the run in --out (its run files only) and start anew")
    p.add_argument("--time-limit", type=float, help="stop after this many seconds")
    p.add_argument("--no-validation", action="store_true")
    p.add_argument("--strategy", choices=("none", "mirrored", "multiworker"), default="none",
                   help="tf.distribute strategy (multiworker reads TF_CONFIG)")
    p.add_argument("--jit-compile", action="store_true", help="XLA-compile the train step")
    p.add_argument("--seed", type=int, default=0, help="data shuffling/augmentation seed")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--patch-size", type=parse_shape,
                   help="train on random patches of the full-resolution images, e.g. 128,128 "
                        "(the model's input; predict/evaluate then tile)")
    p.set_defaults(func=run)
    return p


def _strategy(name):
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        # Reads the cluster from the TF_CONFIG environment variable.
        return tf.distribute.MultiWorkerMirroredStrategy()
    return None


def run(args):
    from ldseg_tf.errors import UserError
    from ldseg_tf.training import NonFiniteLossError, train

    if args.resume and args.overwrite:
        raise UserError("--resume/--overwrite", "at most one of them", "both")
    # First: a multi-worker strategy must exist before TensorFlow runs anything.
    strategy = _strategy(args.strategy)
    config = with_patch_size(build_config(args), getattr(args, "patch_size", None))
    train_split, val_split, _ = splits(args)
    train_ds = make_data(args, config, train_split, training=True)
    val_ds = None if args.no_validation else make_data(args, config, val_split, training=False)
    try:
        with reading_data(args):
            train(config, train_ds, args.out, epochs=args.epochs, val_ds=val_ds,
                  resume=args.resume, overwrite=args.overwrite, time_limit=args.time_limit,
                  strategy=strategy, verbose=0 if args.quiet else 1,
                  jit_compile=args.jit_compile)
    except NonFiniteLossError as e:
        raise UserError.wrap(e, args.out) from e
    print(f"trained model written to {os.path.join(args.out, 'model.keras')}")
