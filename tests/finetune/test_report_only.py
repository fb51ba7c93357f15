"""``benchmark --report-only``: which runs it reads back, and how it names an init whose
checkpoint is gone (a benchmark's committed state keeps runs, not checkpoints)."""

from __future__ import annotations

import json

import pytest

from ssl_derm.errors import UserError
from ssl_derm.finetune.benchmark.inits import recorded_init_name
from ssl_derm.finetune.benchmark.loop import _finished
from ssl_derm.finetune.targets import init_names


def _metrics(folder, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(fields))


def test_a_gone_checkpoint_is_named_as_its_runs_recorded_it(tmp_path):
    runs = tmp_path / "runs"
    gone = str(tmp_path / "elsewhere" / "pretrain" / "simclr" / "ssl.ckpt")
    _metrics(runs / "imagenet+simclr" / "fraction1" / "seed0", init=gone, init_name="imagenet+simclr")
    assert recorded_init_name(gone, runs) == "imagenet+simclr"
    assert recorded_init_name("imagenet", runs) == "imagenet"
    with pytest.raises(UserError, match="no run under"):
        recorded_init_name(str(tmp_path / "never" / "ssl.ckpt"), runs)
    # two checkpoints of one task are told apart by their folder, as when they were on disk
    names = {"a/x/ssl.ckpt": "simclr", "a/y/ssl.ckpt": "simclr"}
    assert init_names(tuple(names), name_of=names.get) == ["simclr", "simclr:y"]


def test_the_reported_run_is_the_longest_of_its_budget_doublings(tmp_path):
    seed = tmp_path / "seed0"
    assert _finished(seed, 2) is None  # not run yet
    _metrics(seed, best_epoch=20, epochs_budget=20)  # kept its last epoch: ran again at twice the budget
    assert _finished(seed, 0)[1] == seed  # without doublings the first run counts
    assert _finished(seed, 2) is None  # the doubled run has not finished
    _metrics(seed / "budget_x2", best_epoch=12, epochs_budget=40)
    m, run = _finished(seed, 2)
    assert run == seed / "budget_x2" and m["epochs_budget"] == 40
