"""tools/budget_verdict.py: the SSL budget study's targets, from finished benchmark folders."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

CHOSEN = {"imagenet+multitask": "ham10000-multitask", "imagenet+moco": "inits/moco.safetensors"}
INITS = ("random", "imagenet", *CHOSEN)
SEEDS = {0.03: 5, 0.1: 5, 1.0: 3}


@pytest.fixture(scope="module")
def tool(tool_module):
    return tool_module("budget_verdict")


def _part(folder, frac, best, seeds=None, short=None, init_of=None, paired_seeds=None):
    """A benchmark folder at one label fraction: every init's seed runs (``short`` one seed fewer;
    ``init_of`` overrides the ``--init`` a run recorded), the best init's paired difference to
    ImageNet ``best`` = (diff, lo, hi) and every other init's a plain tie."""
    n = SEEDS[frac] if seeds is None else seeds
    rows = []
    for init in INITS:
        for s in range(n - (init == short)):
            run = f"runs/{init}/fraction{frac:g}/seed{s}"
            (folder / run).mkdir(parents=True)
            recorded = (init_of or {}).get(init, CHOSEN.get(init, init))
            (folder / run / "metrics.json").write_text(json.dumps({"init": recorded, "balanced_accuracy": 0.5}))
            rows.append(
                {"init": init, "label_fraction": frac, "seed": s, "fold": 0, "balanced_accuracy": 0.5, "run": run}
            )
    pd.DataFrame(rows).to_csv(folder / "results.csv", index=False)
    diffs = {"imagenet+multitask": best, "imagenet+moco": (0.0, -0.1, 0.1), "random": (-0.1, -0.2, -0.05)}
    paired = [
        {"init": i, "baseline": "imagenet", "label_fraction": frac, "fold": 0, "diff": d, "lo": lo, "hi": hi}
        | {"seeds": n if paired_seeds is None else paired_seeds}
        for i, (d, lo, hi) in diffs.items()
        if d is not None
    ]
    pd.DataFrame(paired).to_csv(folder / "paired.csv", index=False)
    return folder


def _choice(tmp_path, on="validation split, linear probe, AdaBN", best="imagenet+multitask"):
    path = tmp_path / "choice.json"
    path.write_text(json.dumps({"on": on, "best": best, "second": "imagenet+moco", "inits": CHOSEN}))
    return path


def _judge(tool, tmp_path, low, mid, full):
    folders = [
        _part(tmp_path / "low", 0.03, low),
        _part(tmp_path / "mid", 0.1, mid),
        _part(tmp_path / "full", 1.0, full),
    ]
    out = tmp_path / "verdict.json"
    assert tool.main(["--choice", str(_choice(tmp_path)), *map(str, folders), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    return {(r["label_fraction"], r["target"]): r["met"] for r in rows if r["role"] == "best SSL"}, rows


def test_targets_met_at_their_edges(tool, tmp_path, capsys):
    met, rows = _judge(tool, tmp_path, (0.05, 0.001, 0.1), (0.02, 0.001, 0.05), (-0.01, -0.029, 0.01))
    assert met == {
        (0.03, "interval above zero"): True,
        (0.03, "moonshot: at least +0.05"): True,
        (0.1, "interval above zero"): True,
        (1.0, "not behind: lower end above -0.03"): True,
    }
    # the other inits carry no target: the choice was made on validation
    assert all(r["met"] is None for r in rows if r["role"] != "best SSL")
    md = capsys.readouterr().out
    row = "| 0.1 | imagenet+multitask (best SSL) | 5 | +0.020 | [+0.001, +0.050] | interval above zero | yes |"
    assert row in md


def test_targets_missed_just_past_their_edges(tool, tmp_path, capsys):
    met, _ = _judge(tool, tmp_path, (0.049, 0.0, 0.1), (0.02, -0.001, 0.05), (-0.01, -0.031, 0.01))
    assert met == {
        (0.03, "interval above zero"): False,  # lower end at zero: not above it
        (0.03, "moonshot: at least +0.05"): False,
        (0.1, "interval above zero"): False,  # ahead on the point estimate only: a tie
        (1.0, "not behind: lower end above -0.03"): False,
    }
    assert "interval above zero | **no** |" in capsys.readouterr().out


@pytest.mark.parametrize("short", INITS)
def test_an_init_short_of_a_seed_leaves_its_fraction_unjudged(tool, tmp_path, short):
    low = _part(tmp_path / "low", 0.03, (0.06, 0.01, 0.11), short=short)
    rows = tool.verdict(*tool.load([low]), "imagenet+multitask", "imagenet+moco")
    assert [r["met"] for r in rows if r["label_fraction"] == 0.03] == [None] * 4
    assert all(r["met"] is None for r in rows)  # 0.1 and 1.0 hold no run at all


def test_too_few_seeds_everywhere_is_not_a_verdict(tool, tmp_path):
    mid = _part(tmp_path / "mid", 0.1, (0.06, 0.01, 0.11), seeds=3)  # 1.0's count, at 0.1
    rows = tool.verdict(*tool.load([mid]), "imagenet+multitask", "imagenet+moco")
    assert all(r["met"] is None for r in rows if r["label_fraction"] == 0.1)


@pytest.mark.parametrize(
    "best, paired_seeds", [((None, None, None), None), ((0.06, math.nan, 0.11), None), ((0.06, 0.01, 0.11), 4)]
)
def test_a_complete_fraction_without_a_sound_paired_row_is_an_error(tool, tmp_path, best, paired_seeds):
    low = _part(tmp_path / "low", 0.03, best, paired_seeds=paired_seeds)
    with pytest.raises(SystemExit, match="paired row"):
        tool.verdict(*tool.load([low]), "imagenet+multitask", "imagenet+moco")


def test_refuses_runs_of_another_checkpoint_under_a_chosen_name(tool, tmp_path):
    low = _part(tmp_path / "low", 0.03, (0.06, 0.01, 0.11), init_of={"imagenet+multitask": "runs/pretrain/x/ssl.ckpt"})
    with pytest.raises(SystemExit, match="5 run.s. not trained from the chosen --init"):
        tool.main(["--choice", str(_choice(tmp_path)), str(low)])


def test_refuses_a_bad_choice_and_a_fraction_twice(tool, tmp_path):
    a = _part(tmp_path / "a", 0.03, (0.06, 0.01, 0.11))
    b = _part(tmp_path / "b", 0.03, (0.06, 0.01, 0.11))
    with pytest.raises(SystemExit, match="chosen on validation"):
        tool.main(["--choice", str(_choice(tmp_path, on="test split")), str(a)])
    with pytest.raises(SystemExit, match="two different SSL inits"):
        tool.main(["--choice", str(_choice(tmp_path, best="imagenet+moco")), str(a)])
    with pytest.raises(SystemExit, match="in two folders"):
        tool.main(["--choice", str(_choice(tmp_path)), str(a), str(b)])
    with pytest.raises(SystemExit, match="not found"):
        tool.main(["--choice", str(_choice(tmp_path)), str(tmp_path / "absent")])
