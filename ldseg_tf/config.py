"""`LDSegConfig`: the one object that describes an LDSeg model.

The CLI, the notebooks, the tuner and the exporter all build models from it, and it
round-trips through JSON so that a run directory fully describes its model.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from typing import Any, Optional, Tuple

SCHEDULES = ("cosine", "linear")
PREDICTIONS = ("epsilon", "v", "x0")
#: `LDSegConfig.dice`: how the soft-Dice term averages (see `ldseg_tf.losses`).
DICE_MODES = ("pooled", "foreground")
NORMALIZATIONS = ("minmax", "zscore", "none")
TRAINING_MODES = ("end_to_end", "two_stage")
ENCODER_KINDS = ("learned", "downsample")
LABEL_RESAMPLINGS = ("conv", "pixel_shuffle")
IMAGE_CONDITIONINGS = ("embedding", "multiscale")
EMA_SCOPES = ("denoiser", "sampling")
INFERENCES = ("resize", "tiles")
#: Mask value of pixels that are no part of the image (the padding of a patch
#: smaller than the model's input): the losses and metrics skip them.
IGNORE_LABEL = -1


def _default_label_encoder_widths(downsamplings: int) -> Tuple[int, ...]:
    # The authors' released model uses 16/32/64/64 before the four poolings and 32
    # after; deeper levels keep 64 so the parameter count stays close to theirs.
    return tuple(min(16 * 2**i, 64) for i in range(downsamplings)) + (32,)


def _default_image_encoder_widths(downsamplings: int) -> Tuple[int, ...]:
    widths = [min(32 * 2**i, 64) for i in range(downsamplings)]
    widths[-1] = 32
    return tuple(widths)


def _default_decoder_widths(downsamplings: int) -> Tuple[int, ...]:
    return tuple(reversed(_default_image_encoder_widths(downsamplings)))


def parse_overrides(changes) -> dict:
    """`["prediction=x0", "denoiser_widths=[16,32]"]` -> `{"prediction": "x0", ...}`.

    Values are read as JSON when they parse (numbers, lists, null), else kept as
    strings. Field names are checked where the config is built."""
    overrides = {}
    for change in changes:
        key, sep, value = change.partition("=")
        if not sep or not key:
            raise ValueError(f"overrides are key=value; got {change!r}.")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


#: Named configurations: `LDSegConfig.preset(name, **overrides)`.
PRESETS = {
    "paper": dict(),
    # Thin structures (vessels, nerves, cartilage, gland borders): a latent at
    # half the image side with 4 channels (64x the values of `paper`'s), the
    # clean-latent reconstruction term, no attention in the image encoder (at
    # full and half resolution it would cost gigabytes), a four-level denoiser
    # with attention only at its deepest level (1/16 of the image side: higher
    # up it is much slower) and one residual block per level, an x0-predicting
    # denoiser trained on t = T for half of the samples (so that 2 DDIM steps
    # suffice), a label autoencoder with no convolution at full resolution
    # (pixel shuffle) and the image features added at every denoiser level;
    # twice the paper's learning rate after a 100-step warm-up; the soft Dice
    # of the foreground classes (eq. 15's pooled Dice let an empty vessel mask
    # score well, and `fine` sampled empty masks for its first ~300 DRIVE steps).
    # No pure-noise warm-up: it learned faster on DRIVE with seed 0 but left
    # one seed's masks empty for 300 steps (README, "Cost"). One DDIM step by
    # default: the x0-predicting denoiser's first step is the answer, and the
    # barely trained t = 1 step after it lowered the DRIVE DSC (README, "Cost").
    # The measurements behind it are in "Latent capacity" and "Cost" in the README.
    "fine": dict(
        downsamplings=1,
        latent_channels=4,
        autoencoder_weight=1.0,
        image_encoder_attention_levels=0,
        denoiser_widths=(16, 32, 64, 64),
        denoiser_attention_levels=1,
        prediction="x0",
        pure_noise_fraction=0.5,
        denoiser_res_blocks=1,
        label_resampling="pixel_shuffle",
        image_conditioning="multiscale",
        warmup_steps=100,
        learning_rate=2e-3,
        dice="foreground",
        sampling_steps=1,
    ),
    "small": dict(
        image_shape=(32, 32, 3),
        downsamplings=2,
        label_encoder_widths=(8, 16, 16),
        image_encoder_widths=(16, 16),
        denoiser_widths=(16, 32),
        denoiser_res_blocks=1,
        denoiser_attention_levels=1,
        decoder_widths=(16, 16),
        attention_heads=2,
        norm_groups=4,
        time_embedding_dim=32,
    ),
}


@dataclasses.dataclass
class LDSegConfig:
    """Hyper-parameters of an LDSeg model.

    Attributes:
        image_shape: `(H, W, C)` for 2D or `(D, H, W, C)` for 3D inputs.
        num_classes: number of label classes, background included (>= 2).
        downsamplings: number of 2x down-samplings from image to latent (1..6).
            The latent has spatial shape `image_shape[:-1] / 2**downsamplings`.
        label_encoder_widths: filters of the label encoder's residual blocks,
            `downsamplings + 1` values (the last block runs at latent resolution).
        image_encoder_widths: filters per image-encoder level, `downsamplings` values.
        image_encoder_attention_levels: how many of the deepest image-encoder levels
            use multi-head self-attention (the paper: the last two).
        denoiser_widths: filters per denoiser U-Net level; the latent must be
            divisible by `2**(len(denoiser_widths) - 1)`.
        denoiser_res_blocks: residual blocks per denoiser level on the way down
            (one more on the way up, as in DDPM).
        denoiser_attention_levels: how many of the deepest denoiser levels use
            self-attention.
        decoder_widths: filters per label-decoder up-sampling level, `downsamplings`
            values.
        attention_heads: heads of every multi-head attention layer.
        norm_groups: groups of GroupNormalization (clipped to each layer's width).
        time_embedding_dim: size of the sinusoidal time embedding.
        latent_channels: channels of the label latent z_l0 (the paper uses 1).
        image_embedding_channels: channels of the image embedding z_i, or None
            for `latent_channels` (the paper: z_i has the latent's shape). Only
            the denoiser's input stem sees z_i, so a richer embedding costs
            little and lets the image encoder pass more than a latent's worth
            of image detail (thin structures) to the denoiser.
        timesteps: T, the number of diffusion steps.
        schedule: "cosine" (Nichol & Dhariwal 2021) or "linear" (Ho et al. 2020).
        prediction: what the denoiser outputs. "epsilon" (the paper): the noise
            eps, trained with ||eps - eps_hat||^2, and the decoder reads
            z_dn = z_t - eps_hat (eq. 12). "v" (Salimans & Ho 2022): the
            velocity v = sqrt(ab) eps - sqrt(1 - ab) z_0, trained with
            ||v - v_hat||^2, and the decoder reads the denoised latent
            z_dn = sqrt(ab) z_t - sqrt(1 - ab) v_hat. Near t = T, where the
            2-step sampler does almost all of its work, eps-prediction carries
            the label only in a residual ~sqrt(ab) (3e-5 at T) that the MSE
            ignores, while v-prediction *is* the label latent there. "x0": the
            clean label latent z_0 itself, trained with ||z_0 - z_0_hat||^2;
            the decoder reads z_0_hat, so the CE and Dice losses reach the
            denoiser and image encoder through the same path at every t, and
            at t = T the denoiser is a plain image-to-latent segmenter.
        pure_noise_fraction: fraction of training samples drawn at t = T instead
            of t ~ U{1..T} (0 = the paper). A 2-step DDIM sampler evaluates the
            denoiser at t = T and t = 1 only, and at t = T it must segment from
            the image alone; under uniform t and the cosine schedule only ~10%
            of the samples are that noisy. Needs `prediction="x0"` or "v" (a
            ValueError otherwise): an eps-predictor learns nothing at t = T
            (there eps = z_T).
        pure_noise_warmup_steps: optimizer steps over which the fraction of
            samples at t = T falls linearly from 1 to `pure_noise_fraction`
            (0 = none, a constant fraction). Early on the denoiser then trains
            only as the image-to-latent segmenter that the first DDIM step
            needs, with the whole batch, as a U-Net would; the other timesteps
            join gradually. Needs `prediction="x0"` or "v", as above. Off in
            every preset: on DRIVE it sped up early learning with one seed and
            left another's masks empty for 300 steps (README, "Cost").
        gamma: weight of the Dice loss (eq. 16).
        dice: how the soft Dice averages. "pooled" (eq. 15, the paper and its
            code): one overlap over all pixels and classes, background
            included, so a mask with few foreground pixels (vessels) scores
            well when empty. "foreground": the mean of each foreground class's
            own soft Dice (nnU-Net), where an empty prediction of a present
            class costs the full 1.
        lambda_: weight of the denoiser MSE (eq. 18).
        latent_target_gradient: whether the MSE's gradient reaches the label
            encoder through its target z_l0 (True: Algorithm 1 as written, one
            loss differentiated end to end). False stops it there, so that
            the label encoder is shaped by the decoder's CE and Dice only and
            cannot make its latent easier to predict instead of more
            informative (it still learns through z_t).
        autoencoder_weight: weight w of an extra reconstruction term
            w * (CE + gamma * Dice) of decode(z_l0), the clean latent (0 = the
            paper's loss). Eq. 12 trains the decoder only on z_dn = z_t - eps_hat,
            which for most t is a noisy mixture, yet sampling hands it a clean
            latent; this term trains the autoencoder on exactly that input, so
            it converges faster (measured in "Latent capacity" in the README).
            Costs one more decoder pass per training step. With
            training="two_stage" stage 1 already trains exactly this term, so
            w only adds `ae_loss` to the logs of both stages.
        dropout: dropout rate inside residual blocks.
        ema: decay of the exponential moving average of the weights used for
            sampling (see `ema_scope`), or None to sample with the raw weights.
        ema_scope: which weights the moving average covers. "denoiser" (as
            before): the denoiser only, so sampling runs the averaged denoiser
            on features from the current image encoder and decodes with the
            current decoder. "sampling": every component that sampling runs
            (image encoder, denoiser, label decoder), so that they come from
            the same moment of training. Ignored when `ema` is None.
        sampling_steps: DDIM steps used by `evaluate` and by default in `segment`
            and the exported signatures (2: the paper; `fine`: 1).
        learning_rate: initial learning rate of the default optimizer (the
            paper: 1e-3; `fine`: 2e-3, which learned faster on DRIVE and on
            thin lines, README "Cost").
        warmup_steps: steps of linear learning-rate warm-up before the
            paper's exponential decay (0: none, the paper). `fine` uses 100:
            without it some initial weights collapsed to empty masks early
            in training (README, "Cost").
        weight_decay: decoupled weight decay of the default optimizer (AdamW,
            Loshchilov & Hutter; every step multiplies the weights by
            1 - learning rate * weight_decay). 0: plain Adam, the paper.
        normalization: per-image intensity normalization applied by the input
            pipeline and the exported model: "minmax" (to [0, 1] over all
            channels), "zscore" (zero mean, unit variance) or "none".
        class_names: optional names of the classes (length `num_classes`).
        seed: base seed of the per-sample noise drawn during training.
        training: "end_to_end" (the paper, Algorithm 1: one loss, gradients into
            all four components) or "two_stage" (LSegDiff-style: stage 1 trains the
            label encoder + decoder as an autoencoder with CE + gamma * Dice, stage 2
            freezes them and trains image encoder + denoiser with the latent MSE
            only; see `LDSeg.set_training_stage`).
        label_encoder: "learned" (the paper's label encoder) or "downsample"
            (ablation, Table V: nearest-neighbour down-sampling of the label map
            to the latent size, coded in [-1, 1] per class; no weights).
        image_encoder: "learned" (the paper's image encoder) or "downsample"
            (ablation, Table V: area down-sampling of the channel-mean image to
            the latent size, then per-sample standardization; no weights).
        label_resampling: how the label encoder and decoder cross their
            full-resolution level. "conv" (the paper): a residual block at full
            resolution with max-pooling (encoder) or a transposed conv
            (decoder). "pixel_shuffle": a lossless pixel (un)shuffle, 2x2
            (2x2x2) pixels to channels and back, so that no convolution of the
            label autoencoder runs at full resolution (most of a `fine` step's
            cost on a CPU).
        image_conditioning: how the image reaches the denoiser. "embedding"
            (the paper): z_i, concatenated with z_t. "multiscale": z_i, and the
            image encoder also continues to the denoiser's depth and adds its
            features to every denoiser level (see `ImageEncoder`), so that at
            t = T the denoiser segments the image like a U-Net. Needs
            `image_encoder="learned"`.
        inference: how `ldseg predict` / `ldseg evaluate` bring an image of
            another size to the model. "resize" (the paper): to `image_shape`
            and back. "tiles": the model was trained on patches of
            `image_shape` (`make_dataset(patch_size=...)`, `ldseg train
            --patch-size`) and segments full-resolution images with a sliding
            window (`segment_tiled`).
        tile_overlap: fraction of a tile shared with its neighbour in
            sliding-window inference, in [0, 1) (nnU-Net: 0.5).
    """

    image_shape: Tuple[int, ...] = (256, 256, 3)
    num_classes: int = 2
    downsamplings: int = 4
    label_encoder_widths: Optional[Tuple[int, ...]] = None
    image_encoder_widths: Optional[Tuple[int, ...]] = None
    image_encoder_attention_levels: int = 2
    denoiser_widths: Tuple[int, ...] = (16, 32, 64)
    denoiser_res_blocks: int = 2
    denoiser_attention_levels: int = 2
    decoder_widths: Optional[Tuple[int, ...]] = None
    attention_heads: int = 8
    norm_groups: int = 8
    time_embedding_dim: int = 64
    latent_channels: int = 1
    image_embedding_channels: Optional[int] = None
    timesteps: int = 1000
    schedule: str = "cosine"
    prediction: str = "epsilon"
    pure_noise_fraction: float = 0.0
    pure_noise_warmup_steps: int = 0
    gamma: float = 2.0
    dice: str = "pooled"
    lambda_: float = 1.0
    latent_target_gradient: bool = True
    autoencoder_weight: float = 0.0
    dropout: float = 0.0
    ema: Optional[float] = 0.999
    ema_scope: str = "denoiser"
    sampling_steps: int = 2
    learning_rate: float = 1e-3
    warmup_steps: int = 0
    weight_decay: float = 0.0
    normalization: str = "minmax"
    class_names: Optional[Tuple[str, ...]] = None
    seed: int = 0
    training: str = "end_to_end"
    label_encoder: str = "learned"
    image_encoder: str = "learned"
    label_resampling: str = "conv"
    image_conditioning: str = "embedding"
    inference: str = "resize"
    tile_overlap: float = 0.5

    def __post_init__(self):
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Checks the type and range of every field, for configs built in
        Python, from JSON files and from `--set` alike; raises `ValueError`
        (an `ldseg_tf.errors.UserError`) naming the first invalid field.

        Types come from the field annotations: an `int` field takes integers
        (not 2.5, not True), a `float` field finite numbers, a tuple field a
        list or tuple of such values (stored as a tuple), an `Optional` field
        also None. The widths left None get their defaults here."""
        self._check_types()
        self._fill_defaults()
        shape = self.image_shape
        if len(shape) not in (3, 4):
            raise ValueError(
                f"image_shape must be (H, W, C) or (D, H, W, C); got {shape} "
                f"(rank {len(shape)})."
            )
        if any(s < 1 for s in shape):
            raise ValueError(f"image_shape must be positive; got {shape}.")
        factor = 2**self.downsamplings
        bad = [s for s in shape[:-1] if s % factor]
        if bad:
            raise ValueError(
                f"image_shape {shape}: spatial sizes must be divisible by "
                f"2**downsamplings = {factor}; {bad} are not."
            )
        if self.num_classes < 2:
            raise ValueError(
                f"num_classes counts the background and must be >= 2; got {self.num_classes}."
            )
        if self.dice not in DICE_MODES:
            raise ValueError(f"dice must be one of {DICE_MODES}; got {self.dice!r}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}; got {self.schedule!r}.")
        if self.prediction not in PREDICTIONS:
            raise ValueError(
                f"prediction must be one of {PREDICTIONS}; got {self.prediction!r}.")
        if self.image_embedding_channels is not None and self.image_embedding_channels < 1:
            raise ValueError(f"image_embedding_channels must be None or >= 1; got "
                             f"{self.image_embedding_channels}.")
        if self.training not in TRAINING_MODES:
            raise ValueError(f"training must be one of {TRAINING_MODES}; got {self.training!r}.")
        for name in ("label_encoder", "image_encoder"):
            if getattr(self, name) not in ENCODER_KINDS:
                raise ValueError(
                    f"{name} must be one of {ENCODER_KINDS}; got {getattr(self, name)!r}.")
        self._validate_architecture()
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}; got {self.normalization!r}."
            )
        self._validate_widths()
        for name in ("timesteps", "latent_channels", "attention_heads", "norm_groups",
                     "denoiser_res_blocks", "time_embedding_dim", "sampling_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if self.time_embedding_dim % 2:
            raise ValueError(f"time_embedding_dim must be even; got {self.time_embedding_dim}.")
        if self.sampling_steps > self.timesteps:
            raise ValueError(
                f"sampling_steps ({self.sampling_steps}) cannot exceed timesteps "
                f"({self.timesteps})."
            )
        if not 0.0 <= self.pure_noise_fraction <= 1.0:
            raise ValueError(
                f"pure_noise_fraction must be in [0, 1]; got {self.pure_noise_fraction}.")
        if self.pure_noise_warmup_steps < 0:
            raise ValueError(f"pure_noise_warmup_steps must be >= 0; got "
                             f"{self.pure_noise_warmup_steps}.")
        for name in ("pure_noise_fraction", "pure_noise_warmup_steps"):
            if getattr(self, name) > 0 and self.prediction == "epsilon":
                # At t = T, z_T is the noise itself: an eps-predictor only learns
                # to copy its input there, so the moved samples would be wasted.
                raise ValueError(
                    f"{name}={getattr(self, name)} needs prediction='x0' or 'v'; with "
                    f"prediction='epsilon' the samples at t = T teach nothing (there "
                    f"eps = z_T): set {name}=0 for eps-prediction.")
        if self.autoencoder_weight < 0:
            raise ValueError(f"autoencoder_weight must be >= 0; got {self.autoencoder_weight}.")
        if self.gamma < 0 or self.lambda_ < 0:
            raise ValueError(
                f"gamma and lambda_ must be >= 0; got gamma={self.gamma}, "
                f"lambda_={self.lambda_}."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}.")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise ValueError(f"ema must be None or in (0, 1); got {self.ema}.")
        self._validate_optimizer()
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} names but num_classes is "
                f"{self.num_classes}."
            )
        self._validate_sampling()
        self._validate_inference()

    def _validate_optimizer(self) -> None:
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate}.")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0; got {self.warmup_steps}.")
        if not 0.0 <= self.weight_decay < 1.0:
            raise ValueError(f"weight_decay must be in [0, 1); got {self.weight_decay}.")

    def _validate_inference(self) -> None:
        if self.inference not in INFERENCES:
            raise ValueError(f"inference must be one of {INFERENCES}; got {self.inference!r}.")
        if not 0.0 <= self.tile_overlap < 1.0:
            raise ValueError(f"tile_overlap must be in [0, 1); got {self.tile_overlap}.")

    def _check_types(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            kind, optional = _field_kind(field.type)
            if value is None and optional:
                continue
            if kind.startswith("Tuple"):
                item = kind[len("Tuple["):].split(",")[0]
                if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
                    value = value.tolist()  # a numpy array
                if not isinstance(value, (list, tuple)):
                    raise _field_error(field.name, f"a list of {item} values", value)
                checked = tuple(_check_scalar(field.name, item, v) for v in value)
                setattr(self, field.name, checked)
            else:
                setattr(self, field.name, _check_scalar(field.name, kind, value))

    def _fill_defaults(self) -> None:
        if not 1 <= self.downsamplings <= 6:
            raise ValueError(f"downsamplings must be in 1..6; got {self.downsamplings}.")
        for name, default in (("label_encoder_widths", _default_label_encoder_widths),
                              ("image_encoder_widths", _default_image_encoder_widths),
                              ("decoder_widths", _default_decoder_widths)):
            if getattr(self, name) is None:
                setattr(self, name, default(self.downsamplings))

    def _validate_sampling(self) -> None:
        """Refuses schedules that sampling from N(0, I) cannot start from; warns
        of training that leaves the sampler's later steps untrained."""
        # Imported here: the diffusion package imports this module.
        from ldseg_tf.diffusion.schedule import MAX_FINAL_ALPHA_BAR, NoiseSchedule

        final = NoiseSchedule(self.timesteps, self.schedule).alpha_bars[-1]
        if final >= MAX_FINAL_ALPHA_BAR:
            raise ValueError(
                f"schedule={self.schedule!r} with timesteps={self.timesteps} ends at "
                f"alpha-bar_T = {final:.3g}, not below {MAX_FINAL_ALPHA_BAR:g}: z_T keeps "
                f"{100 * final ** 0.5:.2g}% of the label and sampling from N(0, I) "
                f"would start from the wrong distribution; use more timesteps.")
        if self.pure_noise_fraction == 1.0 and self.sampling_steps > 1:
            # A warning, not an error: such a config is still useful to inspect
            # the training draws, and `segment(steps=1)` samples it correctly.
            warnings.warn(
                f"pure_noise_fraction=1 trains the denoiser at t = T only, but "
                f"sampling_steps={self.sampling_steps} also asks it at t < T, where it is "
                f"untrained: set sampling_steps=1 or pure_noise_fraction < 1.", stacklevel=3)

    def _validate_widths(self) -> None:
        expected = {
            "label_encoder_widths": self.downsamplings + 1,
            "image_encoder_widths": self.downsamplings,
            "decoder_widths": self.downsamplings,
        }
        for name, n in expected.items():
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"{name} needs {n} values for downsamplings={self.downsamplings}; "
                    f"got {getattr(self, name)}."
                )
        if not self.denoiser_widths:
            raise ValueError("denoiser_widths must not be empty.")
        for name in ("label_encoder_widths", "image_encoder_widths", "denoiser_widths",
                     "decoder_widths"):
            if any(w < 1 for w in getattr(self, name)):
                raise ValueError(f"{name} must all be >= 1; got {getattr(self, name)}.")
        den_factor = 2 ** (len(self.denoiser_widths) - 1)
        latent = self.latent_shape[:-1]
        if any(s % den_factor for s in latent):
            raise ValueError(
                f"latent spatial shape {latent} must be divisible by "
                f"2**(len(denoiser_widths) - 1) = {den_factor}; use fewer denoiser "
                f"levels or fewer downsamplings."
            )
        if not 0 <= self.image_encoder_attention_levels <= self.downsamplings:
            raise ValueError(
                f"image_encoder_attention_levels must be in 0..{self.downsamplings}; "
                f"got {self.image_encoder_attention_levels}."
            )
        if not 0 <= self.denoiser_attention_levels <= len(self.denoiser_widths):
            raise ValueError(
                f"denoiser_attention_levels must be in 0..{len(self.denoiser_widths)}; "
                f"got {self.denoiser_attention_levels}."
            )

    def _validate_architecture(self) -> None:
        if self.label_resampling not in LABEL_RESAMPLINGS:
            raise ValueError(f"label_resampling must be one of {LABEL_RESAMPLINGS}; got "
                             f"{self.label_resampling!r}.")
        if self.image_conditioning not in IMAGE_CONDITIONINGS:
            raise ValueError(f"image_conditioning must be one of {IMAGE_CONDITIONINGS}; got "
                             f"{self.image_conditioning!r}.")
        if self.ema_scope not in EMA_SCOPES:
            raise ValueError(f"ema_scope must be one of {EMA_SCOPES}; got {self.ema_scope!r}.")
        if self.image_conditioning == "multiscale" and self.image_encoder != "learned":
            raise ValueError("image_conditioning='multiscale' needs image_encoder='learned' "
                             "(the down-sampling ablation has no features to share).")

    # ------------------------------------------------------------- properties
    @property
    def spatial_dims(self) -> int:
        """2 for images, 3 for volumes."""
        return len(self.image_shape) - 1

    @property
    def in_channels(self) -> int:
        return self.image_shape[-1]

    @property
    def latent_shape(self) -> Tuple[int, ...]:
        """Shape of z_l0 (and z_t) without the batch axis."""
        factor = 2**self.downsamplings
        return tuple(s // factor for s in self.image_shape[:-1]) + (self.latent_channels,)

    @property
    def size_multiple(self) -> int:
        """The smallest spatial size the model accepts, of which every size
        must be a multiple: the latent is `2**downsamplings` smaller and the
        denoiser halves it `len(denoiser_widths) - 1` more times."""
        return 2 ** (self.downsamplings + len(self.denoiser_widths) - 1)

    @property
    def embedding_shape(self) -> Tuple[int, ...]:
        """Shape of the image embedding z_i without the batch axis."""
        return self.latent_shape[:-1] + (self.image_embedding_channels or self.latent_channels,)

    @property
    def names_of_classes(self) -> Tuple[str, ...]:
        if self.class_names is not None:
            return self.class_names
        return default_class_names(self.num_classes)

    # ---------------------------------------------------------------- presets
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "LDSegConfig":
        """A named configuration, with any field overridden.

        - `paper`: the sizes of the authors' released model (~1.8 M parameters).
        - `fine`: for thin structures (vessels, nerves, cartilage): a half-side,
          4-channel latent, the clean-latent reconstruction term, an
          x0-predicting denoiser trained at t = T for half of the samples
          and sampled with one DDIM step, a pixel-shuffle label autoencoder and
          multi-scale image conditioning.
        - `small`: a tiny model for tests and quick CPU experiments.
        """
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"preset {name!r}: unknown LDSegConfig fields {unknown}.")
        fields = dict(PRESETS[name])
        fields.update(overrides)
        return cls(**fields)

    @classmethod
    def from_spec(cls, spec: str, **fields: Any) -> "LDSegConfig":
        """A preset with overrides written in one string, for command lines:
        `"fine:prediction=v:image_embedding_channels=32"`. Values are read as
        JSON when they parse (numbers, lists, null), else kept as strings;
        `fields` are applied first, the spec's overrides after them."""
        name, *changes = spec.split(":")
        try:
            return cls.preset(name, **{**fields, **parse_overrides(changes)})
        except ValueError as err:
            raise ValueError(f"config spec {spec!r}: {err}") from err

    # ------------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LDSegConfig":
        if not isinstance(d, dict):
            raise ValueError(f"an LDSegConfig is a JSON object of fields; got a "
                             f"{type(d).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown LDSegConfig fields {unknown}; known: {sorted(known)}.")
        d = dict(d)
        for k, v in d.items():
            if isinstance(v, list):
                d[k] = tuple(v)
        return cls(**d)

    def to_json(self, path: Optional[str] = None) -> str:
        """Returns the JSON text; also writes it (atomically) when `path` is given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            from ldseg_tf.utils import atomic_write_text

            atomic_write_text(path, text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str) -> "LDSegConfig":
        """Builds a config from a JSON string or a path to a JSON file."""
        text = text_or_path
        if not text_or_path.lstrip().startswith("{"):
            try:
                with open(text_or_path) as f:
                    text = f.read()
            except OSError as e:
                raise ValueError(f"cannot read config file {text_or_path!r}: {e}") from e
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"invalid config JSON ({text_or_path[:80]!r}): {e}") from e
        return cls.from_dict(d)


def _field_kind(annotation: str) -> Tuple[str, bool]:
    """`("int", True)` for the annotation text "Optional[int]"."""
    text = str(annotation).replace(" ", "")
    if text.startswith("Optional[") and text.endswith("]"):
        return text[len("Optional["):-1], True
    return text, False


def _field_error(name: str, expected: str, value: Any) -> ValueError:
    from ldseg_tf.errors import UserError

    return UserError(f"LDSegConfig.{name}", expected, f"{value!r} ({type(value).__name__})")


def _check_scalar(name: str, kind: str, value: Any) -> Any:
    """`value` as a field of type `kind` ("int", "float", "bool" or "str")."""
    import math
    import numbers

    if kind == "str":
        if not isinstance(value, str):
            raise _field_error(name, "a string", value)
        return value
    if kind == "bool":
        # numpy's bool_ is not a bool subclass.
        if not (isinstance(value, bool) or type(value).__name__ == "bool_"):
            raise _field_error(name, "true or false", value)
        return bool(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _field_error(name, "an integer" if kind == "int" else "a number", value)
    if kind == "int":
        if not isinstance(value, numbers.Integral):
            raise _field_error(name, "an integer", value)
        return int(value)
    if not math.isfinite(value):
        raise _field_error(name, "a finite number", value)
    return float(value)


def default_class_names(num_classes: int) -> Tuple[str, ...]:
    """("background", "class_1", ..., "class_<num_classes - 1>"): the names of
    classes that have none."""
    return ("background",) + tuple(f"class_{i}" for i in range(1, num_classes))


def build_config(source: str = "synthetic", preset: Optional[str] = None,
                 overrides: Optional[dict] = None,
                 base: Optional[LDSegConfig] = None) -> LDSegConfig:
    """The config to train on data source `source` (see `ldseg_tf.data.sources`).

    `base` (e.g. a config file) with `overrides` applied; without `base`, the
    preset `preset` (default: "small" for synthetic data, else "paper") with
    the source's input shape, classes and class names, then `overrides`
    (`LDSegConfig` fields). Class names are dropped when `overrides` change
    the number of classes. Raises `ValueError` for an invalid field or value,
    or a source without a default input shape and no `image_shape` override.
    """
    from ldseg_tf.data.sources import get_source

    overrides = dict(overrides or {})
    if base is not None:
        return LDSegConfig.from_dict({**base.to_dict(), **overrides}) if overrides else base
    data = get_source(source)
    if data.image_shape is None and "image_shape" not in overrides:
        raise ValueError(f"data {source!r} has no default input shape; give image_shape and "
                         f"num_classes (--image-shape, --num-classes or --config).")
    fields = {k: v for k, v in (("image_shape", data.image_shape),
                                ("num_classes", data.num_classes),
                                ("class_names", data.class_names)) if v is not None}
    fields.update(overrides)
    names = fields.get("class_names")
    # A wrong type is left for `validate` to name.
    if isinstance(names, (list, tuple)) and names and len(names) != fields.get("num_classes"):
        fields.pop("class_names")
    return LDSegConfig.preset(preset or ("small" if data.is_synthetic else "paper"), **fields)
