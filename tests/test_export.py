"""SavedModel export for TF Serving (`ldseg_tf.export`, `ldseg export`).

TF Serving itself is not installable here, so the serving contract is checked with
TensorFlow's own tools:

* every signature is called after `tf.saved_model.load` in a fresh Python process
  that never imports `ldseg_tf` (the server runs no Python code of ours), and its
  outputs are compared with `LDSeg.segment` on the same images, normalized by
  `normalize_intensity`, with the same steps/samples/seed: labels equal wherever
  the two top class probabilities are more than 2 * tolerance apart, probs within
  1e-5 (float32) or 1e-2 (mixed_float16: float16 has a ~1e-3 epsilon, and the same
  float16 kernels, fused differently in the loaded graph, differed by up to 2.5e-3
  after two DDIM steps), std within 2 * sqrt(tolerance) pixel-wise and tolerance
  on average (its square root amplifies rounding where the samples agree);
* `saved_model_cli show --all` / `run` (TF1 session loader, as TF Serving);
* the warmup file parses as PredictionLog records whose inputs match the
  signatures, and replaying them on the loaded model succeeds (as the server does
  at load time);
* a real `tensorflow_model_server` test runs only when that binary is on PATH.

Three models are trained once per module (2D float32, 2D mixed_float16, 3D), for
two optimizer steps each; timesteps=50 and tiny images keep the tracing short.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import keras
import numpy as np
import pytest
import tensorflow as tf

from ldseg_tf import LDSeg, LDSegConfig, export, serving
from ldseg_tf.cli import main as cli_main
from ldseg_tf.data.normalization import normalize_intensity
from ldseg_tf.data.pipeline import preprocess, resize
from ldseg_tf.data.synthetic import synthetic_arrays

try:
    from tensorflow_serving.apis import prediction_log_pb2  # noqa: F401

    HAVE_SERVING_API = True
except ImportError:  # pragma: no cover
    HAVE_SERVING_API = False

needs_serving_api = pytest.mark.skipif(
    not HAVE_SERVING_API,
    reason='needs `pip install --no-deps "tensorflow-serving-api==2.21.*"`')

F32_TOL = 1e-5
F16_TOL = 1e-2
SIGNATURES = ("serving_default", "segment", "segment_any_size", "segment_tiled")

# Run in a fresh interpreter: loads each SavedModel with tf.saved_model.load, calls
# the signatures on stored inputs, replays the warmup records and records the
# signature interfaces. It must not need (or import) ldseg_tf.
LOADER = r'''
import json, os, sys
import numpy as np
import tensorflow as tf

jobs = json.load(open(sys.argv[1]))
report = {}
for job in jobs:
    loaded = tf.saved_model.load(job["dir"])
    entry = {"interfaces": {}, "errors": {}, "warmup": None}
    for name, fn in loaded.signatures.items():
        _, kwargs = fn.structured_input_signature
        entry["interfaces"][name] = {
            "inputs": {k: [v.dtype.name, v.shape.as_list()] for k, v in kwargs.items()},
            "outputs": {k: [v.dtype.name, v.shape.as_list()]
                        for k, v in fn.structured_outputs.items()},
        }
    for call in job["calls"]:
        fn = loaded.signatures[call["signature"]]
        inputs = {k: tf.constant(v) for k, v in np.load(call["inputs"]).items()}
        try:
            out = fn(**inputs)
        except tf.errors.InvalidArgumentError as err:
            entry["errors"][call["out"]] = err.message
            continue
        np.savez(call["out"], **{k: v.numpy() for k, v in out.items()})
    if job.get("warmup"):
        from tensorflow_serving.apis import prediction_log_pb2
        done = []
        for rec in tf.data.TFRecordDataset(job["warmup"]).as_numpy_iterator():
            req = prediction_log_pb2.PredictionLog.FromString(rec).predict_log.request
            fn = loaded.signatures[req.model_spec.signature_name]
            out = fn(**{k: tf.constant(tf.make_ndarray(v)) for k, v in req.inputs.items()})
            done.append([req.model_spec.signature_name, sorted(out)])
        entry["warmup"] = done
    report[job["dir"]] = entry
report["ldseg_tf_imported"] = any(m.startswith("ldseg_tf") for m in sys.modules)
json.dump(report, open(sys.argv[2], "w"))
'''


# ----------------------------------------------------------------- helpers


def _fit(cfg, x, y, batch_size):
    model = LDSeg(cfg)
    model.compile()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == len(x) // batch_size
    return model


def _raw(images):
    """uint8-valued float32 raw images (what a client sends)."""
    return np.round(np.asarray(images) * 255.0).astype(np.float32)


def _reference(model, raw, steps, samples, seed):
    dims = model.config.spatial_dims
    x = normalize_intensity(raw, method=model.config.normalization, spatial_dims=dims).numpy()
    return model.segment(x, steps=steps, samples=samples, seed=seed)


def assert_outputs_match(out, ref, tol):
    assert set(out) == {"labels", "probs", "std"}
    assert out["labels"].dtype == np.int32 and out["probs"].dtype == np.float32
    assert out["std"].dtype == np.float32
    for k in ("labels", "probs", "std"):
        assert out[k].shape == ref[k].shape, k
    np.testing.assert_allclose(out["probs"], ref["probs"], atol=tol, rtol=0)
    # std is a square root, steep where the samples (almost) agree: probs within
    # tol give a variance within ~4 tol, so std within 2 sqrt(tol) pixel-wise
    # (and much closer on average).
    std_err = np.abs(out["std"] - ref["std"])
    assert std_err.max() <= 2 * np.sqrt(tol), std_err.max()
    assert std_err.mean() <= tol, std_err.mean()
    top2 = np.sort(ref["probs"], axis=-1)[..., -2:]
    decided = (top2[..., 1] - top2[..., 0]) > 2 * tol
    assert decided.mean() > 0.9  # the comparison below is not vacuous
    np.testing.assert_array_equal(out["labels"][decided], ref["labels"][decided])
    # labels are the argmax of the exported probs themselves
    np.testing.assert_array_equal(out["labels"], np.argmax(out["probs"], axis=-1))


def _saved_model_cli():
    path = pathlib.Path(sys.executable).with_name("saved_model_cli")
    if not path.exists():
        found = shutil.which("saved_model_cli")
        if found is None:
            pytest.skip("saved_model_cli is not installed next to the Python interpreter")
        path = pathlib.Path(found)
    return str(path)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def data_2d():
    x, y = synthetic_arrays("glands", 8, (32, 32), seed=0)
    return x, y


@pytest.fixture(scope="module")
def model_2d(data_2d, tmp_path_factory):
    """A float32 2D model, trained, and its `.keras` file."""
    cfg = LDSegConfig.preset("small", image_shape=(32, 32, 3), timesteps=50)
    model = _fit(cfg, *data_2d, batch_size=4)
    path = tmp_path_factory.mktemp("run") / "model.keras"
    model.save(path)
    return model, str(path)


@pytest.fixture(scope="module")
def export_2d(model_2d, tmp_path_factory):
    """`ldseg export --model RUN/model.keras --out SERVING/ldseg` through the CLI
    functions (from the file: the exported weights are the saved ones)."""
    _, path = model_2d
    base = tmp_path_factory.mktemp("serving") / "ldseg"
    from ldseg_tf.cli import build_parser

    args = build_parser().parse_args(["export", "--model", path, "--out", str(base),
                              "--steps", "2", "--samples", "1", "--seed", "0"])
    buf = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(buf):
        assert args.func(args) == 0
    version_dir = buf.getvalue().strip().splitlines()[-1]
    assert version_dir == str(base / "1")
    return version_dir


@pytest.fixture(scope="module")
def model_mixed(data_2d):
    """A 2D model trained under the mixed_float16 policy."""
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        cfg = LDSegConfig.preset("small", image_shape=(32, 32, 3), timesteps=50)
        x, y = data_2d
        model = _fit(cfg, x[:4], y[:4], batch_size=2)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert model.image_encoder.compute_dtype == "float16"
    return model


@pytest.fixture(scope="module")
def export_mixed(model_mixed, tmp_path_factory):
    base = tmp_path_factory.mktemp("serving_mixed") / "ldseg"
    return export.export_saved_model(model_mixed, str(base), version=7, steps=2, seed=3)


@pytest.fixture(scope="module")
def model_3d():
    cfg = LDSegConfig.preset("small", image_shape=(16, 16, 16, 1), num_classes=3,
                             timesteps=50, class_names=("background", "femur", "tibia"),
                             normalization="zscore")
    x, y = synthetic_arrays("knee", 2, (16, 16, 16), seed=0)
    return _fit(cfg, x, y, batch_size=1), x


@pytest.fixture(scope="module")
def export_3d(model_3d, tmp_path_factory):
    model, _ = model_3d
    base = tmp_path_factory.mktemp("serving_3d") / "knee"
    return export.export_saved_model(model, str(base), steps=2, samples=2, seed=11)


class _Background:
    """Subprocesses started right after an export, so that they load and run it
    while the next model trains (tracing is single-threaded: the second core is
    free); `wait` collects them."""

    def __init__(self):
        self.procs = {}

    def start(self, name, argv, cwd):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        # One thread each: TF's thread pools spin while waiting, and several
        # processes with a pool per core would starve the tracing main process.
        env["TF_NUM_INTRAOP_THREADS"] = env["TF_NUM_INTEROP_THREADS"] = "1"
        out = open(os.path.join(cwd, f"{name}.stdout"), "w+")
        err = open(os.path.join(cwd, f"{name}.stderr"), "w+")
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err)
        self.procs[name] = (proc, out, err)

    def wait(self, name, timeout=600):
        proc, out, err = self.procs[name]
        proc.wait(timeout=timeout)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
        assert proc.returncode == 0, f"{name} failed:\n{stderr[-4000:]}"
        return stdout

    def close(self):
        for proc, out, err in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
            err.close()


@pytest.fixture(scope="module")
def background():
    bg = _Background()
    yield bg
    bg.close()


def _launch_loader(background, name, directory, calls, work):
    """Starts the fresh-process loader on `directory` for `calls`
    (key -> (signature, inputs)); returns what `_collect` needs."""
    job = {"dir": directory, "calls": [],
           "warmup": (os.path.join(directory, serving.WARMUP_FILE_RELPATH)
                      if HAVE_SERVING_API else None)}
    for key, (signature, inputs) in calls.items():
        np.savez(work / f"{key}_in.npz", **inputs)
        job["calls"].append({"signature": signature, "inputs": str(work / f"{key}_in.npz"),
                             "out": str(work / f"{key}.npz")})
    (work / f"{name}_jobs.json").write_text(json.dumps([job]))
    (work / "loader.py").write_text(LOADER)
    background.start(name, [sys.executable, str(work / "loader.py"),
                            str(work / f"{name}_jobs.json"), str(work / f"{name}.json")],
                     str(work))
    return name, directory, calls, work


def _collect(background, launched):
    name, directory, calls, work = launched
    background.wait(name)
    report = json.loads((work / f"{name}.json").read_text())
    entry = dict(report[directory], ldseg_tf_imported=report["ldseg_tf_imported"])
    outputs, errors, inputs = {}, {}, {}
    for key, (_, call_inputs) in calls.items():
        out_path = str(work / f"{key}.npz")
        inputs[key] = call_inputs
        if out_path in entry["errors"]:
            errors[key] = entry["errors"][out_path]
        else:
            outputs[key] = dict(np.load(out_path))
    return entry, outputs, errors, inputs


@pytest.fixture(scope="module")
def launched_2d(export_2d, data_2d, background, tmp_path_factory):
    """Starts, on the 2D export: the fresh-process loader, `saved_model_cli show
    --all` and `saved_model_cli run` (segment signature, .npy inputs)."""
    work = tmp_path_factory.mktemp("reload_2d")
    x2 = _raw(data_2d[0][:2])
    calls = {
        "2d_default": ("serving_default", {"image": x2}),
        "2d_default_row1": ("serving_default", {"image": x2[1:2]}),
        "2d_segment_row1": ("segment", {
            "image": x2[1:2], "steps": np.int32(3), "samples": np.int32(2),
            "seed": np.int64(7)}),
        "2d_segment": ("segment", {
            "image": x2, "steps": np.int32(3), "samples": np.int32(2), "seed": np.int64(7)}),
        "2d_segment_1step": ("segment", {
            "image": x2, "steps": np.int32(1), "samples": np.int32(1), "seed": np.int64(0)}),
        "2d_any_same": ("segment_any_size", {"image": x2}),
        "2d_any_small": ("segment_any_size", {"image": x2[:, 3:23, 1:28]}),
        "2d_any_large": ("segment_any_size", {
            "image": np.repeat(np.repeat(x2, 2, axis=1), 3, axis=2)[:, :, :80]}),
        "2d_bad_channels": ("serving_default", {"image": x2[..., :2]}),
        "2d_bad_rank": ("serving_default", {"image": x2[0]}),
        "2d_bad_size": ("serving_default", {"image": x2[:, :16]}),
        "2d_bad_nan": ("serving_default", {
            "image": np.where(np.arange(32)[None, :, None, None] == 5, np.nan, x2)
            .astype(np.float32)}),
        "2d_any_bad_channels": ("segment_any_size", {"image": x2[:, :20, :20, :1]}),
        "2d_bad_steps": ("segment", {
            "image": x2, "steps": np.int32(51), "samples": np.int32(1), "seed": np.int64(0)}),
        "2d_bad_samples": ("segment", {
            "image": x2, "steps": np.int32(2), "samples": np.int32(0), "seed": np.int64(0)}),
        # Issue 15: 2**31 - 1 samples would tie a server worker up for ever.
        "2d_samples_unbounded": ("segment", {
            "image": x2, "steps": np.int32(2), "samples": np.int32(2**31 - 1),
            "seed": np.int64(0)}),
        "2d_batch_over_limit": ("segment_any_size", {"image": np.zeros((65, 4, 4, 3),
                                                                       np.float32)}),
        "2d_tiled": ("segment_tiled", {
            "image": np.concatenate([x2, x2[:, :, :13]], axis=2)[:, :27],  # 27 x 45
            "steps": np.int32(2), "samples": np.int32(2), "seed": np.int64(7)}),
        "2d_tiled_bad_steps": ("segment_tiled", {
            "image": x2, "steps": np.int32(0), "samples": np.int32(1), "seed": np.int64(0)}),
        # 64 images of 9 x 9 tiles (32-pixel patches, half overlap) > max_tiles 4096.
        "2d_tiled_over_limit": ("segment_tiled", {
            "image": np.zeros((64, 160, 160, 3), np.float32), "steps": np.int32(1),
            "samples": np.int32(1), "seed": np.int64(0)}),
    }
    launched = _launch_loader(background, "loader_2d", export_2d, calls, work)
    cli = _saved_model_cli()
    background.start("cli_show", [cli, "show", "--all", "--dir", export_2d], str(work))
    # saved_model_cli run: the TF1 session loader, as TF Serving uses.
    x = _raw(synthetic_arrays("glands", 10, (32, 32), seed=0)[0][8:])
    arrays = {"image": x, "steps": np.int32(3), "samples": np.int32(1), "seed": np.int64(4)}
    for name, value in arrays.items():
        np.save(work / f"cli_{name}.npy", value)
    spec = ";".join(f"{name}={work / f'cli_{name}.npy'}" for name in arrays)
    background.start("cli_run", [cli, "run", "--dir", export_2d, "--tag_set", "serve",
                                 "--signature_def", "segment", "--inputs", spec,
                                 "--outdir", str(work / "cli_out")], str(work))
    return launched, arrays, work / "cli_out"


@pytest.fixture(scope="module")
def launched_mixed(export_mixed, data_2d, background, tmp_path_factory):
    work = tmp_path_factory.mktemp("reload_mixed")
    x2 = _raw(data_2d[0][:2])
    calls = {
        "mixed_default": ("serving_default", {"image": x2}),
        "mixed_segment": ("segment", {
            "image": x2, "steps": np.int32(2), "samples": np.int32(2), "seed": np.int64(5)}),
    }
    return _launch_loader(background, "loader_mixed", export_mixed, calls, work)


@pytest.fixture(scope="module")
def launched_3d(export_3d, model_3d, background, tmp_path_factory):
    work = tmp_path_factory.mktemp("reload_3d")
    # Batch 2: model.segment cannot trace a batch of 1 first (see the report).
    x3 = _raw(model_3d[1][:2]) - 40.0  # zscore model; an arbitrary offset
    calls = {
        "3d_default": ("serving_default", {"image": x3}),
        "3d_segment": ("segment", {
            "image": x3, "steps": np.int32(4), "samples": np.int32(1), "seed": np.int64(2)}),
        "3d_any": ("segment_any_size", {"image": x3[:, 2:14, :, 1:13]}),
        "3d_tiled": ("segment_tiled", {
            "image": np.concatenate([x3, x3[:, :, :, :7]], axis=3)[:, 3:],  # 13 x 16 x 23
            "steps": np.int32(2), "samples": np.int32(2), "seed": np.int64(3)}),
        "3d_bad_rank": ("serving_default", {"image": x3[0]}),
    }
    return _launch_loader(background, "loader_3d", export_3d, calls, work)


@pytest.fixture(scope="module")
def reloaded(launched_2d, launched_mixed, launched_3d, background):
    """The fresh-process results of all three exports (the fixtures above start
    in this order, each loader running while the next model trains).

    Returns `(reports, outputs, errors, inputs)`: directory -> loader report, and
    call key -> outputs / error message / inputs."""
    reports, outputs, errors, inputs = {}, {}, {}, {}
    for launched in (launched_2d[0], launched_mixed, launched_3d):
        entry, out, err, inp = _collect(background, launched)
        reports[launched[1]] = entry
        outputs.update(out)
        errors.update(err)
        inputs.update(inp)
    return reports, outputs, errors, inputs


# ----------------------------------------------- reload in a fresh process


def test_fresh_process_needs_no_ldseg_code(reloaded):
    reports = reloaded[0]
    assert len(reports) == 3
    assert all(r["ldseg_tf_imported"] is False for r in reports.values())


def test_signature_interfaces_are_float32(reloaded, export_2d, export_mixed, export_3d):
    reports = reloaded[0]
    expected = {
        export_2d: ([None, 32, 32, 3], [None, None, None, 3], 2, [None, 32, 32]),
        export_mixed: ([None, 32, 32, 3], [None, None, None, 3], 2, [None, 32, 32]),
        export_3d: ([None, 16, 16, 16, 1], [None, None, None, None, 1], 3,
                    [None, 16, 16, 16]),
    }
    for directory, (image, any_image, classes, spatial) in expected.items():
        interfaces = reports[directory]["interfaces"]
        assert set(interfaces) == set(SIGNATURES)
        outputs = {"labels": ["int32", spatial], "probs": ["float32", spatial + [classes]],
                   "std": ["float32", spatial]}
        assert interfaces["serving_default"] == {
            "inputs": {"image": ["float32", image]}, "outputs": outputs}
        assert interfaces["segment"] == {
            "inputs": {"image": ["float32", image], "steps": ["int32", []],
                       "samples": ["int32", []], "seed": ["int64", []]},
            "outputs": outputs}
        any_spatial = [None] * (len(spatial))
        any_outputs = {"labels": ["int32", any_spatial],
                       "probs": ["float32", any_spatial + [classes]],
                       "std": ["float32", any_spatial]}
        assert interfaces["segment_any_size"] == {
            "inputs": {"image": ["float32", any_image]}, "outputs": any_outputs}
        assert interfaces["segment_tiled"] == {
            "inputs": {"image": ["float32", any_image], "steps": ["int32", []],
                       "samples": ["int32", []], "seed": ["int64", []]},
            "outputs": any_outputs}


def test_2d_signatures_equal_model_segment(reloaded, model_2d):
    model, _ = model_2d
    _, out, _, inputs = reloaded
    x = inputs["2d_default"]["image"]
    ref = _reference(model, x, steps=2, samples=1, seed=0)
    assert_outputs_match(out["2d_default"], ref, F32_TOL)
    assert np.all(out["2d_default"]["std"] == 0.0)  # one sample: no spread

    ref = _reference(model, x, steps=3, samples=2, seed=7)
    assert_outputs_match(out["2d_segment"], ref, F32_TOL)
    assert out["2d_segment"]["std"].max() > 0.0  # two samples differ

    ref = _reference(model, x, steps=1, samples=1, seed=0)
    assert_outputs_match(out["2d_segment_1step"], ref, F32_TOL)


def test_an_image_gets_the_same_answer_in_any_batch(reloaded):
    # TF Serving batches requests: row 1 of a batch of 2 must be what the same
    # image gets alone (its noise comes from the seed, not from its row).
    _, out, _, _ = reloaded
    for batch, alone in (("2d_default", "2d_default_row1"), ("2d_segment", "2d_segment_row1")):
        np.testing.assert_array_equal(out[alone]["labels"][0], out[batch]["labels"][1])
        # The noise is identical; what is left is float32 rounding: oneDNN
        # picks its convolution blocking by batch size, so sums run in another
        # order (CI saw 1.1e-6 after two DDIM steps, ~20 ulp at 0.5).
        for k in ("probs", "std"):
            np.testing.assert_allclose(out[alone][k][0], out[batch][k][1], atol=F32_TOL, rtol=0)


def _preprocessed_reference(model, images, steps, samples, seed):
    """What `ldseg predict --model` computes: `preprocess` every image (the
    training pipeline's anti-aliased resize and normalization), `segment`, and
    nearest-neighbour back to the input size."""
    x = np.stack([preprocess(im, config=model.config).numpy() for im in images])
    ref = model.segment(x, steps=steps, samples=samples, seed=seed)
    size = images.shape[1:-1]
    back = {k: resize(v if k == "probs" else v[..., None], size, "nearest").numpy()
            for k, v in ref.items()}
    return {k: v if k == "probs" else v[..., 0] for k, v in back.items()}


def assert_same_as_preprocessed(out, ref):
    np.testing.assert_array_equal(out["labels"], ref["labels"])
    np.testing.assert_allclose(out["probs"], ref["probs"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(out["std"], ref["std"], atol=1e-5, rtol=0)


def test_any_size_equals_preprocess_and_segment(reloaded, model_2d):
    model, _ = model_2d
    _, out, _, inputs = reloaded
    # at the model's own size it is serving_default
    for k in ("labels", "probs", "std"):
        np.testing.assert_allclose(out["2d_any_same"][k], out["2d_default"][k], atol=F32_TOL)
    for key in ("2d_any_small", "2d_any_large"):
        x = inputs[key]["image"]
        assert out[key]["labels"].shape == x.shape[:3]
        assert out[key]["probs"].shape == x.shape[:3] + (2,)
        assert_same_as_preprocessed(out[key], _preprocessed_reference(model, x, 2, 1, 0))
    # The 80-wide image is down-scaled: without anti-aliasing it reaches the
    # model differently (the server used to resize so).
    x = inputs["2d_any_large"]["image"]
    plain = tf.image.resize(x, (32, 32), "bilinear").numpy()
    assert np.abs(plain - np.stack([resize(im, (32, 32), antialias=True) for im in x])).max() > 1


def _tiled_reference(model, raw, steps, samples, seed):
    dims = model.config.spatial_dims
    x = normalize_intensity(raw, method=model.config.normalization, spatial_dims=dims).numpy()
    return model.segment_tiled(x, steps=steps, samples=samples, seed=seed,
                               tile_batch_size=export.TILE_BATCH_SIZE)


def test_segment_tiled_signature_equals_model_segment_tiled(reloaded, model_2d, model_3d):
    _, out, _, inputs = reloaded
    for key, model in (("2d_tiled", model_2d[0]), ("3d_tiled", model_3d[0])):
        x = inputs[key]["image"]
        assert out[key]["labels"].shape == x.shape[:-1]
        call = inputs[key]
        ref = _tiled_reference(model, x, int(call["steps"]), int(call["samples"]),
                               int(call["seed"]))
        assert_outputs_match(out[key], ref, F32_TOL)
    assert out["2d_tiled"]["std"].max() > 0  # two samples, combined across tiles


def test_resize_handles_batches_and_volumes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 13, 3)).astype(np.float32)
    v = rng.normal(size=(2, 5, 7, 13, 1)).astype(np.float32)
    labels = rng.integers(0, 3, size=(2, 5, 7, 13, 1)).astype(np.int32)
    for method, antialias in (("bilinear", True), ("bilinear", False), ("nearest", False)):
        for size in [(32, 32), (5, 40), (7, 13)]:
            batched = resize(x, size, method, antialias).numpy()
            for i in range(2):
                np.testing.assert_allclose(batched[i], resize(x[i], size, method, antialias),
                                           atol=1e-6)
        batched = resize(v, (4, 20, 6), method, antialias).numpy()
        assert batched.shape == (2, 4, 20, 6, 1)
        for i in range(2):
            np.testing.assert_allclose(batched[i], resize(v[i], (4, 20, 6), method, antialias),
                                       atol=1e-6)
    # 3D: separable, so a volume constant along D resizes like its slices
    flat = np.repeat(x[:, None], 4, axis=1)
    np.testing.assert_allclose(resize(flat, (6, 32, 32), antialias=True)[:, 3],
                               tf.image.resize(x, (32, 32), antialias=True), atol=1e-5)
    # nearest keeps the labels' dtype
    assert resize(labels, (3, 9, 20), "nearest").dtype == tf.int32


def test_mixed_precision_model_exports_float32_interface(reloaded, model_mixed):
    _, out, _, inputs = reloaded
    x = inputs["mixed_default"]["image"]
    assert_outputs_match(out["mixed_default"],
                         _reference(model_mixed, x, steps=2, samples=1, seed=3), F16_TOL)
    assert_outputs_match(out["mixed_segment"],
                         _reference(model_mixed, x, steps=2, samples=2, seed=5), F16_TOL)


def test_3d_signatures_equal_model_segment(reloaded, model_3d):
    model, _ = model_3d
    _, out, _, inputs = reloaded
    x = inputs["3d_default"]["image"]
    assert_outputs_match(out["3d_default"], _reference(model, x, 2, 2, 11), F32_TOL)
    assert out["3d_default"]["probs"].shape == (2, 16, 16, 16, 3)
    assert_outputs_match(out["3d_segment"], _reference(model, x, 4, 1, 2), F32_TOL)
    xa = inputs["3d_any"]["image"]
    assert out["3d_any"]["labels"].shape == xa.shape[:4]
    assert out["3d_any"]["probs"].shape == xa.shape[:4] + (3,)
    assert_same_as_preprocessed(out["3d_any"], _preprocessed_reference(model, xa, 2, 2, 11))


def test_bad_inputs_fail_at_the_signature(reloaded):
    errors = reloaded[2]
    expected = {
        "2d_bad_channels": "image must have 3 channel(s)",
        "2d_bad_rank": "image must be a batch of 2D images of rank 4",
        "2d_bad_size": "image must have the spatial size of the model, shape (batch, 32, 32, 3)",
        "2d_bad_nan": "image contains NaN or infinite values",
        "2d_any_bad_channels": "image must have 3 channel(s)",
        "2d_bad_steps": "steps must be in 1..50",
        "2d_bad_samples": "samples must be >= 1",
        "2d_samples_unbounded": "steps x samples must be at most 1000 (max_steps_x_samples",
        "2d_batch_over_limit": "at most 64 images per request (max_batch",
        "3d_bad_rank": "image must be a batch of 3D images of rank 5",
        "2d_tiled_bad_steps": "steps must be in 1..50",
        "2d_tiled_over_limit": "at most 4096 tiles per request (max_tiles",
    }
    assert set(errors) == set(expected)
    for key, message in expected.items():
        assert message in errors[key], (key, errors[key])


def test_signature_spec_rejects_wrong_rank_and_channels_in_process(model_2d):
    functions = export._build_functions(model_2d[0], 2, 1, 0)
    with pytest.raises((TypeError, ValueError), match="image"):
        functions["serving_default"](tf.zeros([1, 32, 32, 4]))
    with pytest.raises((TypeError, ValueError), match="image"):
        functions["segment_any_size"](tf.zeros([20, 20, 3]))


# ---------------------------------------------------------------- warmup


@needs_serving_api
def test_warmup_records_match_signatures(export_2d, reloaded):
    report = reloaded[0]
    records = serving.read_warmup_file(os.path.join(export_2d, serving.WARMUP_FILE_RELPATH))
    interfaces = report[export_2d]["interfaces"]
    names = [r.predict_log.request.model_spec.signature_name for r in records]
    assert sorted(names) == sorted(SIGNATURES)
    for record in records:
        request = record.predict_log.request
        assert request.model_spec.name == "ldseg"
        spec = interfaces[request.model_spec.signature_name]["inputs"]
        assert set(request.inputs) == set(spec)
        for name, proto in request.inputs.items():
            value = tf.make_ndarray(proto)
            dtype, shape = spec[name]
            assert value.dtype == np.dtype(dtype), name
            assert len(value.shape) == len(shape)
            assert all(s is None or s == v for s, v in zip(shape, value.shape)), name
    # replayed on the loaded model (as TF Serving does at load time): all succeed
    assert sorted(s for s, _ in report[export_2d]["warmup"]) == sorted(SIGNATURES)
    assert all(o == ["labels", "probs", "std"] for _, o in report[export_2d]["warmup"])


# ---------------------------------------------------------- saved_model_cli


def test_saved_model_cli_show_all(launched_2d, background):
    text = background.wait("cli_show")
    for name in SIGNATURES:
        assert f"signature_def['{name}']:" in text
    assert text.count("Method name is: tensorflow/serving/predict") == len(SIGNATURES)
    assert "shape: (-1, 32, 32, 3)" in text and "shape: (-1, -1, -1, 3)" in text
    assert "dtype: DT_FLOAT" in text and "dtype: DT_INT64" in text


def test_saved_model_cli_run_gives_the_same_labels(launched_2d, background, model_2d):
    model, _ = model_2d
    _, arrays, out_dir = launched_2d
    background.wait("cli_run")
    out = {k: np.load(out_dir / f"{k}.npy") for k in ("labels", "probs", "std")}
    ref = _reference(model, arrays["image"], steps=3, samples=1, seed=4)
    assert_outputs_match(out, ref, F32_TOL)


# ------------------------------------------------------------ layout, assets


def test_layout_config_asset_and_versions(export_2d, model_2d):
    model, _ = model_2d
    base = os.path.dirname(export_2d)
    assert sorted(os.listdir(base)) == ["1"]  # no temporary folder left behind
    for rel in ("saved_model.pb", "variables", "assets/ldseg_config.json",
                serving.WARMUP_FILE_RELPATH):
        assert os.path.exists(os.path.join(export_2d, rel)), rel
    # readable by a server running as another user
    assert os.stat(export_2d).st_mode & 0o005 == 0o005
    assert os.stat(os.path.join(export_2d, serving.WARMUP_FILE_RELPATH)).st_mode & 0o004
    cfg = export.read_export_config(export_2d)
    assert LDSegConfig.from_dict(cfg["config"]) == model.config
    assert cfg["class_names"] == ["background", "class_1"]
    assert cfg["normalization"] == "minmax"
    assert cfg["defaults"] == {"steps": 2, "samples": 1, "seed": 0, "eta": 0.0,
                               "method": "ddim"}
    assert cfg["model_name"] == "ldseg" and cfg["version"] == 1
    assert cfg["limits"] == export.DEFAULT_LIMITS == {"max_batch": 64,
                                                      "max_steps_x_samples": 1000,
                                                      "max_tiles": 4096}
    assert cfg["signatures"]["segment"]["inputs"]["image"] == {
        "dtype": "float32", "shape": ["B", 32, 32, 3],
        "description": "raw (unnormalized) intensities"}
    assert cfg["signatures"]["segment_any_size"]["outputs"]["probs"]["shape"] == \
        ["B", "?", "?", 2]


def test_next_version(tmp_path):
    base = tmp_path / "m"
    assert export.next_version(str(base)) == 1
    for name in ("1", "3", "10", ".tmp-4-abc", "notes"):
        (base / name).mkdir(parents=True)
    (base / "12").write_text("a file, not a version")
    assert export.next_version(str(base)) == 11


def test_models_config_and_docker_command(tmp_path):
    text = export.models_config_text("ldseg", "/models/ldseg")
    assert 'name: "ldseg"' in text and 'base_path: "/models/ldseg"' in text
    assert 'model_platform: "tensorflow"' in text
    assert text.count("{") == text.count("}")
    path = export.write_models_config(str(tmp_path / "models.config"),
                                      {"ldseg": "/models/ldseg", "knee": "/models/knee"})
    written = pathlib.Path(path).read_text()
    assert written.startswith("model_config_list {") and written.count("config {") == 2
    cmd = export.docker_run_command("SERVING_DIR")
    assert "tensorflow/serving" in cmd and "--model_config_file=/models/models.config" in cmd
    assert "-p 8501:8501" in cmd and '"$PWD/SERVING_DIR:/models"' in cmd
    single = export.docker_run_command("SERVING_DIR", "ldseg", single_model=True)
    assert "-e MODEL_NAME=ldseg" in single


def test_docker_command_mounts_absolute_paths_as_they_are():
    cmd = export.docker_run_command("/srv/serving/")
    assert '-v "/srv/serving:/models"' in cmd and "$PWD" not in cmd and "//" not in cmd
    single = export.docker_run_command(pathlib.Path("/srv/serving"), "knee", single_model=True)
    assert '-v "/srv/serving/knee:/models/knee"' in single and "$PWD" not in single
    # Relative paths stay under the shell's working directory.
    assert '-v "$PWD/out/serving:/models"' in export.docker_run_command("out/serving/")
    rel = export.docker_run_command("out/serving", "ldseg", single_model=True)
    assert '-v "$PWD/out/serving/ldseg:/models/ldseg"' in rel
    # Characters special inside double quotes are escaped.
    assert '-v "/tmp/a \\$b\\"c:/models"' in export.docker_run_command('/tmp/a $b"c')


# ------------------------------------------------------------- bad export


def test_existing_version_is_not_overwritten(export_2d, model_2d):
    model, _ = model_2d
    base = os.path.dirname(export_2d)
    pb = os.path.join(export_2d, "saved_model.pb")
    before = (os.stat(pb).st_mtime_ns, pathlib.Path(pb).read_bytes())
    with pytest.raises(FileExistsError, match="already exists"):
        export.export_saved_model(model, base, version=1)
    assert (os.stat(pb).st_mtime_ns, pathlib.Path(pb).read_bytes()) == before
    assert sorted(os.listdir(base)) == ["1"]


def test_untrained_model_is_refused(tmp_path):
    cfg = LDSegConfig.preset("small", image_shape=(16, 16, 1), timesteps=10,
                             image_encoder_attention_levels=0, denoiser_attention_levels=0)
    model = LDSeg(cfg)
    base = tmp_path / "ldseg"
    with pytest.raises(ValueError, match="has not been trained.*allow_untrained"):
        export.export_saved_model(model, str(base))
    model.compile()
    with pytest.raises(ValueError, match=r"optimizer.iterations == 0"):
        export.export_saved_model(model, str(base))
    # unsaved optimizer state in a file: also untrained
    model.save(tmp_path / "fresh.keras")
    with pytest.raises(ValueError, match="has not been trained"):
        export.export_saved_model(str(tmp_path / "fresh.keras"), str(base))
    assert not base.exists()


def test_bad_paths_and_arguments(tmp_path, model_2d):
    model, path = model_2d
    base = tmp_path / "ldseg"
    with pytest.raises(ValueError, match="does not exist"):
        export.export_saved_model(str(tmp_path / "missing.keras"), str(base))
    (tmp_path / "weights.h5").write_text("x")
    with pytest.raises(ValueError, match=r"\.keras file"):
        export.export_saved_model(str(tmp_path / "weights.h5"), str(base))
    (tmp_path / "broken.keras").write_text("not a zip")
    with pytest.raises(ValueError, match="cannot load"):
        export.export_saved_model(str(tmp_path / "broken.keras"), str(base))
    with pytest.raises(TypeError, match="LDSeg"):
        export.export_saved_model(keras.Sequential([keras.layers.Dense(1)]), str(base))
    with pytest.raises(ValueError, match=r"steps: expected 1\.\.50"):
        export.export_saved_model(model, str(base), steps=51)
    with pytest.raises(ValueError, match="samples: expected an integer >= 1"):
        export.export_saved_model(model, str(base), samples=0)
    # Unbounded work is refused at export time too (issue 15): the defaults
    # must respect the limits, which must be positive.
    with pytest.raises(ValueError, match="at most max_steps_x_samples = 1000; got 2 x 10000"):
        export.export_saved_model(model, str(base), steps=2, samples=10_000)
    with pytest.raises(ValueError, match="max_batch: expected a positive integer"):
        export.export_saved_model(model, str(base), limits={"max_batch": 0})
    with pytest.raises(ValueError, match="version must be an integer"):
        export.export_saved_model(model, str(base), version=-1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        export.export_saved_model(model, str(tmp_path / "file"))
    assert not base.exists()


def test_failure_leaves_nothing_behind(tmp_path, model_2d, monkeypatch):
    model, _ = model_2d

    def cheap_functions(model, steps, samples, seed, limits=None):
        fn = tf.function(lambda image: {"labels": tf.zeros([1], tf.int32)},
                         input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
        return {name: fn for name in SIGNATURES}

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "_build_functions", cheap_functions)
    monkeypatch.setattr(export, "_export_config", boom)
    base = tmp_path / "ldseg"
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_saved_model(model, str(base), warmup=False)
    assert os.listdir(base) == []


def _clean_exit(capsys, *argv):
    """The one stderr line of `ldseg export ARGV`, which must fail with exit
    status 2, no traceback and nothing on stdout."""
    assert cli_main(["export", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("ldseg export: ") and captured.err.count("\n") == 1
    return captured.err


def test_cli_export_errors_exit_cleanly(tmp_path, capsys, monkeypatch):
    base = tmp_path / "serving" / "ldseg"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"old")
    missing = str(tmp_path / "missing.keras")

    # An existing version folder: refused before the model is even looked at.
    assert "already exists" in _clean_exit(capsys, "--model", missing, "--out", str(base),
                                           "--version", "1")
    # A model path that does not exist.
    assert "does not exist" in _clean_exit(capsys, "--model", missing, "--out", str(base))
    # A file that is not a Keras archive.
    (tmp_path / "broken.keras").write_text("not a zip")
    assert "cannot load" in _clean_exit(capsys, "--model", str(tmp_path / "broken.keras"),
                                        "--out", str(base), "--no-warmup")
    # An unbuilt model (a stand-in: building a real one is not needed to check this).
    monkeypatch.setattr(export, "_load_model",
                        lambda model: (argparse.Namespace(built=False), None))
    assert "not built" in _clean_exit(capsys, "--model", missing, "--out", str(base),
                                      "--no-warmup")

    assert capsys.readouterr().out == ""
    assert sorted(os.listdir(base)) == ["1"]  # nothing written, nothing overwritten
    assert os.listdir(base / "1") == ["saved_model.pb"]
    assert (base / "1" / "saved_model.pb").read_bytes() == b"old"


# ------------------------------------------------- real TF Serving (optional)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("tensorflow_model_server") is None,
                    reason="tensorflow_model_server is not on PATH (TF Serving is not "
                           "pip-installable; run this test where the binary exists)")
def test_tensorflow_model_server(export_2d, model_2d, tmp_path):
    model, _ = model_2d
    rest_port, grpc_port = _free_port(), _free_port()
    base = os.path.dirname(export_2d)
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(
        ["tensorflow_model_server", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
         "--rest_api_num_threads=2", "--model_name=ldseg", f"--model_base_path={base}"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        status_url = f"http://127.0.0.1:{rest_port}/v1/models/ldseg"
        deadline = time.time() + 120
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(status_url, timeout=5) as r:
                    states = [v["state"] for v in json.load(r)["model_version_status"]]
                if "AVAILABLE" in states:
                    break
            except OSError:
                pass
            assert time.time() < deadline, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(1)
        assert "warmup" in (tmp_path / "server.log").read_text().lower()
        x = _raw(synthetic_arrays("glands", 2, (32, 32), seed=3)[0])
        url = serving.rest_url("127.0.0.1", "ldseg", port=rest_port)
        ref = _reference(model, x, steps=2, samples=1, seed=0)
        for fmt in ("instances", "inputs"):
            out = serving.rest_predict(url, {"image": x.astype(np.uint8)}, format=fmt)
            assert_outputs_match(out, ref, F32_TOL)
        inputs = {"image": x, "steps": 3, "samples": 2, "seed": 9}
        out = serving.rest_predict(url, inputs, signature_name="segment")
        assert_outputs_match(out, _reference(model, x, 3, 2, 9), F32_TOL)
        if HAVE_SERVING_API:
            pytest.importorskip("grpc")
            request = serving.grpc_predict_request(inputs, signature_name="segment")
            out = serving.grpc_predict(f"127.0.0.1:{grpc_port}", request)
            assert_outputs_match(out, _reference(model, x, 3, 2, 9), F32_TOL)
        with pytest.raises(serving.ServingError, match="3 channel"):
            serving.rest_predict(url, {"image": x[..., :1]})
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
