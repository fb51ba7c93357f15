"""``ssl-derm export``: each format, run by its own runtime (TorchScript, onnxruntime, the
plain timm / torchvision model), gives ssl-derm's outputs on real sample images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ssl_derm.checkpoint import load_checkpoint, save_checkpoint
from ssl_derm.cli import main
from ssl_derm.commands.common import load_model, open_images
from ssl_derm.data import ImagePipeline
from ssl_derm.encoders import build_encoder, encoder_spec, pooled_features
from ssl_derm.finetune.classifier import Classifier, TwoStageHead

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # deprecated, still what we test

N_IMAGES = 16
SIDECAR_FIELDS = {
    "format",
    "task",
    "source_checkpoint",
    "source_task",
    "encoder",
    "architecture",
    "input",
    "output",
    "output_shape",
    "class_names",
    "ssl_derm_version",
    "check",
}


@pytest.fixture(scope="module")
def real_images() -> torch.Tensor:
    """uint8 ``[N, 3, 64, 64]``: the first images of the bundled real sample."""
    return open_images(None, 64, progress=False).images(np.arange(N_IMAGES))


def normalised(images: torch.Tensor, normalization: dict) -> torch.Tensor:
    return ImagePipeline(normalization).eval()(images).contiguous()


@torch.no_grad()
def reference(checkpoint, x: torch.Tensor) -> torch.Tensor:
    """ssl-derm's own output: classifier logits (log-probabilities) or pooled features."""
    loaded = load_model(str(checkpoint))
    if loaded.classifier is not None:
        return loaded.classifier.eval()(x)
    return pooled_features(loaded.encoder.eval(), x)


@torch.no_grad()
def run_exported(path, fmt: str, x: torch.Tensor, monkeypatch) -> torch.Tensor:
    """Run the exported file the way someone without ssl-derm would."""
    if fmt == "torchscript":
        return torch.jit.load(str(path))(x)
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    monkeypatch.chdir(path.parent)  # the snippet names the file beside it
    namespace: dict = {}
    exec(sidecar["load"], namespace)
    return namespace.get("log_probabilities", namespace["model"])(x)


def export(checkpoint, fmt: str, out, *extra: str) -> int:
    return main(["export", "--checkpoint", str(checkpoint), "--format", fmt, "--out", str(out), *extra])


def check_export(checkpoint, fmt: str, tmp_path, images, monkeypatch, name: str = "model") -> dict:
    """Export, check the outputs on real images and that only FILE and FILE.json were written."""
    folder, cwd = tmp_path / "exported", tmp_path / "cwd"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    out = folder / f"{name}.{fmt}"
    assert export(checkpoint, fmt, out) == 0
    assert sorted(p.name for p in folder.iterdir()) == [out.name, out.name + ".json"]
    assert not any(cwd.iterdir())  # nothing written beside the command either
    sidecar = json.loads((folder / (out.name + ".json")).read_text())
    assert SIDECAR_FIELDS <= set(sidecar)
    x = normalised(images, sidecar["input"])
    expected = reference(checkpoint, x)
    got = run_exported(out, fmt, x, monkeypatch)
    assert got.shape == expected.shape == (N_IMAGES, sidecar["output_shape"][1])
    assert float((got - expected).abs().max()) <= 1e-4
    return sidecar


@pytest.mark.parametrize("fmt", ["torchscript", "onnx", "safetensors"])
@pytest.mark.parametrize("which", ["model", "ssl"])
def test_export_matches_ssl_derm_on_real_images(which, fmt, ssl_ckpt, model_ckpt, real_images, tmp_path, monkeypatch):
    checkpoint = model_ckpt if which == "model" else ssl_ckpt
    sidecar = check_export(checkpoint, fmt, tmp_path, real_images, monkeypatch)
    assert sidecar["input"]["image_size"] == 64 and sidecar["input"]["resize"] == "crop"
    assert sidecar["input"]["mean"] == sidecar["input"]["std"] == [0.5] * 3
    assert sidecar["architecture"] == {"library": "timm", "model": "tf_efficientnet_lite0"}
    if which == "model":
        assert sidecar["output"] == "logits" and sidecar["source_task"] == "classifier"
        assert sidecar["class_names"] == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    else:
        assert sidecar["output"] == "pooled_features" and sidecar["source_task"] == "context_restore"
        assert sidecar["class_names"] is None and sidecar["output_shape"] == ["batch", 320]
    if fmt == "onnx":
        assert sidecar["onnx_opset"] >= 17
    if fmt == "safetensors":  # plain timm names: no smp "model." prefix, the head as timm's classifier
        state = load_file(tmp_path / "exported" / "model.safetensors")
        assert not any(k.startswith("model.") for k in state)
        if which == "model":
            assert state["classifier.weight"].shape == (7, 320)
        else:  # an encoder's keys are exactly those of timm's features_only model
            import timm

            timm.create_model("tf_efficientnet_lite0", features_only=True).load_state_dict(state, strict=True)


def _small_checkpoints(model_ckpt, images, tmp_path) -> dict:
    """A ResNet18 classifier and encoder, and a lite0 two-stage classifier, written as ssl-derm
    checkpoints without the hub: seeded weights, BatchNorm statistics from real images."""
    src = load_checkpoint(model_ckpt)
    common = {
        "image_size": 64,
        "config": src["config"],
        "seen_images": src["seen_images"],
        "class_names": src["class_names"],
        "dropout": 0.2,
    }
    torch.manual_seed(0)
    norm = encoder_spec("resnet18").normalization
    resnet = Classifier(build_encoder("resnet18", "random"), 7).train()
    with torch.no_grad():
        resnet(normalised(images, norm))  # running statistics of real images
    paths = {"resnet18_model": tmp_path / "r18_model.ckpt", "resnet18_ssl": tmp_path / "r18_ssl.ckpt"}
    enc = resnet.encoder.state_dict()
    save_checkpoint(
        paths["resnet18_model"],
        encoder_name="resnet18",
        encoder_state_dict=enc,
        normalization=norm,
        task="classifier",
        head_state_dict=resnet.head.state_dict(),
        **common,
    )
    save_checkpoint(
        paths["resnet18_ssl"],
        encoder_name="resnet18",
        encoder_state_dict=enc,
        normalization=norm,
        task="simclr",
        **common,
    )
    paths["two_stage"] = tmp_path / "two_stage.ckpt"
    save_checkpoint(
        paths["two_stage"],
        encoder_name="efficientnet-lite0",
        encoder_state_dict=src["encoder_state_dict"],
        normalization=src["normalization"],
        task="classifier",
        head_state_dict=TwoStageHead(320, 7, first=5).state_dict(),
        two_stage_first=5,
        **common,
    )
    return paths


def test_resnet18_and_two_stage_exports(model_ckpt, real_images, tmp_path, monkeypatch):
    paths = _small_checkpoints(model_ckpt, real_images, tmp_path)
    x = normalised(real_images, encoder_spec("resnet18").normalization)
    # torchvision's own resnet18, strict load, no ssl-derm code involved
    import torchvision

    for which in ("resnet18_model", "resnet18_ssl"):
        sidecar = check_export(paths[which], "safetensors", tmp_path / which, real_images, monkeypatch)
        assert sidecar["architecture"] == {"library": "torchvision", "model": "resnet18"}
    model = torchvision.models.resnet18(num_classes=7)
    model.load_state_dict(load_file(tmp_path / "resnet18_model/exported/model.safetensors"), strict=True)
    encoder = torchvision.models.resnet18()
    encoder.fc = torch.nn.Identity()
    encoder.load_state_dict(load_file(tmp_path / "resnet18_ssl/exported/model.safetensors"), strict=True)
    with torch.no_grad():
        assert float((model.eval()(x) - reference(paths["resnet18_model"], x)).abs().max()) <= 1e-4
        assert float((encoder.eval()(x) - reference(paths["resnet18_ssl"], x)).abs().max()) <= 1e-4
    # a two-stage head: log-probabilities; in safetensors, named tensors beside the encoder
    # that the sidecar's snippet combines
    for fmt in ("torchscript", "safetensors"):
        sidecar = check_export(paths["two_stage"], fmt, tmp_path / f"two-{fmt}", real_images, monkeypatch)
        assert sidecar["output"] == "log_probabilities" and sidecar["two_stage_first_class"] == "nv"
    state = load_file(tmp_path / "two-safetensors/exported/model.safetensors")
    assert {k for k in state if k.startswith("head.")} == {
        f"head.stage{i}.{p}" for i in (1, 2) for p in ("weight", "bias")
    }


def test_export_cli_contract(model_ckpt, tmp_path, capsys, monkeypatch):
    out = tmp_path / "m" / "model.safetensors"
    assert export(model_ckpt, "safetensors", out) == 0
    sidecar = out.with_name("model.safetensors.json")
    before = (out.read_bytes(), sidecar.read_bytes())
    capsys.readouterr()
    # no overwrite without --overwrite: exit 2, one line, nothing touched
    assert export(model_ckpt, "safetensors", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err
    assert (out.read_bytes(), sidecar.read_bytes()) == before
    assert export(model_ckpt, "safetensors", out, "--overwrite") == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.safetensors", "model.safetensors.json"]
    # a folder as --out, a file that is no checkpoint, a named init: exit 2, nothing written
    assert export(model_ckpt, "torchscript", tmp_path / "m") == 2
    bogus = tmp_path / "notes.ckpt"
    bogus.write_text("not a checkpoint")
    assert export(bogus, "torchscript", tmp_path / "x" / "model.pt") == 2
    assert export("imagenet", "torchscript", tmp_path / "x" / "model.pt") == 2
    assert export(tmp_path / "none.ckpt", "torchscript", tmp_path / "x" / "model.pt") == 2
    assert export(model_ckpt, "torchscript", model_ckpt, "--overwrite") == 2  # never the checkpoint itself
    assert not (tmp_path / "x").exists()
    # onnx without the extra: a one-line hint to install it
    monkeypatch.setattr("ssl_derm.commands.export.ONNX_MODULES", ("onnx", "no_such_module_for_ssl_derm"))
    capsys.readouterr()
    assert export(model_ckpt, "onnx", tmp_path / "x" / "model.onnx") == 2
    assert 'pip install "ssl-derm[export]"' in capsys.readouterr().err and not (tmp_path / "x").exists()
    # an export that fails its own check is deleted, its new folder too
    monkeypatch.setattr("ssl_derm.commands.export.TOLERANCE", -1.0)
    assert export(model_ckpt, "safetensors", tmp_path / "x" / "y" / "model.safetensors") == 2
    assert "export check failed" in capsys.readouterr().err and not (tmp_path / "x").exists()
    # the sidecar says how to feed the model
    meta = json.loads(sidecar.read_text())
    assert meta["input"]["shape"] == ["batch", 3, 64, 64] and meta["input"]["resize"] == "crop"
    assert meta["output"] == "logits" and meta["file"] == "model.safetensors"
    assert "timm.create_model" in meta["load"] and meta["check"]["max_abs_diff"] <= 1e-4


def test_export_help_teaches(capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert all(word in text for word in ("torchscript", "onnx", "safetensors", "--overwrite", "normalised"))
