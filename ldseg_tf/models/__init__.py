"""The four LDSeg components and the model that trains and samples them."""

from ldseg_tf.models.denoiser import Denoiser
from ldseg_tf.models.image_encoder import ImageEncoder
from ldseg_tf.models.label_decoder import LabelDecoder
from ldseg_tf.models.label_encoder import LabelEncoder
from ldseg_tf.models.ldseg import LDSeg

__all__ = ["Denoiser", "ImageEncoder", "LabelDecoder", "LabelEncoder", "LDSeg"]
