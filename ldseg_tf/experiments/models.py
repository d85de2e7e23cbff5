"""Building, training and caching the compared models: a model trained once
in `OUT/runs/<key>/` is reused while its config, profile and data stay the same."""

from __future__ import annotations

import json
import os
import time
from typing import Optional, Tuple

from ldseg_tf.config import LDSegConfig
from ldseg_tf.experiments.profiles import Profile
from ldseg_tf.utils import write_json

#: The profile fields that determine the trained weights (not the experiment settings).
TRAINING_FIELDS = ("train_examples", "batch_size", "train_steps", "train_seconds",
                   "steps_per_epoch", "augment", "stage1_fraction")


def build_model(key: str, config: LDSegConfig):
    """A fresh, compiled model of kind `key` (see `MODELS`)."""
    if key == "resunet":
        from ldseg_tf.models.resunet import ResUNet

        model = ResUNet(config)
    elif key == "pixel_diffusion":
        from ldseg_tf.models.pixel_diffusion import PixelDiffusion

        model = PixelDiffusion(config)
    else:
        from ldseg_tf.models.ldseg import LDSeg

        model = LDSeg(config)
    model.compile()
    return model


def _fit(model, dataset, steps: int, seconds: Optional[float], per_epoch: int,
         verbose: int) -> dict:
    from ldseg_tf.training import TimeLimit

    callbacks = [TimeLimit(seconds, every_batch=True)] if seconds else []
    per_epoch = max(1, min(per_epoch, steps))
    start = time.time()
    before = int(model.optimizer.iterations)
    # The dataset is shuffled by tf.data; Keras' own shuffle would be ignored
    # for a dataset and only warn.
    history = model.fit(dataset, epochs=max(1, steps // per_epoch), steps_per_epoch=per_epoch,
                        callbacks=callbacks, verbose=verbose, shuffle=False)
    last = {k: float(v[-1]) for k, v in history.history.items() if v}
    return {"steps": int(model.optimizer.iterations) - before, "seconds": time.time() - start,
            "final": last}


def train_model(key: str, config: LDSegConfig, dataset, profile: Profile,
                verbose: int = 0) -> Tuple[object, dict]:
    """Builds and trains model `key` within the profile's budget; returns it and
    a training summary (steps, seconds, final metrics; per stage for two-stage)."""
    model = build_model(key, config)
    if key != "two_stage":
        return model, _fit(model, dataset, profile.train_steps, profile.train_seconds,
                           profile.steps_per_epoch, verbose)
    f = profile.stage1_fraction
    s1 = max(1, int(round(profile.train_steps * f)))
    t1 = profile.train_seconds * f if profile.train_seconds else None
    stage1 = _fit(model, dataset, s1, t1, profile.steps_per_epoch, verbose)
    model.set_training_stage(2)
    model.compile()
    t2 = profile.train_seconds - stage1["seconds"] if profile.train_seconds else None
    stage2 = _fit(model, dataset, max(1, profile.train_steps - s1), t2,
                  profile.steps_per_epoch, verbose)
    return model, {"steps": stage1["steps"] + stage2["steps"],
                   "seconds": stage1["seconds"] + stage2["seconds"],
                   "final": stage2["final"], "stage1": stage1, "stage2": stage2}


def same_ident(stored, ident: dict) -> bool:
    """Whether a saved run's identity equals `ident`. The stored config is read
    back through `LDSegConfig`, so that a run saved before a config field was
    added (which then takes its default, the old behaviour) is still reused."""
    if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict):
        return False
    try:
        config = LDSegConfig.from_dict(stored["config"]).to_dict()
    except (TypeError, ValueError):
        return False
    return json.loads(json.dumps(dict(stored, config=config))) == ident


def get_model(key, config, dataset, profile, run_root, data, retrain=False, log=print,
              verbose=0):
    """Loads model `key` from `run_root/key` when it was trained there with the
    same config, profile and data (`data`: a string naming them); otherwise
    trains and saves it. Returns the model and its training summary."""
    run_dir = os.path.join(run_root, key)
    weights = os.path.join(run_dir, "model.weights.h5")
    meta_path = os.path.join(run_dir, "meta.json")
    training = {k: getattr(profile, k) for k in TRAINING_FIELDS}
    ident = {"model": key, "config": config.to_dict(), "training": training, "data": data}
    ident = json.loads(json.dumps(ident))
    if not retrain and os.path.exists(weights) and os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if same_ident(meta.get("ident"), ident):
            model = build_model(key, config)
            if key == "two_stage":
                model.set_training_stage(2)
            model.load_weights(weights)
            log(f"  {key}: reusing {run_dir} ({meta['train']['steps']} steps)")
            return model, dict(meta["train"], reused=True)
    log(f"  {key}: training ...")
    model, info = train_model(key, config, dataset, profile, verbose=verbose)
    log(f"  {key}: {info['steps']} steps in {info['seconds']:.0f} s")
    os.makedirs(run_dir, exist_ok=True)
    model.save_weights(weights)
    write_json(meta_path, {"ident": ident, "train": info}, indent=1)
    return model, dict(info, reused=False)
