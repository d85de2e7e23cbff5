"""`ldseg reproduce` end to end on the tiny profile with synthetic data."""

import csv
import dataclasses
import json
import os

import numpy as np
import pytest

from ldseg_tf import reproduce


def test_error_vs_sd_deciles_and_auroc():
    sd = np.linspace(0, 1, 100)
    err = sd > 0.8
    stats = reproduce.error_vs_sd(sd, err)
    assert len(stats["deciles"]) == 10
    assert stats["deciles"][0]["error_rate"] == 0.0
    assert stats["deciles"][-1]["error_rate"] == 1.0
    assert stats["auroc"] == pytest.approx(1.0)
    flat = reproduce.error_vs_sd(np.zeros(50), np.arange(50) % 2 == 0)
    assert flat["auroc"] == pytest.approx(0.5)


def test_profiles_build_valid_configs():
    for name, prof in reproduce.PROFILES.items():
        for data in ("synthetic", "synthetic:echo", "synthetic:knee", "drive", "glas", "knee"):
            cfg = reproduce.base_config(prof, data)
            for key in reproduce.MODELS:
                reproduce.model_config(cfg, key)
    assert reproduce.base_config(reproduce.PROFILES["tiny"], "drive", image_shape=(64, 64)) \
        .image_shape == (64, 64, 3)


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_reproduce_tiny_end_to_end(tmp_path):
    from ldseg_tf.cli import build_parser

    parser = build_parser()
    if "reproduce" not in parser._subparsers._group_actions[0].choices:
        import argparse

        parser = argparse.ArgumentParser(prog="ldseg")
        reproduce.add_reproduce_arguments(parser.add_subparsers(dest="command"))
    out = str(tmp_path / "report")
    # One image size in the sweep keeps the test short.
    tiny = dataclasses.replace(reproduce.PROFILES["tiny"], size_sweep=(32,))
    reproduce.PROFILES["tiny_test"] = tiny
    try:
        args = parser.parse_args(["reproduce", "--data", "synthetic", "--profile", "tiny",
                                  "--out", out])
        args.profile = "tiny_test"
        results = args.func(args)
    finally:
        reproduce.PROFILES.pop("tiny_test")

    for name in ("report.md", "accuracy.csv", "speed.csv", "steps.csv", "sizes.csv",
                 "noise.csv", "ablation.csv", "uncertainty.csv", "results.json",
                 "fig5_steps.png", "fig6b_sizes.png", "fig8_noise.png",
                 "fig10_uncertainty.png", "fig10_error_vs_sd.png"):
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    report = open(os.path.join(out, "report.md")).read()
    for heading in ("Tables I–III", "Table IV", "Fig. 5", "Fig. 6(b)", "Fig. 8", "Table V",
                    "Fig. 10", "seed", "TensorFlow", "wall time"):
        assert heading in report, heading

    acc = _rows(os.path.join(out, "accuracy.csv"))
    assert {r["model"] for r in acc} == {"ldseg", "two_stage", "pixel_diffusion", "resunet"}
    for r in acc:
        assert 0.0 <= float(r["dsc_mean"]) <= 1.0 and 0.0 <= float(r["iou_mean"]) <= 1.0
    steps = _rows(os.path.join(out, "steps.csv"))
    assert sorted({int(r["steps"]) for r in steps}) == [1, 2, 5, 10, 50, 100]
    noise = _rows(os.path.join(out, "noise.csv"))
    assert len(noise) == 2 * 5
    ablation = {r["model"] for r in _rows(os.path.join(out, "ablation.csv"))}
    assert ablation == {"ldseg", "ablation_label", "ablation_image", "ablation_both"}
    assert len(_rows(os.path.join(out, "uncertainty.csv"))) == 10
    assert results["speed"]["speedup"] > 1.0
    assert results["training"]["two_stage"]["stage1"]["steps"] > 0
    doc = json.load(open(os.path.join(out, "results.json")))
    assert doc["environment"]["seed"] == 0 and doc["wall_seconds"] > 0

    # A second run reuses the trained models.
    again = reproduce.run("synthetic", out, "tiny", experiments=["speed"], log=lambda s: None)
    assert again["training"]["ldseg"]["reused"]
    assert again["training"]["ldseg"]["steps"] == results["training"]["ldseg"]["steps"]
