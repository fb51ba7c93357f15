"""The shared test every fine-tuning target subclasses in a few lines (as the pretext
tasks' ``TaskTest``): adding a target is its module in ``finetune/targets/``, its line in
``ssl_derm.config.TARGETS`` and a test module with one ``TargetTest`` subclass.

On the bundled real sample, per target: it is declared where the CLI and checkpoints find
it; ``finetune`` trains it and writes the metrics its benchmark reports; ``model.ckpt``
loads back as the same target with strict keys; ``evaluate`` on the test split gives the
metrics ``finetune`` scored there (one scoring path, two callers); ``predict`` writes one row
per image; the per-image test scores the paired comparisons read line up with the split."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ssl_derm.checkpoint import load_checkpoint
from ssl_derm.cli import build_parser, main
from ssl_derm.config import TARGETS as DECLARED
from ssl_derm.finetune.targets import TARGETS, target_of


class TargetTest:
    name: str  # the --target
    flags: tuple[str, ...] = ("--image-size", "64", "--batch-size", "8", "--no-progress")

    @property
    def target(self):
        return TARGETS[self.name]

    @pytest.fixture(scope="class")
    def run(self, tmp_path_factory):
        """A 3-step fine-tuning run from ImageNet weights: its folder."""
        out = tmp_path_factory.mktemp(self.name) / "ft"
        args = ["finetune", "--target", self.name, "--init", "imagenet", "--out", str(out), "--max-steps", "3"]
        assert main([*args, *self.flags]) == 0
        return out

    def test_is_declared_once_where_the_cli_and_checkpoints_find_it(self):
        assert self.name in DECLARED and self.target.name == self.name
        assert [t.task for t in TARGETS.values()].count(self.target.task) == 1
        assert build_parser().parse_args(["finetune", "--target", self.name]).target == self.name
        assert self.target.val_column in self.target.columns and set(self.target.metrics) <= set(self.target.columns)

    def test_finetune_writes_what_its_benchmark_reports(self, run):
        m = json.loads((run / "metrics.json").read_text())
        assert m["split"] == "test" and m[self.target.val_key] is not None
        assert all(np.isfinite(m[k]) for k in self.target.metrics), {k: m[k] for k in self.target.metrics}
        assert m["global_step"] == 3 and m["init_name"] == "imagenet"

    def test_model_ckpt_loads_back_as_the_same_target(self, run):
        ckpt = load_checkpoint(run / "model.ckpt")
        assert ckpt["task"] == self.target.task and target_of(ckpt, run) is self.target
        model, _ = self.target.load(run / "model.ckpt", ckpt)
        assert not model.training
        again, _ = self.target.load(run / "model.ckpt", ckpt)
        x = torch.rand(2, 3, 64, 64)
        with torch.inference_mode():
            assert torch.equal(model(x), again(x))

    def test_evaluate_scores_the_test_split_as_finetune_did(self, run, tmp_path):
        args = ["evaluate", "--checkpoint", str(run / "model.ckpt"), "--out", str(tmp_path / "ev"), "--no-progress"]
        assert main(args) == 0
        scored = json.loads((run / "metrics.json").read_text())
        again = json.loads((tmp_path / "ev" / "metrics.json").read_text())
        assert again["n_images"] == scored["n_images"] > 0
        for k in self.target.metrics:
            assert again[k] == pytest.approx(scored[k], abs=1e-6), k
        assert len(pd.read_csv(tmp_path / "ev" / "predictions.csv")) == scored["n_images"]

    def test_per_image_scores_line_up_with_the_test_split(self, run):
        images, scores, labels = self.target.per_image_scores(run)
        m = json.loads((run / "metrics.json").read_text())
        assert len(images) == len(scores) == m["n_images"] and list(images) == sorted(images)
        assert labels is None or len(labels) == len(images)
        assert np.isfinite(scores).all()

    def test_predict_writes_one_row_per_image(self, run, tmp_path):
        args = ["predict", "--checkpoint", str(run / "model.ckpt"), "--out", str(tmp_path / "p"), "--no-progress"]
        assert main(args) == 0
        table = pd.read_csv(tmp_path / "p" / "predictions.csv")
        summary = json.loads((tmp_path / "p" / "summary.json").read_text())
        assert len(table) == summary["images"] > 0 and table["image"].is_unique
