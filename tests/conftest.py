"""Test set-up shared by every test module.

Two logical CPU devices are configured before TensorFlow initializes, so that
`tf.distribute.MirroredStrategy` can be tested on a CPU-only machine.
"""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
except RuntimeError:  # already initialized by an earlier import
    pass

#: The fewest layers that still exercise every code path of LDSeg, for tests
#: that check mechanics (tracing time grows with the number of variables):
#: `LDSegConfig.preset("small", image_shape=(16, 16, 3), **TINY)`.
TINY = dict(downsamplings=1, label_encoder_widths=(4, 4), image_encoder_widths=(4,),
            image_encoder_attention_levels=1, denoiser_widths=(8,), denoiser_attention_levels=1,
            decoder_widths=(4,), norm_groups=2, attention_heads=1, time_embedding_dim=8,
            timesteps=50)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """`../shared/data` next to the repository; skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _reset_keras_state():
    import keras

    keras.mixed_precision.set_dtype_policy("float32")
    yield
    keras.mixed_precision.set_dtype_policy("float32")
