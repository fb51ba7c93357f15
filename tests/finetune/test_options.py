"""Fine-tuning options that used to be silently wrong: stacked imbalance corrections,
a quietly overridden image size, freezing under DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from ssl_derm.config import FinetuneConfig
from ssl_derm.data import sample_dir
from ssl_derm.finetune.targets.classification import focal_alpha

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--image-size", "64", "--batch-size", "16", "--no-progress"]


def test_class_weights_follow_the_balanced_sampler(capsys):
    y = np.array([0] * 30 + [1] * 5 + [2] * 2)
    assert focal_alpha(FinetuneConfig(), y, 3) is not None  # auto = balanced weights
    assert focal_alpha(FinetuneConfig(balanced_sampler=True), y, 3) is None  # the sampler balances already
    assert capsys.readouterr().err == ""
    assert focal_alpha(FinetuneConfig(balanced_sampler=True, class_weights="balanced"), y, 3) is not None
    assert "corrects the class imbalance twice" in capsys.readouterr().err


def test_an_explicit_image_size_that_overrides_the_pretrained_one_is_said(tmp_path, capsys):
    from ssl_derm.cli import main

    pre = tmp_path / "pre"
    assert main(["pretrain", "--task", "rotation", "--out", str(pre), "--max-steps", "1", *TINY]) == 0
    capsys.readouterr()
    args = ["finetune", "--init", str(pre / "ssl.ckpt"), "--splits", str(pre / "splits.csv"), "--max-steps", "2"]
    assert (
        main([*args, "--out", str(tmp_path / "ft"), "--image-size", "96", "--batch-size", "16", "--no-progress"]) == 0
    )
    assert "--image-size 96 overrides the 64 px" in capsys.readouterr().err
    assert torch.load(tmp_path / "ft" / "model.ckpt", weights_only=True)["image_size"] == 96


def test_freezing_works_under_two_process_ddp_on_cpu(tmp_path):
    """Frozen epochs toggle requires_grad after DDP wrapped the model: without unused-parameter
    search the second step waits for gradients that never come."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name, extra in (("lpft", ["--freeze-epochs", "1", "--epochs", "2"]), ("probe", ["--linear-probe"])):
        out = tmp_path / name
        cmd = [sys.executable, "-m", "ssl_derm.cli", "finetune", "--init", "imagenet", "--accelerator", "cpu"]
        cmd += ["--devices", "2", "--max-steps", "4", "--data", str(sample_dir()), "--out", str(out), *TINY, *extra]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert (out / "model.ckpt").is_file()
