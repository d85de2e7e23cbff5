"""`ResUNet`: the deterministic residual U-Net baseline (the paper's strongest
deterministic comparison), built from LDSeg's blocks, for 2D and 3D.

It takes the same `LDSegConfig` (image shape, classes, gamma, learning rate,
norm groups, down-samplings), the same `(images, masks)` batches, the same loss
(CE + gamma * Dice, `ldseg_tf.losses.segmentation_loss`) and offers
`segment` with LDSeg's output dict, so that evaluation code is shared.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from ldseg_tf.losses import segmentation_loss
from ldseg_tf.models.base import SegmentationModel
from ldseg_tf.models.layers import ResidualBlock, conv, conv_transpose
from ldseg_tf.models.masks import prepare_masks
from ldseg_tf.streaming_metrics import CaseScore

_TERMS = ("loss", "ce", "dice_loss")


def default_resunet_widths(downsamplings: int) -> tuple:
    """Filters per level, `downsamplings + 1` values: 16, 32, 64, 128, 128, ..."""
    return tuple(min(16 * 2**i, 128) for i in range(downsamplings + 1))


@keras.saving.register_keras_serializable(package="ldseg_tf")
class ResUNet(SegmentationModel):
    """Residual U-Net: per level a residual block, then a stride-2 conv; at the
    bottom a residual block; on the way up a stride-2 transposed conv, the skip
    of the same level concatenated, a residual block; a 1x1 conv and a float32
    softmax.

    Args:
        config: an `LDSegConfig` (or its dict); `downsamplings` sets the depth.
        widths: filters per level (`downsamplings + 1` values), default
            `default_resunet_widths`.
    """

    _loss_description = "CE + gamma*Dice"

    def __init__(self, config, widths: Optional[Sequence[int]] = None, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        dims = c.spatial_dims
        self.widths = tuple(widths or default_resunet_widths(c.downsamplings))
        if len(self.widths) != c.downsamplings + 1:
            raise ValueError(f"widths needs {c.downsamplings + 1} values; got {self.widths}.")
        g = c.norm_groups
        self.stem = conv(dims, self.widths[0], name="stem")
        self.down_blocks = [ResidualBlock(w, dims=dims, groups=g, dropout=c.dropout,
                                          name=f"down{i}") for i, w in enumerate(self.widths[:-1])]
        self.pools = [conv(dims, w, strides=2, name=f"pool{i}")
                      for i, w in enumerate(self.widths[1:])]
        self.bottom = ResidualBlock(self.widths[-1], dims=dims, groups=g, dropout=c.dropout,
                                    name="bottom")
        self.ups = [conv_transpose(dims, w, name=f"up{i}") for i, w in
                    enumerate(self.widths[:-1])]
        self.up_blocks = [ResidualBlock(w, dims=dims, groups=g, dropout=c.dropout,
                                        name=f"upblock{i}") for i, w in
                          enumerate(self.widths[:-1])]
        self.to_logits = conv(dims, c.num_classes, kernel_size=1, name="to_logits")
        self.softmax = layers.Softmax(axis=-1, dtype="float32", name="softmax")
        self._trackers = {k: keras.metrics.Mean(name=k) for k in _TERMS}
        self._trackers["dsc"] = CaseScore("dsc", None, c.num_classes, name="dsc")
        self._trackers["iou"] = CaseScore("iou", None, c.num_classes, name="iou")
        self._predict_fn = None
        self(keras.KerasTensor((1,) + c.image_shape))

    def call(self, images, training=False):
        x = self.stem(images)
        skips = []
        for block, pool in zip(self.down_blocks, self.pools):
            x = block(x, training=training)
            skips.append(x)
            x = pool(x)
        x = self.bottom(x, training=training)
        for i in reversed(range(len(self.ups))):
            x = self.ups[i](x)
            x = keras.ops.concatenate([x, skips[i]], axis=-1)
            x = self.up_blocks[i](x, training=training)
        return self.softmax(self.to_logits(x))

    # --------------------------------------------------------------- training
    def _terms(self, images, masks, training):
        onehot, labels = prepare_masks(masks, self.config)
        probs = self(images, training=training)
        return segmentation_loss(onehot, probs, self.config.gamma, self.config.dice), labels, probs

    def _update(self, terms, labels, probs, names):
        for k in _TERMS:
            self._trackers[k].update_state(terms[k])
        pred = tf.argmax(probs, axis=-1, output_type=tf.int32)
        for k in names:
            self._trackers[k].update_state(labels, pred)

    def train_step(self, data):
        images, masks = data[0], data[1]
        with tf.GradientTape() as tape:
            terms, labels, probs = self._terms(images, masks, True)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(tf.reduce_mean(terms["loss"]) / replicas)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        self._update(terms, labels, probs, ("dsc",))
        return {k: self._trackers[k].result() for k in _TERMS + ("dsc",)}

    def test_step(self, data):
        images, masks = data[0], data[1]
        terms, labels, probs = self._terms(images, masks, False)
        self._update(terms, labels, probs, ("dsc", "iou"))
        return {k: t.result() for k, t in self._trackers.items()}

    # ------------------------------------------------------------- inference
    def segment(self, images, steps=None, samples=1, seed=None, eta=0.0, method=None,
                **ignored):
        """Deterministic segmentation with LDSeg's output dict (sampling
        arguments are accepted and ignored; `std` is all zeros).

        Returns numpy `labels` int32 `(B, *spatial)`, `probs` float32
        `(B, *spatial, C)`, `std` float32 `(B, *spatial)`; no batch axis out
        when none came in.
        """
        c = self.config
        images = np.asarray(images, dtype=np.float32)
        unbatched = images.ndim == len(c.image_shape)
        if unbatched:
            images = images[None]
        if images.shape[1:] != c.image_shape:
            raise ValueError(f"images must have shape (batch, {c.image_shape}); "
                             f"got {images.shape}.")
        if self._predict_fn is None:
            # No AutoGraph: see SegmentationModel._make_segment_function.
            self._predict_fn = tf.function(self._predict_probs, reduce_retracing=True,
                                           autograph=False)
        probs = self._predict_fn(tf.constant(images)).numpy()
        out = {"labels": probs.argmax(-1).astype(np.int32), "probs": probs,
               "std": np.zeros(probs.shape[:-1], np.float32)}
        if unbatched:
            out = {k: v[0] for k, v in out.items()}
        return out

    def segment_graph(self, images, steps=None, samples=1, seed=0, eta=0.0, method="ddim"):
        """In-graph `segment` (the sampling arguments are ignored): `labels`
        int32 `(B, *spatial)`, `probs` float32 `(B, *spatial, C)`, `std` zeros."""
        probs = tf.cast(self(tf.cast(images, tf.float32), training=False), tf.float32)
        return {"labels": tf.argmax(probs, axis=-1, output_type=tf.int32), "probs": probs,
                "std": tf.zeros_like(probs[..., 0])}

    def _predict_probs(self, images):
        return self(images, training=False)

    def get_config(self):
        return {**super().get_config(), "widths": list(self.widths)}
