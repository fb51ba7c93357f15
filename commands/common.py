"""What ``predict``, ``explain``, ``embed`` and ``export`` share: opening any image
source (labelled or not) through the decode cache, and loading a model from a
checkpoint or a named init.

A SOURCE is anything ``--unlabeled`` accepts (folder, zip, tar, glob, ``.txt``
list) or a labelled source (HAM10000 folder, CSV, ImageFolder), whose labels
are then available but optional.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ssl_derm.data.archives import FileList, open_unlabeled
from ssl_derm.data.cache import decode_source
from ssl_derm.data.dataset import ImageBank
from ssl_derm.data.sources import is_labeled, load_labeled, sample_dir
from ssl_derm.errors import UserError


@dataclass
class ImageSet:
    """Decoded images of one or more sources, in source order.

    ``names[i]`` is the file or archive member, ``sources[i]`` the source it came
    from, ``labels[i]`` its label (``None`` where the source has none), and
    ``bank`` rows ``0 .. len-1`` hold the pixels. ``skipped`` lists the
    ``(name, reason)`` of members that could not be decoded."""

    names: list[str]
    sources: list[str]
    labels: list[str | None]
    bank: ImageBank
    skipped: list[tuple[str, str]] = field(default_factory=list)
    sha1: list[str] = field(default_factory=list)
    groups: list[str | None] = field(default_factory=list)  # lesion / patient where the source says

    def __len__(self) -> int:
        return len(self.names)

    @property
    def labeled(self) -> bool:
        return any(label is not None for label in self.labels)

    def images(self, idx=None) -> torch.Tensor:
        """uint8 ``[N, 3, S, S]`` of rows ``idx`` (default all)."""
        return self.bank.gather(np.arange(len(self)) if idx is None else np.asarray(idx))


def open_images(
    specs: list[str] | str | None,
    size: int,
    *,
    cache_dir=None,
    progress: bool = True,
    resize: str = "crop",
    rows=None,
) -> ImageSet:
    """Decode every image of each SOURCE in ``specs`` (``None``: the bundled sample) at
    ``size`` px. A labelled source keeps its labels; ``rows`` (a callable taking the
    labelled table and returning a subset of it) picks which of its images to keep."""
    if specs is None or isinstance(specs, str):
        specs = [specs]
    parts, names, sources, labels, skipped, sha1, groups = [], [], [], [], [], [], []
    for spec in specs:
        path = Path(spec) if spec is not None else sample_dir()
        if not path.exists() and not any(c in str(spec) for c in "*?["):
            raise UserError(f"--data {spec}: no such file or folder")
        if path.exists() and is_labeled(path):
            table = load_labeled(path)
            if rows is not None:
                table = rows(table)
            source = FileList(str(path), list(table["image"]))
            source_labels: list[str | None] = list(table["label"])
            source_groups: list[str | None] = list(table["group"])
        else:
            source = open_unlabeled(spec)
            source_labels = source_groups = [None] * len(source)
        if len(source) == 0:
            raise UserError(f"--data {spec}: holds no image files")
        decoded = decode_source(source, size, cache_dir, progress, resize=resize)
        keep = np.flatnonzero(decoded.ok)
        parts.append(decoded)
        names += [decoded.names[i] for i in keep]
        sources += [str(spec if spec is not None else "sample")] * len(keep)
        labels += [source_labels[i] for i in keep]
        groups += [source_groups[i] for i in keep]
        sha1 += [decoded.sha1[i] for i in keep]
        skipped += decoded.skipped
    bank = ImageBank(parts)
    if skipped:
        shown = ", ".join(Path(n).name for n, _ in skipped[:3])
        print(f"ssl-derm: skipped {len(skipped)} unreadable file(s): {shown}", file=sys.stderr)
    if not names:
        raise UserError(f"--data {', '.join(map(str, specs))}: no readable images")
    return ImageSet(names, sources, labels, bank, skipped, sha1, groups)


def write_skipped(folder: Path, skipped: list[tuple[str, str]]) -> None:
    """``skipped.txt``: one ``name<TAB>reason`` line per unreadable file (only when there are any)."""
    if skipped:
        (folder / "skipped.txt").write_text("".join(f"{n}\t{why}\n" for n, why in skipped))


@dataclass
class LoadedModel:
    """An encoder (and the classifier around it, for a ``model.ckpt``) with what it needs
    to see images as in training: size, normalisation and resize mode."""

    encoder: nn.Module
    classifier: nn.Module | None
    classes: list[str] | None
    image_size: int
    normalization: dict
    resize: str
    name: str  # random, imagenet, or the checkpoint path
    ckpt: dict | None


def load_model(checkpoint: str, encoder: str | None = None, image_size: int | None = None) -> LoadedModel:
    """``random``/``imagenet`` (``encoder``, default EfficientNet-Lite0, at ``image_size``,
    default 128), an ``ssl.ckpt`` (encoder only) or a ``model.ckpt`` (classifier)."""
    from ssl_derm.encoders import build_encoder, encoder_spec

    if checkpoint in ("random", "imagenet"):
        spec = encoder_spec(encoder)
        return LoadedModel(
            build_encoder(encoder, checkpoint).eval(),
            None,
            None,
            image_size or 128,
            spec.normalization,
            "crop",
            checkpoint,
            None,
        )
    from ssl_derm.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint, expect_encoder=encoder)
    resize = ckpt["config"].get("resize", "crop")
    size = image_size or ckpt["image_size"]
    if ckpt["task"] == "classifier":
        from ssl_derm.finetune.targets.classification import load_classifier

        model, _ = load_classifier(checkpoint)
        return LoadedModel(
            model.encoder, model, list(ckpt["class_names"]), size, ckpt["normalization"], resize, checkpoint, ckpt
        )
    enc = build_encoder(ckpt["encoder_name"], checkpoint).eval()
    return LoadedModel(enc, None, None, size, ckpt["normalization"], resize, checkpoint, ckpt)


def require_classifier(loaded: LoadedModel, command: str) -> None:
    if loaded.classifier is None:
        if loaded.ckpt is None:
            what = f"{loaded.name} weights, with no classifier head"
        elif loaded.ckpt["task"] == "segmenter":
            what = "a segmentation model (ssl-derm evaluate or predict write its masks)"
        else:
            what = f"a {loaded.ckpt['task']} pretraining checkpoint (ssl.ckpt)"
        raise UserError(
            f"{command} needs a fine-tuned classifier (model.ckpt from ssl-derm finetune); {loaded.name} is {what}"
        )


def fine_tuned_target(loaded: LoadedModel, command: str):
    """The fine-tuning target of a ``model.ckpt`` (``finetune/targets``); a one-line error
    for anything else."""
    from ssl_derm.finetune.targets import target_for_task

    target = target_for_task(loaded.ckpt["task"]) if loaded.ckpt is not None else None
    if target is not None:
        return target
    what = (
        f"{loaded.name} weights, with no head"
        if loaded.ckpt is None
        else f"a {loaded.ckpt['task']} pretraining checkpoint (ssl.ckpt)"
    )
    raise UserError(f"{command} needs a fine-tuned model (model.ckpt from ssl-derm finetune); {loaded.name} is {what}")
