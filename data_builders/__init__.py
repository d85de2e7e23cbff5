"""TensorFlow Datasets builders for the LDSeg data sets.

One folder per dataset (`glas`, `echo`, `knee`, `drive`, `folder`), each with a
`<name>_dataset_builder.py` defining `Builder`, following the TFDS folder
convention so that `tfds build data_builders/<name> --manual_dir=...` works.
Importing a sub-package (e.g. `import data_builders.glas`) registers its builder
with TFDS; `ldseg_tf.data.pipeline` does that for you.
"""

from ldseg_tf.data.sources import BUILDER_NAMES  # noqa: F401  (one list of the builders)
