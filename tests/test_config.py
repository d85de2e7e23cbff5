import json
import warnings

import pytest

from ldseg_tf import LDSeg, LDSegConfig


def test_json_round_trip(tmp_path):
    cfg = LDSegConfig.preset("small", image_shape=(16, 32, 48, 1), num_classes=3,
                             class_names=("bg", "femur", "tibia"), gamma=1.5, ema=None)
    again = LDSegConfig.from_json(cfg.to_json())
    assert again == cfg
    path = tmp_path / "cfg.json"
    cfg.to_json(str(path))
    assert LDSegConfig.from_json(str(path)) == cfg
    assert json.loads(path.read_text())["image_shape"] == [16, 32, 48, 1]


@pytest.mark.parametrize("text, message", [
    ("timesteps=abc", "LDSegConfig.timesteps: expected an integer; got 'abc'"),
    ("timesteps=2.5", "LDSegConfig.timesteps: expected an integer; got 2.5"),
    ("gamma=[1,2]", "LDSegConfig.gamma: expected a number; got .1, 2."),
    ("gamma=NaN", "LDSegConfig.gamma: expected a finite number; got nan"),
    ("gamma=Infinity", "LDSegConfig.gamma: expected a finite number; got inf"),
    ("seed=abc", "LDSegConfig.seed: expected an integer"),
    ("ema=true", "LDSegConfig.ema: expected a number; got True"),
    ("image_shape=5", "LDSegConfig.image_shape: expected a list of int values; got 5"),
    ("class_names=5", "LDSegConfig.class_names: expected a list of str values; got 5"),
    ("class_names=[1,2]", "LDSegConfig.class_names: expected a string; got 1"),
    ("prediction=7", "LDSegConfig.prediction: expected a string; got 7"),
    ("latent_target_gradient=1", "LDSegConfig.latent_target_gradient: expected true or false; got 1"),
    ("latent_target_gradient=yes",
     "LDSegConfig.latent_target_gradient: expected true or false; got 'yes'"),
    ("dice=macro", "dice must be one of .'pooled', 'foreground'.; got 'macro'"),
    ("denoiser_widths=[0]", "denoiser_widths must all be >= 1"),
])
def test_every_field_is_type_checked_in_one_place(text, message, tmp_path):
    """The same `validate` refuses a bad value from Python, a JSON file and --set."""
    from ldseg_tf.config import parse_overrides

    fields = parse_overrides([text])
    with pytest.raises(ValueError, match=message):
        LDSegConfig.preset("small", **fields)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LDSegConfig.preset("small").to_dict(), **fields},
                               allow_nan=True))
    with pytest.raises(ValueError, match=message):
        LDSegConfig.from_json(str(path))


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(image_shape=(100, 100, 3)), "divisible by 2\\*\\*downsamplings = 16"),
        (dict(num_classes=1), "num_classes counts the background"),
        (dict(schedule="quadratic"), "schedule must be one of"),
        (dict(image_shape=(64, 3)), "image_shape must be"),
        (dict(label_encoder_widths=(8, 8)), "label_encoder_widths needs 5 values"),
        (dict(sampling_steps=2000), "cannot exceed timesteps"),
        (dict(ema=1.5), "ema must be None or in"),
        (dict(class_names=("a",)), "class_names has 1 names"),
        (dict(image_shape=(64, 64, 3), denoiser_widths=(8, 16, 32, 64)), "latent spatial shape"),
        (dict(normalization="percentile"), "normalization must be one of"),
        # Sampling starts from N(0, I): the schedule must end (almost) there.
        (dict(timesteps=1, schedule="linear", sampling_steps=1),
         "alpha-bar_T = 0.9, not below 0.001"),
        (dict(timesteps=10, schedule="linear", sampling_steps=2), None),
    ],
)
def test_invalid_configs_say_what_is_wrong(fields, message):
    if message is None:  # the valid neighbour of the case above
        LDSegConfig(**fields)
        return
    with pytest.raises(ValueError, match=message):
        LDSegConfig(**fields)


def test_pure_noise_training_warns_when_sampling_takes_more_steps():
    with pytest.warns(UserWarning, match="trains the denoiser at t = T only.*sampling_steps=2"):
        LDSegConfig(pure_noise_fraction=1.0, prediction="x0", sampling_steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LDSegConfig(pure_noise_fraction=1.0, prediction="x0", sampling_steps=1)
        LDSegConfig(pure_noise_fraction=0.9, prediction="x0", sampling_steps=2)


def test_unknown_fields_and_presets_are_rejected():
    with pytest.raises(ValueError, match="unknown LDSegConfig fields \\['widht'\\]"):
        LDSegConfig.from_dict({"widht": 3})
    with pytest.raises(ValueError, match="unknown preset"):
        LDSegConfig.preset("huge")
    with pytest.raises(ValueError, match="preset 'fine': unknown LDSegConfig fields \\['widht'\\]"):
        LDSegConfig.preset("fine", widht=3)
    with pytest.raises(ValueError, match="invalid config JSON"):
        LDSegConfig.from_json("{not json")


def test_fine_preset_departs_from_the_paper_only_where_measured():
    # Each departure is a measured choice (README, "Latent capacity" and "Cost"):
    # a change here must come with its measurement.
    paper, fine = LDSegConfig(), LDSegConfig.preset("fine")
    # The label and image widths are not set by the preset: they follow from
    # `downsamplings` as they would for the paper's model.
    derived = ("label_encoder_widths", "image_encoder_widths", "decoder_widths")
    one_level = LDSegConfig(downsamplings=1, image_encoder_attention_levels=0)
    assert [getattr(fine, n) for n in derived] == [getattr(one_level, n) for n in derived]
    changed = {name: (getattr(paper, name), getattr(fine, name))
               for name in LDSegConfig.__dataclass_fields__
               if name not in derived and getattr(paper, name) != getattr(fine, name)}
    assert changed == {
        "downsamplings": (4, 1), "latent_channels": (1, 4), "autoencoder_weight": (0.0, 1.0),
        "image_encoder_attention_levels": (2, 0),
        "denoiser_widths": ((16, 32, 64), (16, 32, 64, 64)), "denoiser_attention_levels": (2, 1),
        "prediction": ("epsilon", "x0"), "pure_noise_fraction": (0.0, 0.5),
        "denoiser_res_blocks": (2, 1), "label_resampling": ("conv", "pixel_shuffle"),
        "image_conditioning": ("embedding", "multiscale"), "warmup_steps": (0, 100),
        "learning_rate": (1e-3, 2e-3), "dice": ("pooled", "foreground"),
        "sampling_steps": (2, 1),
    }
    # The pure-noise warm-up left one DRIVE seed's masks empty for 300 steps.
    assert fine.pure_noise_warmup_steps == paper.pure_noise_warmup_steps == 0


def test_latent_shape_follows_the_paper():
    assert LDSegConfig(image_shape=(512, 512, 3)).latent_shape == (32, 32, 1)
    assert LDSegConfig(image_shape=(512, 768, 1)).latent_shape == (32, 48, 1)
    assert LDSegConfig(image_shape=(128, 128, 256, 1), denoiser_widths=(16, 32)).latent_shape == (
        8, 8, 16, 1)


def test_default_sizes_are_close_to_the_authors_model():
    counts = LDSeg(LDSegConfig.preset("paper", image_shape=(64, 64, 3))).component_parameter_counts()
    expected = {"label_encoder": 0.19e6, "image_encoder": 0.29e6, "denoiser": 1.0e6,
                "label_decoder": 0.27e6, "total": 1.8e6}
    for name, target in expected.items():
        assert abs(counts[name] - target) / target < 0.1, (name, counts[name])


def test_from_spec_reads_a_preset_with_overrides():
    cfg = LDSegConfig.from_spec("fine:prediction=v:image_embedding_channels=32:ema=null",
                                image_shape=(64, 64, 3))
    assert (cfg.prediction, cfg.image_embedding_channels, cfg.ema) == ("v", 32, None)
    assert cfg.downsamplings == 1 and cfg.image_shape == (64, 64, 3)
    assert LDSegConfig.from_spec("small:denoiser_widths=[8,16]").denoiser_widths == (8, 16)
    with pytest.raises(ValueError, match="key=value"):
        LDSegConfig.from_spec("fine:prediction")
    with pytest.raises(ValueError, match="'fine:no_such_field=1'.*unknown.*no_such_field"):
        LDSegConfig.from_spec("fine:no_such_field=1")
    with pytest.raises(ValueError, match="unknown preset"):
        LDSegConfig.from_spec("huge")


def test_cli_set_overrides_any_field(tmp_path):
    from ldseg_tf import cli

    def config(*argv):
        return cli.build_config(cli.build_parser().parse_args(
            ["train", "--out", str(tmp_path / "run"), "--image-shape", "32,32,3", *argv]))

    cfg = config("--preset", "fine", "--set", "prediction=x0", "--set", "denoiser_widths=[16,32]")
    assert (cfg.prediction, cfg.denoiser_widths, cfg.downsamplings) == ("x0", (16, 32), 1)
    # --set also applies on top of a config file.
    path = str(tmp_path / "config.json")
    LDSegConfig.preset("small").to_json(path)
    cfg = config("--config", path, "--set", "ema=null", "--set", "prediction=v")
    assert (cfg.ema, cfg.prediction, cfg.image_shape) == (None, "v", (32, 32, 3))
    from ldseg_tf.errors import UserError

    with pytest.raises(UserError, match="unknown LDSegConfig fields \\['predicton'\\]"):
        config("--set", "predicton=x0")
    with pytest.raises(UserError, match="prediction must be one of"):
        config("--set", "prediction=sample")
    with pytest.raises(UserError, match="key=value"):
        config("--set", "prediction")
