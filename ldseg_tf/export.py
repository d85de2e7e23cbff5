"""SavedModel export for TensorFlow Serving (`ldseg export`).

`export_saved_model` writes ``EXPORT_BASE/<version>/``, a SavedModel that TF Serving
(or `tf.saved_model.load`, `saved_model_cli`) serves with no Python code of ours:
intensity normalization, resizing and the whole DDIM sampling loop run in the graph.

Signatures (all method ``tensorflow/serving/predict``; tag ``serve``). Every
signature takes **float32** raw images -- the intensities as they come from the
file (0..255 for 8-bit images, Hounsfield units for CT, ...), *not* normalized:
the graph applies the model's `normalize_intensity` itself, the very function the
training pipeline uses. A uint8 image is exactly representable in float32: REST
clients can send the uint8 values unchanged (JSON carries no dtype and TF Serving
converts the numbers to the signature's float32); gRPC clients must send a
``DT_FLOAT`` tensor (cast with ``image.astype(np.float32)``), as TF Serving rejects
a ``DT_UINT8`` tensor for a float32 input. float32 rather than uint8 because it also
carries 16-bit and floating-point modalities (MRI, CT) losslessly.

``serving_default``
    ``image`` float32 ``(B, H, W, C)`` / ``(B, D, H, W, C)`` at the model's size
    -> ``labels`` int32 ``(B, *spatial)``, ``probs`` float32
    ``(B, *spatial, num_classes)`` (mean class probabilities), ``std`` float32
    ``(B, *spatial)`` (uncertainty: per-pixel standard deviation over samples,
    zeros when samples = 1). DDIM with the exported ``steps``/``samples``/``seed``
    (see ``assets/ldseg_config.json``), stateless noise: the same image always
    gives the same answer.
``segment``
    ``image`` as above, ``steps`` int32 scalar (1..T), ``samples`` int32 scalar
    (>= 1), ``seed`` int64 scalar -> same outputs. The steps and samples are
    runtime values of `tf.while_loop`s: one SavedModel serves every speed /
    accuracy trade-off.
``segment_any_size``
    ``image`` float32 ``(B, H', W', C)`` / ``(B, D', H', W', C)`` of any spatial
    size (same size within a batch) -> outputs at that size. The image is resized
    to the model's size by `ldseg_tf.data.pipeline.resize_image` (anti-aliased
    bi/trilinear, as in training and ``ldseg predict --model``), normalized,
    segmented with the exported defaults, and
    ``labels``, ``probs`` and ``std`` are resized back with nearest neighbour (so
    ``labels == argmax(probs)`` holds at every pixel).

``segment_tiled``
    ``image`` float32 of any spatial size, ``steps``, ``samples``, ``seed`` as
    ``segment`` -> outputs at the image's size, by sliding a window of the
    model's size over the normalized whole image (``config.tile_overlap``,
    Gaussian weights, `TILE_BATCH_SIZE` tiles per model call; see
    `ldseg_tf.models.tiling`): the full-resolution path of a model trained on
    patches, the whole loop in the graph.

Each output of a request equals `LDSeg.segment(normalize_intensity(image), steps,
samples, seed)` (``segment_tiled``: `LDSeg.segment_tiled`) up to float32
rounding (the same graph ops).

Bad inputs fail at the signature: a wrong rank, channel count or (for
``serving_default``/``segment``) spatial size, a wrong dtype, NaN/Inf pixels, or
``steps``/``samples`` out of range give an INVALID_ARGUMENT error naming the
expected shape or range.

Nothing is unbounded: every signature refuses (INVALID_ARGUMENT, before any
work) a request of more than ``max_batch`` images (default 64), and ``segment``
one whose ``steps`` x ``samples`` exceeds ``max_steps_x_samples`` (default 1000,
a 1000-step DDIM with one sample). Both are chosen at export time
(``limits=``, ``ldseg export --max-batch / --max-steps-x-samples``), checked by
`_check_request`, and recorded under ``"limits"`` in ``assets/ldseg_config.json``.

Also written: ``assets/ldseg_config.json`` (the `LDSegConfig`, class names,
normalization, exported defaults and the signature table) and
``assets.extra/tf_serving_warmup_requests`` (PredictionLog records, one batch-1
request per signature, replayed by TF Serving at load time so that the first real
request is not slow; written without ``tensorflow-serving-api``).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf

__all__ = [
    "CONFIG_ASSET",
    "DEFAULT_LIMITS",
    "DOCKER_RUN_COMMAND",
    "DOCKER_RUN_SINGLE_MODEL_COMMAND",
    "IMAGE_DTYPE",
    "MODELS_CONFIG_TEMPLATE",
    "SIGNATURES",
    "docker_run_command",
    "export_saved_model",
    "models_config_text",
    "next_version",
    "read_export_config",
    "write_models_config",
]

IMAGE_DTYPE = tf.float32
#: The largest request an export accepts by default (``limits`` of
#: `export_saved_model`, ``--max-batch`` / ``--max-steps-x-samples``): images per
#: request, DDIM steps x samples (the network evaluations per image), and tiles
#: per request of ``segment_tiled`` (``--max-tiles``; each tile costs what one
#: image of ``segment`` costs).
DEFAULT_LIMITS = {"max_batch": 64, "max_steps_x_samples": 1000, "max_tiles": 4096}
SIGNATURES = ("serving_default", "segment", "segment_any_size", "segment_tiled")
#: Tiles per model call in the ``segment_tiled`` signature (bounds its memory).
TILE_BATCH_SIZE = 4
CONFIG_ASSET = os.path.join("assets", "ldseg_config.json")

# TF Serving's model config file (text protobuf `ModelServerConfig`), for
# `tensorflow_model_server --model_config_file=...`. `base_path` is the folder that
# holds the numbered versions (the `--out` of `ldseg export`) as the server sees it.
_MODEL_CONFIG_ENTRY = """\
  config {{
    name: "{name}"
    base_path: "{base_path}"
    model_platform: "tensorflow"
  }}
"""
MODELS_CONFIG_TEMPLATE = "model_config_list {{\n" + _MODEL_CONFIG_ENTRY + "}}\n"

# SERVING_DIR holds models.config and one folder per model (SERVING_DIR/ldseg/1/...).
DOCKER_RUN_COMMAND = """\
docker run --rm -p 8500:8500 -p 8501:8501 \\
  -v "$PWD/{serving_dir}:/models" \\
  tensorflow/serving \\
  --model_config_file=/models/models.config \\
  --model_config_file_poll_wait_seconds=60"""

# One model, no config file: the image serves /models/$MODEL_NAME.
DOCKER_RUN_SINGLE_MODEL_COMMAND = """\
docker run --rm -p 8500:8500 -p 8501:8501 \\
  -v "$PWD/{serving_dir}/{name}:/models/{name}" \\
  -e MODEL_NAME={name} \\
  tensorflow/serving"""


def models_config_text(name: str = "ldseg", base_path: str = "/models/ldseg") -> str:
    """The text of a TF Serving ``models.config`` serving model `name` from
    `base_path` (the folder of numbered versions, as the server sees it)."""
    return MODELS_CONFIG_TEMPLATE.format(name=name, base_path=base_path)


def write_models_config(path: str, models: Optional[Dict[str, str]] = None) -> str:
    """Writes a ``models.config`` for `models` (name -> base path on the server;
    default ``{"ldseg": "/models/ldseg"}``) atomically. Returns `path`."""
    from ldseg_tf.utils import atomic_write_text

    models = models or {"ldseg": "/models/ldseg"}
    entries = "".join(_MODEL_CONFIG_ENTRY.format(name=n, base_path=p) for n, p in models.items())
    atomic_write_text(path, "model_config_list {\n" + entries + "}\n")
    return path


def docker_run_command(serving_dir: str = "SERVING_DIR", name: str = "ldseg",
                       single_model: bool = False) -> str:
    """The ``docker run tensorflow/serving`` command for an export under
    ``serving_dir/name`` (REST on 8501, gRPC on 8500; warmup is on by default).

    An absolute `serving_dir` is mounted as it is; a relative one is taken
    relative to the shell's working directory (``"$PWD/serving_dir"``), as
    ``docker -v`` needs an absolute host path. The path is quoted for the shell
    (inside double quotes)."""
    serving_dir = os.fspath(serving_dir)
    absolute = os.path.isabs(serving_dir)
    stripped = serving_dir.rstrip("/")
    if not stripped:
        stripped = "/" if absolute else "."
    # Characters that stay special inside a double-quoted shell word.
    quoted = "".join("\\" + ch if ch in '\\"$`' else ch for ch in stripped)
    template = DOCKER_RUN_SINGLE_MODEL_COMMAND if single_model else DOCKER_RUN_COMMAND
    command = template.format(serving_dir=quoted, name=name)
    if absolute:
        command = command.replace('"$PWD/' + quoted, '"' + quoted)
        command = command.replace('"//' + name, '"/' + name)  # serving_dir "/"
    return command


# ------------------------------------------------------------------ the module


def _dynamic_shape(x: tf.Tensor) -> tf.Tensor:
    """`tf.shape(x)` with its length hidden from constant folding.

    Inside the graph the signature's static shape is known, so `tf.rank(x)` and
    slices of `tf.shape(x)` may be folded to the *declared* values (by
    `tf.debugging` at trace time or by Grappler at load time), and a check built
    on them would pass whatever is fed. The boolean mask (all true) makes the
    length data-dependent."""
    shape = tf.shape(x)
    return tf.boolean_mask(shape, tf.greater_equal(shape, 0))


def _check_image(image, spatial_dims: int, channels: int, expected_spatial=None):
    """Runtime checks with clear messages. The signature's TensorSpec documents the
    shape, but neither a loaded signature function nor TF Serving's C++ runtime
    checks a fed tensor against it: without these a wrong shape fails deep inside
    a convolution or reduction with an obscure message (or, for a wrong rank,
    might not fail at all)."""
    spatial_names = ("depth, " if spatial_dims == 3 else "") + "height, width"
    expected = (f"(batch, {', '.join(map(str, expected_spatial))}, {channels})"
                if expected_spatial is not None
                else f"(batch, {spatial_names}, {channels})")
    shape = _dynamic_shape(image)
    rank_check = tf.debugging.assert_equal(
        tf.size(shape), spatial_dims + 2,
        message=f"image must be a batch of {spatial_dims}D images of rank "
                f"{spatial_dims + 2}, shape {expected}; got rank")
    with tf.control_dependencies([rank_check]):
        shape = tf.identity(shape)
    checks = [rank_check, tf.debugging.assert_equal(
        shape[-1], channels,
        message=f"image must have {channels} channel(s) (last axis), shape {expected}; got")]
    if expected_spatial is not None:
        checks.append(tf.debugging.assert_equal(
            shape[1:-1], tf.constant(expected_spatial, tf.int32),
            message=f"image must have the spatial size of the model, shape {expected} (use "
                    f"the segment_any_size signature for other sizes); got"))
    else:
        checks.append(tf.debugging.assert_positive(
            shape[1:-1], message="image spatial sizes must be >= 1; got"))
    checks.append(tf.debugging.assert_all_finite(
        image, "image contains NaN or infinite values"))
    with tf.control_dependencies(checks):
        return tf.identity(image)


def _check_request(batch, steps, samples, limits: Dict[str, int]):
    """The assert ops that bound one request: `batch` images (int32 scalar
    tensor) at most ``limits["max_batch"]``, and `steps` x `samples` (int32
    scalar tensors, multiplied in int64 so that 2**31 - 1 cannot wrap around) at
    most ``limits["max_steps_x_samples"]``. Every signature runs them (under
    `tf.control_dependencies`) before any work; a larger request fails with
    INVALID_ARGUMENT, as TF Serving reports a failed assertion."""
    work = tf.cast(steps, tf.int64) * tf.cast(samples, tf.int64)
    return [
        tf.debugging.assert_less_equal(
            tf.cast(batch, tf.int64), tf.constant(limits["max_batch"], tf.int64),
            message=f"at most {limits['max_batch']} images per request (max_batch, set at "
                    f"export); got"),
        tf.debugging.assert_less_equal(
            work, tf.constant(limits["max_steps_x_samples"], tf.int64),
            message=f"steps x samples must be at most {limits['max_steps_x_samples']} "
                    f"(max_steps_x_samples, set at export); got"),
    ]


def _build_functions(model, steps: int, samples: int, seed: int,
                     limits: Optional[Dict[str, int]] = None):
    """The three serving `tf.function`s (with input signatures) over `model`;
    every one refuses requests beyond `limits` (`_check_request`).

    The sampling graph is traced once, in `segment`; the other two signatures
    call it (a function-call op), which keeps the export fast and the
    saved_model.pb small."""
    from ldseg_tf.data.normalization import normalize_intensity
    from ldseg_tf.data.pipeline import resize, resize_image

    c = model.config
    limits = dict(DEFAULT_LIMITS, **(limits or {}))
    dims = c.spatial_dims
    channels = c.in_channels
    spatial = tuple(c.image_shape[:-1])
    timesteps = c.timesteps
    fixed = tf.TensorSpec((None,) + tuple(c.image_shape), IMAGE_DTYPE, name="image")
    any_size = tf.TensorSpec((None,) + (None,) * dims + (channels,), IMAGE_DTYPE,
                             name="image")

    def defaults():
        return (tf.constant(steps, tf.int32), tf.constant(samples, tf.int32),
                tf.constant(seed, tf.int64))

    @tf.function(input_signature=[fixed, tf.TensorSpec((), tf.int32, name="steps"),
                                  tf.TensorSpec((), tf.int32, name="samples"),
                                  tf.TensorSpec((), tf.int64, name="seed")],
                 autograph=False)
    def segment(image, steps, samples, seed):
        image = _check_image(image, dims, channels, spatial)
        checks = (_sampling_checks(steps, samples, timesteps)
                  + _check_request(_dynamic_shape(image)[0], steps, samples, limits))
        with tf.control_dependencies(checks):
            steps = tf.identity(steps)
            samples = tf.identity(samples)
        x = normalize_intensity(image, method=c.normalization, spatial_dims=dims)
        out = model.segment_graph(x, steps, samples, seed)
        return {"labels": tf.cast(out["labels"], tf.int32),
                "probs": tf.cast(out["probs"], tf.float32),
                "std": tf.cast(out["std"], tf.float32)}

    @tf.function(input_signature=[fixed], autograph=False)
    def serving_default(image):
        return segment(image, *defaults())

    @tf.function(input_signature=[any_size], autograph=False)
    def segment_any_size(image):
        image = _check_image(image, dims, channels, None)
        # Checked before the resize, which is already work on every image.
        with tf.control_dependencies(_check_request(_dynamic_shape(image)[0], steps, samples,
                                                    limits)):
            image = tf.identity(image)
        in_size = tf.shape(image)[1:dims + 1]
        x = tf.ensure_shape(resize_image(image, spatial), fixed.shape)
        out = segment(x, *defaults())
        size = [in_size[i] for i in range(dims)]
        # Nearest neighbour keeps labels == argmax(probs) at every pixel.
        back = {k: resize(v if k == "probs" else v[..., None], size, "nearest")
                for k, v in out.items()}
        return {k: v if k == "probs" else v[..., 0] for k, v in back.items()}

    return {"serving_default": serving_default, "segment": segment,
            "segment_any_size": segment_any_size,
            "segment_tiled": _tiled_function(model, any_size, limits)}


def _sampling_checks(steps, samples, timesteps):
    """Runtime range checks of the ``steps``/``samples`` inputs."""
    return [
        tf.debugging.assert_greater_equal(steps, 1, message=f"steps must be in 1..{timesteps}"),
        tf.debugging.assert_less_equal(steps, timesteps,
                                       message=f"steps must be in 1..{timesteps}"),
        tf.debugging.assert_greater_equal(samples, 1, message="samples must be >= 1"),
    ]


def _check_tiles(image, patch, overlap, max_tiles: int):
    """The assert op that bounds a ``segment_tiled`` request: batch x tiles per
    image (`ldseg_tf.models.tiling`'s grid; int64) at most `max_tiles`."""
    from ldseg_tf.models.tiling import tile_starts

    size = _dynamic_shape(image)
    tiles = tf.cast(size[0], tf.int64)
    for i, p in enumerate(patch):
        starts = tile_starts(tf.maximum(size[i + 1], p), p, overlap)
        tiles *= tf.cast(tf.size(starts), tf.int64)
    return [tf.debugging.assert_less_equal(
        tiles, tf.constant(max_tiles, tf.int64),
        message=f"at most {max_tiles} tiles per request (max_tiles, set at export: images x "
                f"tiles per image); got")]


def _tiled_function(model, any_size: tf.TensorSpec, limits: Dict[str, int]):
    """The ``segment_tiled`` serving function: any-size raw images, normalized
    whole, then `segment_tiled_graph` (the loop over tiles in the graph); the
    request is bounded like every signature's, and in tiles (`_check_tiles`)."""
    from ldseg_tf.data.normalization import normalize_intensity

    c = model.config
    dims = c.spatial_dims
    scalars = [tf.TensorSpec((), tf.int32, name="steps"),
               tf.TensorSpec((), tf.int32, name="samples"),
               tf.TensorSpec((), tf.int64, name="seed")]

    @tf.function(input_signature=[any_size] + scalars, autograph=False)
    def segment_tiled(image, steps, samples, seed):
        image = _check_image(image, dims, c.in_channels, None)
        checks = (_sampling_checks(steps, samples, c.timesteps)
                  + _check_request(_dynamic_shape(image)[0], steps, samples, limits)
                  + _check_tiles(image, c.image_shape[:-1], c.tile_overlap,
                                 limits["max_tiles"]))
        with tf.control_dependencies(checks):
            image, steps, samples = tf.identity(image), tf.identity(steps), tf.identity(samples)
        x = normalize_intensity(image, method=c.normalization, spatial_dims=dims)
        out = model.segment_tiled_graph(x, steps, samples, seed, c.tile_overlap,
                                        tile_batch_size=TILE_BATCH_SIZE)
        return {k: out[k] for k in ("labels", "probs", "std")}

    return segment_tiled


def _captured_variables(concrete_functions):
    seen, variables = set(), []
    for fn in concrete_functions:
        for v in fn.variables:
            if id(v) not in seen:
                seen.add(id(v))
                variables.append(v)
    return variables


# ------------------------------------------------------------- model / paths


def _load_model(model):
    """`(LDSeg, optimizer steps or None)` from an instance or a `.keras` path,
    with clear errors."""
    from ldseg_tf.errors import UserError
    from ldseg_tf.models.ldseg import LDSeg
    from ldseg_tf.models.loading import load_model

    iterations = None
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if os.path.isfile(path) and not path.endswith(".keras"):
            raise UserError(path, "a .keras file saved by `ldseg train` / `model.save`",
                            "a file named otherwise")
        model = load_model(path)
    if not isinstance(model, LDSeg):
        raise TypeError(f"expected an LDSeg model or a path to one; got {type(model).__name__}.")
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        iterations = int(optimizer.iterations.numpy())
    return model, iterations


def _check_trained(model, iterations: Optional[int], allow_untrained: bool) -> None:
    if not model.built:
        raise ValueError("the model is not built; build (or train) it before exporting.")
    if allow_untrained or (iterations is not None and iterations > 0):
        return
    why = ("it has no optimizer: never compiled or fitted" if iterations is None
           else "optimizer.iterations == 0")
    raise ValueError(
        f"the model has not been trained ({why}), so the export would serve random "
        f"weights. Train it first, or pass allow_untrained=True (--allow-untrained) "
        f"on purpose.")


def next_version(export_base: str) -> int:
    """1 + the largest integer-named folder in `export_base` (1 if none)."""
    versions = []
    if os.path.isdir(export_base):
        for name in os.listdir(export_base):
            if name.isdigit() and os.path.isdir(os.path.join(export_base, name)):
                versions.append(int(name))
    return max(versions, default=0) + 1


def _export_config(model, steps, samples, seed, model_name, version,
                   limits) -> Dict[str, Any]:
    import keras

    import ldseg_tf

    c = model.config
    spatial = list(c.image_shape[:-1])
    fixed = ["B"] + spatial + [c.in_channels]
    anysz = ["B"] + ["?"] * c.spatial_dims + [c.in_channels]
    outs = lambda sp: {"labels": {"dtype": "int32", "shape": ["B"] + sp},  # noqa: E731
                       "probs": {"dtype": "float32", "shape": ["B"] + sp + [c.num_classes]},
                       "std": {"dtype": "float32", "shape": ["B"] + sp}}
    image = lambda shape: {"dtype": "float32", "shape": shape,  # noqa: E731
                           "description": "raw (unnormalized) intensities"}
    return {
        "format": "ldseg-saved-model/1",
        "model_name": model_name,
        "version": version,
        "config": c.to_dict(),
        "class_names": list(c.names_of_classes),
        "normalization": c.normalization,
        "image_shape": list(c.image_shape),
        "spatial_dims": c.spatial_dims,
        "num_classes": c.num_classes,
        "defaults": {"steps": int(steps), "samples": int(samples), "seed": int(seed),
                     "eta": 0.0, "method": "ddim"},
        "limits": dict(limits),
        "signatures": {
            "serving_default": {"inputs": {"image": image(fixed)}, "outputs": outs(spatial)},
            "segment": {
                "inputs": {"image": image(fixed),
                           "steps": {"dtype": "int32", "shape": [],
                                     "range": [1, c.timesteps]},
                           "samples": {"dtype": "int32", "shape": [], "min": 1,
                                       "max_steps_x_samples": limits["max_steps_x_samples"]},
                           "seed": {"dtype": "int64", "shape": []}},
                "outputs": outs(spatial)},
            "segment_any_size": {"inputs": {"image": image(anysz)},
                                 "outputs": outs(["?"] * c.spatial_dims)},
            "segment_tiled": {
                "inputs": {"image": image(anysz),
                           "steps": {"dtype": "int32", "shape": [],
                                     "range": [1, c.timesteps]},
                           "samples": {"dtype": "int32", "shape": [], "min": 1},
                           "seed": {"dtype": "int64", "shape": []}},
                "outputs": outs(["?"] * c.spatial_dims),
                "tile_overlap": c.tile_overlap, "tile_batch_size": TILE_BATCH_SIZE},
        },
        "training_dtype_policy": model.dtype_policy.name,
        "ldseg_tf_version": ldseg_tf.__version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
    }


def read_export_config(saved_model_dir: str) -> Dict[str, Any]:
    """The ``assets/ldseg_config.json`` of an exported version folder."""
    with open(os.path.join(saved_model_dir, CONFIG_ASSET)) as f:
        return json.load(f)


def _warmup_examples(model, steps, samples, seed):
    c = model.config
    # A smooth ramp over the image (not constant, so every normalization is exercised).
    n = int(np.prod(c.image_shape))
    image = np.linspace(0.0, 255.0, n, dtype=np.float32).reshape((1,) + c.image_shape)
    image_only = [{"image": image}]
    full = [{"image": image, "steps": np.int32(steps), "samples": np.int32(samples),
             "seed": np.int64(seed)}]
    return image_only, full


# ------------------------------------------------------------------- export


def _version_folder(export_base, version):
    """`(absolute export_base, version, its folder)`; errors for a bad version or
    one that exists."""
    export_base = os.path.abspath(os.fspath(export_base))
    if os.path.exists(export_base) and not os.path.isdir(export_base):
        raise NotADirectoryError(f"export base {export_base!r} exists and is not a folder.")
    if version is None:
        version = next_version(export_base)
    elif isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ValueError(f"version must be an integer >= 0; got {version!r}.")
    version = int(version)
    target = os.path.join(export_base, str(version))
    if os.path.exists(target):
        raise FileExistsError(
            f"{target} already exists; choose another --version (or none: the next "
            f"free one is {next_version(export_base)}). Nothing was written.")
    return export_base, version, target


def _check_limits(limits) -> Dict[str, int]:
    from ldseg_tf.errors import UserError, positive_int

    limits = dict(DEFAULT_LIMITS, **(limits or {}))
    unknown = sorted(set(limits) - set(DEFAULT_LIMITS))
    if unknown:
        raise UserError("limits", f"keys {sorted(DEFAULT_LIMITS)}", f"{unknown}")
    return {k: positive_int(k, v) for k, v in limits.items()}


def _check_sampling(c, steps, samples, seed, limits) -> None:
    from ldseg_tf.errors import UserError

    for name, value in (("steps", steps), ("samples", samples), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise UserError(name, "an integer", repr(value))
    if not 1 <= steps <= c.timesteps:
        raise UserError("steps", f"1..{c.timesteps} (the model's timesteps)", str(steps))
    if samples < 1:
        raise UserError("samples", "an integer >= 1", str(samples))
    if steps * samples > limits["max_steps_x_samples"]:
        raise UserError("steps x samples", f"at most max_steps_x_samples = "
                                           f"{limits['max_steps_x_samples']}",
                        f"{steps} x {samples}", "Raise the limit on purpose if you need it.")
    if not -(2**63) <= seed < 2**63:
        raise UserError("seed", "an int64", str(seed))


def export_saved_model(
    model,
    export_base: str,
    version: Optional[int] = None,
    steps: Optional[int] = None,
    samples: int = 1,
    seed: int = 0,
    warmup: bool = True,
    allow_untrained: bool = False,
    limits: Optional[Dict[str, int]] = None,
) -> str:
    """Exports `model` as ``export_base/<version>/`` for TF Serving.

    See the module docstring for the signatures. The SavedModel, its
    ``assets/ldseg_config.json`` and (with `warmup`) its
    ``assets.extra/tf_serving_warmup_requests`` are written into a temporary
    folder next to the target (a dot-name TF Serving ignores), which is renamed
    to the version folder only when complete; on any error nothing is left.

    Args:
        model: an `LDSeg` or the path to a ``.keras`` file of one.
        export_base: the model's base path (TF Serving's ``base_path``); its name
            is used as the model name of the warmup requests.
        version: the version folder (an int >= 0); default: one more than the
            largest existing version, or 1.
        steps: DDIM steps of ``serving_default``/``segment_any_size`` (default
            ``config.sampling_steps``).
        samples: samples averaged by those signatures (their ``std`` is zeros
            when 1).
        seed: noise seed of those signatures.
        warmup: write the warmup records (built without
            ``tensorflow-serving-api``, see `serving.prediction_log_bytes`).
        allow_untrained: export a model whose optimizer never stepped.
        limits: the largest request every signature accepts, ``{"max_batch":
            B, "max_steps_x_samples": N}`` (missing keys: `DEFAULT_LIMITS`).
            A request with more images than B, or (``segment``) with
            steps x samples above N, fails with INVALID_ARGUMENT before any
            work, so that no request can tie a server worker up for ever. The
            exported defaults must respect them too.

    Returns:
        The absolute path of the version folder.

    Raises:
        FileNotFoundError: `model` is a path that does not exist.
        FileExistsError: the version folder already exists (it is not touched).
        ValueError: an untrained model, bad steps/samples/version/limits, an
            unreadable model file (an `ldseg_tf.errors.UserError`).
    """
    # The target first: these checks need no model, and loading one takes a while.
    export_base, version, target = _version_folder(export_base, version)
    model_name = os.path.basename(export_base)
    limits = _check_limits(limits)

    model, iterations = _load_model(model)
    _check_trained(model, iterations, allow_untrained)
    steps = model.config.sampling_steps if steps is None else steps
    _check_sampling(model.config, steps, samples, seed, limits)

    functions = _build_functions(model, int(steps), int(samples), int(seed), limits)
    concrete = {name: fn.get_concrete_function() for name, fn in functions.items()}
    root = tf.Module(name="ldseg_serving")
    # Track exactly the variables the graphs read (the sampling components, EMA
    # denoiser if any), not the optimizer state or the label encoder.
    root.model_variables = _captured_variables(concrete.values())
    for name, fn in functions.items():
        setattr(root, name, fn)

    os.makedirs(export_base, exist_ok=True)
    # A dot-name that TF Serving (which only loads integer-named folders) ignores.
    # os.mkdir honours the umask (mkdtemp's 0700 could hide the model from a
    # server running as another user).
    tmp = os.path.join(export_base, f".tmp-{version}-{uuid.uuid4().hex[:12]}")
    os.mkdir(tmp)
    try:
        tf.saved_model.save(root, tmp, signatures=concrete)
        config = _export_config(model, steps, samples, seed, model_name, version, limits)
        os.makedirs(os.path.join(tmp, "assets"), exist_ok=True)
        with open(os.path.join(tmp, CONFIG_ASSET), "w") as f:
            json.dump(config, f, indent=2)
            f.write("\n")
        if warmup:
            from ldseg_tf import serving

            image_only, full = _warmup_examples(model, steps, samples, seed)
            records = serving.warmup_records(
                image_only, model_name=model_name,
                signature_names=["serving_default", "segment_any_size"])
            records += serving.warmup_records(full, model_name=model_name,
                                              signature_names=["segment", "segment_tiled"])
            serving.write_warmup_file(os.path.join(tmp, serving.WARMUP_FILE_RELPATH), records)
        if os.path.exists(target):  # created meanwhile by someone else
            raise FileExistsError(f"{target} appeared during the export; nothing was written.")
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
