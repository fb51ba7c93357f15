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
        {"swaps": 10, "lr": 0.1},
        {"swaps": 12},
        parse_set(["lr=3e-4", "rotation_angles=0,90,180,270", "augment=false"]),
    )
    assert cfg.swaps == 12 and cfg.lr == 3e-4 and cfg.rotation_angles == (0, 90, 180, 270) and cfg.augment is False


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"bogus": 1}, "unknown setting 'bogus'; valid: .*swaps"),
        ({"batch_size": -4}, r"batch_size=-4: must be > 0"),
        ({"image_size": 100}, "multiple of 32"),
        ({"holdout_fraction": 1.5}, r"must be in \[0, 1\]"),
        ({"swaps": "many"}, "expected int"),
    ],
)
def test_bad_settings_name_the_valid_range(layer, message):
    with pytest.raises(UserError, match=message):
        build_config(PretrainConfig, layer)


def test_label_fraction_range():
    with pytest.raises(UserError, match=r"label_fraction=0.0: must be in \(0, 1\]"):
        FinetuneConfig(label_fraction=0.0)
