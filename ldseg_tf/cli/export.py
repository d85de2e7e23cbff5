"""`ldseg export`: write a TF Serving SavedModel (see `ldseg_tf.export`)."""

from ldseg_tf.cli.args import positive
from ldseg_tf.export import DEFAULT_LIMITS


def register(subparsers):
    """Adds the ``export`` sub-command to an argparse `subparsers` object; the
    parser's ``func`` default is `run`."""
    p = subparsers.add_parser(
        "export",
        help="write a TF Serving SavedModel (in-graph DDIM, raw-image signatures)",
        description=(
            "Exports a trained model as OUT/<version>/, a SavedModel for TensorFlow "
            "Serving with the signatures serving_default, segment and "
            "segment_any_size (float32 raw images in; labels, probs, std out)."),
    )
    p.add_argument("--model", required=True, help="the trained model, RUN/model.keras")
    p.add_argument("--out", required=True,
                   help="the model's base folder, e.g. SERVING_DIR/ldseg (versions go inside)")
    p.add_argument("--version", type=int, default=None,
                   help="version folder number (default: next free integer)")
    p.add_argument("--steps", type=positive, default=None,
                   help="DDIM steps of serving_default (default: the config's sampling_steps)")
    p.add_argument("--samples", type=positive, default=1,
                   help="samples averaged by serving_default (std needs >= 2; default 1)")
    p.add_argument("--seed", type=int, default=0, help="noise seed of serving_default")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="do not write assets.extra/tf_serving_warmup_requests")
    p.add_argument("--allow-untrained", action="store_true",
                   help="export even if the model was never trained")
    p.add_argument("--max-batch", type=positive, default=DEFAULT_LIMITS["max_batch"],
                   help="largest batch a request may hold (default %(default)s)")
    p.add_argument("--max-steps-x-samples", type=positive,
                   default=DEFAULT_LIMITS["max_steps_x_samples"],
                   help="largest steps x samples a segment request may ask for "
                        "(default %(default)s)")
    p.add_argument("--max-tiles", type=positive, default=DEFAULT_LIMITS["max_tiles"],
                   help="largest images x tiles a segment_tiled request may need "
                        "(default %(default)s)")
    p.set_defaults(func=run)
    return p


# What `export_saved_model` raises for a bad model, path or argument (see its
# docstring); `ldseg export` reports these in one line, without a traceback.
_USER_ERRORS = (OSError, ValueError, TypeError)


def run(args) -> int:
    """Runs ``ldseg export`` from parsed `args`; prints the written folder.

    A missing or unloadable model, an untrained or unbuilt one, an existing
    version folder or a bad argument (`samples` beyond the limits) raises
    `UserError` (one line, exit status 2) with nothing written."""
    from ldseg_tf.errors import UserError
    from ldseg_tf.export import export_saved_model

    try:
        path = export_saved_model(
            args.model, args.out, version=args.version, steps=args.steps,
            samples=args.samples, seed=args.seed, warmup=args.warmup,
            allow_untrained=args.allow_untrained,
            limits={"max_batch": args.max_batch,
                    "max_steps_x_samples": args.max_steps_x_samples,
                    "max_tiles": args.max_tiles})
    except _USER_ERRORS as err:
        raise UserError.wrap(err) from err
    print(path)
    return 0
