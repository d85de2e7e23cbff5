"""Hyper-parameter search over the loss weights γ (Dice) and λ (denoiser MSE) with
keras-tuner (`ldseg tune`).

`LDSegHyperModel` builds and compiles an `LDSeg` from a base `LDSegConfig`, with
γ (``gamma``) and λ (``lambda``) as log-scale hyper-parameters whose default ranges
contain the paper's best values (γ = 2, λ = 1), and optionally the learning rate
(``learning_rate``, log scale) and the latent size (``downsamplings``: the latent
is ``image / 2**downsamplings``). Trials are ranked by a *validation* metric that
`LDSeg.evaluate` computes by sampling with ``config.sampling_steps`` DDIM steps --
by default ``val_dsc``, the mean foreground per-case Dice (direction max) -- not
by the training loss.

`run_search` runs a search in a folder and resumes it when the folder already
holds one (keras-tuner's ``overwrite=False``; ``max_trials`` counts all trials,
those of earlier runs included, and a trial that was interrupted is run again).
It writes

    DIR/search/                 keras-tuner's project (trial_*/trial.json, checkpoints)
    DIR/search_settings.json    what was searched (a resumed search must match it)
    DIR/logs/                   TensorBoard logs with the HParams dashboard
    DIR/trials.csv              one row per trial
    DIR/best_hparams.json       {"gamma", "lambda", ..., "score", "config"}
    DIR/best_model.keras        the best trial's model at its best epoch

Every bad input -- an empty or unbounded range, one that leaves out the paper's
value, an objective the model does not report, a missing data folder, no
validation data -- raises a `ValueError` before any trial starts. keras-tuner
turns an exception inside a trial into a failed trial and can end a search in
which no trial really ran; `run_search` raises `TuningError` in that case (and
checks up front that the `tensorboard` package keras-tuner imports is present).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import keras_tuner as kt

from ldseg_tf.config import LDSegConfig
from ldseg_tf.utils import atomic_path, atomic_write_text, write_csv

__all__ = [
    "DEFAULT_GAMMA_RANGE",
    "DEFAULT_LAMBDA_RANGE",
    "DEFAULT_LEARNING_RATE_RANGE",
    "HP_NAMES",
    "PAPER_GAMMA",
    "PAPER_LAMBDA",
    "TUNERS",
    "LDSegHyperModel",
    "TuningError",
    "check_dependencies",
    "config_with_hparams",
    "format_range",
    "make_objective",
    "make_tuner",
    "objective_direction",
    "reported_metrics",
    "run_search",
    "trial_records",
    "trials_table",
    "validation_objectives",
]

#: The paper's best loss weights (Sec. IV-C): gamma = 2, lambda = 1.
PAPER_GAMMA = 2.0
PAPER_LAMBDA = 1.0
DEFAULT_GAMMA_RANGE = (0.25, 8.0)
DEFAULT_LAMBDA_RANGE = (0.125, 8.0)
#: The paper used initial learning rates of 1e-2 and 1e-3.
DEFAULT_LEARNING_RATE_RANGE = (1e-4, 1e-2)
TUNERS = ("random", "bayesian", "hyperband")
#: Hyper-parameter names (the keys of best_hparams.json); the last two are optional.
HP_NAMES = ("gamma", "lambda", "learning_rate", "downsamplings")
PROJECT_NAME = "search"

# Metrics LDSeg reports where a larger value is better (all others: smaller).
_MAXIMIZED = ("dsc", "iou")


class TuningError(RuntimeError):
    """The search ran but produced no usable trial (every trial failed)."""


# ------------------------------------------------------------------ validation
def _check_range(name: str, value, must_contain: Optional[float] = None) -> Tuple[float, float]:
    """`(low, high)` as floats, or a `ValueError` saying what is wrong."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} range must be two numbers (low, high); got {value!r}.") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(
            f"{name} range {low:g}..{high:g} is unbounded: a search range must exclude "
            f"something; give finite bounds such as {format_range(_default_for(name))}.")
    if low <= 0 or high <= 0:
        raise ValueError(
            f"{name} range {low:g}..{high:g}: both bounds must be > 0 (the range is "
            f"searched on a log scale).")
    if low >= high:
        raise ValueError(
            f"{name} range {low:g}..{high:g} is empty: the low bound must be smaller than "
            f"the high bound.")
    if must_contain is not None and not low <= must_contain <= high:
        raise ValueError(
            f"{name} range {low:g}..{high:g} leaves out the paper's best value "
            f"{must_contain:g}; widen it so that the search can find it.")
    return low, high


def _default_for(name):
    return {"gamma": DEFAULT_GAMMA_RANGE, "lambda": DEFAULT_LAMBDA_RANGE}.get(
        name, DEFAULT_LEARNING_RATE_RANGE)


def format_range(pair) -> str:
    """(0.25, 8.0) -> "0.25,8" (the form `--gamma-range` takes)."""
    return f"{pair[0]:g},{pair[1]:g}"


def reported_metrics(config: LDSegConfig) -> List[str]:
    """Names of the metrics `LDSeg(config)` reports from `fit`/`evaluate`
    (`[m.name for m in LDSeg(config).metrics]`, without building a model)."""
    from ldseg_tf.models.ldseg import metric_names

    return metric_names(config)


def validation_objectives(config: LDSegConfig) -> List[str]:
    """The objectives a search can rank by: `val_<metric>` for every metric the
    model reports on the validation data (where DSC/IoU come from DDIM sampling
    with `config.sampling_steps` steps)."""
    return [f"val_{name}" for name in reported_metrics(config)]


def objective_direction(name: str) -> str:
    """"max" for Dice/IoU objectives, "min" for loss terms."""
    metric = name[4:] if name.startswith("val_") else name
    return "max" if metric.split("_")[0] in _MAXIMIZED or metric == "ceiling_dsc" else "min"


def make_objective(name: str, config: LDSegConfig) -> "kt.Objective":
    """A `keras_tuner.Objective` for `name`, after checking that the model reports it."""
    valid = validation_objectives(config)
    if name not in valid:
        hint = ""
        if f"val_{name}" in valid:
            hint = (f" {name!r} is the training-time value (one denoising step on the "
                    f"training batch); rank by the validation value 'val_{name}'.")
        raise ValueError(
            f"objective {name!r} is not reported by this model in validation.{hint} "
            f"Choose one of: {', '.join(valid)}.")
    return kt.Objective(name, direction=objective_direction(name))


# ------------------------------------------------------------------ configs
def _fit_widths(widths: Sequence[int], n: int) -> Tuple[int, ...]:
    widths = tuple(widths)
    return widths[:n] if len(widths) >= n else widths + (widths[-1],) * (n - len(widths))


def config_with_hparams(base: LDSegConfig, values: Dict[str, Any]) -> LDSegConfig:
    """`base` with the tuned values applied: `gamma`, `lambda` (or `lambda_`),
    `learning_rate`, `downsamplings` (other keys are ignored). A new latent size
    keeps the base widths, truncated or extended (repeating the deepest) to the
    new number of levels."""
    d = base.to_dict()
    if "gamma" in values:
        d["gamma"] = float(values["gamma"])
    if "lambda" in values or "lambda_" in values:
        d["lambda_"] = float(values.get("lambda", values.get("lambda_")))
    if "learning_rate" in values:
        d["learning_rate"] = float(values["learning_rate"])
    if "downsamplings" in values and int(values["downsamplings"]) != base.downsamplings:
        n = int(values["downsamplings"])
        d["downsamplings"] = n
        d["label_encoder_widths"] = (_fit_widths(base.label_encoder_widths[:-1], n)
                                     + (base.label_encoder_widths[-1],))
        d["image_encoder_widths"] = _fit_widths(base.image_encoder_widths, n)
        d["decoder_widths"] = tuple(reversed(_fit_widths(tuple(reversed(base.decoder_widths)),
                                                         n)))
        d["image_encoder_attention_levels"] = min(base.image_encoder_attention_levels, n)
    return LDSegConfig.from_dict(d)


def _valid_downsamplings(base: LDSegConfig, candidates) -> List[int]:
    valid = []
    for n in candidates:
        try:
            config_with_hparams(base, {"downsamplings": n})
        except ValueError:
            continue
        valid.append(int(n))
    return valid


# ------------------------------------------------------------------ hypermodel
class LDSegHyperModel(kt.HyperModel):
    """Builds and compiles `LDSeg` models whose loss weights are hyper-parameters.

    Hyper-parameters (the names are the keys of `best_hparams.json`):

    - ``gamma``: Dice weight γ, log scale in `gamma_range` (must contain 2);
    - ``lambda``: denoiser-MSE weight λ, log scale in `lambda_range` (must contain 1);
    - ``learning_rate`` (if `tune_learning_rate`): initial learning rate of the
      default optimizer, log scale in `learning_rate_range`;
    - ``downsamplings`` (if `tune_latent`): latent size, a choice among
      `latent_choices` (default: the base value and its valid neighbours +-1).

    Everything else comes from `base_config`. Ranges are checked here, before any
    trial.
    """

    def __init__(
        self,
        base_config: LDSegConfig,
        tune_learning_rate: bool = False,
        tune_latent: bool = False,
        gamma_range=DEFAULT_GAMMA_RANGE,
        lambda_range=DEFAULT_LAMBDA_RANGE,
        learning_rate_range=DEFAULT_LEARNING_RATE_RANGE,
        latent_choices: Optional[Sequence[int]] = None,
        name: Optional[str] = "ldseg",
    ):
        super().__init__(name=name, tunable=True)
        if isinstance(base_config, dict):
            base_config = LDSegConfig.from_dict(base_config)
        if not isinstance(base_config, LDSegConfig):
            raise TypeError(f"base_config must be an LDSegConfig; got "
                            f"{type(base_config).__name__}.")
        self.base_config = base_config
        self.gamma_range = _check_range("gamma", gamma_range, PAPER_GAMMA)
        self.lambda_range = _check_range("lambda", lambda_range, PAPER_LAMBDA)
        self.tune_learning_rate = bool(tune_learning_rate)
        self.learning_rate_range = (_check_range("learning_rate", learning_rate_range)
                                    if tune_learning_rate else None)
        self.tune_latent = bool(tune_latent)
        self.latent_choices = None
        if tune_latent:
            if latent_choices is None:
                d = base_config.downsamplings
                choices = _valid_downsamplings(base_config, (d - 1, d, d + 1))
            else:
                choices = sorted({int(n) for n in latent_choices})
                bad = sorted(set(choices) - set(_valid_downsamplings(base_config, choices)))
                if bad:
                    raise ValueError(
                        f"latent choices {bad} (downsamplings) are not valid for image_shape "
                        f"{base_config.image_shape} and denoiser_widths "
                        f"{base_config.denoiser_widths}.")
            if len(choices) < 2:
                raise ValueError(
                    f"latent size choices {choices} leave nothing to search; give at least "
                    f"two valid numbers of downsamplings.")
            self.latent_choices = tuple(choices)
        self._declare_only = False

    # -------------------------------------------------------------- space
    def search_space(self) -> Dict[str, Any]:
        """A JSON-able description of the searched space."""
        space = {"gamma": {"range": list(self.gamma_range), "sampling": "log"},
                 "lambda": {"range": list(self.lambda_range), "sampling": "log"}}
        if self.tune_learning_rate:
            space["learning_rate"] = {"range": list(self.learning_rate_range),
                                      "sampling": "log"}
        if self.tune_latent:
            space["downsamplings"] = {"choices": list(self.latent_choices)}
        return space

    def declare_hyperparameters(self, hp) -> Dict[str, Any]:
        """Declares the hyper-parameters in `hp` and returns their values."""
        values = {
            "gamma": hp.Float("gamma", *self.gamma_range, sampling="log", default=PAPER_GAMMA),
            "lambda": hp.Float("lambda", *self.lambda_range, sampling="log",
                               default=PAPER_LAMBDA),
        }
        if self.tune_learning_rate:
            lo, hi = self.learning_rate_range
            default = min(max(self.base_config.learning_rate, lo), hi)
            values["learning_rate"] = hp.Float("learning_rate", lo, hi, sampling="log",
                                               default=default)
        if self.tune_latent:
            d = self.base_config.downsamplings
            values["downsamplings"] = hp.Choice(
                "downsamplings", list(self.latent_choices),
                default=d if d in self.latent_choices else self.latent_choices[0])
        return values

    def config_for(self, hp) -> LDSegConfig:
        """The `LDSegConfig` of a trial's hyper-parameters."""
        return config_with_hparams(self.base_config, self.declare_hyperparameters(hp))

    def build(self, hp):
        config = self.config_for(hp)
        if self._declare_only:
            # keras-tuner builds once at tuner creation only to discover the space.
            return None
        from ldseg_tf.models.ldseg import LDSeg

        model = LDSeg(config)
        model.compile()
        return model

    def fit(self, hp, model, *args, **kwargs):
        if kwargs.get("validation_data") is None:
            raise ValueError("LDSeg tuning needs validation_data: the objective is computed "
                             "by sampling on the validation set.")
        if args and hasattr(args[0], "element_spec"):
            # A tf.data pipeline shuffles itself; Keras warns about shuffle=True.
            kwargs.setdefault("shuffle", False)
        return model.fit(*args, **kwargs)

    @contextlib.contextmanager
    def declaring_only(self):
        """Within this context `build` only declares the hyper-parameters (no
        model is constructed); `make_tuner` uses it while keras-tuner explores
        the space."""
        self._declare_only = True
        try:
            yield
        finally:
            self._declare_only = False


# ------------------------------------------------------------------ tuners
def make_tuner(
    kind: str,
    hypermodel: LDSegHyperModel,
    directory: str,
    project_name: str = PROJECT_NAME,
    max_trials: int = 10,
    objective: str = "val_dsc",
    seed: Optional[int] = 0,
    overwrite: bool = False,
    max_epochs: Optional[int] = None,
    executions_per_trial: int = 1,
    **kwargs,
):
    """A keras-tuner tuner for `hypermodel` in `directory/project_name`.

    Args:
        kind: "random" (`RandomSearch`), "bayesian" (`BayesianOptimization`) or
            "hyperband" (`Hyperband`, whose epoch budget per trial is `max_epochs`;
            `max_trials` caps its number of trials).
        objective: a validation metric the model reports (see
            `validation_objectives`); direction max for DSC/IoU, min for losses.
        max_trials: the total number of trials of the search, counting those of
            an earlier run in the same folder.
        overwrite: start afresh; otherwise an existing project is resumed.
    """
    if kind not in TUNERS:
        raise ValueError(f"tuner must be one of {TUNERS}; got {kind!r}.")
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ValueError(f"max_trials must be an integer >= 1; got {max_trials!r}.")
    obj = make_objective(objective, hypermodel.base_config)
    common = dict(objective=obj, seed=seed, directory=os.fspath(directory),
                  project_name=project_name, overwrite=overwrite,
                  executions_per_trial=executions_per_trial, **kwargs)
    with hypermodel.declaring_only():
        if kind == "random":
            tuner = kt.RandomSearch(hypermodel, max_trials=max_trials, **common)
        elif kind == "bayesian":
            tuner = kt.BayesianOptimization(hypermodel, max_trials=max_trials, **common)
        else:
            if max_epochs is None or max_epochs < 1:
                raise ValueError(f"the hyperband tuner needs max_epochs >= 1; got {max_epochs}.")
            tuner = kt.Hyperband(hypermodel, max_epochs=int(max_epochs), factor=3, **common)
            # Hyperband sizes its brackets from max_epochs; cap the trial count too.
            tuner.oracle.max_trials = max_trials
    return tuner


def check_dependencies(kind: str) -> None:
    """ImportError (with what to install) when tuner `kind` or keras-tuner's
    TensorBoard logging cannot run; checked before any trial."""
    _check_tuner_dependencies(kind)
    _check_tensorboard()


def _check_tuner_dependencies(kind: str) -> None:
    if kind == "bayesian":
        try:
            importlib.import_module("scipy.optimize")
            importlib.import_module("sklearn.gaussian_process")
        except ImportError as err:
            raise ImportError(
                f"the bayesian tuner needs scipy and scikit-learn ({err}); install "
                f"'scikit-learn>=1.3,<2' (or keras-tuner[bayesian]).") from None


def _check_tensorboard() -> None:
    # keras-tuner imports this inside every trial and turns the ImportError into
    # failed trials, ending a "search" in which nothing ran.
    try:
        importlib.import_module("tensorboard.plugins.hparams.api")
    except ImportError as err:
        raise ImportError(
            f"keras-tuner needs the tensorboard package ({err}); install "
            f"'tensorboard>=2.21,<2.22' (the version matching TensorFlow 2.21).") from None


# ------------------------------------------------------------------ results
def _status(trial) -> str:
    return str(getattr(trial.status, "value", trial.status))


def trial_records(tuner) -> List[Dict[str, Any]]:
    """One dict per trial, in trial order: `trial_id`, `status`, the
    hyper-parameters, `score` (the objective's best value, or None), `epoch`
    (1-based epoch of that value) and `error` (the last line of a failure)."""
    records = []
    for trial_id, trial in sorted(tuner.oracle.trials.items(),
                                  key=lambda kv: (len(kv[0]), kv[0])):
        values = trial.hyperparameters.values
        rec = {"trial_id": trial_id, "status": _status(trial)}
        for name in HP_NAMES:
            if name in values:
                rec[name] = values[name]
        score = trial.score
        rec["score"] = None if score is None else float(score)
        # best_step counts from the start of the trial's fit (Hyperband may
        # continue an earlier trial from its tuner/initial_epoch).
        start = int(values.get("tuner/initial_epoch", 0) or 0)
        rec["epoch"] = (start + int(trial.best_step) + 1) if score is not None else None
        message = (trial.message or "").strip()
        rec["error"] = message.splitlines()[-1] if message else ""
        records.append(rec)
    return records


def _is_good(rec) -> bool:
    return (rec["status"] == "COMPLETED" and rec["score"] is not None
            and math.isfinite(rec["score"]))


def _best_record(records, direction):
    good = [r for r in records if _is_good(r)]
    if not good:
        return None
    return (max if direction == "max" else min)(good, key=lambda r: r["score"])


def trials_table(tuner) -> str:
    """A plain-text table of all trials, best first (failed trials last)."""
    objective = tuner.oracle.objective
    records = trial_records(tuner)
    hp_cols = [n for n in HP_NAMES if any(n in r for r in records)]
    best = _best_record(records, objective.direction)
    sign = -1 if objective.direction == "max" else 1
    records = sorted(records, key=lambda r: (0, sign * r["score"]) if _is_good(r)
                     else (1, 0.0))
    header = ["trial", "status"] + hp_cols + [objective.name, "epoch", ""]
    rows = []
    for r in records:
        row = [r["trial_id"], r["status"]]
        for n in hp_cols:
            v = r.get(n)
            row.append("" if v is None else (str(v) if isinstance(v, int) else f"{v:.4g}"))
        row.append("" if r["score"] is None else f"{r['score']:.4f}")
        row.append("" if r["epoch"] is None else str(r["epoch"]))
        note = "<- best" if best is not None and r is best else r["error"][:60]
        row.append(note)
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip()
             for line in [header] + rows]
    direction = "higher" if objective.direction == "max" else "lower"
    title = f"{len(records)} trial(s), ranked by {objective.name} ({direction} is better)"
    return "\n".join([title] + lines)


def _write_records_csv(path: str, records) -> None:
    keys = ["trial_id", "status"] + [n for n in HP_NAMES if any(n in r for r in records)] + [
        "score", "epoch", "error"]
    write_csv(path, records, keys)


# ------------------------------------------------------------------ search
def _check_settings(path: str, settings: Dict[str, Any], resuming: bool) -> None:
    """A resumed search must search the same thing: compares with the stored
    settings, and writes them."""
    if resuming and os.path.exists(path):
        try:
            with open(path) as f:
                stored = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: unreadable search settings ({err}); pass "
                             f"overwrite=True (--overwrite) to start afresh.") from None
        current = json.loads(json.dumps(settings))
        diff = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
        if diff:
            raise ValueError(
                f"{os.path.dirname(path)} holds a search with other settings ({', '.join(diff)} "
                f"differ); resume it with the same settings, choose another output folder, "
                f"or pass overwrite=True (--overwrite) to discard it.")
        return
    atomic_write_text(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")


def run_search(
    hypermodel: LDSegHyperModel,
    train_data,
    validation_data,
    out_dir: str,
    *,
    tuner: str = "random",
    max_trials: int = 10,
    epochs: int = 10,
    objective: str = "val_dsc",
    seed: Optional[int] = 0,
    overwrite: bool = False,
    verbose: int = 1,
    callbacks: Optional[list] = None,
    steps_per_epoch: Optional[int] = None,
    save_best_model: bool = True,
    tensorboard: bool = True,
    settings: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Runs (or resumes) a search in `out_dir` and writes its results.

    Args:
        hypermodel: an `LDSegHyperModel`.
        train_data, validation_data: batched `(images, masks)` datasets (e.g. from
            `ldseg_tf.data.make_dataset`); the objective is computed on
            `validation_data`.
        out_dir: the search folder (see the module docstring). If it holds a
            search with the same settings, that search is resumed.
        tuner: "random", "bayesian" or "hyperband".
        max_trials: total trials, counting those already in `out_dir`.
        epochs: training epochs per trial (Hyperband: the most per trial).
        objective: the validation metric to rank trials by (default "val_dsc",
            maximized).
        overwrite: discard a search already in `out_dir`.
        callbacks: extra Keras callbacks for every trial (must be deep-copyable).
        save_best_model: write `best_model.keras` (and return it as "model").
        tensorboard: log every trial to `out_dir/logs` (with HParams).
        settings: extra JSON-able values that a resumed search must match (e.g.
            the data source).

    Returns:
        dict with `best_hparams` (also written to `best_hparams.json`), `records`
        (`trial_records`), `new_trials` (ids of trials run by this call), `table`
        (`trials_table`), `tuner`, `model` (the best model or None) and the paths
        `best_hparams_path`, `best_model_path`, `trials_csv_path`.

    Raises:
        ValueError: bad arguments (before any trial runs).
        ImportError: tensorboard is missing (before any trial runs).
        TuningError: no trial of the search produced a numeric objective value.
    """
    _check_search_arguments(hypermodel, validation_data, tuner, max_trials, epochs, objective)
    out_dir = os.path.abspath(os.fspath(out_dir))
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"{out_dir} exists and is not a folder.")
    os.makedirs(out_dir, exist_ok=True)
    search_settings = {"tuner": tuner, "objective": objective, "epochs": epochs,
                       "space": hypermodel.search_space(),
                       "base_config": hypermodel.base_config.to_dict(), "seed": seed,
                       **(settings or {})}
    project = os.path.join(out_dir, PROJECT_NAME)
    resuming = not overwrite and any(
        os.path.exists(os.path.join(project, f)) for f in ("oracle.json", "tuner0.json"))
    # Before the tuner reloads the project: another tuner kind could not load it.
    _check_settings(os.path.join(out_dir, "search_settings.json"), search_settings, resuming)
    kt_tuner = make_tuner(tuner, hypermodel, out_dir, PROJECT_NAME, max_trials=max_trials,
                          objective=objective, seed=seed, overwrite=overwrite, max_epochs=epochs)

    before = {tid for tid, t in kt_tuner.oracle.trials.items() if _status(t) != "RUNNING"}
    trial_callbacks = list(callbacks or [])
    if tensorboard:
        import keras

        trial_callbacks.append(keras.callbacks.TensorBoard(os.path.join(out_dir, "logs")))
    kt_tuner.search(train_data, validation_data=validation_data, epochs=epochs,
                    steps_per_epoch=steps_per_epoch, callbacks=trial_callbacks,
                    verbose=verbose)

    records = trial_records(kt_tuner)
    new_trials = [r["trial_id"] for r in records if r["trial_id"] not in before]
    _write_records_csv(os.path.join(out_dir, "trials.csv"), records)
    best = _best_record(records, kt_tuner.oracle.objective.direction)
    if best is None:
        errors = [f"trial {r['trial_id']}: {r['error'] or r['status']}" for r in records]
        raise TuningError(
            f"no trial produced a numeric {objective} ({len(records)} trial(s)); "
            f"{'; '.join(errors[:3]) or 'no trial ran'}. Details: "
            f"{os.path.join(out_dir, PROJECT_NAME)}/trial_*/trial.json")
    paths = {"best_hparams_path": os.path.join(out_dir, "best_hparams.json"),
             "best_model_path": os.path.join(out_dir, "best_model.keras"),
             "trials_csv_path": os.path.join(out_dir, "trials.csv")}
    best_hparams, model = _write_best(kt_tuner, hypermodel, records, best, tuner, paths,
                                      save_best_model)
    return {"best_hparams": best_hparams, "records": records, "new_trials": new_trials,
            "table": trials_table(kt_tuner), "tuner": kt_tuner, "model": model, **paths}


def _check_search_arguments(hypermodel, validation_data, tuner, max_trials, epochs, objective):
    """`run_search`'s checks before anything is written."""
    if not isinstance(hypermodel, LDSegHyperModel):
        raise TypeError(f"hypermodel must be an LDSegHyperModel; got "
                        f"{type(hypermodel).__name__}.")
    if validation_data is None:
        raise ValueError("a search needs validation_data: the objective "
                         f"{objective!r} is computed by sampling on the validation set.")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1; got {epochs!r}.")
    if tuner not in TUNERS:
        raise ValueError(f"tuner must be one of {TUNERS}; got {tuner!r}.")
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise ValueError(f"max_trials must be an integer >= 1; got {max_trials!r}.")
    make_objective(objective, hypermodel.base_config)  # validates the name
    check_dependencies(tuner)


def _write_best(kt_tuner, hypermodel, records, best, tuner, paths, save_best_model):
    """Writes `best_hparams.json` (and `best_model.keras`); returns
    `(best_hparams, the best model or None)`."""
    trial = kt_tuner.oracle.trials[best["trial_id"]]
    values = {k: v for k, v in trial.hyperparameters.values.items() if k in HP_NAMES}
    best_config = config_with_hparams(hypermodel.base_config, values)
    best_hparams = dict(values)
    best_hparams.update({
        "objective": kt_tuner.oracle.objective.name,
        "direction": kt_tuner.oracle.objective.direction,
        "score": best["score"],
        "epoch": best["epoch"],
        "trial_id": best["trial_id"],
        "trials_completed": sum(_is_good(r) for r in records),
        "trials": len(records),
        "tuner": tuner,
        "config": best_config.to_dict(),
    })
    model = None
    if save_best_model:
        # The checkpoint of the best epoch (weights and optimizer state).
        model = kt_tuner.load_model(trial)
        with atomic_path(paths["best_model_path"]) as tmp:
            model.save(tmp)
        best_hparams["model"] = os.path.basename(paths["best_model_path"])
    atomic_write_text(paths["best_hparams_path"], json.dumps(best_hparams, indent=2) + "\n")
    return best_hparams, model
