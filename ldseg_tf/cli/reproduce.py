"""`ldseg reproduce`: the paper's tables and figures (see `ldseg_tf.experiments`)."""

import os

from ldseg_tf.cli.args import add_data_arguments, parse_shape, splits
from ldseg_tf.experiments import EXPERIMENTS, PROFILES


def register(subparsers):
    p = subparsers.add_parser(
        "reproduce", help="train LDSeg and the comparison models; write the paper's tables "
                          "and figures (report.md, CSV, PNG)")
    add_data_arguments(p, splits=("train", "test"), batch_size=False,
                       tfds_help="prepared records (default: DATA_DIR/.tfds, or OUT/tfds when "
                                 "DATA_DIR is read-only)")
    p.add_argument("--profile", default="tiny", choices=sorted(PROFILES),
                   help="tiny: minutes, synthetic; cpu: a benchmark (target: under 1 h on "
                        "2 CPU cores); paper: GPU")
    p.add_argument("--out", required=True, help="report directory (trained models go to "
                                                "OUT/runs and are reused)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--experiments", default=",".join(EXPERIMENTS),
                   help=f"comma-separated subset of {','.join(EXPERIMENTS)}")
    p.add_argument("--retrain", action="store_true", help="ignore models trained earlier")
    p.add_argument("--image-shape", type=parse_shape,
                   help="override the profile's spatial size, e.g. 64,64")
    p.add_argument("--verbose", action="store_true", help="Keras progress output")
    p.set_defaults(func=run)
    return p


def _tfds_dir(args):
    from ldseg_tf.data.pipeline import is_writable

    if args.tfds_dir is None and args.data_dir is not None and not is_writable(args.data_dir):
        # e.g. the shared read-only copy of DRIVE: prepare the records in OUT.
        return os.path.join(args.out, "tfds")
    return args.tfds_dir


def run(args) -> dict:
    from ldseg_tf import experiments as ex
    from ldseg_tf.errors import UserError

    chosen = [e.strip() for e in args.experiments.split(",") if e.strip()]
    bad = sorted(set(chosen) - set(EXPERIMENTS))
    if bad:
        raise UserError("--experiments", f"experiments from {', '.join(EXPERIMENTS)}",
                        f"{', '.join(bad)}")
    profile = PROFILES[args.profile]
    try:
        config = ex.base_config(profile, args.data, args.seed, args.image_shape)
    except ValueError as err:
        raise UserError.wrap(err) from err
    train_split, _, test_split = splits(args)
    train_ds, test_ds = ex.make_datasets(args.data, config, profile, (train_split, test_split),
                                         args.data_dir, _tfds_dir(args), args.seed)
    return ex.run(config, train_ds, test_ds, args.out, profile=profile, experiments=chosen,
                  data=args.data, splits=(train_split, test_split),
                  data_id=f"{args.data} {train_split} {args.data_dir or ''}", seed=args.seed,
                  retrain=args.retrain, verbose=1 if args.verbose else 0)
