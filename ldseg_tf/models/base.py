"""`SegmentationModel`: what LDSeg and the baselines share -- the default
optimizer and `compile`, metrics, the numpy `segment` wrapper, the mean/SD
sample ensemble and the per-replica training noise of a diffusion model."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from ldseg_tf.config import LDSegConfig
from ldseg_tf.diffusion import sample_ensemble, training_noise
from ldseg_tf.models.learning_rate import default_schedule
from ldseg_tf.models.tiling import WEIGHTINGS, sliding_window


def default_optimizer(config: LDSegConfig) -> keras.optimizers.Optimizer:
    """Adam with an exponentially decayed learning rate (paper Sec. IV-C), after
    `config.warmup_steps` of linear warm-up; AdamW when `config.weight_decay`
    is above 0."""
    schedule = default_schedule(config.learning_rate, config.warmup_steps)
    if config.weight_decay:
        return keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(schedule)


class SegmentationModel(keras.Model):
    """Base of the segmenters: built in the constructor, trained on
    `(images, masks)` batches with a loss of its own, tracked in
    `self._trackers`, segmenting with `segment` / `segment_graph`.

    A diffusion subclass sets `self.schedule`, `self._noise_shape` (the shape of
    one diffused sample), `self._pure_noise_fraction` and
    `self._pure_noise_warmup_steps`, and implements
    `_sampling_condition` and `sample_probs`; a deterministic one overrides
    `segment_graph`.

    Args:
        config: an `LDSegConfig` (or its dict).
    """

    _loss_description = "defined by the model"

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = LDSegConfig.from_dict(config)
        self.config = config
        self._trackers = {}
        self._segment_functions = {}
        self._tiled_functions = {}

    def build(self, input_shape=None):
        # Everything is built in the constructor; Keras may still call this.
        self.built = True

    def compile(self, optimizer=None, loss=None, **kwargs):
        """Like `keras.Model.compile`; the optimizer defaults to
        `default_optimizer(config)`. The model computes its own loss from the
        config: passing `loss` is an error."""
        if loss is not None:
            raise ValueError(
                f"{type(self).__name__} computes its own loss ({self._loss_description}); "
                f"set its weights (gamma, lambda_) in LDSegConfig instead of passing `loss`.")
        if optimizer is None:
            optimizer = default_optimizer(self.config)
        kwargs.pop("metrics", None)
        super().compile(optimizer=optimizer, **kwargs)
        # Creating the slots now, not inside the first traced step, spares a
        # second trace of the train function (tf.function retraces after
        # creating variables).
        self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config):
        # Keras skips models whose `compile` is overridden; ours accepts the
        # stored arguments unchanged, so re-compiling restores the optimizer
        # (its state is loaded afterwards by `load_model`).
        self.compile(**keras.saving.deserialize_keras_object(config))

    @property
    def metrics(self):
        return list(self._trackers.values())

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(config.pop("config"), **config)

    # --------------------------------------------------------------- training
    def _training_noise(self, batch, stream):
        """Per-sample timesteps `(B,)` int32 and noise `(B, *self._noise_shape)`
        for this replica's rows of the global batch (`training_noise`), from
        (config.seed, optimizer step, stream)."""
        c = self.config
        return training_noise(c.seed, stream, self.optimizer.iterations, batch,
                              self._noise_shape, c.timesteps, self._pure_noise_fraction,
                              self._pure_noise_warmup_steps)

    # --------------------------------------------------------------- sampling
    def _sampling_condition(self, images):
        """What the denoiser is conditioned on, computed once for all samples."""
        raise NotImplementedError

    def sample_probs(self, condition, steps, seed, eta, method):
        """Class probabilities float32 `(B, *spatial, C)` of one sample."""
        raise NotImplementedError

    def segment_graph(self, images, steps, samples, seed, eta=0.0, method="ddim"):
        """In-graph segmentation by sampling, for `tf.function`s and SavedModel
        signatures.

        Args:
            images: float `(B, *image_shape)` normalized images.
            steps: int scalar (tensor) number of DDIM steps.
            samples: int scalar (tensor) number of independent samples.
            seed: int64 scalar seed; sample k uses fold_in([seed, 0], k), and every
                image gets the same noise whatever its batch.
            eta: DDIM eta (0 = deterministic given the initial noise).
            method: "ddim" or "ddpm" (python string).

        Returns:
            `sample_ensemble`'s dict: `labels` int32 `(B, *spatial)`, `probs`
            float32 `(B, *spatial, C)` (mean over samples), `std` float32
            `(B, *spatial)` (per-pixel SD over samples, averaged over classes).
        """
        images = tf.cast(images, tf.float32)
        condition = self._sampling_condition(images)
        out_shape = tf.concat([tf.shape(images)[:-1], [self.config.num_classes]], axis=0)
        return sample_ensemble(
            lambda s: self.sample_probs(condition, steps, s, eta, method), samples, seed,
            out_shape)

    def _check_images(self, images, any_size=False):
        c = self.config
        shape = tuple(images.shape)
        if len(shape) != len(c.image_shape) + 1:
            raise ValueError(
                f"images must have shape (batch, {', '.join(map(str, c.image_shape))}) "
                f"for this {c.spatial_dims}D model; got rank {len(shape)} shape {shape}."
            )
        if shape[-1] != c.in_channels:
            raise ValueError(
                f"images must have {c.in_channels} channel(s) (image_shape={c.image_shape}); "
                f"got {shape[-1]} (shape {shape})."
            )
        spatial = shape[1:-1]
        if not any_size and None not in spatial and spatial != c.image_shape[:-1]:
            raise ValueError(
                f"images must have spatial shape {c.image_shape[:-1]}; got {spatial}. "
                f"Resize them with ldseg_tf.data.preprocess."
            )

    def segment(self, images, steps=None, samples=1, seed=None, eta=0.0, method="ddim"):
        """Segments a batch of normalized images by sampling.

        Args:
            images: `(B, *image_shape)` or one `image_shape` array, float,
                normalized as in training.
            steps: DDIM steps K (default `config.sampling_steps`); the paper's rule
                picks K evenly spaced timesteps in [1, T] (K=2 -> T, 1).
            samples: number of independent samples averaged into `probs`; their
                spread gives `std`, the uncertainty map (paper Fig. 10). The
                `fine` preset's samples hardly differ (x0-prediction, half of
                training at t = T), so its `std` is near 0 whatever the error.
            seed: int; the same seed, image and arguments give the same output,
                whatever else is in the batch. None draws a fresh seed.
            eta: DDIM eta; 0 is deterministic given the seed.
            method: "ddim" or "ddpm" (ancestral, all T steps).

        Returns:
            dict of numpy arrays: `labels` int32 `(B, *spatial)`, `probs` float32
            `(B, *spatial, num_classes)`, `std` float32 `(B, *spatial)`.
            Without a batch axis in, none out.
        """
        c = self.config
        images = np.asarray(images)
        unbatched = images.ndim == len(c.image_shape)
        if unbatched:
            images = images[None]
        self._check_images(images)
        steps, samples, seed = self._sampling_arguments(images, steps, samples, seed, method)
        fn = self._segment_functions.get(method)
        if fn is None:
            fn = self._segment_functions[method] = self._make_segment_function(method)
        out = fn(tf.constant(images, tf.float32), tf.constant(steps, tf.int32),
                 tf.constant(int(samples), tf.int32), tf.constant(int(seed), tf.int64),
                 tf.constant(float(eta), tf.float32))
        out = {k: v.numpy() for k, v in out.items()}
        if unbatched:
            out = {k: v[0] for k, v in out.items()}
        return out

    def _make_segment_function(self, method: str):
        """The `tf.function` behind `segment` for one sampling `method`.

        `segment_graph` has no Python control flow on tensors (its loops are
        `tf.while_loop`s), so AutoGraph is off: tracing does not re-read and
        convert this package's source (a source file edited after import could
        not be converted at all). The runtime `steps`, `samples`, `seed` and
        `eta` are scalar tensors, so every value reuses one trace."""

        def segment_fn(images, steps, samples, seed, eta):
            return self.segment_graph(images, steps, samples, seed, eta, method=method)

        return tf.function(segment_fn, reduce_retracing=True, autograph=False)

    # ------------------------------------------------------------ tiled
    def segment_tiled_graph(self, images, steps, samples, seed, overlap=0.5,
                            weighting="gaussian", tile_batch_size=4, eta=0.0, method="ddim"):
        """In-graph sliding-window segmentation of images of any size
        (`ldseg_tf.models.tiling.sliding_window` over `segment_graph`): the
        tile is the model's `image_shape`.

        Args:
            images: float `(B, *spatial, C)` normalized images, any spatial size.
            steps, samples, seed, eta, method: as `segment_graph`; every tile
                gets the same noise (position-independent).
            overlap: float scalar (tensor) in [0, 1).
            weighting: "gaussian" or "constant" (python string).
            tile_batch_size: tiles per model call (python int).

        Returns:
            dict: `labels` int32 `(B, *spatial)`, `probs` float32
            `(B, *spatial, C)`, `std` float32 `(B, *spatial)`.
        """
        c = self.config
        return sliding_window(
            lambda tiles: self.segment_graph(tiles, steps, samples, seed, eta, method),
            images, c.image_shape[:-1], c.num_classes, overlap, weighting, tile_batch_size)

    def segment_tiled(self, images, steps=None, samples=1, seed=None, overlap=None,
                      weighting="gaussian", tile_batch_size=4, eta=0.0, method="ddim"):
        """Segments normalized images of any size by a sliding window of the
        model's `image_shape` (the patch it was trained on), like `segment`.

        Args:
            images: `(B, *spatial, C)` or one `(*spatial, C)` array, float,
                normalized as in training (the whole image, before tiling);
                any spatial size, larger or smaller than the patch.
            steps, samples, seed, eta, method: as `segment`.
            overlap: fraction of a tile shared with its neighbour, in [0, 1)
                (default `config.tile_overlap`).
            weighting: "gaussian" (nnU-Net) or "constant".
            tile_batch_size: tiles segmented per model call (memory bound).

        Returns:
            dict of numpy arrays with the input's spatial size: `labels` int32,
            `probs` float32 (..., num_classes), `std` float32 (see
            `ldseg_tf.models.tiling` for how overlapping tiles combine).
        """
        c = self.config
        images = np.asarray(images)
        unbatched = images.ndim == len(c.image_shape)
        if unbatched:
            images = images[None]
        self._check_images(images, any_size=True)
        steps, samples, seed = self._sampling_arguments(images, steps, samples, seed, method)
        overlap = c.tile_overlap if overlap is None else float(overlap)
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1); got {overlap}.")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}; got {weighting!r}.")
        if int(tile_batch_size) < 1:
            raise ValueError(f"tile_batch_size must be >= 1; got {tile_batch_size}.")
        key = (method, weighting, int(tile_batch_size))
        fn = self._tiled_functions.get(key)
        if fn is None:
            fn = self._tiled_functions[key] = self._make_tiled_function(*key)
        out = fn(tf.constant(images, tf.float32), tf.constant(steps, tf.int32),
                 tf.constant(samples, tf.int32), tf.constant(seed, tf.int64),
                 tf.constant(overlap, tf.float32), tf.constant(float(eta), tf.float32))
        out = {k: v.numpy() for k, v in out.items()}
        return {k: v[0] for k, v in out.items()} if unbatched else out

    def _sampling_arguments(self, images, steps, samples, seed, method):
        """Checks the pixels and sampling arguments of a numpy call; returns
        `(steps, samples, seed)` as ints (a fresh seed for None)."""
        c = self.config
        if not np.issubdtype(images.dtype, np.number):
            raise ValueError(f"images must be numeric; got dtype {images.dtype}.")
        if not np.all(np.isfinite(images)):
            raise ValueError("images contain NaN or infinite values.")
        steps = c.sampling_steps if steps is None else int(steps)
        if method == "ddim" and not 1 <= steps <= c.timesteps:
            raise ValueError(f"steps must be in 1..{c.timesteps}; got {steps}.")
        if int(samples) < 1:
            raise ValueError(f"samples must be >= 1; got {samples}.")
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        return steps, int(samples), int(seed)

    def _make_tiled_function(self, method, weighting, tile_batch_size):
        """The `tf.function` behind `segment_tiled` (no AutoGraph, as
        `_make_segment_function`); image sizes vary, so shapes are relaxed."""

        def tiled_fn(images, steps, samples, seed, overlap, eta):
            return self.segment_tiled_graph(images, steps, samples, seed, overlap, weighting,
                                            tile_batch_size, eta, method)

        return tf.function(tiled_fn, reduce_retracing=True, autograph=False)
