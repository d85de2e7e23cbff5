"""Keras metrics reported in `fit`/`evaluate` histories: per-case DSC and IoU.

Case-level numbers for reports (with surface distances) are in
`ldseg_tf.metrics`; these are their streaming, in-graph counterparts.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ldseg_tf.config import IGNORE_LABEL


def per_case_overlap(labels, predictions, num_classes):
    """Per-case, per-class overlap counts of two label maps.

    Args:
        labels, predictions: int `(B, *spatial)` label maps.

    Returns:
        `(intersection, size_true, size_pred)`, each float32 `(B, num_classes)`.
        Pixels labelled `IGNORE_LABEL` (padding) count in none of them.
    """
    labels = tf.cast(labels, tf.int32)
    axes = list(range(1, labels.shape.rank))
    t = tf.one_hot(labels, num_classes, dtype=tf.float32)
    valid = tf.cast(labels != IGNORE_LABEL, tf.float32)[..., None]
    p = tf.one_hot(tf.cast(predictions, tf.int32), num_classes, dtype=tf.float32) * valid
    return (tf.reduce_sum(t * p, axis=axes), tf.reduce_sum(t, axis=axes),
            tf.reduce_sum(p, axis=axes))


class CaseScore(keras.metrics.Metric):
    """Mean over cases of the DSC or IoU of one class, or of the mean over the
    foreground classes (`class_id=None`).

    DSC = 2|A∩B| / (|A| + |B|), IoU = |A∩B| / |A∪B| (the paper's definitions).
    A case where the class is absent from both truth and prediction is skipped
    for that class: it carries no information about overlap.
    """

    def __init__(self, kind="dsc", class_id=None, num_classes=2, name=None, **kwargs):
        if kind not in ("dsc", "iou"):
            raise ValueError(f"kind must be 'dsc' or 'iou'; got {kind!r}.")
        super().__init__(name=name or kind, **kwargs)
        self.kind = kind
        self.class_id = class_id
        self.num_classes = num_classes
        self.total = self.add_variable(shape=(), initializer="zeros", name="total",
                                       aggregation="sum")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count",
                                       aggregation="sum")

    def update_state(self, labels, predictions, sample_weight=None):
        inter, size_t, size_p = per_case_overlap(labels, predictions, self.num_classes)
        if self.kind == "dsc":
            score = tf.math.divide_no_nan(2.0 * inter, size_t + size_p)
        else:
            score = tf.math.divide_no_nan(inter, size_t + size_p - inter)
        present = tf.cast(size_t + size_p > 0, tf.float32)
        if self.class_id is None:
            score, present = score[:, 1:], present[:, 1:]
            # Mean over the classes present in the case; a case with no
            # foreground anywhere is skipped.
            n = tf.reduce_sum(present, axis=1)
            score = tf.math.divide_no_nan(tf.reduce_sum(score * present, axis=1), n)
            present = tf.cast(n > 0, tf.float32)
        else:
            score, present = score[:, self.class_id], present[:, self.class_id]
        self.total.assign_add(tf.reduce_sum(score * present))
        self.count.assign_add(tf.reduce_sum(present))

    def result(self):
        return tf.math.divide_no_nan(self.total, self.count)

    def get_config(self):
        config = super().get_config()
        config.update(kind=self.kind, class_id=self.class_id, num_classes=self.num_classes)
        return config
