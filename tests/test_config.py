from pathlib import Path

import pytest

from ssl_derm.config import BenchmarkConfig, FinetuneConfig, PretrainConfig, build_config, load_yaml, parse_set, to_dict
from ssl_derm.errors import UserError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize(
    "cls, name", [(PretrainConfig, "pretrain"), (FinetuneConfig, "finetune"), (BenchmarkConfig, "benchmark")]
)
def test_default_yaml_matches_the_dataclass(cls, name):
    assert load_yaml(CONFIGS / name / "default.yaml") == to_dict(cls())


def test_every_profile_is_valid():
    for stage, cls in (("pretrain", PretrainConfig), ("finetune", FinetuneConfig), ("benchmark", BenchmarkConfig)):
        for path in (CONFIGS / stage).glob("*.yaml"):
            build_config(cls, load_yaml(path))


def test_layers_override_in_order_and_coerce_types():
    cfg = build_config(
        PretrainConfig,
        {"context_restore": {"swaps": 10, "corrupted_weight": 5}, "lr": 0.1},
        {"context_restore.swaps": 12},
        parse_set(["lr=3e-4", "context_restore.patch_size=8", "augment=false"]),
    )
    s = cfg.task_settings["context_restore"]
    assert (s.swaps, s.corrupted_weight, s.patch_size) == (12, 5.0, 8)
    assert cfg.lr == 3e-4 and cfg.augment is False
    rot = build_config(PretrainConfig, {"task": "rotation"}, parse_set(["rotation.angles=0,90,180,270"]))
    assert rot.task_settings["rotation"].angles == (0, 90, 180, 270)


def test_task_sections_round_trip_and_other_tasks_sections_are_ignored():
    """A profile may hold sections for several tasks; only the trained task's are kept."""
    profile = {"task": "rotation", "rotation": {"jitter": 2}, "context_restore": {"swaps": 3}}
    cfg = build_config(PretrainConfig, profile)
    assert set(cfg.task_settings) == {"rotation"} and cfg.task_settings["rotation"].jitter == 2.0
    saved = to_dict(cfg)
    assert saved["rotation"]["jitter"] == 2.0 and "context_restore" not in saved
    assert build_config(PretrainConfig, saved) == cfg


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"bogus": 1}, "unknown setting 'bogus'; valid: .*knn_k.*; task settings: <task>.<key> with task one of"),
        (
            {"context_restore.bogus": 1},
            r"unknown setting context_restore.bogus; valid: context_restore.corrupted_weight",
        ),
        ({"rotation.jitter": 1}, r"settings for task\(s\) rotation given, but the run trains task 'context_restore'"),
        ({"task": "nope"}, "task='nope': choose one of byol, context_restore"),
        ({"context_restore.swaps": 0}, r"context_restore.swaps=0: must be >= 1"),
        ({"image_size": 64, "context_restore.patch_size": 30}, r"patch_size=30: at most a third of image_size \(21\)"),
        ({"task": "rotation", "resize": "squash"}, "resize=squash with the rotation task"),
        ({"task": "simclr", "augment": False}, "simclr learns from two augmented views"),
        ({"precision": "16-true"}, "half-precision weights are not supported"),
        ({"batch_size": -4}, r"batch_size=-4: must be > 0"),
        ({"image_size": 100}, "multiple of 32"),
        ({"holdout_fraction": 1.5}, r"must be in \[0, 1\]"),
        ({"context_restore.swaps": "many"}, "context_restore.swaps='many': expected int"),
    ],
)
def test_bad_settings_name_the_valid_range(layer, message):
    with pytest.raises(UserError, match=message):
        build_config(PretrainConfig, layer)


def test_label_fraction_range():
    with pytest.raises(UserError, match=r"label_fraction=0.0: must be in \(0, 1\]"):
        FinetuneConfig(label_fraction=0.0)
