"""What a run ran on: versions, hardware and git commit, for reports and benchmarks.

One function, so that `ldseg reproduce` and the benchmark scripts describe their
machine with the same keys and results from different runs can be compared.
"""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Optional

import numpy as np


def _cpu_model() -> str:
    """The CPU's model name; `platform` gives only the architecture on Linux, so
    /proc/cpuinfo is read first."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_details(tf, device) -> dict:
    try:
        return tf.config.experimental.get_device_details(device)
    except Exception:  # pragma: no cover - depends on the driver
        return {}


def _git_commit() -> Optional[str]:
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        return subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip() or None
    except Exception:  # not a checkout, or no git
        return None


def environment_info(seed: Optional[int]) -> dict:
    """A JSON-ready description of this process' environment.

    Keys: `seed` (as given; None where a run has none), `python`, `tensorflow`,
    `keras`, `numpy`, `ldseg_tf` (versions), `platform`, `machine`, `cpu` (model
    name), `cpu_count`, `gpus` (GPU names, `["none"]` without one), `git` (short
    commit of the checkout, or None) and `device`: the device TensorFlow places
    ops on by default (GPU:0 when present), `{"cpu", "cpu_count",
    "physical_devices", "type": "GPU" | "CPU", "name"}` plus
    `compute_capability` and `gpus` (their count) on a GPU.
    """
    import keras
    import tensorflow as tf

    import ldseg_tf

    cpu = _cpu_model()
    gpu_devices = tf.config.list_physical_devices("GPU")
    details = [_gpu_details(tf, d) for d in gpu_devices]
    gpus = [d.get("device_name", dev.name) for d, dev in zip(details, gpu_devices)]
    device = {"cpu": cpu, "cpu_count": os.cpu_count(),
              "physical_devices": [d.name for d in tf.config.list_physical_devices()]}
    if gpu_devices:
        device.update(type="GPU", name=gpus[0],
                      compute_capability=details[0].get("compute_capability"),
                      gpus=len(gpu_devices))
    else:
        device.update(type="CPU", name=cpu)
    return {"seed": seed, "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__,
            "ldseg_tf": ldseg_tf.__version__, "platform": platform.platform(),
            "machine": platform.machine(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "gpus": gpus or ["none"], "git": _git_commit(), "device": device}
