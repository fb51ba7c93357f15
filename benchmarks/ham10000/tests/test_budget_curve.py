"""tools/budget_curve.py: the budget curve's table and plot from a knn_probe.py output."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def budget_curve(tool_module):
    return tool_module("budget_curve")


def _row(init: str, lp: float, diff: float | None = None) -> dict:
    row = {"init": init}
    for probe in ("linear_probe_adabn", "knn_adabn", "linear_probe_stored", "knn_stored"):
        row[probe], row[f"{probe}_ci95"] = lp, [lp - 0.05, lp + 0.05]
        if diff is not None:
            row[f"{probe}_diff_to_imagenet"], row[f"{probe}_diff_ci95"] = diff, [diff - 0.03, diff + 0.03]
    return row


def test_runs_are_placed_by_their_budget(budget_curve):
    assert budget_curve.budget_of("imagenet+moco") == ("moco", 19_200)  # the v2 screen's 300 steps of 64
    assert budget_curve.budget_of("imagenet+moco_80k") == ("moco", 80_000)
    assert budget_curve.budget_of("imagenet+multitask_1280k") == ("multitask", 1_280_000)
    assert budget_curve.budget_of("moco") is None  # from scratch: not on this curve
    assert budget_curve.budget_of("imagenet") is None


def test_table_orders_each_task_by_budget_and_calls_ties(budget_curve, tmp_path):
    results = [_row("imagenet", 0.5), _row("imagenet+moco_80k", 0.6, 0.1), _row("imagenet+moco", 0.52, 0.02)]
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"results": results}))
    assert budget_curve.main([str(probe), "--md", str(tmp_path / "c.md"), "--png", str(tmp_path / "c.png")]) == 0
    lines = (tmp_path / "c.md").read_text().splitlines()
    assert lines[2].startswith("| imagenet (no pretraining) | 0 | 0.500 [0.450, 0.550] |")
    assert lines[3].startswith("| moco | 19,200 | 0.520 [0.470, 0.570] | +0.020 [-0.010, +0.050] tie |")
    assert lines[4].startswith("| moco | 80,000 | 0.600 [0.550, 0.650] | +0.100 [+0.070, +0.130] better |")
    assert (tmp_path / "c.png").stat().st_size > 1000
