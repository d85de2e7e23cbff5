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
import numpy as np
import tensorflow as tf

from ldseg_tf.config import LDSegConfig
from ldseg_tf.diffusion.samplers import ddim_timesteps_tf
from ldseg_tf.diffusion.schedule import NoiseSchedule
from ldseg_tf.models.denoiser import Denoiser
from ldseg_tf.models.masks import prepare_masks


def default_pixel_widths(downsamplings: int) -> tuple:
    """U-Net widths with `downsamplings` poolings, so its deepest level has the
    resolution of LDSeg's latent: 16, 32, 64, 64, ..."""
    return tuple(min(16 * 2**i, 64) for i in range(downsamplings + 1))


@keras.saving.register_keras_serializable(package="ldseg_tf")
class PixelDiffusion(keras.Model):
    """Conditional DDPM/DDIM on the full-resolution mask.

    Args:
        config: an `LDSegConfig` (image shape, classes, T, schedule, seed,
            learning rate, denoiser res blocks / heads / groups / time dim).
        widths: denoiser U-Net widths; default `default_pixel_widths`.
        attention_levels: self-attention in the deepest levels (default 1: the
            deepest, at LDSeg's latent resolution; more is quadratic in pixels).
    """

    def __init__(self, config, widths: Optional[Sequence[int]] = None,
                 attention_levels: int = 1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = LDSegConfig.from_dict(config)
        self.config = c = config
        self.widths = tuple(widths or default_pixel_widths(c.downsamplings))
        self.attention_levels = int(attention_levels)
        self.schedule = NoiseSchedule(c.timesteps, c.schedule)
        self.denoiser = Denoiser(
            self.widths, c.num_classes, dims=c.spatial_dims, res_blocks=c.denoiser_res_blocks,
            attention_levels=self.attention_levels, attention_heads=c.attention_heads,
            groups=c.norm_groups, time_dim=c.time_embedding_dim, dropout=c.dropout,
            name="denoiser")
        mask = keras.KerasTensor((1,) + c.image_shape[:-1] + (c.num_classes,))
        self.denoiser(mask, keras.KerasTensor((1,) + c.image_shape),
                      keras.KerasTensor((1,), dtype="int32"))
        self._trackers = {"loss": keras.metrics.Mean(name="loss"),
                          "mse": keras.metrics.Mean(name="mse")}
        self._segment_fn = None
        self.built = True

    def build(self, input_shape=None):
        self.built = True

    def compile(self, optimizer=None, loss=None, **kwargs):
        from ldseg_tf.models.ldseg import default_optimizer

        if optimizer is None:
            optimizer = default_optimizer(self.config)
        kwargs.pop("metrics", None)
        super().compile(optimizer=optimizer, **kwargs)
        self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return list(self._trackers.values())

    # --------------------------------------------------------------- training
    def _mse(self, images, masks, stream, training):
        c = self.config
        # One-hot scaled to [-1, 1]: the usual range of pixel-space diffusion.
        x0 = 2.0 * prepare_masks(masks, c)[0] - 1.0
        batch = tf.shape(x0)[0]
        base = tf.random.experimental.stateless_fold_in(
            tf.constant([c.seed, stream], tf.int64), tf.cast(self.optimizer.iterations, tf.int64))
        t = tf.random.stateless_uniform([batch], seed=tf.random.experimental.stateless_fold_in(
            base, 1), minval=1, maxval=c.timesteps + 1, dtype=tf.int32)
        noise = tf.random.stateless_normal(
            tf.shape(x0), seed=tf.random.experimental.stateless_fold_in(base, 2))
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
    def sample_masks(self, images, steps, seed, eta=0.0):
        """One DDIM sample of the [-1, 1] mask, float32 `(B, *spatial, C)`."""
        images = tf.cast(images, tf.float32)
        shape = tf.concat([tf.shape(images)[:-1], [self.config.num_classes]], axis=0)
        alpha_bars = self.schedule.alpha_bars_tf
        ts = ddim_timesteps_tf(steps, self.schedule.timesteps)
        num = tf.shape(ts)[0]
        batch = tf.shape(images)[0]
        eta = tf.cast(eta, tf.float32)
        seed = tf.cast(seed, tf.int64)
        z = tf.random.stateless_normal(shape, seed=seed)

        def body(i, z):
            t = ts[i]
            t_prev = tf.where(i + 1 < num, ts[tf.minimum(i + 1, num - 1)], 0)
            ab, ab_prev = alpha_bars[t], alpha_bars[t_prev]
            eps = self.denoiser(z, images, tf.fill([batch], t), training=False)
            x0 = tf.clip_by_value((z - tf.sqrt(1.0 - ab) * eps) / tf.sqrt(ab), -1.0, 1.0)
            eps = (z - tf.sqrt(ab) * x0) / tf.sqrt(1.0 - ab)
            sigma = eta * tf.sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))
            direction = tf.sqrt(tf.maximum(1.0 - ab_prev - sigma**2, 0.0)) * eps
            noise = tf.random.stateless_normal(
                shape, seed=tf.random.experimental.stateless_fold_in(seed, i + 1))
            z = tf.sqrt(ab_prev) * x0 + direction + sigma * noise
            return i + 1, tf.ensure_shape(z, images.shape[:-1] + (self.config.num_classes,))

        _, z = tf.while_loop(lambda i, z: i < num, body, (tf.constant(0), z))
        return z

    def segment_graph(self, images, steps, samples, seed, eta=0.0):
        """As `LDSeg.segment_graph`: mean probabilities over `samples` samples
        (a sample's probabilities: its mask mapped from [-1, 1] to [0, 1] and
        normalized over classes), their argmax and per-pixel SD."""
        c = self.config
        base = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
        out_shape = tf.concat([tf.shape(images)[:-1], [c.num_classes]], axis=0)

        def body(k, total, total_sq):
            x = self.sample_masks(images, steps,
                                  tf.random.experimental.stateless_fold_in(base, k), eta)
            p = tf.clip_by_value((x + 1.0) / 2.0, 0.0, 1.0) + 1e-6
            p = p / tf.reduce_sum(p, axis=-1, keepdims=True)
            return k + 1, total + p, total_sq + p * p

        zeros = tf.zeros(out_shape, tf.float32)
        _, total, total_sq = tf.while_loop(
            lambda k, *_: k < samples, body, (tf.constant(0), zeros, zeros))
        n = tf.cast(samples, tf.float32)
        mean = total / n
        var = tf.maximum(total_sq / n - mean * mean, 0.0)
        return {"labels": tf.argmax(mean, axis=-1, output_type=tf.int32), "probs": mean,
                "std": tf.reduce_mean(tf.sqrt(var), axis=-1)}

    def segment(self, images, steps=None, samples=1, seed=None, eta=0.0, **ignored):
        """Like `LDSeg.segment` (DDIM only): numpy `labels`, `probs`, `std`."""
        c = self.config
        images = np.asarray(images, dtype=np.float32)
        unbatched = images.ndim == len(c.image_shape)
        if unbatched:
            images = images[None]
        if images.shape[1:] != c.image_shape:
            raise ValueError(f"images must have shape (batch, {c.image_shape}); "
                             f"got {images.shape}.")
        steps = c.sampling_steps if steps is None else int(steps)
        if not 1 <= steps <= c.timesteps:
            raise ValueError(f"steps must be in 1..{c.timesteps}; got {steps}.")
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        if self._segment_fn is None:
            # No AutoGraph (the loops are tf.while_loops already): AutoGraph
            # re-reads this package's source files when it traces, and a file
            # edited since import made it convert the wrong function.
            self._segment_fn = tf.function(self.segment_graph, reduce_retracing=True,
                                           autograph=False)
        out = self._segment_fn(tf.constant(images), tf.constant(steps, tf.int32),
                               tf.constant(int(samples), tf.int32),
                               tf.constant(int(seed), tf.int64), tf.constant(float(eta)))
        out = {k: v.numpy() for k, v in out.items()}
        if unbatched:
            out = {k: v[0] for k, v in out.items()}
        return out

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "config": self.config.to_dict(),
                "widths": list(self.widths), "attention_levels": self.attention_levels}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(config.pop("config"), **config)
