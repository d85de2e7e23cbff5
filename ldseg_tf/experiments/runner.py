"""`run`: trains (or reuses) the models the chosen experiments need, runs the
experiments and writes `report.md`, `results.json` and their tables/figures."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Optional, Sequence, Tuple

from ldseg_tf.config import LDSegConfig
from ldseg_tf.environment import environment_info
from ldseg_tf.experiments.context import Context
from ldseg_tf.experiments.models import get_model
from ldseg_tf.experiments.profiles import Profile, model_config
from ldseg_tf.experiments.report import write_report
from ldseg_tf.experiments.suite import EXPERIMENTS, REGISTRY
from ldseg_tf.utils import write_json


def make_datasets(data: str, config: LDSegConfig, profile: Profile, splits: Tuple[str, str],
                  data_dir: Optional[str] = None, tfds_dir: Optional[str] = None,
                  seed: int = 0):
    """`(train, test)` datasets of a reproduction: the training split repeated,
    shuffled and (if the profile says so) augmented; the test split in order."""
    from ldseg_tf.data import make_dataset

    common = dict(data_dir=data_dir, tfds_dir=tfds_dir, seed=seed, batch_size=profile.batch_size)
    train_ds = make_dataset(data, config, splits[0], shuffle=True, augment=profile.augment,
                            repeat=True, num_examples=profile.train_examples, **common)
    test_ds = make_dataset(data, config, splits[1], shuffle=False,
                           num_examples=profile.test_examples, **common)
    return train_ds, test_ds


def _needed_models(experiments):
    return list(dict.fromkeys(k for e in experiments for k in REGISTRY[e].needs))


def run(config: LDSegConfig, train_ds, test_ds, out: str, *, profile: Profile,
        experiments: Sequence[str] = EXPERIMENTS, data: str = "synthetic",
        splits: Tuple[str, str] = ("train", "test"), data_id: Optional[str] = None,
        seed: int = 0, retrain: bool = False, log: Callable[[str], None] = print,
        verbose: int = 0) -> dict:
    """Runs `experiments` (names of `REGISTRY`) and writes the report into `out`.

    Args:
        config: the LDSeg config every model derives from (`base_config`).
        train_ds, test_ds: batched `(image, mask)` datasets (`make_datasets`);
            `train_ds` must repeat.
        profile: budgets and sweeps.
        data, splits: the source and (train, test) split names, for the report.
        data_id: what identifies the training data of a cached model (default:
            the source and training split); models trained in `out/runs` on the
            same data, config and profile are reused unless `retrain`.

    Returns a dict of all results (also written to `results.json`).
    """
    import keras

    wall0 = time.time()
    unknown = set(experiments) - set(EXPERIMENTS)
    if unknown:
        raise ValueError(f"unknown experiments {sorted(unknown)}; known: {EXPERIMENTS}.")
    experiments = [e for e in EXPERIMENTS if e in set(experiments)]
    os.makedirs(out, exist_ok=True)
    keras.utils.set_random_seed(seed)
    env = environment_info(seed)
    results: dict = {"data": data, "profile": dataclasses.asdict(profile), "environment": env,
                     "config": config.to_dict(), "splits": list(splits),
                     "experiments": experiments, "timings": {}}
    timings = results["timings"]
    log(f"ldseg reproduce: data {data}, profile {profile.name}, image {config.image_shape}, "
        f"T={config.timesteps}, output {out}")

    t0 = time.time()
    ctx = Context(config, profile, [(x.numpy(), y.numpy()) for x, y in test_ds], {}, out,
                  seed=seed, data=data, split=splits[1], environment=env, log=log)
    if not ctx.test_cases:
        raise ValueError(f"the test split {splits[1]!r} of {data!r} is empty.")
    results["test_cases"] = ctx.test_cases
    timings["data"] = time.time() - t0

    t0 = time.time()
    train_info = {}
    for key in _needed_models(experiments):
        ctx.models[key], train_info[key] = get_model(
            key, model_config(config, key), train_ds, profile, os.path.join(out, "runs"),
            data_id or f"{data} {splits[0]}", retrain=retrain, log=log, verbose=verbose)
    results["training"] = train_info
    timings["training"] = time.time() - t0

    sections = {}
    for name in experiments:
        t0 = time.time()
        log(f"{name} ({REGISTRY[name].title}) ...")
        outcome = REGISTRY[name].run(ctx)
        results.update(outcome.results)
        sections[name] = outcome.section
        timings[name] = time.time() - t0

    timings["total"] = time.time() - wall0
    results["wall_seconds"] = timings["total"]
    write_report(out, results, sections, train_info, EXPERIMENTS)
    write_json(os.path.join(out, "results.json"), results, indent=1)
    log(f"wrote {os.path.join(out, 'report.md')} ({timings['total']:.0f} s)")
    return results
