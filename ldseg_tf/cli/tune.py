"""`ldseg tune`: keras-tuner search over the loss weights (see `ldseg_tf.tuning`)."""

import argparse
import dataclasses
import os
import sys
from typing import Tuple

from ldseg_tf.cli.args import (add_config_arguments, add_data_arguments, build_config,
                               make_data, splits)
from ldseg_tf.tuning import (DEFAULT_GAMMA_RANGE, DEFAULT_LAMBDA_RANGE,
                             DEFAULT_LEARNING_RATE_RANGE, HP_NAMES, TUNERS, format_range)


def _pair(text: str) -> Tuple[float, float]:
    try:
        values = tuple(float(s) for s in text.replace(":", ",").split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH such as 0.25,8; got {text!r}")
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected two numbers LOW,HIGH; got {text!r}")
    return values


def _ints(text: str) -> Tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers such as 3,4,5; got {text!r}")


def _range_argument(p, flag, default, what):
    p.add_argument(flag, type=_pair, default=default, metavar="LOW,HIGH",
                   help=f"{what} range, log scale (default {format_range(default)})")


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "tune", help="keras-tuner search over the loss weights gamma and lambda",
        description=(
            "Searches the Dice weight gamma and the denoiser-MSE weight lambda (and "
            "optionally the learning rate and latent size) with keras-tuner, ranking "
            "trials by validation Dice from DDIM sampling. Resumes the search already "
            "in --out; writes best_hparams.json, best_model.keras and trials.csv there."))
    add_data_arguments(p)
    p.add_argument("--val-examples", type=int,
                   help="use only the first N validation examples (default: --num-examples)")
    p.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no augmentation of the training data")
    add_config_arguments(p, loss_weights=False)
    p.add_argument("--sampling-steps", type=int,
                   help="DDIM steps of the validation sampling "
                        "(default: the config's sampling_steps)")
    p.add_argument("--out", required=True, help="search folder (resumed if it holds one)")
    p.add_argument("--tuner", choices=TUNERS, default="random")
    p.add_argument("--max-trials", type=int, default=10,
                   help="total trials, counting those of an earlier run in --out")
    p.add_argument("--epochs", type=int, default=10,
                   help="epochs per trial (hyperband: the most per trial)")
    p.add_argument("--objective", default="val_dsc",
                   help="validation metric to rank by: val_dsc (default, maximized), val_iou, "
                        "val_dsc_<class>, val_iou_<class>, or a loss val_loss/val_ce/"
                        "val_dice_loss/val_mse (minimized)")
    _range_argument(p, "--gamma-range", DEFAULT_GAMMA_RANGE, "Dice weight")
    _range_argument(p, "--lambda-range", DEFAULT_LAMBDA_RANGE, "MSE weight")
    p.add_argument("--tune-learning-rate", action="store_true")
    _range_argument(p, "--lr-range", DEFAULT_LEARNING_RATE_RANGE, "learning rate")
    p.add_argument("--tune-latent", action="store_true",
                   help="also search the latent size (number of downsamplings)")
    p.add_argument("--latent-choices", type=_ints, metavar="N,N,...",
                   help="downsamplings to try (default: the config's and its neighbours)")
    p.add_argument("--overwrite", action="store_true", help="discard a search already in --out")
    p.add_argument("--no-best-model", dest="save_best_model", action="store_false",
                   help="do not write best_model.keras")
    p.add_argument("--seed", type=int, default=0, help="tuner and data seed")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)
    return p


def _fail(message: str):
    from ldseg_tf.errors import UserError

    raise UserError.wrap(ValueError(message))


def _hypermodel(args):
    """The hyper-model of the flags; every check that needs no data or training."""
    from ldseg_tf.tuning import LDSegHyperModel, check_dependencies, make_objective

    if args.data_dir is not None and not os.path.isdir(args.data_dir):
        _fail(f"--data-dir {args.data_dir} does not exist (or is not a folder).")
    if args.data.startswith("synthetic") and args.data_dir is not None:
        print(f"note: --data {args.data} is generated; --data-dir is ignored", file=sys.stderr)
    try:
        config = build_config(args)
        if args.sampling_steps is not None:
            config = dataclasses.replace(config, sampling_steps=args.sampling_steps)
        hypermodel = LDSegHyperModel(
            config, tune_learning_rate=args.tune_learning_rate, tune_latent=args.tune_latent,
            gamma_range=args.gamma_range, lambda_range=args.lambda_range,
            learning_rate_range=args.lr_range, latent_choices=args.latent_choices)
        make_objective(args.objective, config)
        if args.max_trials < 1:
            raise ValueError(f"--max-trials must be >= 1; got {args.max_trials}.")
        if args.epochs < 1:
            raise ValueError(f"--epochs must be >= 1; got {args.epochs}.")
        check_dependencies(args.tuner)
    except (ValueError, ImportError) as err:
        _fail(str(err))
    return hypermodel


def run(args) -> int:
    """Validates everything, then searches, prints the trials table and writes
    the results."""
    from ldseg_tf.tuning import TuningError, run_search

    hypermodel = _hypermodel(args)
    config = hypermodel.base_config
    # A builder may prepare its records here, still before any trial.
    train_split, val_split, _ = splits(args)
    val_examples = args.val_examples or args.num_examples
    try:
        train_ds = make_data(args, config, train_split, training=True)
        val_ds = make_data(args, config, val_split, training=False, num_examples=val_examples)
    except (ValueError, OSError) as err:
        _fail(str(err))
    settings = {"data": args.data, "train_split": train_split, "val_split": val_split,
                "num_examples": args.num_examples, "val_examples": val_examples}
    try:
        result = run_search(
            hypermodel, train_ds, val_ds, args.out, tuner=args.tuner,
            max_trials=args.max_trials, epochs=args.epochs, objective=args.objective,
            seed=args.seed, overwrite=args.overwrite, verbose=0 if args.quiet else 1,
            save_best_model=args.save_best_model, settings=settings)
    except (ValueError, ImportError, TuningError) as err:
        _fail(str(err))
    print(result["table"])
    best = result["best_hparams"]
    shown = ", ".join(f"{k}={best[k]:.4g}" if isinstance(best[k], float) else f"{k}={best[k]}"
                      for k in HP_NAMES if k in best)
    print(f"best: {shown} ({args.objective} {best['score']:.4f}, trial {best['trial_id']}); "
          f"{len(result['new_trials'])} new trial(s) in this run")
    print(f"wrote {result['best_hparams_path']}")
    if args.save_best_model:
        print(f"wrote {result['best_model_path']}")
    return 0
