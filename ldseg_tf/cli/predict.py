"""`ldseg predict`: segment image files with a model or a TF Serving server.

Nothing the user wrote is replaced: an output that would overwrite an input, or
any file that `ldseg predict` did not write there itself (it lists its masks in
`OUTPUT/.ldseg_predict.json`), is refused before anything is read. Every input is read and checked (format,
finite intensities, dimensionality) before the first mask is written, so a bad
file stops the command with nothing written, or, with `--skip-errors`, is
skipped and listed at the end (exit status 1, `SKIPPED_STATUS`).
"""

import os

from ldseg_tf.cli.args import add_tile_arguments, load_model, positive, use_tiles

#: Exit status of `predict --skip-errors` when some inputs were skipped (the
#: others were written); 2 stays "nothing was done" (`USER_ERROR_STATUS`).
SKIPPED_STATUS = 1


def register(subparsers):
    p = subparsers.add_parser("predict", help="segment image files (PNG/BMP/TIFF/NIfTI)")
    p.add_argument("--model", help="a .keras model (or use --server)")
    p.add_argument("--server", help="TF Serving REST URL ending in ':predict'")
    p.add_argument("--input", required=True, help="an image file or a folder of them")
    p.add_argument("--output", required=True,
                   help="folder for the masks (same names/format; never an input's folder "
                        "when that would overwrite an input)")
    p.add_argument("--steps", type=positive)
    p.add_argument("--samples", type=positive, default=1, help=">1 also writes NAME_std.npy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-errors", action="store_true",
                   help="skip unreadable or unsuitable files (listed at the end; exit status 1 "
                        "if any was skipped) instead of stopping at the first")
    add_tile_arguments(p)
    p.set_defaults(func=run)
    return p


def _input_files(path):
    from ldseg_tf.data.io import IMAGE_EXTENSIONS, split_extension
    from ldseg_tf.errors import UserError

    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise UserError(path, "an image file or a folder of images", "nothing (it does not exist)")
    files = sorted(os.path.join(path, f) for f in os.listdir(path)
                   if split_extension(f)[1].lower() in IMAGE_EXTENSIONS
                   and os.path.isfile(os.path.join(path, f)))
    if not files:
        raise UserError(path, f"images ({', '.join(IMAGE_EXTENSIONS)})", "none")
    return files


#: The names `ldseg predict` wrote into an output folder: only these may be replaced.
MANIFEST = ".ldseg_predict.json"


def _written(output):
    """The file names listed in `output`'s manifest (empty when there is none)."""
    import json

    try:
        with open(os.path.join(output, MANIFEST)) as f:
            names = json.load(f).get("written", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return set(names) if isinstance(names, list) else set()


def _std_path(out_path):
    return os.path.splitext(out_path)[0] + "_std.npy"


def _record_written(output, out_paths, samples):
    """Adds the masks (and SD maps when `samples > 1`) about to be written to
    `output`'s manifest, once for the whole run and before the first write: a
    file we start writing is ours even if the write fails."""
    import json

    from ldseg_tf.errors import UserError
    from ldseg_tf.utils import atomic_write_text

    names = {os.path.basename(p) for p in out_paths}
    if samples > 1:
        names |= {os.path.basename(_std_path(p)) for p in out_paths}
    path = os.path.join(output, MANIFEST)
    try:
        atomic_write_text(path, json.dumps({"written": sorted(_written(output) | names)}) + "\n")
    except OSError as e:
        raise UserError(path, "a writable output folder", f"{type(e).__name__}: "
                                                          f"{e.strerror or e}") from e


def _output_paths(files, output, samples):
    """Input -> mask path; refuses an output folder that is a file, or one where
    a mask (or NAME_std.npy) would replace an input or any file that `ldseg
    predict` did not write there (see `MANIFEST`)."""
    from ldseg_tf.data.io import file_format
    from ldseg_tf.errors import UserError

    if os.path.exists(output) and not os.path.isdir(output):
        raise UserError(output, "a folder for the masks", "a file")
    outputs = {}
    inputs = {os.path.realpath(f) for f in files}
    ours = _written(output)
    for path in files:
        out = os.path.join(output, os.path.basename(path))
        targets = [out] + ([_std_path(out)] if samples > 1 else [])
        for target in targets:
            if os.path.realpath(target) in inputs:
                raise UserError(output, "an output folder that does not overwrite the inputs",
                                f"it would replace {target}", "Choose another --output.")
            if os.path.lexists(target) and os.path.basename(target) not in ours:
                raise UserError(target, "a mask name that is free or was written by ldseg "
                                        "predict", "a file of yours",
                                "Choose another --output (nothing is replaced).")
        if file_format(out) == "jpeg":
            raise UserError(path, "an input whose format can hold a label map "
                                  "(PNG, BMP, TIFF, GIF, NIfTI)",
                            "JPEG (lossy: it would corrupt labels)", "Convert it to PNG first.")
        outputs[path] = out
    return outputs


def _read_checked(path):
    """`(image, meta)` of `path`, refused (`UserError`) when it cannot be read or
    holds NaN/Inf."""
    import numpy as np

    from ldseg_tf.data.io import read_image
    from ldseg_tf.errors import UserError

    try:
        image, meta = read_image(path)
    except (OSError, ValueError) as e:
        raise UserError.wrap(e, path) from e
    if image.dtype.kind == "f" and not np.all(np.isfinite(image)):
        raise UserError(path, "finite intensities", f"{int(np.sum(~np.isfinite(image)))} "
                                                    f"NaN or infinite value(s)")
    return image, meta


def _check_dims(path, meta, dims):
    """Refuses a file whose dimensionality is not the model's `dims` (a
    multi-page TIFF or a NIfTI volume for a 2D model, a 2D image for a 3D one);
    trailing singleton axes (a slice stored as X x Y x 1) are fine. Returns
    `meta`."""
    from ldseg_tf.errors import UserError

    spatial = tuple(meta["spatial_shape"])
    if len(spatial) < dims or any(s != 1 for s in spatial[dims:]):
        kind = {2: "a 2D image", 3: "a 3D volume"}
        what = ("a multi-page TIFF" if meta["format"] == "tiff" and len(spatial) == 3
                else f"a {len(spatial)}D {meta['format']} image")
        raise UserError(path, f"{kind[dims]} for this {dims}D model",
                        f"{what} of shape {tuple(meta['shape'])}")
    return meta


def _segment_local(model, image, path, args):
    from ldseg_tf.data.pipeline import preprocess
    from ldseg_tf.errors import UserError

    tiles = use_tiles(args, model.config)
    try:
        x = preprocess(image, config=model.config, keep_size=tiles).numpy()
    except ValueError as e:
        raise UserError.wrap(e, path) from e
    if tiles:
        out = model.segment_tiled(x[None], steps=args.steps, samples=args.samples,
                                  seed=args.seed, overlap=args.overlap)
    else:
        out = model.segment(x[None], steps=args.steps, samples=args.samples, seed=args.seed)
    return out["labels"][0], (out["std"][0] if args.samples > 1 else None)


def _server_inputs(image, args):
    """The request of `segment_any_size`, or with --tiles of `segment_tiled`
    (which takes the sampling arguments too)."""
    import numpy as np

    inputs = {"image": image[None].astype(np.float32)}
    if args.tiles:
        inputs.update(steps=np.int32(args.steps), samples=np.int32(args.samples),
                      seed=np.int64(args.seed))
    return inputs


def _segment_server(image, meta, path, args):
    from ldseg_tf import serving
    from ldseg_tf.errors import UserError

    try:
        out = serving.rest_predict(
            args.server, _server_inputs(image, args),
            signature_name="segment_tiled" if args.tiles else "segment_any_size")
    except (serving.ServingError, OSError, ValueError) as e:
        raise UserError(args.server, f"a TF Serving answer for {path}",
                        f"{type(e).__name__}: {e}") from e
    labels = out.get("labels")
    expected = (1,) + tuple(meta["spatial_shape"])
    if labels is None or labels.dtype.kind not in "iu" or labels.shape != expected:
        got = "no labels" if labels is None else f"labels {labels.dtype} {labels.shape}"
        raise UserError(args.server, f"integer labels of shape {expected} for {path}", got)
    return labels[0], None


def _predict_one(model, path, out_path, meta_image, args, before_writing):
    """Segments one image and writes its mask (and SD map); calls
    `before_writing()` between the two."""
    import numpy as np

    from ldseg_tf.data.io import write_mask
    from ldseg_tf.data.pipeline import restore_geometry
    from ldseg_tf.errors import UserError
    from ldseg_tf.utils import atomic_path

    image, meta = meta_image
    if args.server:
        labels, std = _segment_server(image, meta, path, args)
    else:
        labels, std = _segment_local(model, image, path, args)
    std_path = _std_path(out_path)
    before_writing()
    try:
        if std is not None:
            with atomic_path(std_path) as tmp:
                np.save(tmp, restore_geometry(std, meta))
        write_mask(out_path, restore_geometry(labels, meta).astype(np.uint8), meta)
    except OSError as e:
        raise UserError(out_path, "a writable output file", f"{type(e).__name__}: "
                                                            f"{e.strerror or e}") from e
    except ValueError as e:
        raise UserError.wrap(e, out_path) from e


def _check_all(items, skip_errors, check):
    """`(passed, skipped)`: `check(item)` (raising `UserError`) on every item;
    `passed` maps each good item to its result, `skipped` the others to their
    message. The first error is raised unless `skip_errors`."""
    from ldseg_tf.errors import UserError

    passed, skipped = {}, {}
    for item in items:
        try:
            passed[item] = check(item)
        except UserError as e:
            if not skip_errors:
                raise
            skipped[item] = str(e)
    return passed, skipped


def run(args):
    import functools
    import sys

    from tqdm.auto import tqdm

    from ldseg_tf.errors import UserError

    if args.server and args.tiles and args.steps is None:
        raise UserError("--steps", "a number of sampling steps with --server --tiles (the "
                        "segment_tiled signature takes steps, samples and seed)", "none")
    files = _input_files(args.input)
    outputs = _output_paths(files, args.output, args.samples)
    try:
        os.makedirs(args.output, exist_ok=True)
    except OSError as e:
        raise UserError(args.output, "a folder for the masks that can be created",
                        f"{type(e).__name__}: {e.strerror}") from e
    # Every input is read and checked before the first mask is written, and
    # before the model is loaded (which takes a while).
    metas, skipped = _check_all(files, args.skip_errors, lambda p: _read_checked(p)[1])
    model = None if args.server else load_model(args.model)
    if model is not None:
        dims = model.config.spatial_dims
        metas, more = _check_all(list(metas), args.skip_errors,
                                 lambda p: _check_dims(p, metas[p], dims))
        skipped.update(more)
    todo = [f for f in files if f in metas]
    # Called before every write; cached, so the manifest is written once per run,
    # just before the first mask (a failure before any write leaves the folder as
    # it was). A server's reply has no SD map.
    record_once = functools.cache(functools.partial(
        _record_written, args.output, [outputs[f] for f in todo], 1 if args.server else args.samples))

    # disable=None: no progress bar when stderr is not a terminal (logs, pipes).
    for path in tqdm(todo, desc="predicting", unit="image", disable=None):
        _predict_one(model, path, outputs[path], _read_checked(path), args, record_once)
    print(f"{len(todo)} segmentation(s) written to {args.output}")
    if skipped:
        print(f"{len(skipped)} file(s) skipped:", file=sys.stderr)
        for message in skipped.values():
            print(f"  {message}", file=sys.stderr)
        # A script that runs `predict --skip-errors` must be able to see that
        # some inputs have no mask: 0 only when every input was segmented.
        return SKIPPED_STATUS
    return 0
