"""Noise schedules: beta_t and alpha-bar_t for t = 0..T.

Index convention, shared by training and sampling: `alpha_bar[0] = 1` is the
clean latent, `alpha_bar[t]` for t = 1..T follows eq. (5) with
alpha_bar_t = prod_{i<=t} (1 - beta_i). Training draws t ~ U{1..T}; sampling
starts at t = T and ends by mapping t = 1 to t = 0.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

MAX_BETA = 0.999
# The largest alpha-bar_T a usable schedule may end at: sampling starts from
# N(0, I), which must be (almost) q(z_T | z_0).
MAX_FINAL_ALPHA_BAR = 1e-3


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = MAX_BETA) -> np.ndarray:
    """Nichol & Dhariwal (2021) cosine schedule, betas clipped at `max_beta` so the
    last step is not singular. Returns float64 `(T,)` for t = 1..T."""
    steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    f = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
    return np.clip(betas, 0.0, max_beta)


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Ho et al. (2020) linear schedule, rescaled so that any T gives the same
    total noise as T = 1000 (Nichol & Dhariwal 2021). float64 `(T,)`."""
    scale = 1000.0 / timesteps
    return np.linspace(beta_start * scale, min(beta_end * scale, MAX_BETA), timesteps,
                       dtype=np.float64)


class NoiseSchedule:
    """A discrete variance schedule with T steps.

    Attributes (float64 numpy, length T + 1, index = timestep):
        betas: beta_t, with betas[0] = 0.
        alpha_bars: alpha-bar_t, with alpha_bars[0] = 1, strictly decreasing.
        sqrt_alpha_bars, sqrt_one_minus_alpha_bars: sqrt(ab_t) and
            sqrt(1 - ab_t), computed here in float64: in float32, 1 - ab_t
            loses ~1e-3 of its value for small t (ab_1 ~ 1 - 4e-5).
    """

    def __init__(self, timesteps: int = 1000, kind: str = "cosine", betas=None):
        if betas is None:
            if kind == "cosine":
                betas = cosine_betas(timesteps)
            elif kind == "linear":
                betas = linear_betas(timesteps)
            else:
                raise ValueError(f"unknown schedule {kind!r}; use 'cosine' or 'linear'.")
        betas = np.asarray(betas, dtype=np.float64)
        if betas.shape != (timesteps,) or np.any(betas <= 0) or np.any(betas > 1):
            raise ValueError(f"betas must be {timesteps} values in (0, 1].")
        self.timesteps = timesteps
        self.kind = kind
        self.betas = np.concatenate([[0.0], betas])
        self.alpha_bars = np.cumprod(1.0 - self.betas)
        self.sqrt_alpha_bars = np.sqrt(self.alpha_bars)
        self.sqrt_one_minus_alpha_bars = np.sqrt(1.0 - self.alpha_bars)

    @property
    def alpha_bars_tf(self) -> tf.Tensor:
        """float32 `(T + 1,)` tensor of alpha-bar, for gathering in graphs."""
        # Re-created per graph: a constant captured from another graph or from
        # eager mode would become an external capture of every SavedModel.
        return tf.constant(self.alpha_bars, dtype=tf.float32)

    def alpha_bar(self, t) -> tf.Tensor:
        """alpha-bar at integer timesteps `t` (any shape), float32."""
        return tf.gather(self.alpha_bars_tf, tf.cast(t, tf.int32))

    def tables_tf(self, dtype=tf.float32):
        """`(alpha_bar, sqrt(ab), sqrt(1 - ab))`, each a `(T + 1,)` tensor of
        `dtype`, for gathering in graphs (re-created per graph, see
        `alpha_bars_tf`)."""
        return tuple(tf.constant(v, dtype=dtype) for v in
                     (self.alpha_bars, self.sqrt_alpha_bars, self.sqrt_one_minus_alpha_bars))

    def coefficients(self, t, rank: int):
        """`(sqrt(ab_t), sqrt(1 - ab_t))` for `(B,)` int timesteps `t`, float32,
        shaped `(B, 1, ..., 1)` to broadcast against rank-`rank` tensors."""
        _, a, s = self.tables_tf()
        t = tf.cast(t, tf.int32)
        shape = [-1] + [1] * (rank - 1)
        return tf.reshape(tf.gather(a, t), shape), tf.reshape(tf.gather(s, t), shape)

    def q_sample(self, z0, t, noise):
        """Forward diffusion, eq. (11): sqrt(ab_t) z0 + sqrt(1 - ab_t) eps.

        `z0` and `noise` are `(B, ...)` float32, `t` is `(B,)` int.
        """
        a, s = self.coefficients(t, z0.shape.rank)
        return a * z0 + s * noise
