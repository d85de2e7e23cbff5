"""ldseg-tf: LDSeg, latent diffusion for medical image segmentation, in TensorFlow/Keras 3."""

import importlib

__version__ = "0.1.0"

__all__ = ["LDSeg", "LDSegConfig", "default_optimizer", "load_model", "__version__"]

# Loaded on first use (PEP 562), not at `import ldseg_tf`: the `ldseg` command
# must quiet TensorFlow's C++ start-up log before TensorFlow is imported, which
# it cannot do if importing the package already imported it. So Keras knows
# the LDSeg classes only once `LDSeg` (or `ldseg_tf.models`) is imported:
# `ldseg_tf.load_model(path)` does that, then `keras.models.load_model`.
_LAZY = {"LDSeg": "ldseg_tf.models.ldseg", "default_optimizer": "ldseg_tf.models.ldseg",
         "LDSegConfig": "ldseg_tf.config", "load_model": "ldseg_tf.models.loading"}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'ldseg_tf' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
