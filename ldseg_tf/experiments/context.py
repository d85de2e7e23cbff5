"""`Context`: what every experiment of a reproduction reads (data, models,
budget, output folder) and the evaluations they share."""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, List, Tuple

import numpy as np

from ldseg_tf.config import LDSegConfig
from ldseg_tf.experiments.measure import evaluate
from ldseg_tf.experiments.profiles import Profile
from ldseg_tf.metrics import write_csv as write_cases_csv


@dataclasses.dataclass
class Context:
    """A reproduction run as the experiments see it.

    Attributes:
        config: the LDSeg config every model is derived from (`model_config`).
        profile: sizes, budgets and sweeps.
        test: the test set in memory, a list of `(images float32 (B, *shape),
            masks int32 (B, *spatial))` batches.
        models: trained models by key (see `MODELS`).
        out: the report folder (CSV and PNG files go there).
        seed: seed of sampling and noise.
        data: the data source (see `ldseg_tf.data.sources`).
        split: name of the test split (for the report).
        environment: `environment_info(seed)`.
        log: progress messages.
    """

    config: LDSegConfig
    profile: Profile
    test: List[Tuple[np.ndarray, np.ndarray]]
    models: Dict[str, object]
    out: str
    seed: int = 0
    data: str = "synthetic"
    split: str = "test"
    environment: dict = dataclasses.field(default_factory=dict)
    log: Callable[[str], None] = print
    _evaluations: Dict[str, dict] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def steps(self) -> int:
        """DDIM steps of LDSeg-like models in every table."""
        return self.config.sampling_steps

    @property
    def test_cases(self) -> int:
        return sum(len(x) for x, _ in self.test)

    def path(self, name: str) -> str:
        return os.path.join(self.out, name)

    def eval_steps(self, key: str):
        """Sampling steps of model `key` in the accuracy table (None: one pass)."""
        return self.profile.pixel_steps if key == "pixel_diffusion" else self.steps

    def evaluation(self, key: str) -> dict:
        """`evaluate` of model `key` on the test set at its `eval_steps`, computed
        once (and written to `cases_<key>.csv`)."""
        if key not in self._evaluations:
            self._evaluations[key] = evaluate(self.models[key], self.test, self.eval_steps(key),
                                              self.seed, self.profile.distances)
            write_cases_csv(self.path(f"cases_{key}.csv"), self._evaluations[key]["cases"])
        return self._evaluations[key]

    def evaluated(self, key: str) -> bool:
        return key in self._evaluations
