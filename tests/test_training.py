"""Learning, distribution, run directories (resume after SIGKILL, divergence), CLI."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import keras
import nibabel as nib
import numpy as np
import pytest
import tensorflow as tf

from ldseg_tf import LDSeg, LDSegConfig
from ldseg_tf.cli import main as cli_main
from ldseg_tf.data import make_dataset, read_image
from ldseg_tf.evaluation import evaluate_model, mean_foreground
from ldseg_tf.training import NonFiniteLossError, load_state, run_paths, train

from conftest import TINY

CFG = LDSegConfig.preset("small", image_shape=(32, 32, 3))


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """A model trained on 96 synthetic gland images (about a minute on 2 cores)."""
    keras.utils.set_random_seed(0)
    train_ds = make_dataset("synthetic:glands", CFG, "train", batch_size=8, num_examples=96,
                            seed=0)
    run_dir = str(tmp_path_factory.mktemp("learned"))
    model = train(CFG, train_ds, run_dir, epochs=30, verbose=0)
    return model, run_dir


def test_learns_synthetic_glands_to_dsc_085_with_two_ddim_steps(learned):
    model, _ = learned
    test_ds = make_dataset("synthetic:glands", CFG, "test", batch_size=16, shuffle=False,
                           num_examples=32)
    result = evaluate_model(model, test_ds, steps=2, seed=0, distances=False, progress=False)
    dsc = mean_foreground(result["summary"], "dsc")
    assert dsc >= 0.85, f"held-out foreground DSC with 2 DDIM steps is {dsc:.3f}"
    # The paper's claim, on this toy set: 2 steps are about as good as 20.
    many = evaluate_model(model, test_ds, steps=20, seed=0, distances=False, progress=False)
    assert abs(mean_foreground(many["summary"], "dsc") - dsc) < 0.05


def test_mirrored_strategy_matches_one_device():
    # The fewest layers that exercise every code path (tracing dominates here).
    cfg = LDSegConfig.preset("small", image_shape=(16, 16, 3), ema=0.9, **TINY)
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest must create two logical CPUs"
    ds = make_dataset("synthetic:glands", cfg, "train", batch_size=4, num_examples=8,
                      shuffle=False)

    def run(strategy):
        keras.utils.set_random_seed(7)
        with strategy.scope():
            model = LDSeg(cfg)
            model.compile(optimizer=keras.optimizers.Adam(1e-3))
        history = model.fit(ds, epochs=2, verbose=0).history
        return history, [w.numpy() for w in model.weights]

    one_hist, one_weights = run(tf.distribute.OneDeviceStrategy("/cpu:0"))
    mirrored = tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
    assert mirrored.num_replicas_in_sync == 2
    two_hist, two_weights = run(mirrored)
    np.testing.assert_allclose(one_hist["loss"], two_hist["loss"], rtol=2e-4)
    np.testing.assert_allclose(one_hist["mse"], two_hist["mse"], rtol=2e-4)
    for a, b in zip(one_weights, two_weights):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def _wait_for(predicate, timeout, proc):
    start = time.time()
    while time.time() - start < timeout:
        if predicate():
            return True
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace")[-3000:]
            raise AssertionError(f"ldseg train exited early ({proc.returncode}):\n{out}")
        time.sleep(0.5)
    return False


def test_train_killed_with_sigkill_resumes_from_last_checkpoint(tmp_path):
    run_dir = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "ldseg_tf.cli", "train", "--data", "synthetic",
           "--preset", "small", "--image-shape", "16,16,3", "--timesteps", "50",
           "--num-examples", "16", "--batch-size", "8", "--no-validation", "--quiet",
           "--out", run_dir]
    paths = run_paths(run_dir)
    proc = subprocess.Popen(cmd + ["--epochs", "1000"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        assert _wait_for(lambda: load_state(run_dir)["epoch"] >= 2, 240, proc), \
            "no checkpoint after 240 s"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = load_state(run_dir)
    done = killed_at["epoch"]
    assert os.path.exists(paths["checkpoint"])
    assert not os.path.exists(paths["model"]), "the killed run cannot have finished"
    leftovers = [f for f in os.listdir(os.path.dirname(paths["checkpoint"])) if f.startswith(".tmp")]
    assert len(leftovers) <= 1  # at most the one being written when killed

    # Without --resume an existing run is refused and left alone.
    refused = subprocess.run(cmd + ["--epochs", str(done + 2)], capture_output=True, text=True)
    assert refused.returncode != 0 and "--resume" in refused.stderr
    assert load_state(run_dir)["epoch"] == done

    resumed = subprocess.run(cmd + ["--epochs", str(done + 2), "--resume"], capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = load_state(run_dir)
    assert state["epoch"] == done + 2
    assert len(state["history"]["loss"]) == done + 2
    assert state["history"]["loss"][:done] == killed_at["history"]["loss"][:done]
    model = keras.models.load_model(paths["model"])
    assert int(model.optimizer.iterations) == (done + 2) * 2, "optimizer state must carry over"
    rows = open(paths["history"]).read().strip().splitlines()
    assert len(rows) == done + 3  # header + one row per epoch


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = LDSegConfig.preset("small", image_shape=(16, 16, 3), timesteps=50)
    good = make_dataset("synthetic:glands", cfg, "train", batch_size=4, num_examples=8)
    run_dir = str(tmp_path / "run")
    train(cfg, good, run_dir, epochs=1, verbose=0)
    checkpoint = run_paths(run_dir)["checkpoint"]
    before = open(checkpoint, "rb").read()

    x = np.full((8, 16, 16, 3), np.nan, np.float32)
    y = np.zeros((8, 16, 16), np.int32)
    bad = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    with pytest.raises(NonFiniteLossError, match="non-finite loss .* epoch 2, batch 1.*kept"):
        train(cfg, bad, run_dir, epochs=3, resume=True, verbose=0)
    assert open(checkpoint, "rb").read() == before
    assert load_state(run_dir)["epoch"] == 1


def test_evaluate_and_predict_commands(learned, tmp_path, shared_data, capsys):
    model, run_dir = learned
    model_path = run_paths(run_dir)["model"]
    out = tmp_path / "eval"
    cli_main(["evaluate", "--model", model_path, "--data", "synthetic:glands",
              "--num-examples", "8", "--split", "test", "--out", str(out)])
    report = json.loads((out / "metrics.json").read_text())
    assert len(report["cases"]) == 8
    assert report["summary"]["class_1"]["dsc"]["mean"] > 0.7
    assert (out / "cases.csv").read_text().count("\n") == 9
    assert "mean foreground DSC" in capsys.readouterr().out

    # GlaS BMPs of any size in, BMP masks of the same size out.
    glas = shared_data / "glas_sample" / "Image"
    pred_dir = tmp_path / "pred"
    cli_main(["predict", "--model", model_path, "--input", str(glas), "--output",
              str(pred_dir), "--samples", "2"])
    for src in sorted(glas.iterdir()):
        mask, meta = read_image(str(pred_dir / src.name), label=True)
        image, _ = read_image(str(src))
        assert mask.shape == image.shape[:2]
        assert set(np.unique(mask)) <= {0, 1}
        assert (pred_dir / (src.stem + "_std.npy")).exists()

    assert cli_main(["predict", "--model", str(tmp_path / "missing.keras"), "--input",
                     str(glas), "--output", str(pred_dir)]) == 2
    err = capsys.readouterr().err
    assert "missing.keras: expected a .keras model" in err and "does not exist" in err


def test_predict_keeps_nifti_geometry(tmp_path, shared_data, capsys):
    cfg = LDSegConfig.preset("small", image_shape=(16, 16, 16, 1), num_classes=3, timesteps=50)
    model = LDSeg(cfg)
    model.compile()
    model_path = str(tmp_path / "knee.keras")
    model.save(model_path)
    src = shared_data / "knee_sample" / "Image" / "Case1.nii.gz"
    assert cli_main(["predict", "--model", model_path, "--input", str(tmp_path / "nope"),
                     "--output", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    cli_main(["predict", "--model", model_path, "--input", str(src), "--output",
              str(tmp_path / "out")])
    written = nib.load(str(tmp_path / "out" / "Case1.nii.gz"))
    original = nib.load(str(src))
    assert written.shape == original.shape
    np.testing.assert_allclose(written.affine, original.affine)
    assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2}


def test_train_on_a_dataset_does_not_warn_about_shuffle(tmp_path):
    cfg = LDSegConfig.preset("small", image_shape=(16, 16, 3), **TINY)
    ds = make_dataset("synthetic:glands", cfg, "train", batch_size=4, num_examples=4, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg, ds, str(tmp_path / "run"), epochs=1, verbose=0)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "shuffle" in m], messages
