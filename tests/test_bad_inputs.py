"""A corpus of careless and hostile inputs (issue 15), run through `ldseg` in-process.

Every case must end with exit status 2, exactly one line on stderr that names
the file (or flag) at fault and no traceback, and leave every input file and run
directory byte for byte as it was. The files are tiny and written here; the one
model is a TINY untrained `.keras` file shared by the module (the refusals
happen before any sampling, except in the few cases that predict on purpose).
"""

import hashlib
import http.server
import json
import os
import subprocess
import threading

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from ldseg_tf import LDSeg, LDSegConfig
from ldseg_tf.cli import build_config, build_parser
from ldseg_tf.cli import main as cli_main

from conftest import TINY

#: `ldseg train` arguments of a tiny synthetic run (the refusals come before any step).
TRAIN = ["train", "--data", "synthetic", "--preset", "small", "--image-shape", "16,16,3",
         "--timesteps", "50", "--num-examples", "4", "--batch-size", "4", "--no-validation",
         "--quiet", "--epochs", "1"]


def _run(capsys, *argv):
    """`(exit status, stdout, stderr)` of `ldseg ARGV` in this process."""
    try:
        code = cli_main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def _snapshot(*roots):
    """`{path: sha256}` of every file under `roots` (files or folders)."""
    digests = {}
    for root in map(str, roots):
        paths = [root] if os.path.isfile(root) else [
            os.path.join(d, f) for d, _, files in os.walk(root) for f in files]
        for path in paths:
            with open(path, "rb") as f:
                digests[path] = hashlib.sha256(f.read()).hexdigest()
    return digests


def refused(capsys, argv, names, *, keep=(), contains=()):
    """Runs `ldseg ARGV`, which must fail with exit status 2 and one stderr line
    naming `names` (and holding `contains`), changing nothing under `keep`."""
    before = _snapshot(*keep)
    code, out, err = _run(capsys, *argv)
    lines = err.splitlines()
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    for text in (names if isinstance(names, (list, tuple)) else [names]):
        assert str(text) in lines[0], (text, lines[0])
    for text in contains:
        assert text in lines[0], (text, lines[0])
    assert _snapshot(*keep) == before, "an input or run file was changed"
    return lines[0]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A TINY 16x16x3 model file (untrained: only the plumbing is under test)."""
    model = LDSeg(LDSegConfig.preset("small", image_shape=(16, 16, 3), **TINY))
    model.compile()
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path


def _png(path, shape=(20, 24, 3), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, shape).astype(np.uint8)).save(path)
    return path


# ------------------------------------------------------------------- predict


def test_predict_never_overwrites_an_input(tmp_path, capsys, model_path):
    images = tmp_path / "images"
    a = _png(images / "a.png")
    _png(images / "b.png", seed=1)
    refused(capsys, ["predict", "--model", model_path, "--input", images, "--output", images],
            images, keep=[images], contains=["would replace", "a.png"])
    refused(capsys, ["predict", "--model", model_path, "--input", a, "--output", images],
            images, keep=[images], contains=["would replace"])
    # Nor a file of the user's that has a mask's name (ground truth, say).
    truth = _png(tmp_path / "truth" / "b.png", shape=(20, 24))
    refused(capsys, ["predict", "--model", model_path, "--input", images, "--output",
                     truth.parent], truth, keep=[images, truth.parent], contains=["of yours"])


@pytest.mark.parametrize("case", ["nan_tiff", "jpeg", "corrupt", "output_is_file",
                                  "output_under_file"])
def test_predict_refuses_bad_files_before_writing_any_mask(case, tmp_path, capsys, model_path):
    images = tmp_path / "in"
    _png(images / "a_first.png")  # a good file before the bad one: no mask may be written
    out = tmp_path / "out"
    bad = images / "b_bad.png"
    if case == "nan_tiff":
        bad = images / "b_bad.tif"
        Image.fromarray(np.where(np.eye(16) > 0, np.nan, 1.0).astype(np.float32)).save(bad)
    elif case == "jpeg":
        bad = images / "b_bad.jpg"
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(bad)
    elif case == "corrupt":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    elif case == "output_is_file":
        out.write_text("not a folder")
        bad = out
    else:
        (tmp_path / "file").write_text("x")
        out = bad = tmp_path / "file" / "masks"
    expected = {"nan_tiff": "NaN", "jpeg": "JPEG", "corrupt": "cannot read",
                "output_is_file": "a folder", "output_under_file": "NotADirectoryError"}[case]
    refused(capsys, ["predict", "--model", model_path, "--input", images, "--output", out],
            bad, keep=[images, tmp_path / "file"] if (tmp_path / "file").exists() else [images],
            contains=[expected])
    assert not out.is_dir() or os.listdir(out) == []


def test_predict_skip_errors_and_upper_case_extensions(tmp_path, capsys, model_path):
    images = tmp_path / "in"
    _png(images / "A.PNG")
    (images / "b.png").write_bytes(b"not a png")
    _png(images / "c.png", shape=(12, 10), seed=2)
    (images / "notes.txt").write_text("ignored")
    # Not images of this 2D model: a volume, a 3-slice volume (not RGB), a stack.
    nib.save(nib.Nifti1Image(np.ones((16, 16, 5), np.float32), np.eye(4)),
             str(images / "d_volume.nii.gz"))
    nib.save(nib.Nifti1Image(np.ones((16, 16, 3), np.float32), np.eye(4)),
             str(images / "e_three.nii"))
    pages = [Image.fromarray(np.full((16, 16), i, np.uint8)) for i in range(3)]
    pages[0].save(images / "f_pages.TIF", save_all=True, append_images=pages[1:])
    keep = _snapshot(images)
    code, out, err = _run(capsys, "predict", "--model", model_path, "--input", images,
                          "--output", tmp_path / "out", "--skip-errors", "--steps", "1")
    assert code == 1, err  # the good files are written, the status says some were not
    assert sorted(os.listdir(tmp_path / "out")) == [".ldseg_predict.json", "A.PNG", "c.png"]
    assert Image.open(tmp_path / "out" / "c.png").size == (10, 12)
    assert "4 file(s) skipped" in err and "Traceback" not in err
    for name, why in (("b.png", "cannot read"), ("d_volume.nii.gz", "a 2D image"),
                      ("e_three.nii", "a 2D image"), ("f_pages.TIF", "multi-page TIFF")):
        assert any(name in line and why in line for line in err.splitlines()), (name, err)
    assert _snapshot(images) == keep
    # Running again replaces only the masks it wrote itself.
    masks = _snapshot(tmp_path / "out")
    # (With --skip-errors and nothing to skip the status is 0.)
    code, _, err = _run(capsys, "predict", "--model", model_path, "--input", images / "A.PNG",
                        "--output", tmp_path / "out", "--steps", "1", "--skip-errors")
    assert code == 0, err
    assert _snapshot(tmp_path / "out").keys() == masks.keys()


@pytest.mark.parametrize("flag", ["--steps", "--samples"])
@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_non_positive_counts_are_refused(flag, value, tmp_path, capsys, model_path):
    _png(tmp_path / "a.png")
    refused(capsys, ["predict", "--model", model_path, "--input", tmp_path / "a.png",
                     "--output", tmp_path / "out", flag, value], flag, keep=[tmp_path])


# ------------------------------------------------------- predict --server


class _FakeServing(http.server.BaseHTTPRequestHandler):
    """Answers ``POST /<case>:predict`` with a canned reply."""

    REPLIES = {
        "shape": (200, json.dumps({"outputs": {"labels": [[[0]]], "probs": [[[[1.0, 0.0]]]],
                                               "std": [[[0.0]]]}})),
        "strings": (200, json.dumps({"outputs": {"labels": [[["a"] * 24] * 20]}})),
        "malformed": (200, '{"outputs": '),
        "empty": (200, ""),
        "nested": (200, '{"outputs": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        "client_error": (400, json.dumps({"error": "Servable not found for request"})),
    }

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        status, body = self.REPLIES[self.path.strip("/").split(":")[0]]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture(scope="module")
def fake_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeServing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("case, expected", [
    ("shape", "labels of shape (1, 20, 24)"), ("strings", "numbers"),
    ("malformed", "not a JSON"), ("empty", "not a JSON"), ("nested", "RecursionError"),
    ("client_error", "Servable not found"), ("unreachable", "URLError")])
def test_predict_server_failures_are_one_line(case, expected, tmp_path, capsys, fake_server):
    _png(tmp_path / "in" / "a.png")
    url = ("http://127.0.0.1:9/x:predict" if case == "unreachable"
           else f"{fake_server}/{case}:predict")
    refused(capsys, ["predict", "--server", url, "--input", tmp_path / "in", "--output",
                     tmp_path / "out"], [url, "a.png"], keep=[tmp_path / "in"],
            contains=[expected])
    assert os.listdir(tmp_path / "out") == []


# --------------------------------------------------------------------- train


def _started_run(tmp_path, files=("config", "state", "history", "checkpoint")):
    """A run directory as `ldseg train` leaves it, with `files` of it."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    config = build_config(build_parser().parse_args(TRAIN + ["--out", str(run)]))
    contents = {"config": ("config.json", config.to_json()),
                "state": ("state.json", json.dumps({"epoch": 2, "history": {"loss": [1, 0.5]}})),
                "history": ("history.csv", "epoch,loss\n1,1\n2,0.5\n"),
                "checkpoint": ("checkpoints/last.keras", "PK\x03\x04 truncated zip"),
                "model": ("model.keras", "not a zip at all")}
    for key in files:
        name, text = contents[key]
        (run / name).write_text(text)
    return run


@pytest.mark.parametrize("case, argv, names, contains", [
    ("started", [], "run", ["--resume", "--overwrite"]),
    ("finished", [], "run", ["model.keras"]),
    ("no_checkpoint", ["--resume"], "run", ["neither exists", "--overwrite"]),
    ("truncated_checkpoint", ["--resume"], "last.keras", ["cannot load"]),
    ("non_zip_model", ["--resume"], "model.keras", ["cannot load"]),
    ("bad_config_json", ["--resume"], "config.json", ["invalid config JSON"]),
    ("bad_state_json", ["--resume"], "state.json", ["run state"]),
    ("state_not_object", ["--resume"], "state.json", ["run state"]),
    ("missing_state", ["--resume"], "state.json", ["missing"]),
    ("config_mismatch", ["--resume", "--set", "gamma=3"], "config.json", ["gamma"]),
    ("locked", ["--resume"], "run", ["locked by process"]),
    ("both", ["--resume", "--overwrite"], "--resume/--overwrite", []),
])
def test_train_never_loses_a_run(case, argv, names, contains, tmp_path, capsys):
    files = {"finished": ("config", "state", "history", "model"),
             "no_checkpoint": ("config", "state", "history"),
             "non_zip_model": ("config", "state", "history", "model"),
             "missing_state": ("config", "checkpoint")}.get(case, ("config", "state", "history",
                                                                    "checkpoint"))
    run = _started_run(tmp_path, files)
    if case == "bad_config_json":
        (run / "config.json").write_text("{not json")
    elif case == "bad_state_json":
        (run / "state.json").write_text("\xff{")
    elif case == "state_not_object":
        (run / "state.json").write_text("[1, 2]")
    elif case == "locked":
        (run / ".lock").write_text(f"{os.uname().nodename} {os.getppid()}\n")
    names = run if names == "run" else names
    refused(capsys, TRAIN + ["--out", run] + argv, names, keep=[run], contains=contains)


def test_stale_lock_and_killed_save_leftovers_are_cleaned(tmp_path, capsys):
    run = _started_run(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run / ".lock").write_text(f"{os.uname().nodename} {dead.pid}\n")
    (run / "checkpoints" / ".tmp-abc123").mkdir()
    (run / "checkpoints" / ".tmp-abc123" / "last.keras").write_text("half")
    (run / ".tmp-def456-state.json").write_text("half")
    # The stale lock is taken over: the refusal is about the run, not the lock.
    refused(capsys, TRAIN + ["--out", run], run, contains=["--resume"])
    assert sorted(os.listdir(run)) == ["checkpoints", "config.json", "history.csv", "state.json"]
    assert os.listdir(run / "checkpoints") == ["last.keras"]


@pytest.mark.parametrize("argv, names", [
    (["--epochs", "0"], "--epochs"), (["--epochs", "-3"], "--epochs"),
    (["--num-examples", "0"], "--num-examples"), (["--batch-size", "0"], "--batch-size"),
    (["--set", "timesteps=abc"], "LDSegConfig.timesteps"),
    (["--set", "gamma=NaN"], "LDSegConfig.gamma"),
    (["--set", "image_shape=5"], "LDSegConfig.image_shape"),
    (["--set", "class_names=5"], "LDSegConfig.class_names"),
    (["--set", "denoiser_widths=[0]"], "denoiser_widths"),
])
def test_train_refuses_bad_arguments(argv, names, tmp_path, capsys):
    refused(capsys, TRAIN + ["--out", tmp_path / "run"] + argv, names)
    assert not (tmp_path / "run").exists()


def test_train_refuses_unusable_out_and_data(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    refused(capsys, TRAIN + ["--out", tmp_path / "file"], tmp_path / "file",
            keep=[tmp_path / "file"], contains=["a file"])
    refused(capsys, TRAIN + ["--out", tmp_path / "file" / "run"], tmp_path / "file" / "run",
            keep=[tmp_path / "file"])
    refused(capsys, ["train", "--data", "folder", "--data-dir", tmp_path / "missing",
                     "--preset", "small", "--image-shape", "16,16,3", "--num-classes", "2",
                     "--out",
                     tmp_path / "run"], tmp_path / "missing", contains=["not found"])


# --------------------------------------------------------- builders (folder)


def _nnunet(root, dataset_json, image=None):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    if image is None:
        _png(root / "imagesTr" / "c_0000.png", shape=(16, 16))
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(root / "labelsTr" / "c.png")
    else:
        nib.save(nib.Nifti1Image(image, np.eye(4)), str(root / "imagesTr" / "c_0000.nii.gz"))
        nib.save(nib.Nifti1Image(np.zeros(image.shape, np.uint8), np.eye(4)),
                 str(root / "labelsTr" / "c.nii.gz"))
    (root / "dataset.json").write_bytes(dataset_json)


_SPEC = {"channel_names": {"0": "grey"}, "labels": {"background": 0, "cell": 1}}


@pytest.mark.parametrize("case, spec, image, names, contains", [
    ("list", json.dumps([_SPEC]).encode(), None, "dataset.json", "a JSON object"),
    ("ending", json.dumps({**_SPEC, "file_ending": 5}).encode(), None, "dataset.json",
     "'file_ending' to be a string"),
    ("latin1", json.dumps({**_SPEC, "name": "é"}, ensure_ascii=False).encode("latin-1"), None,
     "dataset.json", "UTF-8"),
    ("volume", json.dumps({**_SPEC, "file_ending": ".nii.gz"}).encode(),
     np.ones((16, 16, 6), np.float32), "c_0000.nii.gz", "use --config 3d"),
])
def test_builder_errors_name_the_file(case, spec, image, names, contains, tmp_path, capsys,
                                      monkeypatch):
    import tensorflow_datasets as tfds

    # TFDS's own progress bars (stderr) are not part of the error line.
    tfds.disable_progress_bar()
    raw = tmp_path / "raw"
    _nnunet(raw, spec, image)
    refused(capsys, ["train", "--data", "folder", "--data-dir", raw, "--tfds-dir",
                     tmp_path / "tfds", "--preset", "small", "--image-shape", "16,16,1",
                     "--num-classes", "2",
                     "--out", tmp_path / "run"], names, keep=[raw], contains=[contains])
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------- evaluate / export


def test_evaluate_and_export_refusals(tmp_path, capsys, model_path):
    (tmp_path / "report").write_text("mine")
    refused(capsys, ["evaluate", "--model", model_path, "--out", tmp_path / "report"],
            tmp_path / "report", keep=[tmp_path / "report"])
    for flag in ("--steps", "--samples"):
        refused(capsys, ["evaluate", "--model", model_path, flag, "0"], flag)
    refused(capsys, ["evaluate", "--model", tmp_path / "report"], tmp_path / "report",
            contains=["cannot load"])
    refused(capsys, ["export", "--model", model_path, "--out", tmp_path / "serving",
                     "--allow-untrained", "--samples", "1000000000"], "steps x samples",
            keep=[model_path], contains=["max_steps_x_samples = 1000"])
    refused(capsys, ["export", "--model", model_path, "--out", tmp_path / "serving",
                     "--max-batch", "0"], "--max-batch")
    assert not (tmp_path / "serving").exists() or os.listdir(tmp_path / "serving") == []


def test_reproduce_and_tune_refusals_are_one_line(tmp_path, capsys):
    refused(capsys, ["reproduce", "--experiments", "accuracy,bogus", "--out", tmp_path / "r"],
            "--experiments", contains=["bogus", "accuracy"])
    refused(capsys, ["tune", "--data", "glas", "--data-dir", tmp_path / "missing",
                     "--out", tmp_path / "t"], tmp_path / "missing", contains=["does not exist"])
    assert not (tmp_path / "r").exists() and not (tmp_path / "t").exists()


def test_debug_shows_the_traceback(tmp_path, capsys):
    from ldseg_tf.errors import UserError

    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="expected a run directory"):
        cli_main(["--debug"] + TRAIN + ["--out", str(tmp_path / "file")])


def test_corrupt_prepared_records_are_named(tmp_path):
    """A corrupt TFRecord met while training or evaluating names the data folder."""
    import argparse

    import tensorflow as tf

    from ldseg_tf.cli.args import reading_data
    from ldseg_tf.errors import UserError

    records = tmp_path / "tfds" / "glas-train.tfrecord"
    records.parent.mkdir()
    with tf.io.TFRecordWriter(str(records)) as writer:
        writer.write(b"an example")
    records.write_bytes(records.read_bytes()[:-6] + b"\0" * 6)  # a flipped CRC
    args = argparse.Namespace(tfds_dir=str(tmp_path / "tfds"), data_dir=None, data="glas")
    with pytest.raises(UserError, match=r"tfds: expected readable prepared records; got "
                                        r"corrupt data \(.*corrupted record"):
        with reading_data(args):
            list(tf.data.TFRecordDataset(str(records)))
