"""`PixelDiffusion`: pixel-space conditional diffusion (MedSegDiff-style,
simplified), the comparison that shows what the latent space buys.

The same denoiser family as LDSeg (`ldseg_tf.models.denoiser.Denoiser`, the
DDPM U-Net) runs at full resolution on the noisy one-hot mask scaled to
[-1, 1] (`num_classes` channels) concatenated with the image; it is trained with
the noise MSE alone (no label encoder/decoder, no CE/Dice), and sampled with
DDIM, the x0 estimate clipped to [-1, 1] at every step (Ho et al. 2020).
Differences from MedSegDiff: no FF-Parser / dynamic conditional encoding, no
ensembling, the image simply enters as extra input channels.
"""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import tensorflow as tf

from ldseg_tf.diffusion import NoiseSchedule, clip_projection, ddim_sample
from ldseg_tf.models.base import SegmentationModel
from ldseg_tf.models.denoiser import Denoiser
from ldseg_tf.models.masks import prepare_masks


def default_pixel_widths(downsamplings: int) -> tuple:
    """U-Net widths with `downsamplings` poolings, so its deepest level has the
    resolution of LDSeg's latent: 16, 32, 64, 64, ..."""
    return tuple(min(16 * 2**i, 64) for i in range(downsamplings + 1))


@keras.saving.register_keras_serializable(package="ldseg_tf")
class PixelDiffusion(SegmentationModel):
    """Conditional DDPM/DDIM on the full-resolution mask.

    Sampling is LDSeg's (`ddim_sample`, `sample_ensemble`: the same noise per
    image whatever its batch, the same mean/SD ensemble) with the x0 estimate
    clipped to [-1, 1] instead of standardized; training draws t and the noise
    as LDSeg does (`training_noise`, per replica), without `pure_noise_fraction`
    (the denoiser predicts the noise).

    Args:
        config: an `LDSegConfig` (image shape, classes, T, schedule, seed,
            learning rate, denoiser res blocks / heads / groups / time dim).
        widths: denoiser U-Net widths; default `default_pixel_widths`.
        attention_levels: self-attention in the deepest levels (default 1: the
            deepest, at LDSeg's latent resolution; more is quadratic in pixels).
    """

    _loss_description = "the noise MSE"

    def __init__(self, config, widths: Optional[Sequence[int]] = None,
                 attention_levels: int = 1, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        self.widths = tuple(widths or default_pixel_widths(c.downsamplings))
        self.attention_levels = int(attention_levels)
        self.schedule = NoiseSchedule(c.timesteps, c.schedule)
        self._noise_shape = c.image_shape[:-1] + (c.num_classes,)
        self._pure_noise_fraction, self._pure_noise_warmup_steps = 0.0, 0
        self.denoiser = Denoiser(
            self.widths, c.num_classes, dims=c.spatial_dims, res_blocks=c.denoiser_res_blocks,
            attention_levels=self.attention_levels, attention_heads=c.attention_heads,
            groups=c.norm_groups, time_dim=c.time_embedding_dim, dropout=c.dropout,
            name="denoiser")
        mask = keras.KerasTensor((1,) + self._noise_shape)
        self.denoiser(mask, keras.KerasTensor((1,) + c.image_shape),
                      keras.KerasTensor((1,), dtype="int32"))
        self._trackers = {"loss": keras.metrics.Mean(name="loss"),
                          "mse": keras.metrics.Mean(name="mse")}
        self.built = True

    # --------------------------------------------------------------- training
    def _mse(self, images, masks, stream, training):
        # One-hot scaled to [-1, 1]: the usual range of pixel-space diffusion.
        x0 = 2.0 * prepare_masks(masks, self.config)[0] - 1.0
        t, noise = self._training_noise(tf.shape(x0)[0], stream)
        x_t = self.schedule.q_sample(x0, t, noise)
        eps_hat = self.denoiser(x_t, tf.cast(images, tf.float32), t, training=training)
        axes = list(range(1, x0.shape.rank))
        return tf.reduce_mean(tf.square(noise - eps_hat), axis=axes)

    def train_step(self, data):
        images, masks = data[0], data[1]
        with tf.GradientTape() as tape:
            mse = self._mse(images, masks, 0, True)
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(tf.reduce_mean(mse) / replicas)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        for k in self._trackers:
            self._trackers[k].update_state(mse)
        return {k: t.result() for k, t in self._trackers.items()}

    def test_step(self, data):
        mse = self._mse(data[0], data[1], 1, False)
        for k in self._trackers:
            self._trackers[k].update_state(mse)
        return {k: t.result() for k, t in self._trackers.items()}

    def call(self, images, training=False):
        return self.segment_graph(images, self.config.sampling_steps, 1,
                                  tf.constant(self.config.seed, tf.int64))["probs"]

    # --------------------------------------------------------------- sampling
    def _sampling_condition(self, images):
        return images

    def sample_masks(self, images, steps, seed, eta=0.0, method="ddim"):
        """One DDIM sample of the [-1, 1] mask, float32 `(B, *spatial, C)`."""

        def denoise(x, image, t):
            return self.denoiser(x, image, t, training=False)

        return ddim_sample(denoise, tf.cast(images, tf.float32), self.schedule, steps, seed,
                           self._noise_shape, clip_projection, eta=eta, method=method)

    def sample_probs(self, images, steps, seed, eta, method):
        """A sample's probabilities: its mask mapped from [-1, 1] to [0, 1] and
        normalized over classes."""
        x = self.sample_masks(images, steps, seed, eta, method)
        p = tf.clip_by_value((x + 1.0) / 2.0, 0.0, 1.0) + 1e-6
        return p / tf.reduce_sum(p, axis=-1, keepdims=True)

    def get_config(self):
        return {**super().get_config(), "widths": list(self.widths),
                "attention_levels": self.attention_levels}
