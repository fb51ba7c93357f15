"""Encoder files (``export --format init``) and the encoders shipped with ssl-derm: an
``--init`` that carries its record of seen images, so every leak check still holds."""

from __future__ import annotations

import json

import pytest
import torch

from ssl_derm import checkpoint
from ssl_derm.checkpoint import init_name, init_seen, load_checkpoint, weights_fingerprint
from ssl_derm.cli import main
from ssl_derm.errors import UserError


@pytest.fixture(scope="module")
def encoder_file(ssl_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("init") / "cr.safetensors"
    assert main(["export", "--checkpoint", str(ssl_ckpt), "--format", "init", "--out", str(out)]) == 0
    return out


def test_an_encoder_file_is_the_checkpoints_encoder_and_record(ssl_ckpt, encoder_file):
    src, back = load_checkpoint(ssl_ckpt), load_checkpoint(encoder_file)
    assert back["encoder_state_dict"].keys() == src["encoder_state_dict"].keys()
    assert all(torch.equal(back["encoder_state_dict"][k], v) for k, v in src["encoder_state_dict"].items())
    assert init_seen(str(encoder_file)).sha1 == init_seen(str(ssl_ckpt)).sha1
    assert init_name(str(encoder_file)) == init_name(str(ssl_ckpt)) == "imagenet+context_restore"
    assert not any(k.endswith("_state_dict") and k != "encoder_state_dict" for k in back)  # no heads
    assert encoder_file.stat().st_size < ssl_ckpt.stat().st_size
    sidecar = json.loads(encoder_file.with_name(encoder_file.name + ".json").read_text())
    assert sidecar["format"] == "init" and sidecar["seen_images"] == len(src["seen_images"]["sha1"])


def test_half_precision_rounds_the_weights_only(ssl_ckpt, tmp_path):
    out = tmp_path / "half.safetensors"
    assert main(["export", "--checkpoint", str(ssl_ckpt), "--format", "init", "--half", "--out", str(out)]) == 0
    src, back = load_checkpoint(ssl_ckpt)["encoder_state_dict"], load_checkpoint(out)["encoder_state_dict"]
    assert all(torch.equal(back[k], v.half().float()) for k, v in src.items() if v.is_floating_point())
    assert init_seen(str(out)).sha1 == init_seen(str(ssl_ckpt)).sha1


def test_a_shipped_encoder_is_named_offline(encoder_file, tmp_path, monkeypatch):
    """A file in ssl_derm/weights/ is an init by its stem: fine-tuning starts from it, and its
    record of seen images travels into the fine-tuned model."""
    shipped = tmp_path / "weights"
    shipped.mkdir()
    (shipped / "ham-cr.safetensors").write_bytes(encoder_file.read_bytes())
    monkeypatch.setattr(checkpoint, "SHIPPED", shipped)
    assert weights_fingerprint("ham-cr") == weights_fingerprint(str(encoder_file))
    out = tmp_path / "ft"
    args = ["finetune", "--init", "ham-cr", "--out", str(out), "--max-steps", "2", "--batch-size", "16"]
    assert main([*args, "--no-progress"]) == 0
    model = load_checkpoint(out / "model.ckpt")
    assert set(init_seen("ham-cr").sha1) <= set(model["seen_images"]["sha1"])
    with pytest.raises(UserError, match="shipped encoder: ham-cr"):
        load_checkpoint("ham-typo")


def test_a_foreign_safetensors_file_is_refused(tmp_path, capsys):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(UserError, match="not an ssl-derm encoder file"):
        load_checkpoint(path)
    assert main(["export", "--checkpoint", str(path), "--format", "onnx", "--half", "--out", str(tmp_path / "x.onnx")])
    assert "--half rounds an encoder file's weights to fp16: it goes with --format init" in capsys.readouterr().err
