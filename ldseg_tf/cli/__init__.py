"""The `ldseg` command: demo, train, evaluate, predict, export, tune, reproduce.

One module per verb, each with `register(subparsers)` (its arguments; the
parser's ``func`` runs it); the argument groups they share are in `args`.
Every verb builds its model from an `LDSegConfig` (a JSON file, a preset, or the
defaults of the chosen data source, see `ldseg_tf.data.sources`) and its data
from `ldseg_tf.data.make_dataset`.

Errors: an expected failure (`ldseg_tf.errors.UserError`: a bad file, a refused
argument, an occupied run directory) ends the command with one line on stderr
naming the file, what was expected and what was found, and exit status 2; any
other exception is a bug and keeps its traceback. `--debug` shows the traceback
of every failure.
"""

from __future__ import annotations

import argparse
import os
import sys

# Quiet TensorFlow's C++ start-up logging unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ldseg_tf.cli import (demo, evaluate, export, predict, reproduce, train,  # noqa: E402
                          tune)
from ldseg_tf.cli.args import build_config  # noqa: E402,F401  (the API of `ldseg train`)

#: The verbs, in the order of `ldseg --help`.
VERBS = (demo, train, evaluate, predict, export, tune, reproduce)


#: Exit status of an expected failure (argparse uses it for bad arguments too).
USER_ERROR_STATUS = 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), as every
    other expected failure of `ldseg`; the sub-command parsers are of this class
    too."""

    def error(self, message):
        self.exit(USER_ERROR_STATUS, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ldseg", description="LDSeg: latent diffusion for medical image segmentation.")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of every failure")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for verb in VERBS:
        verb.register(subparsers)
    return parser


def main(argv=None) -> int:
    """Runs ``ldseg ARGV``; returns the exit status (0, or 2 after printing one
    line for a `UserError`)."""
    from ldseg_tf.errors import UserError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "predict" and not (args.model or args.server):
        parser.error("predict needs --model or --server")
    if not args.debug:
        # TFDS and Keras warn through absl (e.g. about a data folder that is
        # not prepared yet) before our own one-line error would say it better.
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        status = args.func(args)
    except UserError as err:
        if args.debug:
            raise
        print(f"ldseg {args.command}: {err}", file=sys.stderr)
        return USER_ERROR_STATUS
    # Handlers return an exit status, or a result (a dict) when they succeed.
    return status if isinstance(status, int) and not isinstance(status, bool) else 0
