"""`ldseg evaluate`: per-case DSC/IoU/HD95/ASSD of a trained model on a split."""

import argparse
import os

from ldseg_tf.cli.args import (add_data_arguments, add_tile_arguments, load_model, make_data,
                               positive, reading_data, splits, use_tiles)


def register(subparsers):
    p = subparsers.add_parser("evaluate", help="per-case DSC/IoU/HD95/ASSD on a split")
    p.add_argument("--model", required=True)
    add_data_arguments(p, splits=())
    p.add_argument("--split", help="default: the data's validation split")
    p.add_argument("--train-split", help=argparse.SUPPRESS)
    p.add_argument("--val-split", help=argparse.SUPPRESS)
    p.add_argument("--steps", type=positive, help="DDIM steps (default: the config's)")
    p.add_argument("--samples", type=positive, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-distances", action="store_true", help="skip HD95/ASSD")
    p.add_argument("--out", help="directory for metrics.json and cases.csv")
    add_tile_arguments(p)
    p.set_defaults(func=run)
    return p


def run(args):
    from ldseg_tf.evaluation import evaluate_model, mean_foreground, write_report
    from ldseg_tf.metrics import format_summary, write_csv

    from ldseg_tf.errors import UserError

    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        # Checked first: the evaluation itself may take hours.
        raise UserError(args.out, "a folder for metrics.json and cases.csv", "a file")
    model = load_model(args.model)
    split = args.split or splits(args)[1]
    tiles = use_tiles(args, model.config)
    ds = make_data(args, model.config, split, training=False, full_resolution=tiles)
    with reading_data(args):
        result = evaluate_model(model, ds, steps=args.steps, samples=args.samples,
                                seed=args.seed, distances=not args.no_distances,
                                tiles={"overlap": args.overlap} if tiles else None)
    print(format_summary(result["summary"]))
    print(f"mean foreground DSC {mean_foreground(result['summary'], 'dsc'):.4f}  "
          f"IoU {mean_foreground(result['summary'], 'iou'):.4f}")
    if "ceiling" in result:
        # Far above the DSC: the denoiser is the bottleneck; close to it or low:
        # the latent (its size or the autoencoder's training) is.
        print(f"autoencoder ceiling (DSC of decode(encode(mask))) "
              f"{mean_foreground(result['ceiling'], 'dsc'):.4f}")
    if args.out:
        try:
            os.makedirs(args.out, exist_ok=True)
        except OSError as e:
            raise UserError(args.out, "a folder for the report that can be created",
                            f"{type(e).__name__}: {e.strerror}") from e
        write_report(result, os.path.join(args.out, "metrics.json"),
                     {"model": args.model, "data": args.data, "split": split})
        write_csv(os.path.join(args.out, "cases.csv"), result["cases"])
        print(f"metrics written to {args.out}")
