"""tools/protocol_progress.py: a long benchmark's progress without its test figures."""

from __future__ import annotations

import gzip
import json

import pytest

TEST_SCORE = 0.8123  # a value no validation field holds: it must never be printed


@pytest.fixture(scope="module")
def tool(tool_module):
    return tool_module("protocol_progress")


def _metrics(best, ran, budget, val):
    return {
        "balanced_accuracy": TEST_SCORE,
        "accuracy": TEST_SCORE,
        "split": "test",
        "best_epoch": best,
        "epochs_run": ran,
        "epochs_budget": budget,
        "best_epoch_val_balanced_accuracy": val,
        "val_history": [{"val_balanced_accuracy": val}],
    }


def test_progress_lists_every_run_from_validation_fields_only(tool, tmp_path, capsys):
    runs = tmp_path / "out" / "benchmark" / "runs"
    files = {
        "imagenet/fraction1/seed0/metrics.json": _metrics(7, 11, 20, 0.649),
        "random/fraction1/seed0/metrics.json": _metrics(20, 20, 20, 0.526),  # kept its last epoch
        "random/fraction1/seed0/budget_x2/metrics.json": _metrics(17, 21, 40, 0.523),
        "random/fraction0.1/select/encoder_lr=0.0111_freeze_epochs=0/metrics.json": _metrics(30, 38, 38, 0.403),
    }
    for rel, m in files.items():
        (runs / rel).parent.mkdir(parents=True, exist_ok=True)
        (runs / rel).write_text(json.dumps(m))
    gz = runs / "random/fraction1/seed1/metrics.json.gz"  # as a state folder keeps a large one
    gz.parent.mkdir(parents=True)
    gz.write_bytes(gzip.compress(json.dumps(_metrics(12, 16, 20, 0.488)).encode()))

    assert tool.main([str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert str(TEST_SCORE) not in out and "0.812" not in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[2] for r in rows] == [
        "seed0",
        "select/encoder_lr=0.0111_freeze_epochs=0",
        "seed0",
        "seed0/budget_x2",
        "seed1",
    ]
    assert "| random | 1 | seed0 | 20 (the last" in out and "| 21 / 40 | 0.523 |" in out
    assert "| random | 1 | seed1 | 12 | 16 / 20 | 0.488 |" in out
    assert "5 finished run(s)" in out
    # a benchmark folder itself works too, and the rows hold nothing but validation fields
    rows = tool.progress(tmp_path / "out" / "benchmark")
    assert len(rows) == 5 and TEST_SCORE not in [v for r in rows for v in r.values()]


def test_progress_of_an_empty_folder_says_so(tool, tmp_path, capsys):
    assert tool.main([str(tmp_path)]) == 2
    assert "no finished run" in capsys.readouterr().err


def test_seeds_summary_counts_each_seed_once_at_its_longest_budget(tool, tmp_path, capsys):
    runs = tmp_path / "runs"
    files = {
        "random/fraction1/seed0/metrics.json": _metrics(20, 20, 20, 0.40),  # kept its last epoch
        "random/fraction1/seed0/budget_x2/metrics.json": _metrics(17, 21, 40, 0.50),  # this one counts
        "random/fraction1/seed1/metrics.json": _metrics(12, 16, 20, 0.60),
        "random/fraction1/select/encoder_lr=0.001_freeze_epochs=0/metrics.json": _metrics(9, 13, 20, 0.99),
        "imagenet/fraction0.03/seed4/metrics.json": _metrics(9, 13, 20, 0.30),
    }
    for rel, m in files.items():
        (runs / rel).parent.mkdir(parents=True, exist_ok=True)
        (runs / rel).write_text(json.dumps(m))
    assert tool.main(["--seeds", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert str(TEST_SCORE) not in out and "0.99" not in out  # selection runs are not seeds
    lines = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert lines == ["| imagenet | 0.03 | 1 (4) | 0.300 |", "| random | 1 | 2 (0,1) | 0.550 ± 0.071 |"]


def test_seeds_summary_pairs_each_init_with_the_reference_on_shared_seeds(tool, tmp_path, capsys):
    runs = tmp_path / "runs"
    vals = {"imagenet": [0.30, 0.40, 0.35], "moco": [0.33, 0.42, 0.39, 0.99]}  # moco's seed 3 has no pair
    for init, v in vals.items():
        for seed, val in enumerate(v):
            (runs / init / "fraction0.03" / f"seed{seed}").mkdir(parents=True)
            (runs / init / "fraction0.03" / f"seed{seed}" / "metrics.json").write_text(
                json.dumps(_metrics(5, 9, 20, val))
            )
    assert tool.main(["--seeds", "--paired-to", "imagenet", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    moco = next(line for line in out.splitlines() if line.startswith("| moco"))
    # differences 0.03, 0.02, 0.04: mean 0.03, sd 0.01, t(2) = 4.303 -> half-width 0.0248
    assert moco.endswith("| +0.030 [+0.005, +0.055] over 3 |"), moco
    assert next(line for line in out.splitlines() if line.startswith("| imagenet")).endswith("| 0.350 ± 0.050 | |")


def test_several_folders_read_as_one_and_the_first_holding_a_run_wins(tool, tmp_path, capsys):
    study, reused = tmp_path / "study", tmp_path / "v2"
    files = {
        (study, "imagenet/fraction0.1/seed0"): 0.50,  # redone here: this one counts
        (reused, "imagenet/fraction0.1/seed0"): 0.10,
        (reused, "imagenet/fraction0.1/seed1"): 0.40,
        (study, "moco/fraction0.1/seed0"): 0.52,
        (study, "moco/fraction0.1/seed1"): 0.43,
        (reused, "imagenet/fraction0.1/seed0/budget_x2"): 0.99,  # a longer run of the stale seed 0
    }
    for (root, rel), val in files.items():
        (root / "runs" / rel).mkdir(parents=True)
        (root / "runs" / rel / "metrics.json").write_text(json.dumps(_metrics(5, 9, 20, val)))
    assert tool.main(["--seeds", "--paired-to", "imagenet", str(study), str(reused)]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert lines[0] == "| imagenet | 0.1 | 2 (0,1) | 0.450 ± 0.071 | |"
    # differences 0.02, 0.03: mean 0.025, sd 0.00707, t(1) = 12.706 -> half-width 0.0635
    assert lines[1] == "| moco | 0.1 | 2 (0,1) | 0.475 ± 0.064 | +0.025 [-0.039, +0.089] over 2 |"
    assert "4 finished run(s)" in out
    assert tool.main([str(study), str(tmp_path / "absent")]) == 2
    assert "not a folder" in capsys.readouterr().err
