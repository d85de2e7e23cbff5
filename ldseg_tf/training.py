"""Training runs on disk: checkpoints that survive a crash, resume, history.

A run directory holds

    config.json              the LDSegConfig
    checkpoints/last.keras   model + optimizer after the last finished epoch
    state.json               {"epoch": n, "history": {...}} for that checkpoint
    history.csv              one row per finished epoch (same source as state.json)
    logs/                    TensorBoard event files
    model.keras              the final model, written when training ends

Every file is written to a temporary sibling and renamed, so a run killed at any
moment (even by SIGKILL) leaves the previous consistent checkpoint behind; the
next start removes such temporaries (`.tmp-*`).

Nothing is lost by mistake: a directory that holds a run is refused unless the
run is resumed (`resume=True`) or discarded (`overwrite=True`); a resume whose
checkpoint is gone is refused, saying what is missing; and `.lock` (holding the
PID of the process that trains there) keeps a second process out while the
first runs. A lock whose process is gone (killed) is stale and taken over.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import time
from typing import Optional

import keras

from ldseg_tf.config import LDSegConfig
from ldseg_tf.errors import UserError
from ldseg_tf.models.ldseg import LDSeg
from ldseg_tf.models.loading import load_model
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
        "lock": os.path.join(run_dir, ".lock"),
    }


#: The files of a run that `overwrite=True` removes (nothing else in the folder).
_RUN_FILES = ("config", "checkpoint", "state", "history", "logs", "model")


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
    """`{"epoch": n, "history": {...}}` of the last finished epoch (epoch 0 when
    none); a `UserError` naming `state.json` when it is not such an object."""
    path = run_paths(run_dir)["state"]
    try:
        with open(path) as f:
            state = json.load(f)
    except FileNotFoundError:
        return {"epoch": 0, "history": {}}
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(path, "the JSON run state written by `ldseg train`",
                        f"unreadable JSON ({e})") from e
    if (not isinstance(state, dict) or not isinstance(state.get("epoch"), int)
            or state["epoch"] < 0 or not isinstance(state.get("history", {}), dict)):
        raise UserError(path, 'a run state {"epoch": N, "history": {...}}',
                        repr(state)[:80])
    return state


class RunLock:
    """`with RunLock(run_dir):` keeps a second process out of `run_dir`.

    The lock is the file `.lock`, created exclusively and holding
    ``"HOST PID"``; it is removed on exit. A lock left by a process that no
    longer runs on this host (killed, crashed) is stale and taken over; a lock
    of a live process, or of another host (its process cannot be checked),
    raises `UserError`.
    """

    def __init__(self, run_dir: str):
        self.path = run_paths(run_dir)["lock"]
        self.owner = f"{socket.gethostname()} {os.getpid()}"

    def __enter__(self):
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._check_stale()
                continue
            except OSError as e:
                raise UserError(os.path.dirname(self.path), "a writable run directory",
                                f"{type(e).__name__}: {e.strerror}") from e
            with os.fdopen(fd, "w") as f:
                f.write(self.owner + "\n")
            return self
        raise UserError(self.path, "to take the run lock", "another process took it first")

    def _check_stale(self) -> None:
        try:
            with open(self.path) as f:
                host, pid = f.read().split()
            pid = int(pid)
        except FileNotFoundError:
            return  # released meanwhile
        except (OSError, ValueError):
            # Unreadable: stale, unless it was created a moment ago (its owner
            # may not have written its PID yet).
            with contextlib.suppress(OSError):
                if time.time() - os.path.getmtime(self.path) < 10:
                    raise UserError(os.path.dirname(self.path),
                                    "a run directory no other process uses",
                                    f"a lock being taken ({self.path})") from None
            host, pid = socket.gethostname(), None
        if pid is not None and (host != socket.gethostname() or _process_alive(pid)):
            raise UserError(os.path.dirname(self.path), "a run directory no other process uses",
                            f"it is locked by process {pid} on {host} ({self.path})",
                            "Wait for that run to end or use another --out (remove the lock "
                            "only if that process is not an ldseg run).")
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)

    def __exit__(self, *exc):
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)
        return False


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _clean_temporaries(run_dir: str) -> None:
    """Removes the `.tmp-*` files and folders a killed save left (the run is
    locked by us, so nobody else is writing them)."""
    for folder in (run_dir, os.path.dirname(run_paths(run_dir)["checkpoint"])):
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.startswith(".tmp-"):
                    target = os.path.join(folder, name)
                    if os.path.isdir(target):
                        shutil.rmtree(target, ignore_errors=True)
                    else:
                        with contextlib.suppress(OSError):
                            os.remove(target)


def _resume_source(run_dir: str, resume: bool, overwrite: bool) -> Optional[str]:
    """The file to resume from, or None to start a new run; refuses to lose a run."""
    paths = run_paths(run_dir)
    trained = [k for k in ("checkpoint", "model", "state", "history") if os.path.exists(paths[k])]
    if overwrite:
        for key in _RUN_FILES:
            target = paths[key]
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)
        return None
    if not resume:
        if trained or os.path.exists(paths["config"]):
            found = ", ".join(os.path.basename(paths[k]) for k in trained) or "config.json"
            raise UserError(run_dir, "an empty or new run directory", f"a run ({found})",
                            "Pass --resume to continue it, --overwrite to discard it, or "
                            "choose another --out.")
        return None
    if not trained:
        return None  # nothing trained yet: resuming is starting
    for key in ("checkpoint", "model"):
        if os.path.exists(paths[key]):
            if not os.path.exists(paths["state"]):
                raise UserError(paths["state"], "the run state next to the checkpoint",
                                "a missing file", "Start over with --overwrite or a new --out.")
            return paths[key]
    raise UserError(run_dir, "a checkpoint to resume from (checkpoints/last.keras or "
                             "model.keras)", "neither exists",
                    "Start over with --overwrite (discards this run) or a new --out.")


def _load_resumed(source: str, run_dir: str, config: LDSegConfig, scope):
    """`(model, state)` of the run in `run_dir`, from `source`."""
    path = run_paths(run_dir)["config"]
    try:
        stored = LDSegConfig.from_json(path)
    except ValueError as e:
        raise UserError.wrap(e, path) from e
    if stored != config:
        changed = sorted(k for k, v in config.to_dict().items() if stored.to_dict().get(k) != v)
        raise UserError(path, "the config the run was started with",
                        f"a different one (fields {', '.join(changed)})",
                        "Resume with that config, or start a new --out.")
    state = load_state(run_dir)
    model = load_model(source, "a .keras checkpoint saved by `ldseg train`",
                       "Start over with --overwrite or a new --out.", scope)
    return model, state


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
    overwrite: bool = False,
) -> LDSeg:
    """Trains an LDSeg model in `run_dir` and returns it.

    Args:
        config: the model's configuration (written to `config.json`).
        train_ds, val_ds: `tf.data.Dataset`s of `(images, masks)` batches.
        run_dir: the run directory (created).
        epochs: total number of epochs, counting those of a resumed run.
        resume: continue from `checkpoints/last.keras` (or `model.keras` of a
            finished run, to train more epochs); the stored config must equal
            `config`. In an empty or new `run_dir` this starts a new run.
        overwrite: discard the run in `run_dir` (its files only) and start anew.
        steps_per_epoch: batches per epoch for repeated datasets.
        time_limit: stop after the epoch in which this many seconds have passed.
        optimizer: defaults to `default_optimizer(config)`.
        strategy: a `tf.distribute.Strategy` to build and train under.
        jit_compile: compile the train step with XLA.

    Raises:
        UserError: `run_dir` already holds a run and neither `resume` nor
            `overwrite` is set; `resume` but its checkpoint or state is missing
            or unreadable, or the stored config differs; `run_dir` is locked
            by another live process or cannot be written.
        NonFiniteLossError: training diverged; the last good checkpoint (if an
            epoch finished) is kept.
    """
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise UserError(run_dir, "a run directory", "a file")
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as e:
        raise UserError(run_dir, "a run directory that can be created",
                        f"{type(e).__name__}: {e.strerror}") from e
    with RunLock(run_dir):
        _clean_temporaries(run_dir)
        source = _resume_source(run_dir, resume, overwrite)
        return _train_locked(config, train_ds, run_dir, source, epochs=epochs, val_ds=val_ds,
                             steps_per_epoch=steps_per_epoch, time_limit=time_limit,
                             optimizer=optimizer, strategy=strategy, verbose=verbose,
                             jit_compile=jit_compile)


def _train_locked(config, train_ds, run_dir, source, *, epochs, val_ds, steps_per_epoch,
                  time_limit, optimizer, strategy, verbose, jit_compile) -> LDSeg:
    paths = run_paths(run_dir)
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    state = {"epoch": 0, "history": {}}
    if source is not None:
        model, state = _load_resumed(source, run_dir, config, scope)
    else:
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
        kept = load_state(run_dir)["epoch"]
        raise NonFiniteLossError(
            f"training stopped: {checkpoint.failure}. " + (
                f"The last good checkpoint ({paths['checkpoint']}, epoch {kept}) is kept; lower "
                f"the learning rate or check the data, then resume with --resume."
                if kept and os.path.exists(paths["checkpoint"]) else
                "No epoch finished, so there is no checkpoint; lower the learning rate or "
                "check the data, then start again with --overwrite."))
    with atomic_path(paths["model"]) as tmp:
        model.save(tmp)
    return model
