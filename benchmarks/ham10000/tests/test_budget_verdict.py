"""tools/budget_verdict.py: the SSL budget study's targets, from finished benchmark folders."""

from __future__ import annotations

import json

import pandas as pd
import pytest

INITS = ("random", "imagenet", "imagenet+multitask", "imagenet+moco")
SEEDS = {0.03: 5, 0.1: 5, 1.0: 3}


@pytest.fixture(scope="module")
def tool(tool_module):
    return tool_module("budget_verdict")


def _part(folder, frac, diffs, seeds=None):
    """A benchmark folder at one label fraction: every init's seeds, and each init's paired
    difference to ImageNet as (diff, lo, hi)."""
    folder.mkdir(parents=True)
    n = SEEDS[frac] if seeds is None else seeds
    rows = [
        {"init": i, "label_fraction": frac, "seed": s, "fold": 0, "balanced_accuracy": 0.5}
        for i in INITS
        for s in range(n)
    ]
    pd.DataFrame(rows).to_csv(folder / "results.csv", index=False)
    paired = [
        {"init": i, "baseline": "imagenet", "label_fraction": frac, "fold": 0, "diff": d, "lo": lo, "hi": hi}
        for i, (d, lo, hi) in diffs.items()
    ]
    pd.DataFrame(paired).to_csv(folder / "paired.csv", index=False)
    return folder


def _choice(tmp_path, on="validation split, linear probe, AdaBN"):
    path = tmp_path / "choice.json"
    path.write_text(json.dumps({"on": on, "best": "imagenet+multitask", "second": "imagenet+moco"}))
    return path


def test_targets_met_missed_and_the_moonshot(tool, tmp_path, capsys):
    low = _part(
        tmp_path / "low",
        0.03,
        {"imagenet+multitask": (0.06, 0.01, 0.11), "imagenet+moco": (0.2, 0.1, 0.3), "random": (-0.07, -0.1, -0.04)},
    )
    mid = _part(
        tmp_path / "mid",
        0.1,
        {"imagenet+multitask": (0.02, -0.01, 0.05), "imagenet+moco": (0.2, 0.1, 0.3), "random": (-0.1, -0.2, -0.05)},
    )
    full = _part(
        tmp_path / "full",
        1.0,
        {"imagenet+multitask": (-0.01, -0.029, 0.01), "imagenet+moco": (0, -0.1, 0.1), "random": (-0.2, -0.3, -0.1)},
    )
    out = tmp_path / "verdict.json"
    assert tool.main(["--choice", str(_choice(tmp_path)), str(low), str(mid), str(full), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    best = {(r["label_fraction"], r["target"]): r["met"] for r in rows if r["role"] == "best SSL"}
    assert best == {
        (0.03, "interval above zero"): True,
        (0.03, "moonshot: at least +0.05"): True,
        (0.1, "interval above zero"): False,  # ahead on the point estimate only: a tie
        (1.0, "not behind: lower end above -0.03"): True,
    }
    # the second init's better figures carry no target: the choice was made on validation
    assert all(r["met"] is None for r in rows if r["role"] != "best SSL")
    md = capsys.readouterr().out
    row = "| 0.1 | imagenet+multitask (best SSL) | 5 | +0.020 | [-0.010, +0.050] | interval above zero | **no** |"
    assert row in md


def test_a_missing_seed_leaves_its_fraction_unjudged(tool, tmp_path):
    low = _part(tmp_path / "low", 0.03, {"imagenet+multitask": (0.06, 0.01, 0.11)}, seeds=4)
    rows = tool.verdict(*tool.load([low]), "imagenet+multitask", "imagenet+moco")
    assert [r["met"] for r in rows if r["label_fraction"] == 0.03] == [None] * 4
    assert all(r["met"] is None for r in rows)  # 0.1 and 1.0 hold no run at all


def test_refuses_a_choice_not_made_on_validation_and_a_fraction_twice(tool, tmp_path):
    a = _part(tmp_path / "a", 0.03, {"imagenet+multitask": (0.06, 0.01, 0.11)})
    b = _part(tmp_path / "b", 0.03, {"imagenet+multitask": (0.06, 0.01, 0.11)})
    with pytest.raises(SystemExit, match="chosen on validation"):
        tool.main(["--choice", str(_choice(tmp_path, on="test split")), str(a)])
    with pytest.raises(SystemExit, match="in two folders"):
        tool.main(["--choice", str(_choice(tmp_path)), str(a), str(b)])
    with pytest.raises(SystemExit, match="not found"):
        tool.main(["--choice", str(_choice(tmp_path)), str(tmp_path / "absent")])
