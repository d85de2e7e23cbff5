"""The `ldseg` command: demo, train, evaluate, predict, export, tune, reproduce.

One module per verb, each with `register(subparsers)` (its arguments; the
parser's ``func`` runs it); the argument groups they share are in `args`.
Every verb builds its model from an `LDSegConfig` (a JSON file, a preset, or the
defaults of the chosen data source, see `ldseg_tf.data.sources`) and its data
from `ldseg_tf.data.make_dataset`.
"""

from __future__ import annotations

import argparse
import os

# Quiet TensorFlow's C++ start-up logging unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ldseg_tf.cli import (demo, evaluate, export, predict, reproduce, train,  # noqa: E402
                          tune)
from ldseg_tf.cli.args import build_config  # noqa: E402,F401  (the API of `ldseg train`)

#: The verbs, in the order of `ldseg --help`.
VERBS = (demo, train, evaluate, predict, export, tune, reproduce)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldseg", description="LDSeg: latent diffusion for medical image segmentation.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for verb in VERBS:
        verb.register(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "predict" and not (args.model or args.server):
        parser.error("predict needs --model or --server")
    status = args.func(args)
    # Handlers return an exit status, or a result (a dict) when they succeed.
    return status if isinstance(status, int) and not isinstance(status, bool) else 0
