"""Training runs on disk: checkpoints that survive a crash, resume, history.

A run directory holds

    config.json              the LDSegConfig
    checkpoints/last.keras   model + optimizer after the last finished epoch
    state.json               {"epoch": n, "history": {...}} for that checkpoint
    history.csv              one row per finished epoch (same source as state.json)
    logs/                    TensorBoard event files
    model.keras              the final model, written when training ends

Every file is written to a temporary sibling and renamed, so a run killed at any
moment (even by SIGKILL) leaves the previous consistent checkpoint behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from typing import Optional

import keras

from ldseg_tf.config import LDSegConfig
from ldseg_tf.models.ldseg import LDSeg
from ldseg_tf.utils import atomic_path, atomic_write_text, write_csv


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


def run_paths(run_dir: str) -> dict:
    return {
        "config": os.path.join(run_dir, "config.json"),
        "checkpoint": os.path.join(run_dir, "checkpoints", "last.keras"),
        "state": os.path.join(run_dir, "state.json"),
        "history": os.path.join(run_dir, "history.csv"),
        "logs": os.path.join(run_dir, "logs"),
        "model": os.path.join(run_dir, "model.keras"),
    }


def _write_history_csv(path: str, history: dict) -> None:
    keys = sorted(history)
    n = max((len(v) for v in history.values()), default=0)
    rows = [{"epoch": i + 1, **{k: history[k][i] for k in keys if i < len(history[k])}}
            for i in range(n)]
    write_csv(path, rows, ["epoch"] + keys)


class RunCheckpoint(keras.callbacks.Callback):
    """Saves model, optimizer and history at the end of every epoch whose logs
    are all finite, atomically; stops training at the first non-finite loss and
    leaves the last good checkpoint untouched."""

    def __init__(self, run_dir: str, history: Optional[dict] = None):
        super().__init__()
        self.paths = run_paths(run_dir)
        self.history = {k: list(v) for k, v in (history or {}).items()}
        self.failure: Optional[str] = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failure = f"non-finite loss ({loss}) at epoch {self._epoch + 1}, batch {batch + 1}"
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        if self.failure or not all(math.isfinite(v) for v in logs.values()):
            self.failure = self.failure or f"non-finite metrics at epoch {epoch + 1}: {logs}"
            self.model.stop_training = True
            return
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)
        with atomic_path(self.paths["checkpoint"]) as tmp:
            self.model.save(tmp)
        # The state is written after the checkpoint: if the process dies in
        # between, the resumed run repeats one epoch instead of skipping one.
        state = {"epoch": epoch + 1, "history": self.history, "time": time.time()}
        atomic_write_text(self.paths["state"], json.dumps(state, indent=1))
        _write_history_csv(self.paths["history"], self.history)


class TimeLimit(keras.callbacks.Callback):
    """Stops training once `seconds` have passed: at the end of that epoch, or
    at the end of that batch when `every_batch` (a budget shorter than an
    epoch)."""

    def __init__(self, seconds: float, every_batch: bool = False):
        super().__init__()
        self.seconds = seconds
        self.every_batch = every_batch

    def on_train_begin(self, logs=None):
        self._start = time.time()

    def _check(self):
        if time.time() - self._start >= self.seconds:
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        if self.every_batch:
            self._check()

    def on_epoch_end(self, epoch, logs=None):
        self._check()


def _is_tf_dataset(data) -> bool:
    """A `tf.data.Dataset` or a distributed one (which Keras does not shuffle)."""
    import tensorflow as tf

    return isinstance(data, (tf.data.Dataset, tf.distribute.DistributedDataset))


def load_state(run_dir: str) -> dict:
    path = run_paths(run_dir)["state"]
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"epoch": 0, "history": {}}
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: corrupt run state ({e}).") from e


def train(
    config: LDSegConfig,
    train_ds,
    run_dir: str,
    *,
    epochs: int,
    val_ds=None,
    resume: bool = False,
    steps_per_epoch: Optional[int] = None,
    time_limit: Optional[float] = None,
    optimizer=None,
    strategy=None,
    verbose: int = 1,
    jit_compile: bool = False,
) -> LDSeg:
    """Trains an LDSeg model in `run_dir` and returns it.

    Args:
        config: the model's configuration (written to `config.json`).
        train_ds, val_ds: `tf.data.Dataset`s of `(images, masks)` batches.
        run_dir: the run directory (created).
        epochs: total number of epochs, counting those of a resumed run.
        resume: continue from `checkpoints/last.keras`; the stored config must
            equal `config`.
        steps_per_epoch: batches per epoch for repeated datasets.
        time_limit: stop after the epoch in which this many seconds have passed.
        optimizer: defaults to `default_optimizer(config)`.
        strategy: a `tf.distribute.Strategy` to build and train under.
        jit_compile: compile the train step with XLA.

    Raises:
        FileExistsError: `run_dir` already holds a run and `resume` is False.
        NonFiniteLossError: training diverged; the last good checkpoint is kept.
    """
    paths = run_paths(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    state = {"epoch": 0, "history": {}}
    if resume and os.path.exists(paths["checkpoint"]):
        stored = LDSegConfig.from_json(paths["config"])
        if stored != config:
            raise ValueError(
                f"{paths['config']}: the run was started with another config; resume it "
                f"with that config (or start a new run directory)."
            )
        state = load_state(run_dir)
        with scope:
            model = keras.models.load_model(paths["checkpoint"])
    else:
        if os.path.exists(paths["checkpoint"]) or os.path.exists(paths["model"]):
            raise FileExistsError(
                f"{run_dir} already holds a run; pass resume=True (--resume) to continue it "
                f"or choose another directory."
            )
        with scope:
            model = LDSeg(config)
            model.compile(optimizer=optimizer, jit_compile=jit_compile)
        config.to_json(paths["config"])

    checkpoint = RunCheckpoint(run_dir, state.get("history"))
    callbacks = [checkpoint, keras.callbacks.TensorBoard(paths["logs"])]
    if time_limit is not None:
        callbacks.append(TimeLimit(time_limit))
    if state["epoch"] < epochs:
        # A tf.data pipeline shuffles itself (`make_dataset(shuffle=True)`); Keras
        # ignores `shuffle` for it and warns about its default `shuffle=True`.
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=state["epoch"],
                  steps_per_epoch=steps_per_epoch, callbacks=callbacks, verbose=verbose,
                  shuffle=not _is_tf_dataset(train_ds))
    if checkpoint.failure:
        raise NonFiniteLossError(
            f"training stopped: {checkpoint.failure}. The last good checkpoint "
            f"({paths['checkpoint']}, epoch {load_state(run_dir)['epoch']}) is kept; lower the "
            f"learning rate or check the data, then resume with --resume."
        )
    with atomic_path(paths["model"]) as tmp:
        model.save(tmp)
    return model

