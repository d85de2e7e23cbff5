"""Turning the masks of a training batch into one-hot targets, shared by LDSeg
and the comparison models."""

from __future__ import annotations

import tensorflow as tf

from ldseg_tf.config import IGNORE_LABEL


def prepare_masks(masks, config):
    """Integer label maps or one-hot masks -> `(onehot, labels)`.

    Args:
        masks: `(B, *spatial)` or `(B, *spatial, 1)` integer labels, or
            `(B, *spatial, num_classes)` one-hot.
        config: the `LDSegConfig` (spatial dims and number of classes).

    Returns:
        float32 one-hot `(B, *spatial, num_classes)` and int32 labels
        `(B, *spatial)`. Pixels labelled `IGNORE_LABEL` (padding) get an
        all-zero one-hot row, which the losses and metrics skip. Other label
        values outside [0, num_classes) fail at run time with an
        `InvalidArgumentError` naming the problem.
    """
    spatial = config.spatial_dims
    rank = masks.shape.rank
    if rank == spatial + 2 and masks.shape[-1] == config.num_classes:
        onehot = tf.cast(masks, tf.float32)
        return onehot, tf.argmax(onehot, axis=-1, output_type=tf.int32)
    if rank == spatial + 2 and masks.shape[-1] == 1:
        masks = tf.squeeze(masks, axis=-1)
    elif rank != spatial + 1:
        raise ValueError(
            f"masks must be label maps (batch, *spatial) or one-hot "
            f"(batch, *spatial, {config.num_classes}); got shape {tuple(masks.shape)}."
        )
    labels = tf.cast(masks, tf.int32)
    checks = [
        tf.debugging.assert_greater_equal(
            labels, IGNORE_LABEL,
            message=f"mask has negative label values other than {IGNORE_LABEL} (padding)"),
        tf.debugging.assert_less(
            labels, config.num_classes,
            message=f"mask has label values >= num_classes ({config.num_classes})"),
    ]
    with tf.control_dependencies(checks):
        labels = tf.identity(labels)
    return tf.one_hot(labels, config.num_classes, dtype=tf.float32), labels
