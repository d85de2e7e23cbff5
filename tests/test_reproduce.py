"""`ldseg reproduce` end to end on the tiny profile with synthetic data."""

import csv
import dataclasses
import json
import os

import numpy as np
import pytest

from ldseg_tf import experiments
from ldseg_tf.experiments import figures
from ldseg_tf.experiments.measure import error_vs_sd, noise_verdict
from ldseg_tf.experiments.models import build_model, same_ident


def test_error_vs_sd_deciles_and_auroc():
    sd = np.linspace(0, 1, 100)
    err = sd > 0.8
    stats = error_vs_sd(sd, err)
    assert len(stats["deciles"]) == 10
    assert stats["deciles"][0]["error_rate"] == 0.0
    assert stats["deciles"][-1]["error_rate"] == 1.0
    assert stats["auroc"] == pytest.approx(1.0)
    flat = error_vs_sd(np.zeros(50), np.arange(50) % 2 == 0)
    assert flat["auroc"] == pytest.approx(0.5)


def test_profiles_build_valid_configs():
    for name, prof in experiments.PROFILES.items():
        for data in ("synthetic", "synthetic:echo", "synthetic:knee", "drive", "glas", "knee"):
            cfg = experiments.base_config(prof, data)
            for key in experiments.MODELS:
                experiments.model_config(cfg, key)
    assert experiments.base_config(experiments.PROFILES["tiny"], "drive", image_shape=(64, 64)) \
        .image_shape == (64, 64, 3)


@pytest.mark.parametrize("data", ["glas", "knee"])
def test_paper_profile_builds_every_model_at_the_papers_sizes(data):
    # The paper profile needs a GPU to run; here we check that every model it
    # trains can be built at the paper's input sizes (2D 512x768, 3D 128x128x256).
    # two_stage, ablation_label and ablation_image are made of the components of
    # ldseg and ablation_both (built here; ~12 s each), so only their configs
    # are checked.
    prof = experiments.PROFILES["paper"]
    base = experiments.base_config(prof, data)
    assert base.image_shape[:-1] == {"glas": (512, 768), "knee": (128, 128, 256)}[data]
    assert base.latent_shape[:-1] == tuple(s // 16 for s in base.image_shape[:-1])
    assert prof.step_sweep == (1, 2, 5, 10, 50, 100, 1000) and base.timesteps == 1000
    configs = {key: experiments.model_config(base, key) for key in experiments.MODELS}
    for key in ("ldseg", "ablation_both", "pixel_diffusion", "resunet"):
        model = build_model(key, configs[key])
        if key == "ablation_both":
            # Table V's encoders are parameter-free down-sampling.
            counts = model.component_parameter_counts()
            assert counts["label_encoder"] == counts["image_encoder"] == 0, counts
        if key == "ldseg":
            counts = model.component_parameter_counts()
            if data == "glas":
                # The authors' released 2D model has ~1.8 M parameters.
                assert 1.5e6 < counts["total"] < 2.2e6
            else:
                # The same model in 3D: 3x3x3 kernels hold 3x the weights of 3x3
                # ones, while norms, biases and attention projections do not grow.
                twin = dataclasses.replace(base, image_shape=(128, 128, 1))
                flat = build_model(key, experiments.model_config(twin, key))
                for part, n in flat.component_parameter_counts().items():
                    assert 2.4 < counts[part] / n < 3.0, (part, counts[part], n)


@pytest.fixture
def other_backend():
    """A non-Agg backend is active during the test (as the inline backend is in a
    notebook); the original backend is restored afterwards."""
    import matplotlib

    original = matplotlib.get_backend()
    matplotlib.use("svg")
    yield "svg"
    matplotlib.use(original)


def test_figures_keep_the_backend_and_write_pngs(tmp_path, other_backend):
    import matplotlib
    import matplotlib.pyplot as plt

    figures_before = plt.get_fignums()
    rng = np.random.default_rng(0)
    curves = {"ldseg": [0.5, 0.6, 0.62], "two_stage": [0.4, 0.5, 0.55]}
    sizes = [{"model": key, "size": size, "seconds_per_image": 0.01 * size,
              "peak_memory_mib": 100.0 + size, "memory_kind": "RSS"}
             for key in ("ldseg", "two_stage", "pixel_diffusion") for size in (32, 64)]
    image = rng.random((2, 16, 16, 3)).astype(np.float32)
    truth = (rng.random((2, 16, 16)) > 0.5).astype(np.int32)
    shown = [(image[i], truth[i], np.roll(truth[i], 1, axis=1),
              rng.random((16, 16)).astype(np.float32)) for i in range(2)]
    volume = (rng.random((4, 8, 8, 1)), np.ones((4, 8, 8), np.int32),
              np.zeros((4, 8, 8), np.int32), rng.random((4, 8, 8)))
    stats = error_vs_sd(rng.random(200), rng.random(200) > 0.7)
    written = [
        figures.steps_figure(str(tmp_path / "fig5_steps.png"), [1, 2, 5], curves),
        figures.sizes_figure(str(tmp_path / "fig6b_sizes.png"), sizes, steps=5),
        figures.noise_figure(str(tmp_path / "fig8_noise.png"), [0.0, 0.1, 0.2], curves),
        figures.uncertainty_figure(str(tmp_path / "fig10_uncertainty.png"), shown, 6),
        figures.uncertainty_figure(str(tmp_path / "fig10_3d.png"), [volume], 6,
                                     spatial_dims=3),
        figures.error_vs_sd_figure(str(tmp_path / "fig10_error_vs_sd.png"), stats),
    ]
    assert matplotlib.get_backend() == other_backend
    assert plt.get_fignums() == figures_before  # no pyplot figure created or left open
    assert written == [str(tmp_path / name) for name in (
        "fig5_steps.png", "fig6b_sizes.png", "fig8_noise.png", "fig10_uncertainty.png",
        "fig10_3d.png", "fig10_error_vs_sd.png")]
    for path in written:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 1000, path
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in written)


def test_reproduce_help_states_the_cpu_target():
    from ldseg_tf.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["reproduce"]
    text = " ".join(sub.format_help().split())
    assert "target: under 1 h on 2 CPU cores" in text
    assert "< 1 h" not in text


def test_environment_info_keys_and_device():
    from ldseg_tf import __version__
    from ldseg_tf.environment import environment_info

    env = environment_info(None)
    json.dumps(env)  # JSON-ready as it is
    for key in ("seed", "python", "tensorflow", "keras", "numpy", "platform", "cpu",
                "cpu_count", "gpus", "git", "device"):
        assert key in env, key
    assert env["seed"] is None and env["ldseg_tf"] == __version__
    device = env["device"]
    assert device["type"] in ("GPU", "CPU") and device["name"] and device["physical_devices"]
    if device["type"] == "GPU":
        assert device["gpus"] == len(env["gpus"]) and device["name"] == env["gpus"][0]
    else:
        assert device["name"] == env["cpu"] and env["gpus"] == ["none"]


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_reproduce_tiny_end_to_end(tmp_path, monkeypatch):
    from ldseg_tf.cli import build_parser

    out = str(tmp_path / "report")
    # One image size in the sweep keeps the test short.
    tiny = dataclasses.replace(experiments.PROFILES["tiny"], size_sweep=(32,))
    monkeypatch.setitem(experiments.PROFILES, "tiny_test", tiny)
    args = build_parser().parse_args(["reproduce", "--data", "synthetic", "--profile",
                                      "tiny_test", "--out", out])
    results = args.func(args)

    for name in ("report.md", "accuracy.csv", "speed.csv", "steps.csv", "sizes.csv",
                 "noise.csv", "ablation.csv", "uncertainty.csv", "results.json",
                 "fig5_steps.png", "fig6b_sizes.png", "fig8_noise.png",
                 "fig10_uncertainty.png", "fig10_error_vs_sd.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    report = open(os.path.join(out, "report.md")).read()
    for heading in ("Tables I–III", "Table IV", "Fig. 5", "Fig. 6(b)", "Fig. 8", "Table V",
                    "Fig. 10", "seed", "TensorFlow", "wall time"):
        assert heading in report, heading

    # The CSV tables hold the results' numbers.
    acc = _rows(os.path.join(out, "accuracy.csv"))
    assert {r["model"] for r in acc} == {"ldseg", "two_stage", "pixel_diffusion", "resunet"}
    for r in acc:
        summary = results["accuracy"][r["model"]][r["class"]]
        assert float(r["dsc_mean"]) == pytest.approx(summary["dsc"]["mean"])
        assert float(r["iou_mean"]) == pytest.approx(summary["iou"]["mean"])
    speed = {(r["model"], r["steps"]): float(r["seconds_per_image"])
             for r in _rows(os.path.join(out, "speed.csv"))}
    assert speed[("ldseg", "100")] == pytest.approx(results["speed"]["ldseg_T"])
    assert results["speed"]["speedup"] == pytest.approx(
        results["speed"]["ldseg_T"] / results["speed"]["ldseg_2"])
    # Pixel diffusion at T is extrapolated from its measured 5 steps.
    assert speed[("pixel_diffusion", "100")] == pytest.approx(
        speed[("pixel_diffusion", "5")] / 5 * 100)
    steps = _rows(os.path.join(out, "steps.csv"))
    assert sorted({int(r["steps"]) for r in steps}) == [1, 2, 5, 10, 50, 100]
    noise = _rows(os.path.join(out, "noise.csv"))
    assert len(noise) == 2 * 5
    ablation = {r["model"] for r in _rows(os.path.join(out, "ablation.csv"))}
    assert ablation == {"ldseg", "ablation_label", "ablation_image", "ablation_both"}
    assert len(_rows(os.path.join(out, "uncertainty.csv"))) == 10
    # The budget: 4 steps per model; two-stage splits them 50/50.
    training = results["training"]
    assert training["ldseg"]["steps"] == training["resunet"]["steps"] == 4
    two_stage = training["two_stage"]
    assert two_stage["stage1"]["steps"] == two_stage["stage2"]["steps"] == 2
    assert set(results["ceiling_dsc"]) == {"ldseg", "two_stage"}
    assert ("Autoencoder ceiling (DSC of decode(encode(ground truth))" in report
            and f"LDSeg {results['ceiling_dsc']['ldseg']:.3f}" in report)
    doc = json.load(open(os.path.join(out, "results.json")))
    assert doc["environment"]["seed"] == 0
    assert set(doc["timings"]) == {"data", "training", "total", *experiments.EXPERIMENTS}
    assert doc["wall_seconds"] == doc["timings"]["total"]

    # A second run reuses the trained models (the size sweep does not change them).
    args = build_parser().parse_args(["reproduce", "--data", "synthetic", "--profile", "tiny",
                                      "--out", out, "--experiments", "speed"])
    again = args.func(args)
    assert again["training"]["ldseg"]["reused"]
    assert again["training"]["ldseg"]["steps"] == results["training"]["ldseg"]["steps"]


def test_saved_runs_from_before_a_new_config_field_are_reused():
    from ldseg_tf.config import LDSegConfig

    cfg = LDSegConfig.preset("small")
    ident = json.loads(json.dumps({"model": "ldseg", "config": cfg.to_dict(),
                                   "training": {"batch_size": 4}, "data": "synthetic"}))
    old = json.loads(json.dumps(ident))
    del old["config"]["prediction"]  # saved by a version without this field
    assert same_ident(old, ident)
    changed = json.loads(json.dumps(old))
    changed["config"]["latent_channels"] = 2
    assert not same_ident(changed, ident)
    other = dict(old, training={"batch_size": 8})
    assert not same_ident(other, ident)
    bad = dict(old, config={**old["config"], "no_such_field": 1})
    assert not same_ident(bad, ident)
    assert not same_ident(None, ident)


def test_noise_verdict_needs_models_that_learned():
    assert noise_verdict({"ldseg": [0.8, 0.7], "resunet": [0.9, 0.5]}) \
        == "the more robust here: LDSeg."
    verdict = noise_verdict({"ldseg": [0.0, 0.0], "resunet": [0.7, 0.2]})
    assert verdict.startswith("no comparison: LDSeg did not learn")
