"""Data: readers/writers, the tf.data input pipeline, synthetic sets.

Importing this package is cheap: the names below are resolved on first use.

- `make_dataset(source, config, split, ...)`: batched `(image, mask)` for `fit`.
- `preprocess(image, mask, config)`, `augment(image, mask, seed)`,
  `restore_geometry(labels, meta)`, `load_builder(name, data_dir=, tfds_dir=)`.
- `read_image(path)`, `write_mask(path, mask, meta)`.
- `normalize_intensity(image, method, spatial_dims)`.
- `synthetic_dataset(name, n, spatial_shape, seed)`, `synthetic_arrays(...)`.
"""

import importlib

_EXPORTS = {
    "make_dataset": "ldseg_tf.data.pipeline",
    "preprocess": "ldseg_tf.data.pipeline",
    "augment": "ldseg_tf.data.pipeline",
    "restore_geometry": "ldseg_tf.data.pipeline",
    "load_builder": "ldseg_tf.data.pipeline",
    "read_image": "ldseg_tf.data.io",
    "write_mask": "ldseg_tf.data.io",
    "normalize_intensity": "ldseg_tf.data.normalization",
    "synthetic_dataset": "ldseg_tf.data.synthetic",
    "synthetic_arrays": "ldseg_tf.data.synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ldseg_tf.data' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
