"""What a reproduction trains: the models compared (`MODELS`), the sizes and
budgets of a run (`Profile`, `PROFILES`) and the configs they give
(`base_config`, `model_config`)."""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

from ldseg_tf.config import LDSegConfig
from ldseg_tf.data.sources import get_source

#: Model keys, their report names and what they are.
MODELS = {
    "ldseg": ("LDSeg", "end-to-end latent diffusion (the paper)"),
    "two_stage": ("Two-stage LDM", "LSegDiff-style: frozen label autoencoder, then latent MSE"),
    "pixel_diffusion": ("Pixel diffusion", "MedSegDiff-style, simplified: DDIM on the mask"),
    "resunet": ("ResUNet", "deterministic residual U-Net"),
    "ablation_label": ("LDSeg, label enc. -> NN down-sampling", "Table V"),
    "ablation_image": ("LDSeg, image enc. -> down-sampling", "Table V"),
    "ablation_both": ("LDSeg, both -> down-sampling", "Table V"),
}

@dataclasses.dataclass(frozen=True)
class Profile:
    """Sizes and schedules of a reproduction run.

    `image_shapes` maps a data source ("synthetic:knee", "drive", ..., with
    "2d"/"3d" as fall-backs; the channel count always comes from the data) to
    the model input; `config` holds `LDSegConfig` overrides on top of `preset`.
    Training runs `train_steps` optimizer steps per model, or for
    `train_seconds` when that is set (then `train_steps` is an upper bound).
    """

    name: str
    preset: str
    image_shapes: Dict[str, Tuple[int, ...]]
    config: Dict[str, object]
    timesteps: int
    train_examples: Optional[int]
    test_examples: Optional[int]
    batch_size: int
    train_steps: int
    train_seconds: Optional[float]
    steps_per_epoch: int
    augment: bool
    stage1_fraction: float  # two-stage: share of the steps / time for the autoencoder
    pixel_steps: int  # DDIM steps of the pixel-space diffusion in the accuracy table
    step_sweep: Tuple[int, ...]
    speed_images: int
    size_sweep: Tuple[int, ...]
    size_sweep_steps: int
    noise_sigmas: Tuple[float, ...]
    uncertainty_samples: int
    uncertainty_cases: int
    distances: bool

    def image_shape(self, data: str, channels: int, spatial_dims: int) -> Tuple[int, ...]:
        for key in (data, data.split(":")[0], f"{spatial_dims}d"):
            if key in self.image_shapes:
                return tuple(self.image_shapes[key]) + (channels,)
        raise ValueError(f"profile {self.name!r} has no image shape for {data!r}.")


_PAPER_STEPS = (1, 2, 5, 10, 50, 100, 1000)
_SIGMAS = (0.0, 0.05, 0.1, 0.15, 0.2)

PROFILES = {
    "tiny": Profile(
        name="tiny", preset="small",
        image_shapes={"2d": (32, 32), "3d": (16, 16, 16)},
        config=dict(ema=0.9), timesteps=100, train_examples=16, test_examples=4,
        batch_size=4, train_steps=4, train_seconds=None, steps_per_epoch=4, augment=False,
        stage1_fraction=0.5, pixel_steps=5, step_sweep=_PAPER_STEPS, speed_images=1,
        size_sweep=(32, 64), size_sweep_steps=5, noise_sigmas=_SIGMAS,
        uncertainty_samples=6, uncertainty_cases=2, distances=True),
    "cpu": Profile(
        name="cpu", preset="small",
        image_shapes={"2d": (128, 128), "knee": (32, 32, 64), "3d": (32, 32, 32)},
        config=dict(downsamplings=3, label_encoder_widths=(8, 16, 16, 16),
                    image_encoder_widths=(16, 16, 16), decoder_widths=(16, 16, 16),
                    denoiser_widths=(16, 32), learning_rate=2e-3),
        timesteps=1000, train_examples=None, test_examples=None, batch_size=4,
        train_steps=100_000, train_seconds=270.0, steps_per_epoch=25, augment=True,
        stage1_fraction=0.4, pixel_steps=50, step_sweep=_PAPER_STEPS, speed_images=2,
        size_sweep=(64, 128, 256), size_sweep_steps=50, noise_sigmas=_SIGMAS,
        uncertainty_samples=100, uncertainty_cases=3, distances=True),
    "paper": Profile(
        name="paper", preset="paper",
        image_shapes={"2d": (512, 512), "glas": (512, 768), "knee": (128, 128, 256),
                      "3d": (128, 128, 128)},
        config=dict(), timesteps=1000, train_examples=None, test_examples=None,
        batch_size=4, train_steps=50_000, train_seconds=None, steps_per_epoch=500,
        augment=True, stage1_fraction=0.4, pixel_steps=100, step_sweep=_PAPER_STEPS,
        speed_images=5, size_sweep=(64, 128, 256, 512), size_sweep_steps=50,
        noise_sigmas=_SIGMAS, uncertainty_samples=100, uncertainty_cases=4, distances=True),
}


def base_config(profile: Profile, data: str, seed: int = 0, image_shape=None) -> LDSegConfig:
    """The LDSeg config of a profile for a data source (end-to-end, learned
    encoders); `image_shape` (spatial, or with channels) overrides the profile's."""
    source = get_source(data)
    if source.image_shape is None:
        raise ValueError(f"no defaults for --data {data!r}: it has no default input shape.")
    channels, spatial_dims = source.image_shape[-1], len(source.image_shape) - 1
    if image_shape:
        shape = tuple(int(s) for s in image_shape)
        if len(shape) == spatial_dims:
            shape += (channels,)
    else:
        shape = profile.image_shape(data, channels, spatial_dims)
    fields = dict(profile.config)
    fields.update(image_shape=shape, num_classes=source.num_classes, timesteps=profile.timesteps,
                  seed=seed)
    if source.class_names:
        fields["class_names"] = source.class_names
    if len(shape) == 4 and profile.preset == "small":
        # Self-attention over a volume is costly; the small 3D model does without.
        fields.setdefault("image_encoder_attention_levels", 0)
    return LDSegConfig.preset(profile.preset, **fields)


def model_config(base: LDSegConfig, key: str) -> LDSegConfig:
    """The config of model `key` (see `MODELS`): `base` with the two-stage or
    ablation switch of that model."""
    changes = {
        "two_stage": dict(training="two_stage"),
        "ablation_label": dict(label_encoder="downsample"),
        "ablation_image": dict(image_encoder="downsample"),
        "ablation_both": dict(label_encoder="downsample", image_encoder="downsample"),
    }.get(key, {})
    return LDSegConfig.from_dict({**base.to_dict(), **changes}) if changes else base
