"""Noise schedules, the reverse-process sampler and the sample ensemble."""

from ldseg_tf.diffusion.ensemble import sample_ensemble
from ldseg_tf.diffusion.noise import training_noise
from ldseg_tf.diffusion.samplers import (clip_projection, ddim_sample, ddim_timesteps,
                                         ddim_timesteps_tf)
from ldseg_tf.diffusion.schedule import NoiseSchedule

__all__ = ["NoiseSchedule", "clip_projection", "ddim_sample", "ddim_timesteps",
           "ddim_timesteps_tf", "sample_ensemble", "training_noise"]
