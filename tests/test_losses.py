"""The losses: eq. (15)'s pooled Dice, the per-class foreground Dice, and eq. (18)'s sum."""

import numpy as np
import pytest
import tensorflow as tf

from ldseg_tf.losses import ldseg_loss, segmentation_loss, segmentation_losses


def _sparse_mask(classes=2, size=32):
    """A thin diagonal line of class 1 (and a block of class 2), as one-hot."""
    labels = np.zeros((1, size, size), np.int32)
    labels[0, np.arange(size), np.arange(size)] = 1
    if classes > 2:
        labels[0, :4, -4:] = 2
    return tf.one_hot(labels, classes)


def test_foreground_dice_charges_an_empty_mask_in_full_where_pooled_dice_does_not():
    onehot = _sparse_mask()
    empty = tf.one_hot(tf.zeros(onehot.shape[:-1], tf.int32), 2)
    _, pooled = segmentation_losses(onehot, empty, "pooled")
    _, foreground = segmentation_losses(onehot, empty, "foreground")
    # 32 of 1024 pixels are foreground: an all-background answer overlaps 97%.
    assert float(pooled[0]) < 0.05
    np.testing.assert_allclose(float(foreground[0]), 1 - 1 / 33, atol=1e-6)
    _, perfect = segmentation_losses(onehot, onehot, "foreground")
    np.testing.assert_allclose(float(perfect[0]), 0.0, atol=1e-6)


def test_foreground_dice_averages_the_foreground_classes_and_skips_ignored_pixels():
    onehot = _sparse_mask(classes=3)
    # Class 1 perfect, class 2 (16 pixels) missed entirely: half of (1 - 1/17).
    probs = tf.one_hot(tf.where(tf.argmax(onehot, -1) == 2, 0, tf.argmax(onehot, -1)), 3)
    _, dice = segmentation_losses(onehot, probs, "foreground")
    np.testing.assert_allclose(float(dice[0]), (1 - 1 / 17) / 2, atol=1e-6)
    # Zeroed one-hot rows (padding) count in neither sum, whatever is predicted there.
    padded = tf.pad(onehot, [[0, 0], [0, 8], [0, 0], [0, 0]])
    noise = tf.nn.softmax(tf.random.stateless_normal(padded.shape, (0, 1)) * 3)
    padded_probs = tf.concat([probs, noise[:, 32:]], axis=1)
    _, again = segmentation_losses(padded, padded_probs, "foreground")
    np.testing.assert_allclose(float(again[0]), float(dice[0]), atol=1e-6)


def test_unknown_dice_mode_is_refused():
    onehot = _sparse_mask()
    with pytest.raises(ValueError, match="dice_mode must be one of"):
        segmentation_losses(onehot, onehot, "macro")


@pytest.mark.parametrize("dice_mode", ["pooled", "foreground"])
def test_loss_weights_gamma_and_lambda_as_eq_18(dice_mode):
    onehot = _sparse_mask(classes=3)
    probs = tf.nn.softmax(tf.random.stateless_normal(onehot.shape, (1, 2)))
    ce, dice = segmentation_losses(onehot, probs, dice_mode)
    seg = segmentation_loss(onehot, probs, gamma=3.0, dice_mode=dice_mode)
    np.testing.assert_allclose(seg["loss"], ce + 3.0 * dice, rtol=1e-6)
    np.testing.assert_allclose(seg["dice_loss"], dice, rtol=1e-6)
    target = tf.zeros((1, 8, 8, 4))
    prediction = tf.fill((1, 8, 8, 4), 0.5)
    full = ldseg_loss(onehot, probs, target, prediction, gamma=3.0, lambda_=0.5,
                      dice_mode=dice_mode)
    np.testing.assert_allclose(full["mse"], [0.25], rtol=1e-6)
    np.testing.assert_allclose(full["loss"], ce + 3.0 * dice + 0.5 * 0.25, rtol=1e-6)
