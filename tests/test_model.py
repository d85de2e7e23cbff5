"""Shapes, the training step of Algorithm 1, sampling, saving, precision."""

import dataclasses
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from ldseg_tf import LDSeg, LDSegConfig
from ldseg_tf.data.synthetic import synthetic_arrays

from conftest import TINY

CFG_2D = LDSegConfig.preset("small", image_shape=(32, 32, 3), timesteps=100)
CFG_3D = LDSegConfig.preset("small", image_shape=(16, 16, 16, 1), num_classes=3, timesteps=100,
                            class_names=("background", "femur", "tibia"))


def _data(cfg, n, seed=0):
    name = "knee" if cfg.spatial_dims == 3 else "glands"
    return synthetic_arrays(name, n, cfg.image_shape[:-1], seed=seed)


@pytest.fixture(scope="module")
def trained_2d():
    keras.utils.set_random_seed(1)
    model = LDSeg(CFG_2D)
    model.compile()
    x, y = _data(CFG_2D, 8)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    return model, x, y


@pytest.mark.parametrize("cfg", [CFG_2D, CFG_3D], ids=["2d", "3d"])
def test_component_shapes(cfg):
    model = LDSeg(cfg)
    x, y = _data(cfg, 2)
    onehot = tf.one_hot(y, cfg.num_classes)
    t = tf.constant([1, cfg.timesteps])
    noise = tf.random.normal((2,) + cfg.latent_shape)
    out = model.forward_train(tf.constant(x), onehot, t, noise)
    for key in ("z_l0", "z_i", "z_t", "eps_hat", "z_dn"):
        assert out[key].shape == (2,) + cfg.latent_shape, key
    assert out["probs"].shape == (2,) + cfg.image_shape[:-1] + (cfg.num_classes,)
    np.testing.assert_allclose(out["probs"].numpy().sum(-1), 1.0, atol=1e-5)
    seg = model.segment(x, steps=2, samples=2, seed=0)
    assert seg["labels"].shape == y.shape and seg["labels"].dtype == np.int32
    assert seg["probs"].shape == y.shape + (cfg.num_classes,)
    assert seg["std"].shape == y.shape
    one = model.segment(x[0], steps=1, seed=0)
    assert one["labels"].shape == y.shape[1:]


def test_label_latent_is_standardized_per_sample():
    model = LDSeg(CFG_2D)
    _, y = _data(CFG_2D, 4)
    z = model.label_encoder(tf.one_hot(y, 2)).numpy()
    np.testing.assert_allclose(z.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=(1, 2, 3)), 1, atol=1e-3)


def test_training_noise_is_drawn_per_sample(trained_2d):
    model, _, _ = trained_2d
    t, noise = model._training_noise(16, stream=0)
    t = t.numpy()
    noise = noise.numpy()
    assert t.min() >= 1 and t.max() <= CFG_2D.timesteps
    assert len(set(t.tolist())) > 8, "timesteps must differ between samples"
    flat = noise.reshape(16, -1)
    assert not np.allclose(flat[0], flat[1]), "each sample needs its own noise"
    assert abs(flat.std() - 1) < 0.1
    # Reproducible for a given step, different at the next one.
    t2, _ = model._training_noise(16, stream=0)
    np.testing.assert_array_equal(t, t2.numpy())
    model.optimizer.iterations.assign_add(1)
    try:
        t3, noise3 = model._training_noise(16, stream=0)
    finally:
        model.optimizer.iterations.assign_add(-1)
    assert not np.array_equal(t, t3.numpy()) and not np.allclose(noise, noise3.numpy())


def test_gradients_reach_all_four_components(trained_2d):
    model, x, y = trained_2d
    onehot = tf.one_hot(y, 2)
    t, noise = model._training_noise(len(x), stream=0)
    from ldseg_tf.losses import ldseg_loss

    with tf.GradientTape() as tape:
        out = model.forward_train(tf.constant(x), onehot, t, noise)
        loss = tf.reduce_mean(ldseg_loss(onehot, out["probs"], noise, out["eps_hat"])["loss"])
    parts = [model.label_encoder, model.image_encoder, model.denoiser, model.label_decoder]
    grads = tape.gradient(loss, [p.trainable_weights for p in parts])
    for part, g in zip(parts, grads):
        norm = sum(float(tf.reduce_sum(tf.square(gi))) for gi in g if gi is not None)
        assert norm > 0, f"no gradient reaches {part.name}"
    assert not model.ema_denoiser.trainable_weights


def test_history_reports_every_loss_term_and_dice(trained_2d):
    model, x, y = trained_2d
    h = model.fit(x, y, batch_size=4, epochs=1, verbose=0, validation_data=(x[:4], y[:4]))
    for key in ("loss", "ce", "dice_loss", "mse", "dsc", "val_loss", "val_dsc", "val_iou"):
        assert key in h.history, key
        assert np.isfinite(h.history[key][0])
    total = h.history["ce"][0] + 2.0 * h.history["dice_loss"][0] + h.history["mse"][0]
    assert h.history["loss"][0] == pytest.approx(total, rel=1e-4)


@pytest.mark.parametrize("scope", ["denoiser", "sampling"])
def test_ema_follows_the_warmup_formula(scope):
    # ema=0.3: the warm-up decay (1 + n) / (10 + n) is below it at steps 1 and 2
    # and above it (capped at 0.3) from step 3.
    keras.utils.set_random_seed(0)
    model = LDSeg(LDSegConfig.preset("small", image_shape=(16, 16, 3), ema=0.3,
                                     ema_scope=scope, **TINY))
    model.compile()
    x, y = _data(model.config, 2)
    pairs = model.ema_pairs()
    covered = {"denoiser": ["denoiser"],
               "sampling": ["image_encoder", "denoiser", "label_decoder"]}[scope]
    assert [trained.name for _, trained in pairs] == covered
    for n in (1, 2, 3):
        before = [[e.numpy() for e in averaged.weights] for averaged, _ in pairs]
        model.train_on_batch(x, y)
        assert int(model.optimizer.iterations) == n
        decay = min(0.3, (1 + n) / (10 + n))
        for (averaged, trained), old in zip(pairs, before):
            assert not averaged.trainable_weights
            for e, e0, w in zip(averaged.weights, old, trained.weights):
                np.testing.assert_allclose(e.numpy(), decay * e0 + (1 - decay) * w.numpy(),
                                           rtol=1e-5, atol=1e-6)


def test_ema_scope_sampling_samples_with_every_average(tmp_path):
    """With ema_scope="sampling", segment reads the averaged image encoder and
    decoder (changing them changes the answer; the trained ones do not), and a
    saved model keeps them. The trained components start from the same
    weights whatever the scope (the seed's model is the seed's model)."""
    models = {}
    for scope in ("denoiser", "sampling"):
        keras.utils.set_random_seed(0)
        models[scope] = LDSeg(LDSegConfig.preset("small", image_shape=(16, 16, 3),
                                                 ema_scope=scope, warmup_steps=3, **TINY))
    for a, b in zip(models["denoiser"].trainable_weights, models["sampling"].trainable_weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    model = models["sampling"]
    model.compile()
    x, y = _data(model.config, 2)
    model.train_on_batch(x, y)
    first = model.segment(x, steps=1, seed=0)["probs"]
    for name in ("image_encoder", "label_decoder"):
        trained, averaged = getattr(model, name), getattr(model, "ema_" + name)
        saved = [w.numpy() for w in trained.weights]
        for w in trained.weights:
            w.assign(w + 1.0)
        np.testing.assert_array_equal(model.segment(x, steps=1, seed=0)["probs"], first)
        for w, v in zip(trained.weights, saved):
            w.assign(v)
        saved = [w.numpy() for w in averaged.weights]
        for w in averaged.weights:
            w.assign(w * 1.5)
        assert not np.allclose(model.segment(x, steps=1, seed=0)["probs"], first), name
        for w, v in zip(averaged.weights, saved):
            w.assign(v)
    model.save(tmp_path / "m.keras")
    import ldseg_tf

    loaded = ldseg_tf.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, LDSeg) and loaded.ema_image_encoder is not None
    # In a fresh process `import ldseg_tf` has not registered the classes
    # (lazy names): `ldseg_tf.load_model` must do it.
    import subprocess
    import sys

    code = ("import sys, ldseg_tf; m = ldseg_tf.load_model(sys.argv[1]); "
            "print(type(m).__name__, m.config.ema_scope, "
            "m.optimizer.get_config()['learning_rate']['class_name'], "
            "float(m.optimizer.learning_rate))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.keras")],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    # ...and the optimizer comes back with its warm-up schedule, one step in.
    name, scope, schedule, rate = out.stdout.split()
    assert (name, scope, schedule) == ("LDSeg", "sampling", "WarmupExponentialDecay"), out.stderr[-2000:]
    assert float(rate) == pytest.approx(1e-3 * 2 / 3 * 0.9 ** (1 / 1000), rel=1e-5)
    np.testing.assert_allclose(loaded.segment(x, steps=1, seed=0)["probs"], first, atol=1e-6)


def test_default_optimizer_warms_up_then_decays():
    from ldseg_tf.models.base import default_optimizer
    from ldseg_tf.models.learning_rate import WarmupExponentialDecay

    def schedule(**fields):
        # Through the optimizer's config, as a saved model stores it.
        config = default_optimizer(LDSegConfig(learning_rate=2e-3, **fields)).get_config()
        return keras.saving.deserialize_keras_object(config["learning_rate"])

    def rates(schedule):
        return np.array([float(schedule(s)) for s in steps])

    steps = np.array([0, 1, 3, 4, 10, 2500])
    decay = 2e-3 * 0.9 ** (steps / 1000)  # the paper's
    paper, warm = schedule(), schedule(warmup_steps=4)
    assert not isinstance(paper, WarmupExponentialDecay)
    np.testing.assert_allclose(rates(paper), decay, rtol=1e-6)
    assert isinstance(warm, WarmupExponentialDecay)
    np.testing.assert_allclose(rates(warm), decay * np.minimum(1.0, (steps + 1) / 4), rtol=1e-6)
    with pytest.raises(ValueError, match="warmup_steps must be >= 0"):
        LDSegConfig(warmup_steps=-1)


def test_weight_decay_makes_the_default_optimizer_adamw():
    from ldseg_tf.models.base import default_optimizer

    def one_step(**fields):
        # A zero gradient: Adam moves nothing, AdamW shrinks every weight by
        # learning rate * weight_decay (decoupled from the gradient).
        optimizer = default_optimizer(LDSegConfig(learning_rate=2e-3, **fields))
        w = keras.Variable(np.full((3,), 2.0, np.float32))
        optimizer.apply_gradients([(keras.ops.zeros((3,)), w)])
        return optimizer, w.numpy()

    adam, unchanged = one_step()
    assert type(adam) is keras.optimizers.Adam
    np.testing.assert_array_equal(unchanged, 2.0)
    adamw, shrunk = one_step(weight_decay=0.1)
    assert isinstance(adamw, keras.optimizers.AdamW)
    np.testing.assert_allclose(shrunk, 2.0 * (1 - 2e-3 * 0.1), rtol=1e-6)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="weight_decay must be in"):
            LDSegConfig(weight_decay=bad)


def test_segment_is_seeded(trained_2d):
    model, x, _ = trained_2d
    a = model.segment(x, steps=2, samples=3, seed=5)
    b = model.segment(x, steps=2, samples=3, seed=5)
    c = model.segment(x, steps=2, samples=3, seed=6, eta=1.0)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.allclose(a["probs"], c["probs"])
    assert a["std"].max() > 0, "several samples must disagree somewhere"
    single = model.segment(x, steps=2, samples=1, seed=5)
    assert np.all(single["std"] == 0)
    np.testing.assert_array_equal(single["labels"], np.argmax(single["probs"], -1))


def test_an_image_gets_the_same_answer_in_any_batch(trained_2d):
    # Each image's initial and per-step noise comes from the seed, not from its
    # row: TF Serving's request batching and evaluate's batch size cannot
    # change an image's mask.
    model, x, y = trained_2d
    for eta in (0.0, 1.0):
        for n in (8, 3):
            batch = model.segment(x[:n], steps=2, samples=2, seed=4, eta=eta)
            for i in sorted({0, 1, n - 1}):
                alone = model.segment(x[i:i + 1], steps=2, samples=2, seed=4, eta=eta)
                np.testing.assert_array_equal(alone["labels"][0], batch["labels"][i])
                # Same noise; only float32 rounding differs (oneDNN blocks
                # convolutions by batch size), a few ulp after two steps.
                for k in ("probs", "std"):
                    np.testing.assert_allclose(alone[k][0], batch[k][i], atol=1e-5, rtol=0)
    scores = [model.evaluate(x, y, batch_size=b, verbose=0, return_dict=True)
              for b in (4, 2)]
    for k in ("dsc", "iou"):
        assert scores[0][k] == pytest.approx(scores[1][k], abs=1e-6), k


def test_identical_samples_have_an_sd_of_exactly_zero():
    # An untrained x0-predictor outputs 0 (zero-initialized output conv): every
    # sample is the same latent, so the spread must be 0, not the rounding
    # floor of E[p^2] - E[p]^2.
    cfg = LDSegConfig.preset("small", image_shape=(16, 16, 3), prediction="x0", ema=None,
                             **TINY)
    model = LDSeg(cfg)
    x, _ = synthetic_arrays("glands", 2, (16, 16))
    out = model.segment(x, steps=2, samples=5, seed=0, eta=1.0)
    assert np.all(out["std"] == 0.0)
    single = model.segment(x, steps=2, samples=1, seed=9)
    np.testing.assert_allclose(out["probs"], single["probs"], atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_denoiser_reads_and_writes_float32_under_mixed_precision(policy):
    # eps-hat must keep float32 resolution: at t = T the label is ~5e-5 of z_t.
    keras.mixed_precision.set_dtype_policy(policy)
    from ldseg_tf.models.denoiser import Denoiser

    den = Denoiser((8,), 1, res_blocks=1, attention_levels=0, groups=2, time_dim=8)
    z = tf.random.stateless_normal((2, 4, 4, 1), seed=[0, 1])
    den(z, z, tf.constant([1, 2]))
    assert den.compute_dtype != "float32"
    bias = np.float32(0.1 + 3e-7)  # between two float16 / bfloat16 values
    den.out_conv.kernel.assign(tf.zeros_like(den.out_conv.kernel))
    den.out_conv.bias.assign([bias])
    out = den(z, z, tf.constant([1, 2]))
    assert out.dtype == tf.float32
    np.testing.assert_array_equal(out.numpy(), np.full((2, 4, 4, 1), bias, np.float32))
    # z_t enters the stem unrounded: a change below half precision reaches it.
    den.stem.kernel.assign(tf.zeros_like(den.stem.kernel))
    probe = den.stem.kernel.numpy()
    probe[(1,) * (probe.ndim - 2) + (0, 0)] = 1.0  # centre tap of z_t -> channel 0
    den.stem.kernel.assign(probe)
    feature = lambda zt: den.stem(tf.concat([zt, zt], -1))  # noqa: E731
    assert den.stem.compute_dtype == "float32"
    fine = z + 3e-7
    assert np.abs(feature(fine).numpy() - feature(z).numpy()).max() > 0


def test_save_and_load_give_identical_segmentations(trained_2d, tmp_path):
    model, x, _ = trained_2d
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, LDSeg) and loaded.config == model.config
    a = model.segment(x, steps=3, samples=2, seed=11)
    b = loaded.segment(x, steps=3, samples=2, seed=11)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations)


def test_bad_inputs_get_clear_errors(trained_2d):
    model, x, y = trained_2d
    with pytest.raises(ValueError, match="3 channel\\(s\\).*got 1"):
        model.segment(x[..., :1])
    with pytest.raises(ValueError, match="rank 5"):
        model.segment(x[None])
    with pytest.raises(ValueError, match="spatial shape \\(32, 32\\); got \\(16, 16\\)"):
        model.segment(x[:, :16, :16])
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.segment(bad)
    with pytest.raises(ValueError, match="steps must be in 1..100"):
        model.segment(x, steps=101)
    with pytest.raises(tf.errors.InvalidArgumentError, match="label values >= num_classes"):
        model.fit(x, y * 2, batch_size=4, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="masks must be label maps"):
        model.fit(x, np.zeros((8, 32, 32, 5)), batch_size=4, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="computes its own loss"):
        LDSeg(CFG_2D).compile(loss="mse")


def test_one_hot_masks_train_like_label_maps():
    cfg = LDSegConfig.preset("small", image_shape=(16, 16, 1), num_classes=3, ema=None, **TINY)
    x, y = synthetic_arrays("echo", 4, (16, 16))
    losses = []
    for masks in (y, tf.one_hot(y, 3).numpy()):
        keras.utils.set_random_seed(3)
        m = LDSeg(cfg)
        m.compile(optimizer=keras.optimizers.SGD(0.01))
        losses.append(m.fit(x, masks, batch_size=4, epochs=1, verbose=0,
                            shuffle=False).history["loss"][0])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


@pytest.mark.parametrize("policy, jit", [("mixed_float16", False), ("mixed_bfloat16", False),
                                         ("float32", True)])
def test_precision_policies_and_xla(policy, jit):
    keras.mixed_precision.set_dtype_policy(policy)
    cfg = LDSegConfig.preset("small", image_shape=(16, 16, 3), **TINY)
    model = LDSeg(cfg)
    model.compile(jit_compile=jit)
    x, y = synthetic_arrays("glands", 8, (16, 16))
    h = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert all(np.isfinite(v) for v in h.history["loss"])
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.denoiser.compute_dtype == policy.replace("mixed_", "")
    assert model.denoiser.variable_dtype == "float32"
    out = model.segment(x, steps=2, seed=0)
    assert out["probs"].dtype == np.float32
    assert np.all(np.isfinite(out["probs"]))


def test_segment_traces_without_autograph(monkeypatch):
    """`segment`'s tf.function is not AutoGraph-converted: no "AutoGraph could not
    transform" warning, even when the module's source cannot be read back (an
    edited file, a .pyc-only install); the same seed still gives the same output."""
    import linecache
    import logging

    import ldseg_tf.models.base as base_module
    import ldseg_tf.models.ldseg as ldseg_module

    sources = {ldseg_module.__file__, base_module.__file__}
    real_getlines = linecache.getlines
    monkeypatch.setattr(linecache, "getlines",
                        lambda f, g=None: [] if f in sources else real_getlines(f, g))
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    tf_logger = logging.getLogger("tensorflow")
    tf_logger.addHandler(handler)
    try:
        cfg = LDSegConfig.preset("small", image_shape=(16, 16, 3), **TINY)
        model = LDSeg(cfg)
        x, _ = synthetic_arrays("glands", 2, (16, 16))
        a = model.segment(x, steps=2, samples=2, seed=3)
        b = model.segment(x, steps=2, samples=2, seed=3)
    finally:
        tf_logger.removeHandler(handler)
    messages = [r.getMessage() for r in records]
    assert not [m for m in messages if "AutoGraph" in m], messages
    for key in ("labels", "probs", "std"):
        np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_latent_target_gradient_false_stops_the_mse_at_its_target(prediction):
    """With the option off, the MSE still trains the label encoder through z_t,
    but not through its target: its gradient is that of the MSE against a
    constant copy of z_l0, and differs from the end-to-end gradient."""
    from ldseg_tf.losses import denoiser_mse

    cfg = LDSegConfig.preset("small", timesteps=100, prediction=prediction)
    keras.utils.set_random_seed(0)
    model = LDSeg(cfg)
    x, y = _data(cfg, 2)
    model.segment(x, steps=1)  # builds the weights
    for w in model.denoiser.trainable_weights:
        # The denoiser's zero-initialized output would pass no gradient to z_t.
        if not np.any(w.numpy()):
            w.assign(np.random.default_rng(0).normal(0, 0.05, w.shape))
    onehot, t = tf.one_hot(y, 2), tf.constant([30, 70])
    noise = tf.random.stateless_normal((2,) + cfg.latent_shape, (0, 1))

    def mse_gradient(stop_in_model, stop_by_hand):
        model.config = dataclasses.replace(cfg, latent_target_gradient=not stop_in_model)
        with tf.GradientTape() as tape:
            out = model.forward_train(tf.constant(x), onehot, t, noise)
            target = out["target"]
            if stop_by_hand:
                a, s = model.schedule.coefficients(t, 4)
                z0 = tf.stop_gradient(out["z_l0"])
                target = z0 if prediction == "x0" else a * noise - s * z0
            loss = tf.reduce_sum(denoiser_mse(target, out["prediction"]))
        grads = tape.gradient(loss, model.label_encoder.trainable_weights)
        return np.concatenate([g.numpy().ravel() for g in grads])

    stopped = mse_gradient(stop_in_model=True, stop_by_hand=False)
    np.testing.assert_allclose(stopped, mse_gradient(False, stop_by_hand=True), rtol=1e-4,
                               atol=1e-7)
    assert np.abs(stopped).max() > 0, "z_t still carries the label encoder's gradient"
    end_to_end = mse_gradient(stop_in_model=False, stop_by_hand=False)
    assert np.abs(end_to_end - stopped).max() > 1e-3 * np.abs(end_to_end).max()
