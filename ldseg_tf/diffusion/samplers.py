"""The reverse process: DDIM (any number of steps) and DDPM ancestral sampling
(paper Algorithm 2) in one batched TensorFlow graph, shared by LDSeg (in its
latent space) and the pixel-space baseline.

It runs in one `tf.while_loop`, so the number of steps may be a runtime tensor
(the exported SavedModel takes it as an input).

x0 projection. The first step starts at t = T where alpha-bar_T is ~1e-9 for
the cosine schedule: the usual x0 estimate (z_t - sqrt(1 - ab) eps) / sqrt(ab)
divides by ~5e-5 and amplifies every error of the denoiser. Every model
therefore passes a *projection* of the estimate onto its set of valid clean
samples, which is given the estimate as `(numerator, scale)` with
x0 = numerator / scale:

- LDSeg's label encoder ends in a per-sample standardization, so every valid
  clean latent has mean 0 and standard deviation 1: x0 = standardize(numerator).
  Standardizing is invariant to positive scaling, so the division by sqrt(ab)
  disappears altogether (it is exact even when ab underflows to 0).
- Pixel-space masks live in [-1, 1]: x0 = clip(numerator / scale, -1, 1)
  (`clip_projection`, as in Ho et al. and Nichol & Dhariwal).

The noise estimate is recomputed from the projected x0 so that the DDIM update
stays self-consistent. A v-predicting denoiser gives
x0 = sqrt(ab) z_t - sqrt(1 - ab) v with no division at all (scale 1), and an
x0-predicting one its estimate directly.

Noise. The initial and per-step noise of every image comes from `seed` alone,
not from its row: every image of a batch gets the same draw. An image's result
therefore does not depend on the batch it arrives in (TF Serving batches
requests; `evaluate` and `segment` batch differently), and independent samples
come from different seeds, not from different rows.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ldseg_tf.config import PREDICTIONS
from ldseg_tf.diffusion.schedule import NoiseSchedule


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


def clip_projection(numerator, scale):
    """x0 = clip(numerator / scale, -1, 1): the projection for samples in
    [-1, 1] (pixel-space one-hot masks, the label down-sampler's codes)."""
    return tf.clip_by_value(numerator / scale, -1.0, 1.0)


def shared_noise(batch, sample_shape, seed) -> tf.Tensor:
    """float32 standard normal noise `(batch, *sample_shape)`, the same for
    every row: one `(1, *sample_shape)` draw from `seed` (int `(2,)`), broadcast."""
    one = tf.random.stateless_normal([1] + list(sample_shape), seed=seed)
    return tf.broadcast_to(one, tf.concat([[batch], tf.shape(one)[1:]], axis=0))


def _coefficients(schedule: NoiseSchedule, t, t_prev, eta):
    """float32 scalars of one step t -> t_prev, computed in float64:
    sqrt(ab), sqrt(1 - ab), sqrt(ab_prev), the DDIM sigma and the weight of
    the noise estimate (the direction to z_t)."""
    ab, a, s = schedule.tables_tf(tf.float64)
    ab_t, ab_prev = ab[t], ab[t_prev]
    a_prev, s_prev = a[t_prev], s[t_prev]
    # sigma^2 = (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev) (Song et al., eq. 16)
    sigma = tf.cast(eta, tf.float64) * s_prev / s[t] * tf.sqrt(1.0 - ab_t / ab_prev)
    direction = tf.sqrt(tf.maximum(s_prev**2 - sigma**2, 0.0))
    return [tf.cast(v, tf.float32) for v in (a[t], s[t], a_prev, sigma, direction)]


def ddim_sample(denoise_fn, cond, schedule: NoiseSchedule, steps, seed, sample_shape,
                project_x0, eta=0.0, method: str = "ddim", prediction: str = "epsilon"):
    """Draws x_0 ~ p(x_0 | cond) by the reverse process.

    Args:
        denoise_fn: callable `(x_t, cond, t) -> output`, float32 `(B, *sample)`:
            eps-hat, v-hat or x0-hat after `prediction`; `t` is `(B,)` int32.
        cond: the conditioning `(B, ...)` (LDSeg: the image embedding z_i;
            pixel diffusion: the image); its first axis gives the batch.
        schedule: the model's `NoiseSchedule`.
        steps: number of DDIM steps K (python int or int scalar tensor); ignored
            for `method="ddpm"`, which always takes all T steps.
        seed: int `(2,)` seed of the stateless noise: the same seed gives the
            same sample, for every image in any batch (see the module docstring).
        sample_shape: `(*spatial, C)` of one sample x_t.
        project_x0: `(numerator, scale) -> x0`, the projection of the estimate
            x0 = numerator / scale onto the valid clean samples (module docstring).
        eta: 0 for deterministic DDIM, 1 for DDPM-like stochastic steps.
        method: "ddim" or "ddpm". DDPM ancestral sampling (Algorithm 2, with the
            posterior variance beta-tilde) is DDIM with eta = 1 over every step,
            which is how it is computed here.
        prediction: "epsilon" if `denoise_fn` predicts the noise, "v" if it
            predicts v = sqrt(ab) eps - sqrt(1 - ab) x_0, "x0" if it predicts
            x_0 itself.

    Returns:
        float32 `(B, *sample_shape)` sample x_0 (projected).
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; use one of {PREDICTIONS}.")
    if method == "ddpm":
        steps, eta = schedule.timesteps, 1.0
    elif method != "ddim":
        raise ValueError(f"unknown sampler {method!r}; use 'ddim' or 'ddpm'.")
    seed = tf.cast(seed, tf.int64)
    batch = tf.shape(cond)[0]
    sample_shape = list(sample_shape)
    ts = ddim_timesteps_tf(steps, schedule.timesteps)
    num = tf.shape(ts)[0]

    def body(i, z):
        t = ts[i]
        t_prev = tf.where(i + 1 < num, ts[tf.minimum(i + 1, num - 1)], 0)
        a, s, a_prev, sigma, direction = _coefficients(schedule, t, t_prev, eta)
        out = denoise_fn(z, cond, tf.fill([batch], t))
        if prediction == "v":
            x0 = project_x0(a * z - s * out, 1.0)
        elif prediction == "x0":
            x0 = project_x0(out, 1.0)
        else:
            x0 = project_x0(z - s * out, a)
        eps = (z - a * x0) / s
        noise = shared_noise(batch, sample_shape,
                             tf.random.experimental.stateless_fold_in(seed, i + 1))
        z = a_prev * x0 + direction * eps + sigma * noise
        return i + 1, tf.ensure_shape(z, [None] + sample_shape)

    # The batch axis may be static (1) on entry and unknown after one step.
    z = tf.ensure_shape(shared_noise(batch, sample_shape, seed), [None] + sample_shape)
    _, z = tf.while_loop(lambda i, z: i < num, body, (tf.constant(0), z),
                         shape_invariants=(tf.TensorShape([]),
                                           tf.TensorShape([None] + sample_shape)))
    return z
