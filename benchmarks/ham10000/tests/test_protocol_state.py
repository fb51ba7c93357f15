"""tools/protocol_state.py: what a long benchmark keeps in the repository between sessions."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from ssl_derm.data.sources import sample_dir


@pytest.fixture(scope="module")
def state_tool(tool_module):
    return tool_module("protocol_state")


def _run_folder(tmp_path: Path) -> Path:
    """A benchmark run folder with what it really holds: real metadata as its split table."""
    out = tmp_path / "out"
    split = (sample_dir() / "HAM10000_metadata.csv").read_text()
    for rel in ("split/splits.csv", "benchmark/runs/imagenet/fraction1/seed0/splits.csv"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(split * 8)  # > 100 kB: kept gzipped
    run = out / "benchmark/runs/imagenet/fraction1/seed0"
    (run / "metrics.json").write_text('{"balanced_accuracy": 0.5}')
    (run / "model.ckpt").write_bytes(b"weights")
    (run / "tensorboard").mkdir()
    (run / "tensorboard" / "events.json").write_text("{}")
    big = out / "benchmark/runs/random/fraction1/seed0/metrics.json"  # per-image scores: > 100 kB
    big.parent.mkdir(parents=True)
    big.write_text('{"per_image": [' + ", ".join(['{"dice": 0.9}'] * 10_000) + "]}")
    failed = out / "benchmark/runs/random/fraction1/select/encoder_lr=0.037/FAILED"  # a diverged selection point
    failed.parent.mkdir(parents=True)
    failed.write_text("0123abcd\nnon-finite loss at step 3\n")
    (out / "pretrain/rotation").mkdir(parents=True)
    (out / "pretrain/rotation/DONE").write_text("profile=cpu steps=300")
    (out / "pretrain/rotation/ssl.ckpt").write_bytes(b"weights")
    os.symlink(out / "pretrain", out / "screening")  # a link: never followed
    return out


def test_save_keeps_the_small_files_and_restore_brings_them_back(state_tool, tmp_path):
    out = _run_folder(tmp_path)
    state = tmp_path / "state"
    assert state_tool.main(["save", str(out), str(state)]) == 0
    kept = sorted(str(p.relative_to(state)) for p in state.rglob("*") if p.is_file())
    assert kept == [
        "benchmark/runs/imagenet/fraction1/seed0/metrics.json",
        "benchmark/runs/imagenet/fraction1/seed0/splits.csv.gz",
        "benchmark/runs/random/fraction1/seed0/metrics.json.gz",
        "benchmark/runs/random/fraction1/select/encoder_lr=0.037/FAILED",
        "pretrain/rotation/DONE",
        "split/splits.csv.gz",
    ]
    # the same table gives the same bytes, so git stores it once
    a, b = state / "split/splits.csv.gz", state / "benchmark/runs/imagenet/fraction1/seed0/splits.csv.gz"
    assert a.read_bytes() == b.read_bytes()
    assert gzip.decompress(a.read_bytes()) == (out / "split/splits.csv").read_bytes()
    assert state_tool.main(["save", str(out), str(state)]) == 0  # nothing changed: nothing rewritten
    assert state_tool.save(out, state) == 0

    again = tmp_path / "again"  # another machine: restore, then the files are the originals
    assert state_tool.main(["restore", str(state), str(again)]) == 0
    assert (again / "split/splits.csv").read_bytes() == (out / "split/splits.csv").read_bytes()
    assert (again / "benchmark/runs/imagenet/fraction1/seed0/metrics.json").read_text() == '{"balanced_accuracy": 0.5}'
    assert not (again / "pretrain/rotation/ssl.ckpt").exists()
    failed = "benchmark/runs/random/fraction1/select/encoder_lr=0.037/FAILED"
    assert (again / failed).read_text() == (out / failed).read_text()
    big = "benchmark/runs/random/fraction1/seed0/metrics.json"
    assert (again / big).read_text() == (out / big).read_text()

    # restore never overwrites what a run folder already holds
    (again / "pretrain/rotation/DONE").write_text("profile=cpu steps=600")
    assert state_tool.restore(state, again) == 0
    assert (again / "pretrain/rotation/DONE").read_text() == "profile=cpu steps=600"

    # ... and never adds a run's test outputs to a folder holding another run
    run = "benchmark/runs/imagenet/fraction1/seed0"
    (out / run / "test_predictions.csv").write_text("image,label\n")
    assert state_tool.save(out, state) == 1
    other = tmp_path / "other"
    (other / run).mkdir(parents=True)
    (other / run / "metrics.json").write_text('{"balanced_accuracy": 0.6}')  # another run of that path
    state_tool.restore(state, other)
    assert not (other / run / "test_predictions.csv").exists() and (other / run / "splits.csv").is_file()
    state_tool.restore(state, again)  # the same run there: its outputs come back
    assert (again / run / "test_predictions.csv").read_text() == "image,label\n"


def test_restore_of_no_state_is_a_first_run_and_save_needs_a_folder(state_tool, tmp_path, capsys):
    assert state_tool.main(["restore", str(tmp_path / "none"), str(tmp_path / "out")]) == 0
    assert state_tool.main(["save", str(tmp_path / "none"), str(tmp_path / "state")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_save_leaves_the_test_summaries_out_until_asked(state_tool, tmp_path):
    out = _run_folder(tmp_path)
    bench = out / "benchmark"
    for name in ("results.md", "results.csv", "paired.csv", "confusion_imagenet.png", "verdict.json"):
        (bench / name).write_text('{"test": 0.5}')
    (bench / "config.yaml").write_text("seeds: 3\n")
    state = tmp_path / "state"
    assert state_tool.main(["save", str(out), str(state)]) == 0
    assert sorted(p.name for p in (state / "benchmark").iterdir() if p.is_file()) == ["config.yaml"]
    assert (state / "benchmark/runs/imagenet/fraction1/seed0/metrics.json").is_file()  # a run's own file stays
    assert state_tool.main(["save", str(out), str(state), "--with-summaries"]) == 0
    kept = sorted(p.name for p in (state / "benchmark").iterdir() if p.is_file())
    assert kept == ["config.yaml", "confusion_imagenet.png", "paired.csv", "results.csv", "results.md", "verdict.json"]


def test_save_leaves_the_summaries_out_of_a_benchmark_folder_saved_itself(state_tool, tmp_path):
    """OUT may be the benchmark's own --out (ssl_budget/labels.sh saves its parts so)."""
    bench = _run_folder(tmp_path) / "benchmark"
    for name in ("results.md", "paired.csv", "intervals.csv", "label_efficiency.png"):
        (bench / name).write_text('{"test": 0.5}')
    (bench / "config.yaml").write_text("seeds: 3\n")
    state = tmp_path / "state"
    assert state_tool.main(["save", str(bench), str(state)]) == 0
    assert sorted(p.name for p in state.iterdir() if p.is_file()) == ["config.yaml"]
    assert (state / "runs/imagenet/fraction1/seed0/metrics.json").is_file()


def test_the_state_holds_no_absolute_path_and_restore_gives_them_back(state_tool, tmp_path):
    """A path beside the repository is kept relative to it and made this machine's again on
    restore; one inside it is kept relative to it; other text is left alone."""
    repo = state_tool.REPO
    beside, inside = f"{repo.parent}/shared/data/ham10000/images/ISIC_1.jpg", f"{repo}/runs/x/ssl.ckpt"
    out = tmp_path / "out"
    run = out / "benchmark/runs/imagenet/fraction1/seed0"
    run.mkdir(parents=True)
    (run / "splits.csv").write_text(f"image,label,group,split\n{beside},nv,HAM_1,test\n")
    (run / "config.yaml").write_text(f"init: {inside}\nsplits: {inside}\nnote: a/{beside}\n")
    (run / "metrics.json").write_text(f'{{"checkpoint": "{inside}", "init": "imagenet"}}')
    state_tool.save(out, tmp_path / "state")
    kept = "".join(p.read_text() for p in sorted((tmp_path / "state").rglob("*")) if p.is_file())
    assert str(repo.parent) not in kept.replace(f"a/{repo.parent}", "")
    assert "../shared/data/ham10000/images/ISIC_1.jpg" in kept and "init: runs/x/ssl.ckpt" in kept
    state_tool.restore(tmp_path / "state", tmp_path / "back")
    back = tmp_path / "back/benchmark/runs/imagenet/fraction1/seed0"
    assert (back / "splits.csv").read_text() == (run / "splits.csv").read_text()
    assert (back / "config.yaml").read_text() == f"init: runs/x/ssl.ckpt\nsplits: runs/x/ssl.ckpt\nnote: a/{beside}\n"
    state_tool.expand(tmp_path / "state/benchmark/runs/imagenet/fraction1/seed0/splits.csv", tmp_path / "s.csv")
    assert (tmp_path / "s.csv").read_text() == (run / "splits.csv").read_text()
