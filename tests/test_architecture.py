"""Cheaper full-resolution levels and multi-scale image conditioning (issue 17):
pixel (un)shuffle in the label autoencoder, image features at every denoiser
level, and older configs that load with the paper's architecture."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ldseg_tf import LDSeg, LDSegConfig
from ldseg_tf.export import export_saved_model
from ldseg_tf.models.resampling import depth_to_space, space_to_depth

TINY = dict(downsamplings=1, label_encoder_widths=(4, 4), image_encoder_widths=(4,),
            image_encoder_attention_levels=0, denoiser_widths=(8, 8), denoiser_res_blocks=1,
            denoiser_attention_levels=0, decoder_widths=(4,), norm_groups=2, attention_heads=1,
            time_embedding_dim=8, timesteps=50)


@pytest.mark.parametrize("dims", [2, 3])
def test_pixel_shuffle_is_a_lossless_permutation(dims):
    rng = np.random.default_rng(0)
    x = rng.random((2,) + (4, 6, 8)[:dims] + (3,)).astype(np.float32)
    packed = space_to_depth(tf.constant(x), dims)
    assert packed.shape == (2,) + (2, 3, 4)[:dims] + (3 * 2**dims,)
    # Same values, moved: a permutation, and its inverse gives x back exactly.
    np.testing.assert_array_equal(np.sort(packed.numpy(), axis=None), np.sort(x, axis=None))
    np.testing.assert_array_equal(depth_to_space(packed, dims).numpy(), x)
    if dims == 2:
        np.testing.assert_array_equal(packed.numpy(), tf.nn.space_to_depth(x, 2).numpy())


@pytest.mark.parametrize("shape", [(16, 16, 3), (8, 8, 8, 1)], ids=["2d", "3d"])
def test_pixel_shuffle_autoencoder_shapes_and_save_load(shape, tmp_path, monkeypatch):
    cfg = LDSegConfig(image_shape=shape, label_resampling="pixel_shuffle", **TINY)
    model = LDSeg(cfg)
    onehot = tf.one_hot(np.random.default_rng(0).integers(0, 2, (2,) + shape[:-1]), 2)
    # The spatial shape of every convolution's input while the label
    # autoencoder runs (the `conv` variant convolves at full resolution).
    conv_inputs = []
    for cls in (keras.layers.Conv2D, keras.layers.Conv3D):
        monkeypatch.setattr(cls, "call", lambda self, x, _call=cls.call: (
            conv_inputs.append(tuple(x.shape[1:-1])), _call(self, x))[1])
    z0 = model.label_encoder(onehot)
    assert z0.shape == (2,) + cfg.latent_shape
    probs = model.label_decoder(z0)
    monkeypatch.undo()
    assert probs.shape == (2,) + shape[:-1] + (2,)
    np.testing.assert_allclose(np.sum(probs.numpy(), -1), 1.0, atol=1e-5)
    assert len(conv_inputs) >= 6
    assert all(s == cfg.latent_shape[:-1] for s in conv_inputs), conv_inputs
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    assert again.config.label_resampling == "pixel_shuffle"
    np.testing.assert_allclose(again.reconstruct(onehot).numpy(),
                               model.reconstruct(onehot).numpy(), atol=1e-6)


def test_multiscale_features_reach_every_denoiser_level():
    cfg = LDSegConfig(image_shape=(16, 16, 3), image_conditioning="multiscale",
                      **{**TINY, "denoiser_widths": (8, 8, 16)})
    model = LDSeg(cfg)
    images = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    z_i, features = model.encode_image(images)
    assert z_i.shape == (2,) + cfg.embedding_shape
    latent = cfg.latent_shape[:-1]
    assert [tuple(f.shape[1:-1]) for f in features] == [
        tuple(s // 2**k for s in latent) for k in range(3)]
    den = model.denoiser
    # The output conv starts at zero (DDPM); give it weights so the output shows
    # what reaches it.
    den.out_conv.kernel.assign(tf.random.normal(den.out_conv.kernel.shape, seed=1))
    z_t = tf.random.normal((2,) + cfg.latent_shape, seed=2)
    t = tf.constant([10, 40])
    base = den(z_t, z_i, t, features=features).numpy()
    for k in range(3):
        moved = list(features)
        moved[k] = features[k] + 1.0
        assert not np.allclose(den(z_t, z_i, t, features=moved).numpy(), base), k
    with pytest.raises(ValueError, match="features"):
        den(z_t, z_i, t)
    # The image reaches the training pass and the sampler through the features.
    out = model.segment(images, steps=2, seed=0)
    assert out["labels"].shape == (2, 16, 16)


def test_multiscale_model_trains_and_reloads(tmp_path):
    cfg = LDSegConfig(image_shape=(16, 16, 3), image_conditioning="multiscale",
                      label_resampling="pixel_shuffle", prediction="x0",
                      pure_noise_fraction=0.5, autoencoder_weight=1.0, **TINY)
    model = LDSeg(cfg)
    model.compile()
    x = np.random.default_rng(0).random((4, 16, 16, 3)).astype(np.float32)
    y = (x[..., 0] > 0.5).astype(np.int32)
    deep = model.image_encoder.feature_blocks[0].weights
    before = [w.numpy().copy() for w in deep]
    for _ in range(2):
        logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"])
    # The image encoder's levels below the latent learn from the denoiser's loss.
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(before, deep))
    path = str(tmp_path / "m.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    np.testing.assert_allclose(again.segment(x, seed=3)["probs"],
                               model.segment(x, seed=3)["probs"], atol=1e-6)
    # The served graph computes the features once and feeds every step too.
    # (Each image spans exactly [0, 1], so the graph's min-max normalization
    # leaves it unchanged.)
    x[:, 0, 0, 0], x[:, 0, 1, 0] = 0.0, 1.0
    served = tf.saved_model.load(export_saved_model(model, str(tmp_path / "export"),
                                                    warmup=False))
    out = served.signatures["segment"](image=tf.constant(x), steps=tf.constant(2),
                                       samples=tf.constant(2), seed=tf.constant(7, tf.int64))
    ref = model.segment(x, steps=2, samples=2, seed=7)
    np.testing.assert_allclose(out["probs"].numpy(), ref["probs"], atol=1e-5)
    np.testing.assert_array_equal(out["labels"].numpy(), ref["labels"])


def test_new_fields_are_checked_and_old_configs_keep_the_paper_architecture():
    with pytest.raises(ValueError, match="label_resampling"):
        LDSegConfig(label_resampling="bicubic")
    with pytest.raises(ValueError, match="image_conditioning"):
        LDSegConfig(image_conditioning="film")
    with pytest.raises(ValueError, match="needs image_encoder='learned'"):
        LDSegConfig(image_conditioning="multiscale", image_encoder="downsample")
    with pytest.raises(ValueError, match="ema_scope"):
        LDSegConfig(ema_scope="all")
    old = LDSegConfig().to_dict()
    del old["label_resampling"], old["image_conditioning"], old["ema_scope"]
    del old["dice"], old["latent_target_gradient"]
    cfg = LDSegConfig.from_dict(old)
    assert (cfg.label_resampling, cfg.image_conditioning, cfg.ema_scope) == (
        "conv", "embedding", "denoiser")
    assert (cfg.dice, cfg.latent_target_gradient) == ("pooled", True)
