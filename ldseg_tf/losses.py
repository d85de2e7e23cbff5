"""The LDSeg training loss, eqs. (14)-(18): CE + gamma * Dice + lambda * MSE.

All terms are computed in float32 (also under mixed precision) and returned per
sample, so that the caller can average them across a (distributed) batch.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ldseg_tf.config import DICE_MODES

# Added to both sides of each class's Dice ratio in "foreground" mode, in
# pixels: an empty class predicted empty scores 1, and a one-pixel error on a
# tiny structure does not swing the loss from 0 to 1.
_FOREGROUND_SMOOTH = 1.0


def segmentation_losses(onehot, probs, dice_mode="pooled"):
    """Cross-entropy (eq. 14) and soft-Dice loss (eq. 15) per sample.

    Args:
        onehot: `(B, *spatial, C)` one-hot ground truth.
        probs: `(B, *spatial, C)` predicted class probabilities.
        dice_mode: "pooled" or "foreground" (`LDSegConfig.dice`).

    Returns:
        `(ce, dice)`, each float32 `(B,)`. CE is averaged over pixels. "pooled"
        Dice sums over all pixels *and* classes (background included), as eq.
        (15) and the authors' code do, i.e. one overlap score per image;
        "foreground" Dice is the mean over classes 1..C-1 of each class's own
        soft Dice loss, smoothed by one pixel. Pixels whose one-hot
        row is all zero (`IGNORE_LABEL`: the padding of a small image) count in
        neither: CE averages over the other pixels, Dice masks their
        probabilities out.
    """
    onehot = tf.cast(onehot, tf.float32)
    probs = tf.cast(probs, tf.float32)
    axes = tuple(range(1, probs.shape.rank))
    valid = tf.reduce_sum(onehot, axis=-1)
    ce = keras.losses.categorical_crossentropy(onehot, probs)
    # An ignored pixel's CE is already 0 (its one-hot row is); the mean is over
    # the valid pixels only (exactly the plain mean when all are valid).
    ce = tf.reduce_sum(ce, axis=axes[:-1]) / tf.maximum(
        tf.reduce_sum(valid, axis=axes[:-1]), 1.0)
    probs = probs * valid[..., None]
    if dice_mode == "pooled":
        return ce, keras.losses.dice(onehot, probs, axis=axes)
    if dice_mode != "foreground":
        raise ValueError(f"dice_mode must be one of {DICE_MODES}; got {dice_mode!r}.")
    overlap = tf.reduce_sum(onehot * probs, axis=axes[:-1])[:, 1:]
    total = tf.reduce_sum(onehot + probs, axis=axes[:-1])[:, 1:]
    score = (2.0 * overlap + _FOREGROUND_SMOOTH) / (total + _FOREGROUND_SMOOTH)
    return ce, 1.0 - tf.reduce_mean(score, axis=-1)


def segmentation_loss(onehot, probs, gamma=2.0, dice_mode="pooled"):
    """CE + gamma * Dice per sample (eqs. 14-15), the loss of a decoded mask.

    Args: as `segmentation_losses`; `gamma` weighs the Dice term.

    Returns a dict of float32 `(B,)` tensors: `loss`, `ce`, `dice_loss`.
    """
    ce, dice = segmentation_losses(onehot, probs, dice_mode)
    return {"loss": ce + gamma * dice, "ce": ce, "dice_loss": dice}


def denoiser_mse(target, prediction):
    """||target - prediction||^2 averaged over latent elements, float32 `(B,)`.

    The target is what the denoiser predicts (`config.prediction`): the noise eps
    (eq. 17, the paper), the velocity v or the clean latent z0; `(B, *latent)`."""
    axes = tuple(range(1, target.shape.rank))
    return tf.reduce_mean(tf.square(tf.cast(target, tf.float32) - tf.cast(prediction, tf.float32)),
                          axis=axes)


def ldseg_loss(onehot, probs, target, prediction, gamma=2.0, lambda_=1.0, dice_mode="pooled"):
    """Total loss per sample, eq. (18), and its parts.

    Args:
        onehot, probs: `(B, *spatial, C)` ground truth and decoded probabilities.
        target, prediction: `(B, *latent)` the denoiser's target (eps, v or z0,
            see `denoiser_mse`) and its output.
        gamma, lambda_: weights of the Dice and MSE terms.
        dice_mode: see `segmentation_losses`.

    Returns a dict of float32 `(B,)` tensors: `loss`, `ce`, `dice_loss`, `mse`.
    """
    terms = segmentation_loss(onehot, probs, gamma, dice_mode)
    terms["mse"] = denoiser_mse(target, prediction)
    terms["loss"] = terms["loss"] + lambda_ * terms["mse"]
    return terms
