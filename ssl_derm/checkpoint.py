"""The portable ssl-derm checkpoint: one file of plain tensors and built-ins.

``torch.load(path, weights_only=True)`` opens it, so a checkpoint from a
stranger can never run code.  It carries everything needed to rebuild the
model: encoder name, image size, normalisation, task, the config and library
versions (after nanoGPT's checkpoints), and ``seen_images``: the content
fingerprints of every image that shaped the weights, along the whole
``--init`` chain, so that no later command evaluates on one of them
(``ssl_derm.data.leaks``).  Format 2 added that record; a format-1 file cannot
prove what it saw and is refused.

An **encoder file** (``.safetensors``, ``write_encoder_file``; ``ssl-derm export --format init``)
holds an encoder and the same record, without the task's heads or any optimiser state, and
loads like a checkpoint wherever an ``--init`` is taken. The encoders shipped with ssl-derm
(``ssl_derm/weights/``) are such files, named by their stem: ``--init NAME`` works offline.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ssl_derm import __version__
from ssl_derm.errors import UserError
from ssl_derm.files import atomic_write

FORMAT = "ssl-derm"
FORMAT_VERSION = 2
ENCODER_FORMAT = "ssl-derm-encoder"  # an encoder file's metadata "format"
SHIPPED = Path(__file__).parent / "weights"  # the encoders shipped with ssl-derm, by file stem
CARRIED = ("encoder_name", "image_size", "normalization", "task", "config", "versions", "init_chain", "global_step")
REQUIRED = (
    "format",
    "format_version",
    "encoder_name",
    "encoder_state_dict",
    "image_size",
    "normalization",
    "task",
    "config",
    "versions",
    "seen_images",
)


def library_versions() -> dict[str, str]:
    import kornia
    import lightly
    import pytorch_lightning
    import segmentation_models_pytorch
    import torchvision

    return {
        "ssl_derm": __version__,
        "torch": str(torch.__version__),
        "torchvision": str(torchvision.__version__),
        "segmentation_models_pytorch": str(segmentation_models_pytorch.__version__),
        "lightly": str(lightly.__version__),
        "kornia": str(kornia.__version__),
        "pytorch_lightning": str(pytorch_lightning.__version__),
    }


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file, then rename: a kill never leaves half a file."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_checkpoint(
    path: str | Path,
    *,
    encoder_name: str,
    encoder_state_dict: dict,
    image_size: int,
    normalization: dict,
    task: str,
    config: dict,
    seen_images: dict,
    **extra: Any,
) -> Path:
    """Write a checkpoint; ``seen_images`` is a ``ContentIds.to_state()``; ``extra`` may add
    e.g. ``decoder_state_dict``, ``head_state_dict``."""
    state = {k: v.detach().cpu().clone() for k, v in encoder_state_dict.items()}
    ckpt = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "encoder_name": encoder_name,
        "encoder_state_dict": state,
        "image_size": int(image_size),
        "normalization": {k: [float(x) for x in v] for k, v in normalization.items()},
        "task": task,
        "config": config,
        "versions": library_versions(),
        "seen_images": seen_images,
        **extra,
    }
    return atomic_save(ckpt, path)


def shipped_encoders() -> dict[str, Path]:
    """The encoders shipped with ssl-derm: name (file stem) -> encoder file."""
    return {p.stem: p for p in sorted(SHIPPED.glob("*.safetensors"))}


def checkpoint_file(init: str | Path) -> Path:
    """The file behind an init: a shipped encoder's name, a run folder (its ``ssl.ckpt``), or a path."""
    shipped = shipped_encoders().get(str(init))
    if shipped is not None:
        return shipped
    path = Path(init)
    return path / "ssl.ckpt" if path.is_dir() and (path / "ssl.ckpt").is_file() else path


def is_checkpoint(init: str | Path) -> bool:
    """Whether ``init`` names weights on this machine (not random or imagenet): a file or a shipped name."""
    return str(init) not in ("random", "imagenet") and checkpoint_file(init).is_file()


def write_encoder_file(ckpt: dict[str, Any], path: str | Path, half: bool = False) -> Path:
    """An encoder file of checkpoint ``ckpt``: its encoder (fp16 with ``half``), its record of
    seen images and what rebuilds the encoder (``CARRIED``); no heads, no optimiser state."""
    import json

    from safetensors.torch import save_file

    tensors = {
        f"encoder.{k}": (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in ckpt["encoder_state_dict"].items()
    }
    seen = ckpt["seen_images"]
    tensors["seen_images.thumbs"] = seen["thumbs"].contiguous()
    meta = {
        "format": ENCODER_FORMAT,
        "format_version": str(FORMAT_VERSION),
        "carried": json.dumps({k: ckpt[k] for k in CARRIED if k in ckpt}),
        "seen_images": json.dumps({"names": list(seen["names"]), "sha1": list(seen["sha1"])}),
        "precision": "fp16" if half else "fp32",
    }

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata=meta)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # a file to share: safetensors writes it private (0600)

    return atomic_write(path, write)


def _read_encoder_file(path: Path) -> dict[str, Any]:
    """An encoder file as a checkpoint dict (``encoder_state_dict`` in fp32)."""
    import json

    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable encoder file ({str(e)[:100]})") from None
    if meta.get("format") != ENCODER_FORMAT:
        raise UserError(f"{path}: a safetensors file, but not an ssl-derm encoder file (no format: {ENCODER_FORMAT!r})")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise UserError(f"{path}: unsupported encoder file format_version {meta.get('format_version')!r}")
    try:
        seen = json.loads(meta["seen_images"])
        carried = json.loads(meta["carried"])
    except (KeyError, json.JSONDecodeError):
        raise UserError(f"{path}: its record of the images it was trained on is missing or unreadable") from None
    encoder = {k.removeprefix("encoder."): v.float() for k, v in tensors.items() if k.startswith("encoder.")}
    seen["thumbs"] = tensors.get("seen_images.thumbs", torch.zeros((0, 1024), dtype=torch.int8))
    return {"format": FORMAT, "format_version": FORMAT_VERSION, **carried, "encoder_state_dict": encoder,
            "seen_images": seen, "encoder_file": meta}  # fmt: skip


def load_checkpoint(path: str | Path, expect_encoder: str | None = None) -> dict[str, Any]:
    """Load and validate a checkpoint (or an encoder file, or a shipped encoder's name), naming
    what is wrong in one line."""
    path = checkpoint_file(path)
    if not path.is_file():
        shipped = ", ".join(shipped_encoders()) or "none"
        raise UserError(
            f"checkpoint not found: {path} (expected random, imagenet, a .ckpt or encoder .safetensors path, "
            f"or a shipped encoder: {shipped})"
        )
    try:
        ckpt = (
            _read_encoder_file(path)
            if path.suffix == ".safetensors"
            else torch.load(path, map_location="cpu", weights_only=True)
        )
    except pickle.UnpicklingError as e:
        msg = str(e).split("\n")[0][:120]
        raise UserError(f"{path}: refused, not a plain-tensor checkpoint (it would need to run code: {msg})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable checkpoint (truncated or corrupt: {str(e)[:100]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{path}: not an ssl-derm checkpoint (no format: {FORMAT!r} field)")
    if ckpt.get("format_version") == 1:
        raise UserError(
            f"{path}: a format-1 checkpoint has no record of the images it was trained on, so it cannot "
            "be checked against validation and test images; pretrain or fine-tune it again with this ssl-derm"
        )
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path}: unsupported checkpoint format_version {ckpt.get('format_version')!r}; "
            f"this ssl-derm reads version {FORMAT_VERSION}"
        )
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise UserError(f"{path}: checkpoint lacks field(s) {', '.join(missing)}")
    if expect_encoder is not None and ckpt["encoder_name"] != expect_encoder:
        raise UserError(f"{path}: holds encoder {ckpt['encoder_name']!r}, but {expect_encoder!r} was requested")
    return ckpt


def init_seen(init: str):
    """``ContentIds`` of the images behind an init: none for random and ImageNet weights."""
    from ssl_derm.data.identity import ContentIds

    if init in ("random", "imagenet"):
        return ContentIds.empty()
    return ContentIds.from_state(load_checkpoint(init)["seen_images"])


def init_name(init: str) -> str:
    """A short name for an init: random, imagenet, a task name (prefixed by
    ``imagenet+`` when that pretraining itself started from ImageNet) or the
    file stem."""
    if init in ("random", "imagenet"):
        return init
    ckpt = load_checkpoint(init)
    return ckpt.get("init_chain") or ckpt.get("task") or Path(init).stem


def weights_fingerprint(init: str) -> str:
    """What an init's weights are, by content: its name for random and ImageNet weights, else
    the sha256 of every ``*_state_dict`` tensor of the checkpoint, by name. A checkpoint
    pretrained again with the same settings (deterministic on a CPU) gets the same one."""
    import hashlib

    if init in ("random", "imagenet"):
        return init
    ckpt = load_checkpoint(init)
    h = hashlib.sha256()
    for part in sorted(k for k in ckpt if k.endswith("_state_dict")):
        for name, tensor in sorted(ckpt[part].items()):
            h.update(f"{part}.{name}".encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
