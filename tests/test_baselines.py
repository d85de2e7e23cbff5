"""The comparison models of `ldseg reproduce`: ResUNet, pixel-space diffusion,
two-stage LDSeg and the down-sampling ablations."""

import numpy as np
import pytest
import tensorflow as tf

from ldseg_tf.config import LDSegConfig
from ldseg_tf.data import make_dataset
from ldseg_tf.diffusion import ddim_sample
from ldseg_tf.models.downsamplers import ImageDownsampler, LabelDownsampler
from ldseg_tf.models.ldseg import LDSeg
from ldseg_tf.models.pixel_diffusion import PixelDiffusion
from ldseg_tf.models.resunet import ResUNet


def _config(**kw):
    return LDSegConfig.preset("small", image_shape=(32, 32, 3), timesteps=100, **kw)


@pytest.fixture(scope="module")
def data():
    cfg = _config()
    ds = make_dataset("synthetic", cfg, "train", batch_size=4, num_examples=8)
    images, masks = next(iter(ds))
    return ds, images.numpy(), masks.numpy()


def _check_output(out, batch, cfg):
    assert out["labels"].shape == (batch,) + cfg.image_shape[:-1]
    assert out["labels"].dtype == np.int32
    assert out["probs"].shape == (batch,) + cfg.image_shape[:-1] + (cfg.num_classes,)
    np.testing.assert_allclose(out["probs"].sum(-1), 1.0, atol=1e-4)
    assert out["std"].shape == (batch,) + cfg.image_shape[:-1]
    assert set(np.unique(out["labels"])) <= set(range(cfg.num_classes))


def test_resunet_trains_and_segments(data):
    ds, images, _ = data
    cfg = _config()
    model = ResUNet(cfg)
    model.compile()
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0).history
    assert np.isfinite(history["loss"][-1])
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(before, model.trainable_weights))
    out = model.segment(images, steps=7, samples=3, seed=1)  # sampling args are ignored
    _check_output(out, len(images), cfg)
    assert not out["std"].any()
    assert model.segment(images[0])["labels"].shape == cfg.image_shape[:-1]


def test_resunet_builds_in_3d():
    cfg = LDSegConfig.preset("small", image_shape=(8, 8, 8, 1), num_classes=3,
                             image_encoder_attention_levels=0)
    model = ResUNet(cfg)
    out = model.segment(np.zeros((1, 8, 8, 8, 1), np.float32))
    assert out["probs"].shape == (1, 8, 8, 8, 3)


def test_pixel_diffusion_trains_and_segments(data):
    ds, images, _ = data
    cfg = _config()
    model = PixelDiffusion(cfg)
    model.compile()
    history = model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0).history
    assert np.isfinite(history["mse"][-1])
    out = model.segment(images, steps=3, samples=2, seed=1)
    _check_output(out, len(images), cfg)
    again = model.segment(images, steps=3, samples=2, seed=1)
    np.testing.assert_array_equal(out["labels"], again["labels"])
    # LDSeg's sampler: an image's noise does not depend on its batch (it used
    # to depend on its row). What is left is the kernels' rounding, which
    # differs with the batch size and with the CPU's vector width, and which
    # the clip projection's division by sqrt(ab_T) amplifies (seen: 2e-6 here,
    # 3e-5 on CI's CPU). Noise from another seed moves probabilities by up to 1
    # (0.27 on average), so 1e-3 still tells the two apart by ~1000x. Labels are
    # compared only where the two classes are not within rounding of a tie.
    alone = model.segment(images[2:3], steps=3, samples=2, seed=1)
    np.testing.assert_allclose(alone["probs"][0], out["probs"][2], atol=1e-3, rtol=0)
    top2 = np.sort(out["probs"][2], -1)[..., -2:]
    clear = top2[..., 1] - top2[..., 0] > 2e-3
    assert clear.mean() > 0.5
    np.testing.assert_array_equal(alone["labels"][0][clear], out["labels"][2][clear])
    # The denoiser runs at full resolution on (noisy mask, image).
    assert model.denoiser.latent_channels == cfg.num_classes


def test_two_stage_freezes_the_autoencoder(data):
    ds, images, _ = data
    # With an autoencoder weight (the `fine` preset has one), which used to
    # crash the first step: stage 1 is that reconstruction term itself.
    model = LDSeg(_config(training="two_stage", autoencoder_weight=0.5))
    assert model.training_stage == 1

    def snapshot(layer):
        return [w.numpy().copy() for w in layer.weights]

    def changed(layer, before):
        return any(not np.allclose(a, w.numpy()) for a, w in zip(before, layer.weights))

    enc, dec, img, den = (snapshot(model.label_encoder), snapshot(model.label_decoder),
                          snapshot(model.image_encoder), snapshot(model.denoiser))
    model.compile()
    h1 = model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0).history
    assert h1["mse"][-1] == 0.0  # stage 1: CE + gamma * Dice only
    assert h1["ae_loss"][-1] == pytest.approx(h1["loss"][-1])
    assert changed(model.label_encoder, enc) and changed(model.label_decoder, dec)
    assert not changed(model.image_encoder, img) and not changed(model.denoiser, den)

    model.set_training_stage(2)
    assert not model.label_encoder.trainable and not model.label_decoder.trainable
    enc, dec, img, den = (snapshot(model.label_encoder), snapshot(model.label_decoder),
                          snapshot(model.image_encoder), snapshot(model.denoiser))
    model.compile()
    h2 = model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0).history
    assert h2["loss"][-1] == pytest.approx(h2["mse"][-1])  # stage 2: latent MSE only
    assert np.isfinite(h2["ae_loss"][-1]) and h2["ae_loss"][-1] != h2["loss"][-1]
    assert not changed(model.label_encoder, enc) and not changed(model.label_decoder, dec)
    assert changed(model.image_encoder, img) and changed(model.denoiser, den)
    _check_output(model.segment(images, steps=2, seed=0), len(images), model.config)


def test_two_stage_needs_the_two_stage_config():
    with pytest.raises(ValueError, match="two_stage"):
        LDSeg(_config()).set_training_stage(2)
    with pytest.raises(ValueError, match="training must be one of"):
        _config(training="joint")
    with pytest.raises(ValueError, match="label_encoder must be one of"):
        _config(label_encoder="random")


def _standardize(x):
    """`ldseg_tf.models.layers.standardize` in numpy (its guard is relative)."""
    axes = tuple(range(1, x.ndim))
    m = x.mean(axis=axes, keepdims=True)
    second = np.square(x).mean(axis=axes, keepdims=True)
    return (x - m) / np.sqrt(x.var(axis=axes, keepdims=True) + 1e-6 * second)


def test_ablations_bypass_the_encoders(data):
    _, images, masks = data
    model = LDSeg(_config(label_encoder="downsample", image_encoder="downsample"))
    assert isinstance(model.label_encoder, LabelDownsampler)
    assert isinstance(model.image_encoder, ImageDownsampler)
    assert not model.label_encoder.weights and not model.image_encoder.weights
    counts = model.component_parameter_counts()
    assert counts["label_encoder"] == 0 and counts["image_encoder"] == 0

    # Label: nearest neighbour (the centre pixel of each 4x4 block), coded
    # background -1, foreground +1.
    onehot = np.eye(2, dtype=np.float32)[masks]
    z = np.asarray(model.label_encoder(onehot))
    assert z.shape == (len(masks), 8, 8, 1)
    np.testing.assert_array_equal(z, 2.0 * masks[:, 2::4, 2::4, None] - 1.0)
    # Image: area down-sampling of the channel mean, standardized.
    zi = np.asarray(model.image_encoder(images))
    area = images.mean(-1).reshape(len(images), 8, 4, 8, 4).mean(axis=(2, 4))[..., None]
    np.testing.assert_allclose(zi, _standardize(area), atol=1e-4)


def test_label_downsampler_codes_empty_masks_and_small_objects(data):
    # An empty mask, or objects between the sampled block centres, used to
    # give an all-zero "standardized" latent that the sampler (which projects
    # onto standardized latents) could never produce.
    _, images, _ = data
    model = LDSeg(_config(label_encoder="downsample", ema=None))
    masks = np.zeros((2, 32, 32), np.int32)
    masks[1, 0, 0] = 1  # smaller than the stride, off the block centres
    z = np.asarray(model.label_encoder(np.eye(2, dtype=np.float32)[masks]))
    np.testing.assert_array_equal(z, -np.ones((2, 8, 8, 1), np.float32))
    # The sampler projects onto the same codes: with the oracle x0-prediction of
    # the empty mask's latent, one step gives that latent back exactly.
    three = np.eye(3, dtype=np.float32)[np.array([[0, 1], [2, 2]])][None]
    assert np.asarray(LabelDownsampler(1, 1)(three)).ravel().tolist() == [1.0]
    out = model.segment(images[:2], steps=1, seed=0)
    assert np.isfinite(out["probs"]).all()
    sampled = ddim_sample(lambda x, c, t: tf.constant(z), tf.zeros((2, 8, 8, 1)), model.schedule,
                          1, tf.constant([0, 0], tf.int64), (8, 8, 1), model._project_x0,
                          prediction="x0")
    np.testing.assert_array_equal(sampled.numpy(), z)


def test_pixel_diffusion_draws_noise_per_replica():
    # Under MirroredStrategy every replica used to draw the same t and noise.
    cfg = LDSegConfig.preset("small", image_shape=(16, 16, 3), timesteps=50, downsamplings=1,
                             label_encoder_widths=(4, 4), image_encoder_widths=(4,),
                             image_encoder_attention_levels=1, decoder_widths=(4,),
                             denoiser_widths=(8,), denoiser_attention_levels=1, norm_groups=2,
                             attention_heads=1, time_embedding_dim=8)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")[:2]]
    assert len(devices) == 2, "conftest provides two logical CPUs"
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        model = PixelDiffusion(cfg, widths=(4, 4), attention_levels=0)
        model.compile()
    per_replica = strategy.run(tf.function(lambda: model._training_noise(2, 0)))
    t = [v.numpy() for v in strategy.experimental_local_results(per_replica[0])]
    noise = [v.numpy() for v in strategy.experimental_local_results(per_replica[1])]
    assert not np.array_equal(noise[0], noise[1])
    single = PixelDiffusion(cfg, widths=(4, 4), attention_levels=0)
    single.compile()
    t_all, noise_all = single._training_noise(4, 0)
    np.testing.assert_array_equal(np.concatenate(t), t_all.numpy())
    np.testing.assert_array_equal(np.concatenate(noise), noise_all.numpy())
    assert noise_all.shape == (4, 16, 16, 2)


def test_single_ablations_keep_the_other_encoder():
    label_only = LDSeg(_config(label_encoder="downsample", ema=None))
    assert not label_only.label_encoder.weights and label_only.image_encoder.weights
    image_only = LDSeg(_config(image_encoder="downsample", ema=None))
    assert image_only.label_encoder.weights and not image_only.image_encoder.weights


def test_downsamplers_in_3d():
    labels = np.zeros((1, 8, 8, 8, 3), np.float32)
    labels[..., 0] = 1
    labels[0, :4, :, :, 0], labels[0, :4, :, :, 2] = 0, 1
    z = np.asarray(LabelDownsampler(2, 1, dims=3)(labels))
    assert z.shape == (1, 2, 2, 2, 1)
    assert (z[0, 0] > 0).all() and (z[0, 1] < 0).all()
    zi = ImageDownsampler(1, 2, dims=3)(np.random.rand(2, 8, 8, 8, 1).astype(np.float32))
    assert tuple(zi.shape) == (2, 4, 4, 4, 2)
