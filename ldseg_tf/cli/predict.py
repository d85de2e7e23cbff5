"""`ldseg predict`: segment image files with a model or a TF Serving server."""

import os

from ldseg_tf.cli.args import add_tile_arguments, load_model, use_tiles


def register(subparsers):
    p = subparsers.add_parser("predict", help="segment image files (PNG/BMP/TIFF/NIfTI)")
    p.add_argument("--model", help="a .keras model (or use --server)")
    p.add_argument("--server", help="TF Serving REST URL ending in ':predict'")
    p.add_argument("--input", required=True, help="an image file or a folder of them")
    p.add_argument("--output", required=True, help="folder for the masks (same names/format)")
    p.add_argument("--steps", type=int)
    p.add_argument("--samples", type=int, default=1, help=">1 also writes NAME_std.npy")
    p.add_argument("--seed", type=int, default=0)
    add_tile_arguments(p)
    p.set_defaults(func=run)
    return p


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


def _segment_local(model, image, meta, path, out_path, args):
    import numpy as np

    from ldseg_tf.data.pipeline import preprocess, restore_geometry

    tiles = use_tiles(args, model.config)
    try:
        x = preprocess(image, config=model.config, keep_size=tiles).numpy()
    except ValueError as e:
        raise SystemExit(f"ldseg predict: {path}: {e}")
    if tiles:
        out = model.segment_tiled(x[None], steps=args.steps, samples=args.samples,
                                  seed=args.seed, overlap=args.overlap)
    else:
        out = model.segment(x[None], steps=args.steps, samples=args.samples, seed=args.seed)
    if args.samples > 1:
        np.save(os.path.splitext(out_path)[0] + "_std.npy",
                restore_geometry(out["std"][0], meta))
    return out["labels"][0]


def _server_inputs(image, args):
    """The request of `segment_any_size`, or with --tiles of `segment_tiled`
    (which takes the sampling arguments too)."""
    import numpy as np

    inputs = {"image": image[None].astype(np.float32)}
    if args.tiles:
        if args.steps is None:
            raise SystemExit("ldseg predict: --server with --tiles needs --steps (the "
                             "segment_tiled signature takes steps, samples and seed).")
        inputs.update(steps=np.int32(args.steps), samples=np.int32(args.samples),
                      seed=np.int64(args.seed))
    return inputs


def run(args):
    import numpy as np
    from tqdm.auto import tqdm

    from ldseg_tf.data.io import read_image, write_mask
    from ldseg_tf.data.pipeline import restore_geometry

    files = _input_files(args.input)
    os.makedirs(args.output, exist_ok=True)
    model = None if args.server else load_model(args.model)
    for path in tqdm(files, desc="predicting", unit="image"):
        try:
            image, meta = read_image(path)
        except (OSError, ValueError) as e:
            raise SystemExit(f"ldseg predict: {e}")
        out_path = os.path.join(args.output, os.path.basename(path))
        if args.server:
            from ldseg_tf import serving

            labels = serving.rest_predict(
                args.server, _server_inputs(image, args),
                signature_name="segment_tiled" if args.tiles else "segment_any_size")["labels"][0]
        else:
            labels = _segment_local(model, image, meta, path, out_path, args)
        write_mask(out_path, restore_geometry(labels, meta).astype(np.uint8), meta)
    print(f"{len(files)} segmentation(s) written to {args.output}")
