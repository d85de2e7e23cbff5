"""Reverse-process samplers in the latent space: DDIM (any number of steps) and
DDPM ancestral sampling (paper Algorithm 2), as batched TensorFlow graphs.

Both run in one `tf.while_loop`, so the number of steps may be a runtime tensor
(the exported SavedModel takes it as an input).

Numerical guard. The first step starts at t = T where alpha-bar_T is ~1e-9 for
the cosine schedule: the usual x0 estimate (z_t - sqrt(1 - ab) eps) / sqrt(ab)
divides by ~3e-5 and amplifies every error of the denoiser. LDSeg's label
encoder, however, ends in a per-sample standardization, so every valid clean
latent has mean 0 and standard deviation 1. We therefore *project* the x0
estimate onto that set: x0 = standardize(z_t - sqrt(1 - ab) eps). Standardizing
is invariant to positive scaling, so the division by sqrt(ab) disappears
altogether (it is exact even when ab underflows to 0), and the noise estimate is
recomputed from the projected x0 so the DDIM update stays self-consistent
(as with x0 clipping in Ho et al. and Nichol & Dhariwal). A v-predicting
denoiser gives x0 = sqrt(ab) z_t - sqrt(1 - ab) v with no division at all; it
is projected the same way, and so is the direct estimate of an x0-predicting
one.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ldseg_tf.config import PREDICTIONS
from ldseg_tf.diffusion.schedule import NoiseSchedule

_STD_EPS = 1e-6


def ddim_timesteps(steps: int, timesteps: int) -> np.ndarray:
    """The paper's step rule: `steps` evenly spaced reals between 1 and T
    inclusive, rounded to the nearest integer, in decreasing order.

    K=2 -> [T, 1]; K=T -> [T, T-1, ..., 1]. int32 `(K,)`.
    """
    if not 1 <= steps <= timesteps:
        raise ValueError(f"steps must be in 1..{timesteps}; got {steps}.")
    if steps == 1:
        return np.array([timesteps], dtype=np.int32)
    return np.round(np.linspace(1.0, timesteps, steps))[::-1].astype(np.int32)


def ddim_timesteps_tf(steps, timesteps: int) -> tf.Tensor:
    """Graph version of `ddim_timesteps` for a runtime `steps` tensor (same
    float64 arithmetic and round-half-to-even, hence the same steps)."""
    steps = tf.cast(steps, tf.int32)
    ts = tf.round(tf.linspace(tf.constant(1.0, tf.float64), float(timesteps), steps))
    ts = tf.reverse(tf.cast(ts, tf.int32), axis=[0])
    # linspace(1, T, 1) is [1]; one step must start from pure noise at T.
    return tf.where(steps == 1, tf.constant([timesteps], tf.int32), ts)


def standardize(x: tf.Tensor) -> tf.Tensor:
    """Per-sample standardization over all non-batch axes (float32)."""
    axes = list(range(1, x.shape.rank))
    mean, var = tf.nn.moments(x, axes=axes, keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + _STD_EPS)


def sample_latent(denoise_fn, z_i, schedule: NoiseSchedule, steps, seed, eta=0.0,
                  latent_shape=None, method: str = "ddim", prediction: str = "epsilon"):
    """Draws z_0 ~ p(z_0 | z_i) by the reverse process.

    Args:
        denoise_fn: callable `(z_t, z_i, t) -> eps_hat` (or `v_hat`, see
            `prediction`), float32 `(B, *latent)`.
        z_i: image embedding `(B, *latent_spatial, C_i)`.
        schedule: the model's `NoiseSchedule`.
        steps: number of DDIM steps K (python int or int scalar tensor); ignored
            for `method="ddpm"`, which always takes all T steps.
        seed: int `(2,)` seed of the stateless noise: the same seed and batch give
            the same sample.
        eta: 0 for deterministic DDIM, 1 for DDPM-like stochastic steps.
        latent_shape: `(*latent_spatial, C)` of z_t; defaults to z_i's.
        method: "ddim" or "ddpm". DDPM ancestral sampling (Algorithm 2, with the
            posterior variance beta-tilde) is DDIM with eta = 1 over every step,
            which is how it is computed here.
        prediction: "epsilon" if `denoise_fn` predicts the noise, "v" if it
            predicts v = sqrt(ab) eps - sqrt(1 - ab) z_0, "x0" if it predicts
            z_0 itself.

    Returns:
        float32 `(B, *latent)` sample z_0 (standardized per sample).
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; use one of {PREDICTIONS}.")
    if method == "ddpm":
        steps, eta = schedule.timesteps, 1.0
    elif method != "ddim":
        raise ValueError(f"unknown sampler {method!r}; use 'ddim' or 'ddpm'.")
    seed = tf.cast(seed, tf.int64)
    batch = tf.shape(z_i)[0]
    if latent_shape is None:
        latent_shape = z_i.shape[1:]
    shape = tf.concat([[batch], tf.constant(latent_shape, tf.int32)], axis=0)
    alpha_bars = schedule.alpha_bars_tf
    ts = ddim_timesteps_tf(steps, schedule.timesteps)
    num = tf.shape(ts)[0]
    eta = tf.cast(eta, tf.float32)
    z = tf.random.stateless_normal(shape, seed=seed)

    def body(i, z):
        t = ts[i]
        t_prev = tf.where(i + 1 < num, ts[tf.minimum(i + 1, num - 1)], 0)
        ab = alpha_bars[t]
        ab_prev = alpha_bars[t_prev]
        out = denoise_fn(z, z_i, tf.fill([batch], t))
        if prediction == "v":
            x0 = standardize(tf.sqrt(ab) * z - tf.sqrt(1.0 - ab) * out)
        elif prediction == "x0":
            x0 = standardize(out)
        else:
            x0 = standardize(z - tf.sqrt(1.0 - ab) * out)
        eps = (z - tf.sqrt(ab) * x0) / tf.sqrt(1.0 - ab)
        sigma = eta * tf.sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))
        direction = tf.sqrt(tf.maximum(1.0 - ab_prev - sigma**2, 0.0)) * eps
        noise = tf.random.stateless_normal(
            shape, seed=tf.random.experimental.stateless_fold_in(seed, i + 1)
        )
        z = tf.sqrt(ab_prev) * x0 + direction + sigma * noise
        z = tf.ensure_shape(z, [None] + list(latent_shape))
        return i + 1, z

    # The batch axis may be static (1) on entry and unknown after one step.
    _, z = tf.while_loop(lambda i, z: i < num, body, (tf.constant(0), z),
                         shape_invariants=(tf.TensorShape([]),
                                           tf.TensorShape([None] + list(latent_shape))))
    return z
