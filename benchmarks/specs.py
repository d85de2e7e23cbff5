"""Config specs that the benchmarks share (`LDSegConfig.from_spec` strings)."""

#: The `fine` preset as it was before issue 17 (residual blocks at full
#: resolution in the label autoencoder, the image only through z_i, two
#: residual blocks per denoiser level, the paper's learning rate without
#: warm-up, eq. 15's pooled Dice, 2 DDIM steps by default): the
#: README's earlier `fine` rows.
FINE_BEFORE_ISSUE_17 = ("fine:denoiser_res_blocks=2:label_resampling=conv"
                        ":image_conditioning=embedding:learning_rate=0.001:warmup_steps=0"
                        ":dice=pooled:sampling_steps=2")
