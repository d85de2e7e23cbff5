"""Conditional denoiser f_denoiser(z_t, z_i, t) -> predicted noise (paper eq. 12)."""

from __future__ import annotations

import keras
from keras import ops

from ldseg_tf.models.layers import (
    CompositeLayer,
    ResidualBlock,
    SinusoidalTimeEmbedding,
    SpatialAttention,
    conv,
    group_norm,
    up_sample,
)


@keras.saving.register_keras_serializable(package="ldseg_tf")
class Denoiser(CompositeLayer):
    """DDPM U-Net (Ho et al. 2020, as in the keras-io DDPM example) on the latent.

    The noisy label latent and the image embedding are concatenated on the
    channel axis. Each level has `res_blocks` time-conditioned residual blocks on
    the way down and `res_blocks + 1` on the way up (with U-Net skips), the
    deepest `attention_levels` levels add self-attention, and a middle block of
    res-attention-res sits at the bottom.

    With `conditioned=True` (multi-scale conditioning), `call` also takes the
    image encoder's `features`, one per level (latent resolution first); each
    is mapped by a 1x1 conv to the width of the level's input and added to it.

    Inputs: `z_t` `(B, *latent_spatial, latent_channels)`, `z_i` of the same
    spatial shape, `t` `(B,)` integer timesteps in 1..T, and with
    `conditioned`, `features` (a list of `len(widths)` tensors, the k-th at
    `latent_spatial / 2**k`).
    Output: `(B, *latent_spatial, latent_channels)` float32 noise estimate.

    Under a mixed-precision policy the stem (which reads z_t) and the output
    norm and conv still compute in float32: at t = T the label is only
    sqrt(ab_T) ~ 5e-5 of z_t, far below float16/bfloat16 resolution, so z_t
    must not be rounded on the way in nor eps-hat on the way out (the body
    still computes in half precision; see "Mixed precision" in the README).
    """

    def __init__(self, widths=(16, 32, 64), latent_channels=1, dims=2, res_blocks=2,
                 attention_levels=2, attention_heads=8, groups=8, time_dim=64, dropout=0.0,
                 conditioned=False, **kwargs):
        super().__init__(**kwargs)
        self.widths = tuple(widths)
        self.latent_channels = latent_channels
        self.dims = dims
        self.res_blocks = res_blocks
        self.attention_levels = attention_levels
        self.attention_heads = attention_heads
        self.groups = groups
        self.time_dim = time_dim
        self.dropout = dropout
        self.conditioned = conditioned

        n = len(self.widths)
        first_attention = n - attention_levels
        self.uses_attention = [i >= first_attention for i in range(n)]

        def res(w, name):
            return ResidualBlock(w, dims=dims, groups=groups, dropout=dropout,
                                 time_conditioned=True, name=name)

        def attn(name):
            return SpatialAttention(attention_heads, groups=groups, name=name)

        # Inputs arrive as they are: Keras would cast z_t to the compute dtype.
        self._convert_input_args = False
        self.time_embedding = SinusoidalTimeEmbedding(time_dim, name="time_embedding")
        self.stem = conv(dims, self.widths[0], dtype="float32", name="stem")
        # A level's input has the width of the level above it (its downsampler's).
        level_inputs = self.widths[:1] + self.widths[:-1]
        self.condition_convs = [conv(dims, w, kernel_size=1, name=f"condition{i}")
                                for i, w in enumerate(level_inputs)] if conditioned else []
        # Attention layers live in lists of their own (consumed in call order)
        # because tracked layer lists cannot hold placeholders for "no attention".
        self.down_res, self.down_attn, self.downsamplers = [], [], []
        for i, w in enumerate(self.widths):
            for j in range(res_blocks):
                self.down_res.append(res(w, f"down{i}_res{j}"))
                if self.uses_attention[i]:
                    self.down_attn.append(attn(f"down{i}_attn{j}"))
            if i < n - 1:
                self.downsamplers.append(conv(dims, w, strides=2, name=f"down{i}_sample"))
        self.mid_res1 = res(self.widths[-1], "mid_res1")
        self.mid_attn = attn("mid_attn")
        self.mid_res2 = res(self.widths[-1], "mid_res2")
        self.up_res, self.up_attn, self.upsamplers, self.up_convs = [], [], [], []
        for i in reversed(range(n)):
            w = self.widths[i]
            for j in range(res_blocks + 1):
                self.up_res.append(res(w, f"up{i}_res{j}"))
                if self.uses_attention[i]:
                    self.up_attn.append(attn(f"up{i}_attn{j}"))
            if i > 0:
                self.upsamplers.append(up_sample(dims, name=f"up{i}_sample"))
                self.up_convs.append(conv(dims, w, name=f"up{i}_conv"))
        self.out_norm = group_norm(self.widths[0], groups, dtype="float32", name="out_norm")
        # Zero-initialized output, as in DDPM: the first predictions are 0, so
        # z_dn = z_t at the start of training and the decoder sees a sane input.
        self.out_conv = conv(dims, latent_channels, kernel_initializer="zeros", dtype="float32",
                             name="out_conv")

    def call(self, z_t, z_i, t, features=None, training=None):
        if self.conditioned and features is None:
            raise ValueError("this Denoiser is conditioned: pass the image encoder's features.")
        temb = self.time_embedding(t)
        z_t = ops.cast(z_t, "float32")
        x = self.stem(ops.concatenate([z_t, ops.cast(z_i, "float32")], axis=-1))
        x = ops.cast(x, self.compute_dtype)
        skips = []
        res_i = attn_i = 0
        n = len(self.widths)
        for i in range(n):
            if self.conditioned:
                x = x + self.condition_convs[i](ops.cast(features[i], x.dtype))
            skips.append(x)
            for _ in range(self.res_blocks):
                x = self.down_res[res_i](x, temb, training=training)
                res_i += 1
                if self.uses_attention[i]:
                    x = self.down_attn[attn_i](x)
                    attn_i += 1
                skips.append(x)
            if i < n - 1:
                x = self.downsamplers[i](x)
        x = self.mid_res1(x, temb, training=training)
        x = self.mid_attn(x)
        x = self.mid_res2(x, temb, training=training)
        res_i = attn_i = 0
        for k, i in enumerate(reversed(range(n))):
            for _ in range(self.res_blocks + 1):
                x = ops.concatenate([x, skips.pop()], axis=-1)
                x = self.up_res[res_i](x, temb, training=training)
                res_i += 1
                if self.uses_attention[i]:
                    x = self.up_attn[attn_i](x)
                    attn_i += 1
            if i > 0:
                x = self.up_convs[k](self.upsamplers[k](x))
        return self.out_conv(ops.silu(self.out_norm(x)))

    def get_config(self):
        config = super().get_config()
        config.update(widths=list(self.widths), latent_channels=self.latent_channels,
                      dims=self.dims, res_blocks=self.res_blocks,
                      attention_levels=self.attention_levels,
                      attention_heads=self.attention_heads, groups=self.groups,
                      time_dim=self.time_dim, dropout=self.dropout,
                      conditioned=self.conditioned)
        return config
