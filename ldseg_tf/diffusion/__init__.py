"""Noise schedules and reverse-process samplers."""

from ldseg_tf.diffusion.samplers import ddim_timesteps, ddim_timesteps_tf, sample_latent
from ldseg_tf.diffusion.schedule import NoiseSchedule

__all__ = ["NoiseSchedule", "ddim_timesteps", "ddim_timesteps_tf", "sample_latent"]
