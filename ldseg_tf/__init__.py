"""ldseg-tf: LDSeg, latent diffusion for medical image segmentation, in TensorFlow/Keras 3."""

from ldseg_tf.config import LDSegConfig
from ldseg_tf.models.ldseg import LDSeg, default_optimizer

__version__ = "0.1.0"

__all__ = ["LDSeg", "LDSegConfig", "default_optimizer", "__version__"]
