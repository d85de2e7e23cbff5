"""`LDSeg`: the four components, end-to-end training (Algorithm 1) and sampling
(Algorithm 2 / DDIM) in one `keras.Model`."""

from __future__ import annotations

import numpy as np
import keras
import tensorflow as tf

from ldseg_tf.config import LDSegConfig
from ldseg_tf.diffusion import NoiseSchedule, clip_projection, ddim_sample
from ldseg_tf.losses import ldseg_loss, segmentation_loss
from ldseg_tf.models.base import SegmentationModel, default_optimizer  # noqa: F401 (API)
from ldseg_tf.models.denoiser import Denoiser
from ldseg_tf.models.downsamplers import ImageDownsampler, LabelDownsampler
from ldseg_tf.models.image_encoder import ImageEncoder
from ldseg_tf.models.label_decoder import LabelDecoder
from ldseg_tf.models.label_encoder import LabelEncoder
from ldseg_tf.models.layers import standardize
from ldseg_tf.models.masks import prepare_masks
from ldseg_tf.streaming_metrics import CaseScore

_LOSS_TERMS = ("loss", "ce", "dice_loss", "mse")


def _per_worker_logs(logs: dict) -> dict:
    """Logs in the shape Keras can reduce under the current strategy.

    Keras 3 reduces the logs of a multi-worker strategy with
    `strategy.reduce("MEAN", v, axis=0)`, which fails on scalars
    (keras-team/keras#20585): there, give every value a batch axis of one.
    """
    strategy = tf.distribute.get_strategy()
    extended = getattr(strategy, "extended", None)
    multi_worker = (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
                    and getattr(extended, "_in_multi_worker_mode", lambda: False)())
    if not multi_worker:
        return logs
    return {k: tf.reshape(v, [1]) for k, v in logs.items()}


def loss_term_names(config: LDSegConfig) -> tuple:
    """The loss terms LDSeg tracks (means over the epoch), in order."""
    return _LOSS_TERMS + (("ae_loss",) if config.autoencoder_weight > 0 else ())


def score_specs(config: LDSegConfig) -> list:
    """`(name, kind, class index or None)` of the per-case scores LDSeg
    reports, in order: DSC and IoU (mean over foreground classes), per class
    when there are several, and last the autoencoder ceiling `ceiling_dsc`."""
    specs = [("dsc", "dsc", None), ("iou", "iou", None)]
    if config.num_classes > 2:
        for k, cls_name in enumerate(config.names_of_classes[1:], start=1):
            specs += [(f"{kind}_{cls_name}", kind, k) for kind in ("dsc", "iou")]
    return specs + [("ceiling_dsc", "dsc", None)]


def metric_names(config: LDSegConfig) -> list:
    """Names of `LDSeg(config).metrics`, without building a model."""
    return list(loss_term_names(config)) + [name for name, _, _ in score_specs(config)]


def _standardize_projection(numerator, scale):
    """x0 = standardize(numerator): the projection onto standardized latents
    (scale-invariant, so the division by `scale` = sqrt(ab) is not needed)."""
    del scale
    return standardize(numerator)


@keras.saving.register_keras_serializable(package="ldseg_tf")
class LDSeg(SegmentationModel):
    """Latent diffusion segmentation model (Zaman et al.).

    `fit` takes batches `(images, masks)`: images float32 `(B, *image_shape)`
    (normalized as by `ldseg_tf.data.normalize_intensity`), masks either integer
    label maps `(B, *spatial)` / `(B, *spatial, 1)` or one-hot
    `(B, *spatial, num_classes)`.

    Training (Algorithm 1) draws a timestep t ~ U{1..T} and a noise eps for every
    sample, forms z_t from the label latent, predicts eps with the denoiser,
    decodes z_dn = z_t - eps_hat (eq. 12) and minimizes
    CE + gamma * Dice + lambda * ||eps - eps_hat||^2, with gradients into all
    four components. `evaluate` samples with `config.sampling_steps` DDIM steps
    and reports per-case DSC and IoU. With `config.prediction="v"` (or "x0") the
    denoiser predicts v (or the clean latent z_l0) instead of eps, with the MSE
    on that target and the denoised latent as the decoder's input; everything
    else is unchanged.

    Variants (for the paper's comparisons): `config.training="two_stage"` trains
    in two stages selected with `set_training_stage` (then `compile` and `fit`
    once per stage); `config.label_encoder="downsample"` /
    `config.image_encoder="downsample"` replace an encoder by the parameter-free
    layers of `ldseg_tf.models.downsamplers` (ablations of Table V).

    Args:
        config: an `LDSegConfig` (or its dict).
    """

    _loss_description = "CE + gamma*Dice + lambda_*MSE"

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        c = self.config
        dims = c.spatial_dims
        self.schedule = NoiseSchedule(c.timesteps, c.schedule)
        self._noise_shape = c.latent_shape
        self._pure_noise_fraction = c.pure_noise_fraction
        self._pure_noise_warmup_steps = c.pure_noise_warmup_steps
        # The label down-sampler's codes lie in [-1, 1] and are not standardized.
        self._project_x0 = (clip_projection if c.label_encoder == "downsample"
                            else _standardize_projection)
        if c.label_encoder == "downsample":
            self.label_encoder = LabelDownsampler(
                c.downsamplings, c.latent_channels, dims=dims, name="label_encoder")
        else:
            self.label_encoder = LabelEncoder(
                c.label_encoder_widths, c.latent_channels, dims=dims, groups=c.norm_groups,
                dropout=c.dropout, resampling=c.label_resampling, name="label_encoder")
        self.image_encoder = self._make_image_encoder("image_encoder")
        self.denoiser = self._make_denoiser("denoiser")
        self.label_decoder = self._make_label_decoder("label_decoder")
        # The moving averages (`config.ema`, `config.ema_scope`), after the
        # trained components so that older files keep their weight order; the
        # wider scope's copies only once those are built (`_build_components`):
        # creating a layer draws seeds, and the trained weights must start the
        # same whatever the scope.
        self.ema_denoiser = self.ema_image_encoder = self.ema_label_decoder = None
        if c.ema is not None:
            self.ema_denoiser = self._make_denoiser("ema_denoiser")

        self._loss_terms = loss_term_names(c)
        self._trackers = {name: keras.metrics.Mean(name=name) for name in self._loss_terms}
        # The last one, `ceiling_dsc`, is the autoencoder ceiling: DSC of
        # decode(encode(y)), the best that any denoiser could give through this
        # latent (reported by `evaluate`).
        for name, kind, k in score_specs(c):
            self._trackers[name] = CaseScore(kind, k, c.num_classes, name=name)
        self.training_stage = None
        self._build_components()
        if c.training == "two_stage":
            self.set_training_stage(1)

    # ---------------------------------------------------------------- set-up
    @property
    def _multiscale(self) -> bool:
        return self.config.image_conditioning == "multiscale"

    def _feature_widths(self) -> tuple:
        """Widths of the image encoder's levels below the latent (multi-scale
        conditioning): one per denoiser level after the first."""
        return tuple(self.config.denoiser_widths[1:]) if self._multiscale else ()

    def _make_image_encoder(self, name):
        c = self.config
        if c.image_encoder == "downsample":
            return ImageDownsampler(c.downsamplings, c.embedding_shape[-1], dims=c.spatial_dims,
                                    name=name)
        return ImageEncoder(
            c.image_encoder_widths, c.embedding_shape[-1], dims=c.spatial_dims,
            groups=c.norm_groups, attention_heads=c.attention_heads,
            attention_levels=c.image_encoder_attention_levels, dropout=c.dropout,
            feature_widths=self._feature_widths(), name=name)

    def _make_label_decoder(self, name):
        c = self.config
        return LabelDecoder(c.decoder_widths, c.num_classes, dims=c.spatial_dims,
                            groups=c.norm_groups, dropout=c.dropout,
                            resampling=c.label_resampling, name=name)

    def ema_pairs(self):
        """`[(averaged, trained)]` component pairs of the moving average."""
        return [(getattr(self, "ema_" + name), getattr(self, name))
                for name in ("image_encoder", "denoiser", "label_decoder")
                if getattr(self, "ema_" + name) is not None]

    def _sampling_component(self, name):
        """The component `name` that sampling runs: its moving average when
        `config.ema_scope` covers it, else the trained one."""
        averaged = getattr(self, "ema_" + name)
        return averaged if averaged is not None else getattr(self, name)

    def _make_denoiser(self, name):
        c = self.config
        return Denoiser(
            c.denoiser_widths, c.latent_channels, dims=c.spatial_dims,
            res_blocks=c.denoiser_res_blocks, attention_levels=c.denoiser_attention_levels,
            attention_heads=c.attention_heads, groups=c.norm_groups, time_dim=c.time_embedding_dim,
            dropout=c.dropout, conditioned=self._multiscale, name=name)

    def encode_image(self, images, training=False, encoder=None):
        """The image encoder once per image: z_i float32 `(B, *embedding)` and,
        with multi-scale conditioning, the list of per-level features the
        denoiser adds (else None). Neither depends on t, so sampling computes
        them once for all of its steps. `encoder` replaces `image_encoder`
        (sampling passes its moving average)."""
        encoder = self.image_encoder if encoder is None else encoder
        out = encoder(images, training=training)
        if not self._multiscale:
            return tf.cast(out, tf.float32), None
        z_i, features = out
        return tf.cast(z_i, tf.float32), features

    def _build_components(self):
        """Creates every weight now, so that a fresh model can load saved weights
        and be inspected (`summary`, parameter counts) before training.

        The components are called once, eagerly, on zeros of the smallest
        spatial size that every level accepts: no weight depends on the spatial
        size, and tracing them symbolically at the configured size instead
        costs seconds on every construction and every load."""
        c = self.config
        spatial = (c.size_multiple,) * c.spatial_dims
        latent_spatial = (c.size_multiple // 2**c.downsamplings,) * c.spatial_dims
        image = tf.zeros((1,) + spatial + c.image_shape[-1:])
        onehot = tf.zeros((1,) + spatial + (c.num_classes,))
        latent = tf.zeros((1,) + latent_spatial + c.latent_shape[-1:])
        embedding = tf.zeros((1,) + latent_spatial + c.embedding_shape[-1:])
        t = tf.zeros((1,), dtype="int32")
        encoded = self.image_encoder(image)
        features = encoded[1] if self._multiscale else None
        self.label_encoder(onehot)
        self.denoiser(latent, embedding, t, features=features)
        self.label_decoder(latent)
        if self.ema_denoiser is not None:
            self.ema_denoiser(latent, embedding, t, features=features)
        if c.ema is not None and c.ema_scope == "sampling":
            self.ema_image_encoder = self._make_image_encoder("ema_image_encoder")
            self.ema_label_decoder = self._make_label_decoder("ema_label_decoder")
            self.ema_image_encoder(image)
            self.ema_label_decoder(latent)
        for averaged, trained in self.ema_pairs():
            for ema_w, w in zip(averaged.weights, trained.weights):
                ema_w.assign(w)
            # Set after building: weights created later would stay trainable.
            averaged.trainable = False
        self.built = True

    def set_training_stage(self, stage: int) -> None:
        """Selects the stage of two-stage training (`config.training="two_stage"`).

        Stage 1: the label encoder and decoder train as an autoencoder,
        loss CE + gamma * Dice of decode(encode(y)); image encoder and denoiser
        are frozen. Stage 2: label encoder and decoder are frozen
        (`trainable=False`) and the image encoder and denoiser train with the
        latent MSE ||eps - eps_hat||^2 only. Call `compile` after switching
        (a new optimizer over the new trainable weights), then `fit`.
        """
        if self.config.training != "two_stage":
            raise ValueError(
                f"set_training_stage needs config.training='two_stage'; this model trains "
                f"{self.config.training!r}.")
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2; got {stage!r}.")
        autoencoder = stage == 1
        self.label_encoder.trainable = autoencoder
        self.label_decoder.trainable = autoencoder
        self.image_encoder.trainable = not autoencoder
        self.denoiser.trainable = not autoencoder
        self.training_stage = stage
        # Traced train/test functions depend on the stage: drop them.
        self.train_function = self.test_function = None

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Every weight exists after __init__ and the optimizer's after compile.
        # Keras's symbolic build would reduce a data batch across replicas,
        # which MultiWorkerMirroredStrategy cannot do (keras-team/keras#20585).
        if self.built and getattr(self.optimizer, "built", False):
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    @property
    def sampling_denoiser(self) -> Denoiser:
        """The EMA denoiser when the config asks for one, else the trained one."""
        return self._sampling_component("denoiser")

    # --------------------------------------------------------------- training
    def forward_train(self, images, onehot, t, noise, training=True):
        """One pass of Algorithm 1 (lines 3-9).

        Returns a dict of float32 tensors: `z_l0`, `z_t`, `eps_hat`, `z_dn`,
        `prediction` (the denoiser's output) and `target` (what it should be:
        eps, v or z_l0, after `config.prediction`), all `(B, *latent)`; `z_i`
        `(B, *embedding)`; and `probs` `(B, *spatial, num_classes)`.
        """
        z_i, features = self.encode_image(images, training=training)
        z0 = tf.cast(self.label_encoder(onehot, training=training), tf.float32)
        z_t = self.schedule.q_sample(z0, t, noise)
        out = self.denoiser(z_t, z_i, t, features=features, training=training)
        a, s = self.schedule.coefficients(t, z0.shape.rank)
        # The latent the MSE compares against (see `latent_target_gradient`).
        z0_target = z0 if self.config.latent_target_gradient else tf.stop_gradient(z0)
        if self.config.prediction == "v":
            target = a * noise - s * z0_target
            eps_hat = s * z_t + a * out
            z_dn = a * z_t - s * out  # the denoised latent, what sampling decodes
        elif self.config.prediction == "x0":
            # t >= 1, so s >= sqrt(1 - ab_1) > 0 (about 6e-3 for the cosine schedule).
            target, z_dn = z0_target, out
            eps_hat = (z_t - a * out) / s
        else:
            target, eps_hat = noise, out
            z_dn = z_t - eps_hat  # eq. 12
        probs = self.label_decoder(z_dn, training=training)
        return {"z_l0": z0, "z_i": tf.cast(z_i, tf.float32), "z_t": z_t, "eps_hat": eps_hat,
                "z_dn": z_dn, "prediction": out, "target": target, "probs": probs}

    def _compute_terms(self, images, masks, stream, training):
        # Numpy arrays arrive here unconverted when the model runs eagerly.
        images, masks = tf.convert_to_tensor(images), tf.convert_to_tensor(masks)
        self._check_images(images)
        onehot, labels = prepare_masks(masks, self.config)
        tracks_ae = "ae_loss" in self._loss_terms
        if self.training_stage == 1:
            # Two-stage training, stage 1: the label autoencoder alone.
            z0 = self.label_encoder(onehot, training=training)
            probs = self.label_decoder(z0, training=training)
            terms = segmentation_loss(onehot, probs, self.config.gamma, self.config.dice)
            terms["mse"] = tf.zeros_like(terms["ce"])
            if tracks_ae:
                # The reconstruction term *is* stage 1's loss.
                terms["ae_loss"] = terms["loss"]
            return terms, labels, probs
        t, noise = self._training_noise(tf.shape(images)[0], stream)
        out = self.forward_train(images, onehot, t, noise, training=training)
        terms = ldseg_loss(onehot, out["probs"], out["target"], out["prediction"],
                           self.config.gamma, self.config.lambda_, self.config.dice)
        if tracks_ae:
            # Also decode the clean latent, the decoder's input at sampling time.
            terms["ae_loss"] = segmentation_loss(
                onehot, self.label_decoder(out["z_l0"], training=training),
                self.config.gamma, self.config.dice)["loss"]
        if self.training_stage == 2:
            # Two-stage training, stage 2: the latent MSE only (the decoder is
            # frozen; its ae_loss is only reported).
            terms["loss"] = terms["mse"]
        elif tracks_ae:
            terms["loss"] = terms["loss"] + self.config.autoencoder_weight * terms["ae_loss"]
        return terms, labels, out["probs"]

    def _update_loss_trackers(self, terms):
        for name in self._loss_terms:
            self._trackers[name].update_state(terms[name])

    def train_step(self, data):
        images, masks = data[0], data[1]
        with tf.GradientTape() as tape:
            terms, labels, probs = self._compute_terms(images, masks, stream=0, training=True)
            loss = tf.reduce_mean(terms["loss"])
            # Gradients are summed across replicas: average the loss over them.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / replicas)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        if self.ema_denoiser is not None:
            self._update_ema()
        self._update_loss_trackers(terms)
        self._trackers["dsc"].update_state(labels, tf.argmax(probs, axis=-1))
        return _per_worker_logs(
            {name: self._trackers[name].result() for name in self._loss_terms + ("dsc",)})

    def _update_ema(self):
        """ema <- d * ema + (1 - d) * w for every weight that the average
        covers (`config.ema_scope`), with the warm-up d = min(ema, (1 + n) /
        (10 + n)) so that the average does not stay near the random initial
        weights early in training."""
        n = tf.cast(self.optimizer.iterations, tf.float32)
        decay = tf.minimum(tf.constant(self.config.ema, tf.float32), (1.0 + n) / (10.0 + n))
        pairs = [(e.value, w.value) for averaged, trained in self.ema_pairs()
                 for e, w in zip(averaged.weights, trained.weights)]

        def assign(v, w):
            return v.assign(decay * v + (1.0 - decay) * w)

        if not tf.distribute.has_strategy():
            for ema_var, var in pairs:
                assign(ema_var, var)
            return

        def update(strategy):
            for ema_var, var in pairs:
                strategy.extended.update(ema_var, assign, args=(var,), group=False)

        # Under a strategy the EMA variables are mirrored: update them once, in
        # cross-replica context.
        tf.distribute.get_replica_context().merge_call(update)

    def reconstruct(self, masks, training=False):
        """decode(encode(y)): the label autoencoder alone, without diffusion.

        Its Dice against y is the *autoencoder ceiling*: no denoiser can give a
        better segmentation through this latent, so a low ceiling says the
        latent (its size or the autoencoder's training), not the denoiser, is
        the bottleneck.

        Args:
            masks: integer label maps `(B, *spatial)` or one-hot
                `(B, *spatial, num_classes)`.

        Returns:
            float32 class probabilities `(B, *spatial, num_classes)`.
        """
        onehot, _ = prepare_masks(tf.convert_to_tensor(masks), self.config)
        z0 = self.label_encoder(onehot, training=training)
        return tf.cast(self.label_decoder(z0, training=training), tf.float32)

    def test_step(self, data):
        images, masks = data[0], data[1]
        terms, labels, _ = self._compute_terms(images, masks, stream=1, training=False)
        self._update_loss_trackers(terms)
        ceiling = tf.argmax(self.reconstruct(masks), axis=-1, output_type=tf.int32)
        self._trackers["ceiling_dsc"].update_state(labels, ceiling)
        out = self.segment_graph(images, self.config.sampling_steps, 1,
                                 tf.constant(self.config.seed, tf.int64))
        for name, tracker in self._trackers.items():
            if name not in self._loss_terms and name != "ceiling_dsc":
                tracker.update_state(labels, out["labels"])
        return _per_worker_logs({name: tracker.result()
                                 for name, tracker in self._trackers.items()})

    # --------------------------------------------------------------- sampling
    def _sampling_condition(self, images):
        """`encode_image(images)`: z_i and, with multi-scale conditioning, the
        image features, computed once for every sample and step."""
        return self.encode_image(images, encoder=self._sampling_component("image_encoder"))

    def sample_probs(self, condition, steps, seed, eta, method):
        """Decoded class probabilities float32 `(B, *spatial, C)` of one latent
        sample z_0 ~ p(z_0 | z_i) (`ddim_sample` with this model's projection);
        `condition` is `encode_image`'s `(z_i, features)`."""
        z_i, features = condition
        denoiser = self.sampling_denoiser

        def denoise(z, zi, t):
            return denoiser(z, zi, t, features=features, training=False)

        z0 = ddim_sample(denoise, z_i, self.schedule, steps, seed, self.config.latent_shape,
                         self._project_x0, eta=eta, method=method,
                         prediction=self.config.prediction)
        decoder = self._sampling_component("label_decoder")
        return tf.cast(decoder(z0, training=False), tf.float32)

    def call(self, images, training=False):
        """Class probabilities `(B, *spatial, C)` from one DDIM sample with
        `config.sampling_steps` steps and `config.seed` (used by `predict`)."""
        return self.segment_graph(images, self.config.sampling_steps, 1,
                                  tf.constant(self.config.seed, tf.int64))["probs"]

    def component_parameter_counts(self) -> dict:
        """Trainable parameters per component (the EMA copy is not counted)."""
        parts = {
            "label_encoder": self.label_encoder,
            "image_encoder": self.image_encoder,
            "denoiser": self.denoiser,
            "label_decoder": self.label_decoder,
        }
        # All weights of the components (their frozen ones too, in two-stage
        # training); none of them has non-trainable state of its own.
        counts = {k: int(sum(np.prod(w.shape) for w in v.weights))
                  for k, v in parts.items()}
        counts["total"] = sum(counts.values())
        return counts
