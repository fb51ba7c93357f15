"""tools/pretrain_curves.py: the validation curves of a real pretraining run's log, kept in
curves.csv once the run is DONE (the protocol's state keeps them, not the log)."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pandas as pd

from ssl_derm.cli import main
from ssl_derm.data import sample_dir, sample_unlabeled


def test_pretrain_curves_keeps_a_finished_runs_validation_curves(tool_module, tmp_path, capsys, monkeypatch):
    tool = tool_module("pretrain_curves")
    run = tmp_path / "pretrain" / "context_restore"
    args = ["pretrain", "--task", "context_restore", "--out", str(run), "--max-steps", "3"]
    args += ["--unlabeled", str(sample_unlabeled()), "--data", str(sample_dir())]
    args += ["--image-size", "64", "--batch-size", "16", "--no-progress", "--set", "log_every_n_steps=1"]
    assert main([*args, "--set", "context_restore.swaps=5"]) == 0
    capsys.readouterr()
    log = tool.read_log(run)
    assert {"val/loss", "val/knn_balanced_accuracy"} <= set(log["tag"])
    assert tool.curves(run) is not None and not (run / "curves.csv").exists()  # not DONE: read, not kept
    (run / "DONE").write_text("profile=cpu\n")
    tool.curves(run)
    shutil.rmtree(run / "tensorboard")  # the log is gone; the kept curves remain
    kept = pd.read_csv(run / "curves.csv")
    log = log.reset_index(drop=True)
    assert kept[["step", "tag"]].equals(log[["step", "tag"]]) and np.allclose(kept["value"], log["value"], rtol=1e-5)
    monkeypatch.setattr(sys, "argv", ["pretrain_curves.py", str(tmp_path / "pretrain")])
    tool.main()
    row = capsys.readouterr().out.splitlines()[-1]
    knn = kept[kept["tag"] == "val/knn_balanced_accuracy"]["value"]
    assert row.startswith(f"| context_restore | {len(knn)} |") and f"{knn.iloc[-1]:.3f}" in row
