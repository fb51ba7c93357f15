"""A setting's role is declared once, on its field (``ssl_derm.config.setting``), and the
command line, ``--resume`` and the benchmark's run key all read it from there."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from ssl_derm.cli import build_parser
from ssl_derm.config import BenchmarkConfig, FinetuneConfig, PretrainConfig, data_settings, key_settings

# the flags of a training command that steer the command instead of setting the run
STEERING = {"help", "config", "set", "overwrite", "resume", "report_only"}


@pytest.mark.parametrize(
    "command, cls", [("pretrain", PretrainConfig), ("finetune", FinetuneConfig), ("benchmark", BenchmarkConfig)]
)
def test_every_flag_of_a_training_command_is_a_setting_or_steers_it(command, cls):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    names = {f.name for f in fields(cls)}
    for action in sub.choices[command]._actions:
        assert action.dest in names or action.dest in STEERING, f"{command} {action.option_strings}"


def test_which_settings_a_resume_must_keep_and_which_leave_the_run_key():
    assert set(data_settings(FinetuneConfig)) == {
        "data", "splits", "seed", "split_fractions", "init", "label_fraction", "image_size", "resize", "target",
        "skip_missing_masks",
    }  # fmt: skip
    assert set(data_settings(PretrainConfig)) == {
        "data", "splits", "seed", "split_fractions", "unlabeled", "init", "image_size", "resize",
    }  # fmt: skip
    left_out = {f.name for f in fields(FinetuneConfig)} - set(key_settings(FinetuneConfig))
    assert left_out == {
        "out", "splits", "data", "cache_dir", "data_on_device", "progress", "score_test", "log_every_n_steps",
    }  # fmt: skip
