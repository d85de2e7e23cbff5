"""keras-tuner search over gamma and lambda (`ldseg_tf.tuning`, `ldseg tune`).

Only one test trains (two trials of one epoch on eight 32x32 images, plus one
interrupted trial); every bad input is checked to fail before any trial starts.
"""

import csv
import json
import math
import os
import re
import sys

import pytest

from ldseg_tf.config import LDSegConfig
from ldseg_tf import tuning

CONFIG = LDSegConfig.preset("small", image_shape=(32, 32, 3), timesteps=100)
# The CLI arguments that give CONFIG with the synthetic data, one epoch per trial.
TINY = ["--data", "synthetic", "--preset", "small", "--image-shape", "32,32,3",
        "--timesteps", "100", "--num-examples", "8", "--val-examples", "4",
        "--batch-size", "8", "--epochs", "1", "--quiet"]


def run_cli(argv):
    """`ldseg tune ARGV` through `ldseg_tf.cli.main`."""
    from ldseg_tf import cli

    return cli.main(["tune", *argv])


def assert_refused(capsys, argv, match):
    """`ldseg tune ARGV` ends with exit status 2 and one stderr line matching `match`."""
    capsys.readouterr()
    assert run_cli(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and re.search(match, lines[0]), lines


def parse_tune(argv):
    from ldseg_tf import cli

    return cli.build_parser().parse_args(["tune", *argv])


# ------------------------------------------------------------------ ranges
@pytest.mark.parametrize("bad, match", [
    ((8.0, 0.25), "empty"),
    ((2.0, 2.0), "empty"),
    ((0.0, 8.0), "> 0"),
    ((-1.0, 8.0), "> 0"),
    ((0.25, math.inf), "unbounded"),
    ((math.nan, 8.0), "unbounded"),
    ((3.0, 8.0), "paper's best value 2"),
    ((0.1, 1.0), "paper's best value 2"),
    ((1.0,), "two numbers"),
    ("ab", "two numbers"),
])
def test_bad_gamma_range(bad, match):
    with pytest.raises(ValueError, match=match):
        tuning.LDSegHyperModel(CONFIG, gamma_range=bad)


def test_bad_lambda_and_learning_rate_ranges():
    with pytest.raises(ValueError, match="lambda.*paper's best value 1"):
        tuning.LDSegHyperModel(CONFIG, lambda_range=(2.0, 8.0))
    with pytest.raises(ValueError, match="lambda.*empty"):
        tuning.LDSegHyperModel(CONFIG, lambda_range=(8.0, 0.125))
    with pytest.raises(ValueError, match="learning_rate.*empty"):
        tuning.LDSegHyperModel(CONFIG, tune_learning_rate=True, learning_rate_range=(1e-2, 1e-4))
    # Not checked when the learning rate is not tuned.
    tuning.LDSegHyperModel(CONFIG, learning_rate_range=(1e-2, 1e-4))


def test_default_ranges_contain_the_paper_values():
    hm = tuning.LDSegHyperModel(CONFIG)
    assert hm.gamma_range[0] < tuning.PAPER_GAMMA < hm.gamma_range[1]
    assert hm.lambda_range[0] < tuning.PAPER_LAMBDA < hm.lambda_range[1]
    space = hm.search_space()
    assert set(space) == {"gamma", "lambda"}
    assert space["gamma"]["sampling"] == space["lambda"]["sampling"] == "log"


def test_hyperparameters_and_configs():
    import keras_tuner as kt

    hm = tuning.LDSegHyperModel(CONFIG, tune_learning_rate=True, tune_latent=True)
    # 32x32 with 2 denoiser levels: 1, 2 and 3 downsamplings are all valid.
    assert hm.latent_choices == (1, 2, 3)
    hp = kt.HyperParameters()
    values = hm.declare_hyperparameters(hp)
    assert values == {"gamma": 2.0, "lambda": 1.0, "learning_rate": CONFIG.learning_rate,
                      "downsamplings": 2}
    hp.values.update({"gamma": 0.5, "lambda": 4.0, "learning_rate": 3e-3, "downsamplings": 3})
    config = hm.config_for(hp)
    assert (config.gamma, config.lambda_, config.learning_rate) == (0.5, 4.0, 3e-3)
    assert config.downsamplings == 3 and config.latent_shape == (4, 4, 1)
    assert len(config.label_encoder_widths) == 4 and len(config.decoder_widths) == 3
    assert config.image_shape == CONFIG.image_shape and config.timesteps == CONFIG.timesteps
    shallow = tuning.config_with_hparams(CONFIG, {"downsamplings": 1, "lambda_": 0.5})
    assert shallow.latent_shape == (16, 16, 1) and shallow.lambda_ == 0.5
    assert shallow.image_encoder_attention_levels == 1
    # The build only declares while keras-tuner explores the space.
    with hm.declaring_only():
        assert hm.build(kt.HyperParameters()) is None


def test_bad_latent_choices():
    with pytest.raises(ValueError, match="not valid"):
        tuning.LDSegHyperModel(CONFIG, tune_latent=True, latent_choices=(2, 6))
    with pytest.raises(ValueError, match="nothing to search"):
        tuning.LDSegHyperModel(CONFIG, tune_latent=True, latent_choices=(2,))


# ---------------------------------------------------------------- objectives
def test_objectives():
    assert tuning.validation_objectives(CONFIG) == [
        "val_loss", "val_ce", "val_dice_loss", "val_mse", "val_dsc", "val_iou", "val_ceiling_dsc"]
    assert tuning.make_objective("val_dsc", CONFIG).direction == "max"
    assert tuning.make_objective("val_iou", CONFIG).direction == "max"
    assert tuning.make_objective("val_loss", CONFIG).direction == "min"
    assert tuning.make_objective("val_dice_loss", CONFIG).direction == "min"
    with pytest.raises(ValueError, match="'val_accuracy' is not reported.*val_dsc"):
        tuning.make_objective("val_accuracy", CONFIG)
    with pytest.raises(ValueError, match="training-time value.*'val_loss'"):
        tuning.make_objective("loss", CONFIG)
    with pytest.raises(ValueError, match="not reported"):
        tuning.make_objective("val_dsc_gland", CONFIG)  # no per-class metrics for 2 classes
    three = LDSegConfig.preset("small", image_shape=(32, 32, 1), num_classes=3,
                               class_names=("background", "LV", "LA"))
    assert tuning.make_objective("val_dsc_LV", three).direction == "max"
    assert tuning.make_objective("val_iou_LA", three).direction == "max"


def test_reported_metrics_are_the_models():
    from ldseg_tf.models.ldseg import LDSeg

    three = LDSegConfig.preset("small", image_shape=(16, 16, 1), num_classes=3, timesteps=10,
                               class_names=("background", "LV", "LA"))
    names = [m.name for m in LDSeg(three).metrics]
    assert tuning.reported_metrics(three) == names
    assert "dsc_LV" in names and "ceiling_dsc" in names
    fine = LDSegConfig.from_dict({**three.to_dict(), "autoencoder_weight": 1.0})
    assert tuning.reported_metrics(fine) == [m.name for m in LDSeg(fine).metrics]
    assert tuning.make_objective("val_ceiling_dsc", three).direction == "max"


# ------------------------------------------------------------------- tuners
def test_make_tuner_kinds(tmp_path):
    hm = tuning.LDSegHyperModel(CONFIG, tune_learning_rate=True)
    random = tuning.make_tuner("random", hm, tmp_path, "r", max_trials=3)
    assert random.oracle.objective.name == "val_dsc"
    assert random.oracle.objective.direction == "max"
    assert random.oracle.max_trials == 3
    assert {h.name for h in random.oracle.hyperparameters.space} == {
        "gamma", "lambda", "learning_rate"}
    bayes = tuning.make_tuner("bayesian", hm, tmp_path, "b", max_trials=2, objective="val_loss")
    assert type(bayes).__name__ == "BayesianOptimization"
    assert bayes.oracle.objective.direction == "min"
    band = tuning.make_tuner("hyperband", hm, tmp_path, "h", max_trials=4, max_epochs=3)
    assert type(band).__name__ == "Hyperband" and band.oracle.max_trials == 4
    with pytest.raises(ValueError, match="max_epochs"):
        tuning.make_tuner("hyperband", hm, tmp_path, "h2", max_trials=4)
    with pytest.raises(ValueError, match="tuner must be one of"):
        tuning.make_tuner("grid", hm, tmp_path, "g")
    with pytest.raises(ValueError, match="max_trials"):
        tuning.make_tuner("random", hm, tmp_path, "z", max_trials=0)
    with pytest.raises(ValueError, match="not reported"):
        tuning.make_tuner("random", hm, tmp_path, "o", objective="val_acc")


# --------------------------------------------------- bad input, before trials
def _no_trial_ran(out):
    return not os.path.exists(os.path.join(out, "search"))


@pytest.mark.parametrize("extra, match", [
    (["--gamma-range", "3,8"], "paper's best value 2"),
    (["--gamma-range", "8,0.25"], "empty"),
    (["--lambda-range", "0,1"], "> 0"),
    (["--lambda-range", "0.1,inf"], "unbounded"),
    (["--objective", "val_accuracy"], "not reported"),
    (["--objective", "dsc"], "training-time"),
    (["--max-trials", "0"], "max-trials"),
    (["--data", "glas", "--data-dir", "/nonexistent/glas"], "does not exist"),
    (["--tune-latent", "--latent-choices", "2"], "nothing to search"),
    (["--set", "predicton=x0"], "unknown LDSegConfig fields"),
])
def test_cli_bad_input_fails_before_any_trial(tmp_path, capsys, extra, match):
    out = str(tmp_path / "search")
    assert_refused(capsys, TINY + ["--out", out] + extra, match)
    assert not os.path.exists(out)


def test_cli_set_reaches_the_searched_config(tmp_path):
    from ldseg_tf import cli

    args = cli.build_parser().parse_args(
        ["tune"] + TINY + ["--out", str(tmp_path / "s"), "--set", "prediction=x0",
                           "--set", "ema=null"])
    config = cli.build_config(args)
    assert (config.prediction, config.ema, config.image_shape) == ("x0", None, (32, 32, 3))
    import keras_tuner as kt

    hp = kt.HyperParameters()
    trial = tuning.LDSegHyperModel(config).config_for(hp)
    assert (trial.prediction, trial.ema) == ("x0", None)


def test_run_search_checks_before_any_trial(tmp_path, monkeypatch):
    hm = tuning.LDSegHyperModel(CONFIG)
    out = str(tmp_path / "s")
    with pytest.raises(ValueError, match="validation_data"):
        tuning.run_search(hm, [], None, out)
    with pytest.raises(ValueError, match="not reported"):
        tuning.run_search(hm, [], [], out, objective="val_accuracy")
    with pytest.raises(ValueError, match="tuner must be one of"):
        tuning.run_search(hm, [], [], out, tuner="grid")
    # keras-tuner imports tensorboard inside each trial and reports an import
    # error there as a failed trial of a "finished" search: we check first.
    monkeypatch.setitem(sys.modules, "tensorboard.plugins.hparams.api", None)
    with pytest.raises(ImportError, match="tensorboard>=2.21"):
        tuning.run_search(hm, [], [], out, max_trials=1, epochs=1)
    assert not os.path.exists(out)


def test_failed_trials_are_an_error(tmp_path, monkeypatch):
    """A search whose trials all fail (as they would without tensorboard) is
    an error, not an empty success."""
    def broken_fit(self, hp, model, *args, **kwargs):
        raise RuntimeError("simulated failure inside the trial")

    monkeypatch.setattr(tuning.LDSegHyperModel, "fit", broken_fit)
    monkeypatch.setattr(tuning.LDSegHyperModel, "build",
                        lambda self, hp: _tiny_keras_model(self.config_for(hp)))
    hm = tuning.LDSegHyperModel(CONFIG)
    with pytest.raises(tuning.TuningError, match="no trial produced a numeric val_dsc.*simulated"):
        tuning.run_search(hm, [], [], str(tmp_path / "s"), max_trials=2, epochs=1,
                          verbose=0, tensorboard=False)


def _tiny_keras_model(config):
    import keras

    inputs = keras.Input((2,))
    return keras.Model(inputs, keras.layers.Dense(1)(inputs))


# ------------------------------------------------ the search, end to end
def test_cli_search_writes_results_and_resumes(tmp_path, monkeypatch, capsys):
    import keras

    import ldseg_tf.models  # noqa: F401  registers LDSeg for loading

    out = str(tmp_path / "tune")
    # 1. One trial, as `ldseg tune` (no best model yet, to save time).
    assert run_cli(TINY + ["--out", out, "--max-trials", "1", "--no-best-model"]) == 0
    printed = capsys.readouterr().out
    assert "ranked by val_dsc (higher is better)" in printed and "<- best" in printed
    assert "1 new trial(s)" in printed
    with open(os.path.join(out, "best_hparams.json")) as f:
        first = json.load(f)
    assert first["trial_id"] == "0" and first["trials_completed"] == 1
    assert isinstance(first["score"], float) and 0.0 <= first["score"] <= 1.0
    assert 0.25 <= first["gamma"] <= 8.0 and 0.125 <= first["lambda"] <= 8.0
    assert not os.path.exists(os.path.join(out, "best_model.keras"))

    # 2. The next run is interrupted inside its first trial (as by Ctrl-C).
    real_fit = tuning.LDSegHyperModel.fit

    def interrupted_fit(self, hp, model, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tuning.LDSegHyperModel, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        run_cli(TINY + ["--out", out, "--max-trials", "2"])

    # A resumed search must search the same space.
    assert_refused(capsys, TINY + ["--out", out, "--max-trials", "2", "--gamma-range", "1,4"],
                   "other settings.*space")

    # 3. Resuming runs exactly the one missing trial (the interrupted one).
    fits = []

    def counting_fit(self, hp, model, *args, **kwargs):
        fits.append(dict(hp.values))
        return real_fit(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(tuning.LDSegHyperModel, "fit", counting_fit)
    assert run_cli(TINY + ["--out", out, "--max-trials", "2"]) == 0
    printed = capsys.readouterr().out
    assert len(fits) == 1 and "1 new trial(s)" in printed
    with open(os.path.join(out, "trials.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["trial_id"] for r in rows] == ["0", "1"]
    assert all(r["status"] == "COMPLETED" for r in rows)
    scores = [float(r["score"]) for r in rows]  # numbers, not None / empty
    assert all(math.isfinite(s) for s in scores)
    assert float(rows[0]["score"]) == pytest.approx(first["score"])
    assert float(rows[1]["gamma"]) == pytest.approx(fits[0]["gamma"])

    with open(os.path.join(out, "best_hparams.json")) as f:
        best = json.load(f)
    assert best["trials_completed"] == 2 and best["objective"] == "val_dsc"
    assert best["score"] == pytest.approx(max(scores))
    assert {"gamma", "lambda", "score", "config", "model"} <= set(best)

    # 4. The best model is the best trial's, trained, with its loss weights.
    model = keras.models.load_model(os.path.join(out, "best_model.keras"))
    assert model.config.gamma == pytest.approx(best["gamma"])
    assert model.config.lambda_ == pytest.approx(best["lambda"])
    assert LDSegConfig.from_dict(best["config"]) == model.config
    assert int(model.optimizer.iterations) > 0
    # 5. Already complete: a further run starts no trial.
    fits.clear()
    assert run_cli(TINY + ["--out", out, "--max-trials", "2", "--no-best-model"]) == 0
    assert fits == [] and "0 new trial(s)" in capsys.readouterr().out


def test_parser_defaults():
    from ldseg_tf import cli

    args = parse_tune(["--out", "x"])
    assert args.tuner == "random" and args.objective == "val_dsc" and args.data == "synthetic"
    # Without range flags the search space holds the paper's values.
    hm = tuning.LDSegHyperModel(cli.build_config(args), gamma_range=args.gamma_range,
                                lambda_range=args.lambda_range)
    assert hm.gamma_range[0] < tuning.PAPER_GAMMA < hm.gamma_range[1]
    assert hm.lambda_range[0] < tuning.PAPER_LAMBDA < hm.lambda_range[1]
    args = parse_tune(["--out", "x", "--tuner", "hyperband", "--gamma-range", "0.5,4",
                       "--latent-choices", "2,3"])
    assert args.gamma_range == (0.5, 4.0) and args.latent_choices == (2, 3)
    with pytest.raises(SystemExit):
        parse_tune(["--out", "x", "--gamma-range", "1"])
