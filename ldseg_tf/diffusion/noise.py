"""The forward process's randomness in training: timesteps and noise per sample."""

from __future__ import annotations

import tensorflow as tf


def training_noise(seed: int, stream: int, step, batch, sample_shape, timesteps: int,
                   pure_noise_fraction: float = 0.0, pure_noise_warmup_steps: int = 0):
    """Per-sample timesteps `(B,)` int32 in 1..T and noise `(B, *sample_shape)`.

    t ~ U{1..T}, except that a fraction `pure_noise_fraction` of the samples
    (on average) get t = T; during the first `pure_noise_warmup_steps` steps
    that fraction falls linearly from 1 (at step 0) to `pure_noise_fraction`.

    Drawn statelessly from (seed, stream, step) for the whole *global* batch
    (`batch` times the replicas in sync), of which each replica takes its own
    rows: training is reproducible and gives the same result on one device or
    many, and no two replicas share a sample's t or noise.

    Args:
        seed: the config's seed; stream: 0 for training, 1 for evaluation.
        step: the optimizer's iteration (int scalar tensor).
        batch: the per-replica batch size (int scalar tensor).
        sample_shape: `(*spatial, C)` of one diffused sample.
        timesteps: T.
        pure_noise_fraction, pure_noise_warmup_steps: see `LDSegConfig`.
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    ctx = tf.distribute.get_replica_context()
    replica = ctx.replica_id_in_sync_group if ctx is not None else 0
    base = tf.random.experimental.stateless_fold_in(
        tf.constant([seed, stream], tf.int64), tf.cast(step, tf.int64))
    total = batch * replicas
    t = tf.random.stateless_uniform(
        [total], seed=tf.random.experimental.stateless_fold_in(base, 1),
        minval=1, maxval=timesteps + 1, dtype=tf.int32)
    if pure_noise_fraction > 0 or pure_noise_warmup_steps > 0:
        # Every sampler starts at t = T, where z_T carries no label and the
        # denoiser must read the image alone; with the cosine schedule,
        # uniform t trains that regime on ~1/10 of the samples
        # (alpha-bar < 0.03 only for t > 0.89 T).
        u = tf.random.stateless_uniform(
            [total], seed=tf.random.experimental.stateless_fold_in(base, 3))
        fraction = tf.constant(pure_noise_fraction, tf.float32)
        if pure_noise_warmup_steps > 0:
            remaining = tf.maximum(0.0, 1.0 - tf.cast(step, tf.float32) / pure_noise_warmup_steps)
            fraction = fraction + (1.0 - fraction) * remaining
        t = tf.where(u < fraction, timesteps, t)
    noise = tf.random.stateless_normal(
        tf.concat([[total], list(sample_shape)], axis=0),
        seed=tf.random.experimental.stateless_fold_in(base, 2))
    start = tf.cast(replica, tf.int32) * batch
    return t[start:start + batch], noise[start:start + batch]
