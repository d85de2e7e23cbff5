"""MultiWorkerMirroredStrategy (TF_CONFIG) training equals one-device training.

Two worker processes on 127.0.0.1, one CPU replica each, train the smallest
model with `model.fit` (what `ldseg train --strategy multiworker` runs) on a
global batch of 4 (2 per worker); the test process trains the same model with
`fit` on one device, same seed and data. `LDSeg._training_noise` draws t and
eps for the whole global batch from (config.seed, step) and each replica takes
its own rows; the data is split in order (tf.data DATA auto-sharding after
re-batching gives worker i rows [2i, 2i+2) of every global batch, matching
replica_id_in_sync_group); gradients of the loss divided by the number of
replicas are summed over replicas. So both runs make the same updates, up to
the order of floating-point sums (all-reduce of two half-batch gradients versus
one mean over four). Tolerances, as for MirroredStrategy in test_training.py:
loss terms rtol 2e-4; every weight (the EMA copy included) rtol 1e-3 + atol 1e-5
(seen: max |diff| ~3e-6).

Keras 3.15 cannot run `fit` under a multi-worker strategy as it comes
(keras-team/keras#20585: its symbolic build reduces a data batch across
workers, and it reduces scalar logs along axis 0); `LDSeg` works around both
(`_maybe_symbolic_build`, `_per_worker_logs`), which this test checks too.
"""

import json
import os
import runpy
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from ldseg_tf import LDSegConfig

from conftest import TINY

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The fewest layers that exercise every code path (tracing dominates the time),
# with an EMA so that its cross-replica update is covered too.
CFG = LDSegConfig.preset("small", image_shape=(16, 16, 3), ema=0.9, **TINY)
GLOBAL_BATCH = 4
EPOCHS = 2  # 8 examples: 2 steps per epoch, 4 optimizer steps in all
TIMEOUT = 300

# Run by each worker (as a script) and, through runpy, by the test itself for
# the one-device reference: one code path for both.
WORKER = r"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
import numpy as np
import tensorflow as tf

from ldseg_tf import LDSeg, LDSegConfig
from ldseg_tf.data import make_dataset

def _model(strategy, cfg):
    keras.utils.set_random_seed(7)
    with strategy.scope():
        model = LDSeg(cfg)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model


def _dataset(cfg, global_batch):
    ds = make_dataset("synthetic:glands", cfg, "train", batch_size=global_batch,
                      num_examples=2 * global_batch, shuffle=False)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def _result(model, history, initial, path):
    return {"history": {k: [float(np.reshape(v, -1)[0]) for v in vs]
                        for k, vs in history.items()},
            "weights": [w.numpy() for w in model.weights], "initial": initial,
            "steps": int(model.optimizer.iterations.numpy()), "path": path}


def fit(strategy, config_json, global_batch, epochs):
    # What `ldseg train` does: model.fit under the strategy.
    cfg = LDSegConfig.from_json(config_json)
    model = _model(strategy, cfg)
    initial = [w.numpy() for w in model.weights]
    history = model.fit(_dataset(cfg, global_batch), epochs=epochs, verbose=0,
                        shuffle=False).history
    return _result(model, history, initial, "fit")


if __name__ == "__main__":
    config_json, global_batch, epochs, out = sys.argv[1:5]
    keras.config.disable_traceback_filtering()  # keep Keras' frames in the traceback
    tf.config.threading.set_intra_op_parallelism_threads(1)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING,
            timeout_seconds=240))
    result = fit(strategy, config_json, int(global_batch), int(epochs))
    np.savez(out + ".npz", *result.pop("weights"))
    result.pop("initial")
    result.update(replicas=strategy.num_replicas_in_sync,
                  task=json.loads(os.environ["TF_CONFIG"])["task"])
    with open(out + ".json", "w") as f:
        json.dump(result, f)
"""


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _start_workers(tmp_path, argv_for, n=2):
    """Starts `n` workers of one cluster; `argv_for(i)` is worker i's command."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(n)]}
    procs = []
    for i in range(n):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": i}}),
            CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
            PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        log = open(tmp_path / f"worker{i}.log", "wb")
        procs.append((subprocess.Popen(argv_for(i), env=env, cwd=REPO, stdout=log,
                                       stderr=subprocess.STDOUT), log))
    return procs


def _wait(procs, tmp_path, deadline):
    """Waits for every worker; on a failure or the deadline, kills the rest
    and fails with the workers' logs."""
    try:
        for proc, _ in procs:
            proc.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    codes = [proc.returncode for proc, _ in procs]
    if any(codes):
        logs = "\n".join(f"--- worker {i} (exit {c}) ---\n"
                         + (tmp_path / f"worker{i}.log").read_text(errors="replace")[-3000:]
                         for i, c in enumerate(codes))
        pytest.fail(f"MultiWorkerMirroredStrategy workers failed or timed out:\n{logs}")


def test_multi_worker_training_matches_one_device(tmp_path):
    import tensorflow as tf

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    config_json = str(tmp_path / "config.json")
    CFG.to_json(config_json)
    start = time.time()
    procs = _start_workers(tmp_path, lambda i: [
        sys.executable, str(script), config_json, str(GLOBAL_BATCH), str(EPOCHS),
        str(tmp_path / f"out{i}")])
    # The one-device reference trains here (with model.fit) while the workers run.
    fit = runpy.run_path(str(script), run_name="worker")["fit"]
    ref = fit(tf.distribute.OneDeviceStrategy("/cpu:0"), config_json, GLOBAL_BATCH, EPOCHS)
    _wait(procs, tmp_path, start + TIMEOUT)

    assert ref["steps"] == EPOCHS * 2
    # Training moved the weights: the comparison below is not between copies of
    # the initial values.
    moved = [not np.allclose(a, b, rtol=1e-3, atol=1e-5)
             for a, b in zip(ref["initial"], ref["weights"])]
    assert sum(moved) > len(moved) // 2, f"only {sum(moved)} of {len(moved)} weights changed"
    for i in range(2):
        with open(tmp_path / f"out{i}.json") as f:
            meta = json.load(f)
        assert meta["replicas"] == 2 and meta["task"]["index"] == i
        assert meta["steps"] == ref["steps"]
        for key in ("loss", "ce", "dice_loss", "mse"):
            np.testing.assert_allclose(meta["history"][key], ref["history"][key], rtol=2e-4,
                                       err_msg=f"worker {i} ({meta['path']}): {key}")
        with np.load(tmp_path / f"out{i}.npz") as npz:
            weights = [npz[f"arr_{k}"] for k in range(len(npz.files))]
        assert len(weights) == len(ref["weights"])
        for k, (a, b) in enumerate(zip(weights, ref["weights"])):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5,
                                       err_msg=f"worker {i} ({meta['path']}): weight {k}")
