import os
import pickle

import pytest
import torch

from ssl_derm.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from ssl_derm.data.identity import ContentIds
from ssl_derm.encoders import build_encoder
from ssl_derm.errors import UserError


def _save(path, encoder=None, **extra):
    encoder = encoder or build_encoder("resnet18")
    return save_checkpoint(
        path,
        encoder_name="resnet18",
        encoder_state_dict=encoder.state_dict(),
        image_size=64,
        normalization={"mean": [0.5] * 3, "std": [0.5] * 3},
        task="rotation",
        config={"lr": 0.1},
        **{"seen_images": ContentIds.empty().to_state(), **extra},
    )


def test_round_trip_loads_with_weights_only_and_strict_keys(tmp_path):
    enc = build_encoder("resnet18")
    path = _save(tmp_path / "ssl.ckpt", enc)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "ssl-derm" and raw["format_version"] == FORMAT_VERSION
    assert {"torch", "segmentation_models_pytorch", "lightly"} <= set(raw["versions"])
    again = build_encoder("resnet18", path)
    for k, v in enc.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed away


def test_wrong_encoder_is_named(tmp_path):
    path = _save(tmp_path / "ssl.ckpt")
    with pytest.raises(UserError, match="holds encoder 'resnet18', but 'resnet50' was requested"):
        build_encoder("resnet50", path)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"weights": 1}, "not an ssl-derm checkpoint"),
        ({"format": "ssl-derm", "format_version": 99}, "unsupported checkpoint format_version 99"),
    ],
)
def test_foreign_files_are_refused(tmp_path, content, message):
    path = tmp_path / "x.ckpt"
    torch.save(content, path)
    with pytest.raises(UserError, match=message):
        load_checkpoint(path)


def test_truncated_checkpoint_is_refused(tmp_path):
    path = _save(tmp_path / "ssl.ckpt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_checkpoint(path)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_checkpoint_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    _Evil.target = marker
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"format": "ssl-derm", "payload": _Evil()}, f)
    torch.save({"format": "ssl-derm", "payload": _Evil()}, tmp_path / "evil2.ckpt")
    for p in (path, tmp_path / "evil2.ckpt"):
        with pytest.raises(UserError, match="refused"):
            load_checkpoint(p)
    assert not marker.exists()
