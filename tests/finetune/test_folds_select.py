"""Lesion-grouped stratified K-fold and the per-init recipe choice on validation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from ssl_derm.cli import main
from ssl_derm.config import BenchmarkConfig, build_config, select_grid
from ssl_derm.data.splits import make_folds
from ssl_derm.errors import UserError

TINY = ["--image-size", "64", "--batch-size", "16", "--no-progress"]


def test_folds_are_lesion_disjoint_stratified_and_test_every_image_once(sample_table):
    folds = make_folds(sample_table, 4, seed=0)
    tested = np.zeros(len(sample_table), int)
    overall = sample_table["label"].value_counts(normalize=True)
    for table in folds:
        assert (table.groupby("group")["split"].nunique() == 1).all()  # no lesion in two parts
        tested += (table["split"] == "test").to_numpy()
        test = table[table["split"] == "test"]["label"].value_counts(normalize=True)
        assert abs(test.get("nv", 0) - overall["nv"]) < 0.1  # the class mix is kept
        assert set(table["split"]) == {"train", "val", "test"}
    assert (tested == 1).all()


def test_select_grid_parses_every_combination_and_refuses_bad_keys():
    cfg = build_config(BenchmarkConfig, {"select_on": "val", "select_grid": "encoder_lr=1e-4,1e-3; freeze_epochs=0,1"})
    grid = select_grid(cfg)
    assert len(grid) == 4 and {"encoder_lr": 1e-4, "freeze_epochs": 1} in grid
    for bad in ("seed=0,1", "bogus=1", "encoder_lr"):
        with pytest.raises(UserError, match="select_grid"):
            build_config(BenchmarkConfig, {"select_on": "val", "select_grid": bad})
    with pytest.raises(UserError, match="never chosen on test"):
        build_config(BenchmarkConfig, {"select_on": "test"})


def test_benchmark_selects_on_validation_per_fold_and_scores_test_once(tmp_path):
    out = tmp_path / "bench"
    args = ["benchmark", "--inits", "imagenet", "--seeds", "1", "--label-fractions", "1.0", "--out", str(out)]
    args += ["--folds", "3", "--select-on", "val", "--select-grid", "encoder_lr=0.00001,0.003", "--max-steps", "2"]
    assert main([*args, *TINY]) == 0
    results = pd.read_csv(out / "results.csv")
    assert sorted(results["fold"]) == [0, 1, 2]
    for k in range(3):
        root = out / "runs" / "imagenet" / "fraction1" / f"fold{k}"
        selection = json.loads((root / "selection.json").read_text())
        scores = {row["recipe"]: row["val_balanced_accuracy"] for row in selection["grid"]}
        assert selection["chosen"] == max(scores, key=lambda r: (scores[r], -list(scores).index(r)))
        for recipe in scores:  # selection runs: their own seed, test never scored
            metrics = json.loads((root / "select" / recipe / "metrics.json").read_text())
            assert "balanced_accuracy" not in metrics and metrics["seed"] == 1000
        # the reported seed ran afresh with the chosen recipe, and test was scored for it once
        reported = json.loads((root / "seed0" / "metrics.json").read_text())
        assert reported["seed"] == 0 and reported["split"] == "test"
        config = yaml.safe_load((root / "seed0" / "config.yaml").read_text())
        assert selection["chosen"] == f"encoder_lr={config['encoder_lr']:g}"
        row = results[results["fold"] == k].iloc[0]
        assert row["recipe"] == selection["chosen"] and row["run"] == f"runs/imagenet/fraction1/fold{k}/seed0"
        assert np.isclose(row["val_balanced_accuracy"], reported["best_epoch_val_balanced_accuracy"])
        split = pd.read_csv(out / "folds" / f"fold{k}" / "splits.csv")
        assert (split.groupby("group")["split"].nunique() == 1).all()


def test_run_key_follows_what_a_run_trains_not_where_it_lives(ssl_ckpt, tmp_path):
    """A finished benchmark run is reused only for the same settings and the same init
    weights (by content: a copy of the checkpoint elsewhere is the same init)."""
    import shutil

    from ssl_derm.finetune.benchmark import run_key

    from ssl_derm.checkpoint import weights_fingerprint
    from ssl_derm.config import FinetuneConfig

    cfg = FinetuneConfig(init="imagenet", out="a", seed=0)
    key = run_key(cfg, weights_fingerprint("imagenet"))
    assert run_key(FinetuneConfig(init="imagenet", out="b", seed=0, cache_dir="/tmp/c"), "imagenet") == key
    for other in ({"seed": 1}, {"encoder_lr": 1e-4}, {"label_fraction": 0.5}, {"focal_gamma": 2.0}):
        assert run_key(FinetuneConfig(init="imagenet", out="a", **{"seed": 0, **other}), "imagenet") != key
    copy = tmp_path / "copy.ckpt"
    shutil.copy(ssl_ckpt, copy)
    assert weights_fingerprint(str(copy)) == weights_fingerprint(str(ssl_ckpt)) not in ("imagenet", "random")
    assert weights_fingerprint(str(ssl_ckpt)) != weights_fingerprint("imagenet")
