"""Lesion-grouped stratified K-fold and the per-init recipe choice on validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
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

    from ssl_derm.checkpoint import weights_fingerprint
    from ssl_derm.config import FinetuneConfig
    from ssl_derm.finetune.benchmark.runs import run_key

    cfg = FinetuneConfig(init="imagenet", out="a", seed=0)
    key = run_key(cfg, weights_fingerprint("imagenet"))
    assert run_key(FinetuneConfig(init="imagenet", out="b", seed=0, cache_dir="/tmp/c"), "imagenet") == key
    for other in ({"seed": 1}, {"encoder_lr": 1e-4}, {"label_fraction": 0.5}, {"focal_gamma": 2.0}):
        assert run_key(FinetuneConfig(init="imagenet", out="a", **{"seed": 0, **other}), "imagenet") != key
    copy = tmp_path / "copy.ckpt"
    shutil.copy(ssl_ckpt, copy)
    assert weights_fingerprint(str(copy)) == weights_fingerprint(str(ssl_ckpt)) not in ("imagenet", "random")
    assert weights_fingerprint(str(ssl_ckpt)) != weights_fingerprint("imagenet")


def test_edge_step_goes_one_grid_ratio_beyond_a_winner_at_the_edge():
    from ssl_derm.finetune.benchmark.select import edge_step

    def pt(lr, freeze=0):
        return {"encoder_lr": lr, "freeze_epochs": freeze}

    grid = [(0.20, pt(3e-4)), (0.31, pt(1e-3)), (0.25, pt(3e-4, 1)), (0.30, pt(1e-3, 1))]
    assert edge_step(grid) == pt(3.33e-3)  # the highest lr won: one step of 1e-3 / 3e-4 up
    assert edge_step([(0.35, pt(3e-4)), *grid[1:]]) == pt(9e-5)  # the lowest won: one step down
    assert edge_step([*grid, (0.28, pt(3.33e-3))]) is None  # the winner is inside what was tried
    assert edge_step([(0.31, pt(1e-3, 1)), (0.31, pt(1e-3))]) is None  # one lr per setting: no ratio
    assert edge_step([(0.3, {"freeze_epochs": 0}), (0.2, {"freeze_epochs": 1})]) is None  # no lr in the grid
    tie = [(0.31, pt(3e-4)), (0.31, pt(1e-3))]  # a tie goes to the earlier point, the lowest lr
    assert edge_step(tie) == pt(9e-5)


class _FakeRunner:
    """Validation balanced accuracy of a recipe as a function of its encoder lr, peaked at 3e-3."""

    def __init__(self, extend: int) -> None:
        self.cfg = BenchmarkConfig(select_on="val", select_extend=extend)
        self.calls, self.version = [], "v1"  # version: what the run_key would change with

    def key(self, run, init, frac, seed, fold, extra):
        return f"{self.version}:{extra['encoder_lr']}"

    def __call__(self, label, run, init, frac, seed, fold, extra):
        self.calls.append((run.name, seed, extra["score_test"]))
        return {"best_epoch_val_balanced_accuracy": 0.5 - abs(np.log10(extra["encoder_lr"] / 3e-3)) / 10}


@pytest.mark.parametrize("extend", [0, 1, 2])
def test_selection_follows_the_winner_beyond_the_grid_edge(tmp_path, extend):
    from ssl_derm.finetune.benchmark.select import SELECT_SEED, select_recipe

    runner = _FakeRunner(extend)
    grid = [{"encoder_lr": 3e-4}, {"encoder_lr": 1e-3}]
    slug, point = select_recipe(runner, grid, tmp_path, "here", "imagenet", 1.0, None)
    tried = [name for name, _, _ in runner.calls]
    expected = ["encoder_lr=0.0003", "encoder_lr=0.001", "encoder_lr=0.00333", "encoder_lr=0.0111"][: 2 + extend]
    assert tried == expected and all(seed == SELECT_SEED and not scored for _, seed, scored in runner.calls)
    assert point == {"encoder_lr": [1e-3, 3.33e-3, 3.33e-3][extend]}  # 0.0111 overshoots the peak: 3.33e-3 stays
    record = json.loads((tmp_path / "selection.json").read_text())
    assert record["chosen"] == slug and record["beyond_the_grid"] == extend and len(record["grid"]) == 2 + extend


def test_a_diverging_point_beyond_the_grid_loses_and_is_not_tried_again(tmp_path):
    from ssl_derm.engine import RunFailed
    from ssl_derm.finetune.benchmark.select import FAILED, select_recipe

    class Diverging(_FakeRunner):  # peaked at 3e-3 as before, and too high a rate diverges
        def __call__(self, label, run, init, frac, seed, fold, extra):
            if extra["encoder_lr"] > 5e-3:
                self.calls.append((run.name, seed, extra["score_test"]))
                raise RunFailed("non-finite loss at step 3")
            return super().__call__(label, run, init, frac, seed, fold, extra)

    grid = [{"encoder_lr": 3e-4}, {"encoder_lr": 1e-3}]
    runner = Diverging(extend=2)
    _, point = select_recipe(runner, grid, tmp_path, "here", "random", 0.1, None)
    assert point == {"encoder_lr": 3.33e-3} and runner.calls[-1][0] == "encoder_lr=0.0111"
    assert "non-finite" in (tmp_path / "select" / "encoder_lr=0.0111" / FAILED).read_text()
    again = Diverging(extend=2)  # a resumed benchmark: the failure is read back, not rerun
    assert select_recipe(again, grid, tmp_path, "here", "random", 0.1, None)[1] == point
    assert [name for name, _, _ in again.calls] == ["encoder_lr=0.0003", "encoder_lr=0.001", "encoder_lr=0.00333"]
    changed = Diverging(extend=2)  # other settings: the old failure says nothing about this run, tried again
    changed.version = "v2"
    assert select_recipe(changed, grid, tmp_path, "here", "random", 0.1, None)[1] == point
    assert changed.calls[-1][0] == "encoder_lr=0.0111"
    with pytest.raises(RunFailed):  # a grid point that diverges stops the benchmark
        select_recipe(Diverging(extend=0), [{"encoder_lr": 1e-2}], tmp_path / "grid", "here", "random", 0.1, None)


@pytest.mark.parametrize(
    "converges_at, doublings, runs",
    [
        (10, 2, [("seed0", 20, 300, 10)]),  # the best epoch is inside the first budget: one run
        (40, 2, [("seed0", 20, 300, 10), ("seed0/budget_x2", 40, 600, 20)]),
        (999, 2, [("seed0", 20, 300, 10), ("seed0/budget_x2", 40, 600, 20), ("seed0/budget_x4", 80, 1200, 40)]),
        (999, 0, [("seed0", 20, 300, 10)]),  # budget_doublings 0: the budget as set
    ],
)
def test_a_run_that_keeps_its_last_epoch_runs_again_at_twice_the_budget(tmp_path, converges_at, doublings, runs):
    import dataclasses

    from ssl_derm.config import FinetuneConfig
    from ssl_derm.finetune.benchmark.runs import Runner, kept_last_epoch

    class Budget(Runner):  # a run keeps its last epoch until its budget reaches converges_at
        def _once(self, label, run, init, frac, seed, fold, extra):
            s = {**self.base, **extra}
            calls.append((run.relative_to(tmp_path).as_posix(), s["epochs"], s["min_steps"], s["min_epochs"]))
            assert s["encoder_lr"] == 1e-3 and s["patience"] == self.base["patience"]  # the rest as it was
            best = s["epochs"] if s["epochs"] < converges_at else converges_at // 2
            return {
                "best_epoch": best,
                "epochs_run": min(s["epochs"], best + 4),
                "epochs_budget": s["epochs"],
                "_dir": run,
            }

    calls = []
    cfg = BenchmarkConfig(epochs=20, min_steps=300, min_epochs=10, patience=4, budget_doublings=doublings)
    base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(FinetuneConfig)}
    m = Budget(cfg, base)("run", tmp_path / "seed0", "random", 1.0, 0, None, {"encoder_lr": 1e-3})
    assert calls == runs
    assert m["_dir"] == tmp_path / runs[-1][0] and m["epochs_budget"] == runs[-1][1]  # the longest run counts
    assert kept_last_epoch(m) == (converges_at > runs[-1][1])  # past the last doubling it may still keep it


def test_an_interrupted_benchmark_run_resumes_from_its_trainer_checkpoint(tmp_path, monkeypatch, capsys):
    from ssl_derm.engine import LastCheckpoint
    from ssl_derm.finetune.benchmark.runs import STARTED, resumable

    out = tmp_path / "bench"
    args = ["benchmark", "--inits", "random", "--seeds", "1", "--label-fractions", "0.3", "--epochs", "2"]
    args += ["--out", str(out), *TINY]
    real = LastCheckpoint.on_train_epoch_end

    def killed_after_the_first_epoch(self, trainer, pl_module):
        real(self, trainer, pl_module)
        if trainer.current_epoch == 0:
            raise RuntimeError("killed")

    monkeypatch.setattr(LastCheckpoint, "on_train_epoch_end", killed_after_the_first_epoch)
    with pytest.raises(RuntimeError, match="killed"):
        main(args)
    run = out / "runs" / "random" / "fraction0.3" / "seed0"
    assert (run / STARTED).is_file() and not (run / "metrics.json").exists()
    # the trainer state saved at the first epoch's end already holds that epoch's early-stopping
    # check and best checkpoint (LastCheckpoint runs after both)
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]
    stop = next(v for k, v in saved.items() if k.startswith("EarlyStopping"))
    best = next(v for k, v in saved.items() if k.startswith("ModelCheckpoint"))
    assert torch.isfinite(stop["best_score"]) and best["best_model_score"] is not None
    assert float(stop["best_score"]) == float(best["best_model_score"])
    epochs = []

    def counted(self, trainer, pl_module):
        epochs.append(trainer.current_epoch)
        real(self, trainer, pl_module)

    monkeypatch.setattr(LastCheckpoint, "on_train_epoch_end", counted)
    # test outputs of another run in the folder (a stale or restored one) never join the resumed run
    for name in ("test_predictions.csv", "test_cam_in_lesion.csv"):
        (run / name).write_text("left by another run\n")
    capsys.readouterr()
    assert main(args) == 0
    assert epochs == [1]  # only the second epoch trained: the first was not run again
    assert "resuming its interrupted run at step" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["resumed_at_step"] > 0 and metrics["epochs_run"] == 2
    assert [e["epoch"] for e in metrics["val_history"]] == [1, 2]  # the first epoch's check is kept
    assert not (run / STARTED).exists()
    assert (run / "test_predictions.csv").read_text() != "left by another run\n"  # its own, written at its end
    assert not (run / "test_cam_in_lesion.csv").exists()  # not asked for (--cam-in-lesion): gone, not kept

    # a trainer checkpoint of something else under the same folder is not resumed: run afresh
    import dataclasses

    import pandas as pd

    from ssl_derm.config import FinetuneConfig, load_yaml
    from ssl_derm.finetune.benchmark.runs import started_record

    saved = load_yaml(run / "config.yaml")
    cfg = FinetuneConfig(**{f.name: saved[f.name] for f in dataclasses.fields(FinetuneConfig) if f.name in saved})
    table = pd.read_csv(out / "splits.csv", dtype=str, keep_default_na=False)  # the benchmark's whole split
    key = metrics["run_key"]
    (run / STARTED).write_text(started_record(key))
    assert resumable(run, cfg, key, table) == metrics["global_step"]
    assert resumable(run, dataclasses.replace(cfg, seed=cfg.seed + 1), key, table) is None  # another draw
    assert resumable(run, dataclasses.replace(cfg, image_size=96), key, table) is None  # other data settings
    (run / STARTED).write_text(started_record("another run_key"))
    assert resumable(run, cfg, key, table) is None
    (run / STARTED).unlink()
    assert resumable(run, cfg, key, table) is None


def test_a_diverged_run_is_not_resumed_and_a_signalled_stop_survives_a_resume(tmp_path, monkeypatch):
    import dataclasses
    from types import SimpleNamespace

    from ssl_derm.config import FinetuneConfig
    from ssl_derm.engine import RunFailed
    from ssl_derm.finetune.benchmark import runs
    from ssl_derm.finetune.run import FreshEarlyStopping

    def diverges(cfg, overwrite, resume, lab, started, blind=False):
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        started(Path(cfg.out))
        assert (Path(cfg.out) / runs.STARTED).is_file()
        raise RunFailed("non-finite training loss at step 3")

    monkeypatch.setattr(runs, "run_finetune", diverges)
    cfg = BenchmarkConfig()
    base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(FinetuneConfig)}
    runner = runs.Runner(cfg, base)
    monkeypatch.setattr(runner, "settings", lambda *a: (FinetuneConfig(out=str(tmp_path / "r")), "key"))
    fold = {"lab": SimpleNamespace(table=None), "size": FinetuneConfig().image_size}
    with pytest.raises(RunFailed):
        runner._once("run", tmp_path / "r", "random", 1.0, 0, fold, {})
    assert not (tmp_path / "r" / runs.STARTED).exists()

    stop = FreshEarlyStopping(monitor="val/balanced_accuracy", mode="max", patience=2)
    stop._signalled = True
    again = FreshEarlyStopping(monitor="val/balanced_accuracy", mode="max", patience=2)
    again.load_state_dict(stop.state_dict())
    trainer = SimpleNamespace(should_stop=False)
    again.on_fit_start(trainer, None)
    assert trainer.should_stop  # Lightning does not save should_stop; the callback brings it back
    fresh = FreshEarlyStopping(monitor="val/balanced_accuracy", mode="max", patience=2)
    fresh.on_fit_start(trainer := SimpleNamespace(should_stop=False), None)
    assert not trainer.should_stop
