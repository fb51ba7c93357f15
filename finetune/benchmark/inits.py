"""Naming a benchmark's inits: ``init_name`` of each, told apart when two share one, and for
segmentation the ``PATH:encoder`` / ``PATH:decoder`` variants of a checkpoint with a U-Net decoder."""

from __future__ import annotations

import json
from pathlib import Path

from ssl_derm.checkpoint import init_name
from ssl_derm.config import BenchmarkConfig
from ssl_derm.errors import UserError
from ssl_derm.files import safe_name

VARIANTS = {":encoder": False, ":decoder": True}


def split_variant(entry: str) -> tuple[str, bool | None]:
    """``PATH:encoder`` -> (PATH, False), ``PATH:decoder`` -> (PATH, True), else (entry, None)."""
    for suffix, decoder in VARIANTS.items():
        if entry.endswith(suffix) and not Path(entry).exists():
            return entry[: -len(suffix)], decoder
    return entry, None


def segmentation_inits(cfg: BenchmarkConfig) -> list[tuple[str, str, dict]]:
    """(name, init, extra settings) per entry of ``inits`` for a segmentation benchmark."""
    from ssl_derm.finetune.segmentation import has_decoder

    out: list[tuple[str, str, dict]] = []
    for entry in cfg.inits:
        init, decoder = split_variant(entry)
        name = init_name(init)
        has = has_decoder(init)
        if decoder and not has:
            raise UserError(
                f"--inits {entry}: {init} has no U-Net decoder to transfer (context-restoration checkpoints "
                "and segmenters have one); name it without :decoder"
            )
        transfer = has and (cfg.init_decoder if decoder is None else decoder)
        name = f"{name}+decoder" if transfer else name
        if name in [n for n, _, _ in out]:
            name = f"{name}:{Path(init).parent.name or Path(init).stem}"
        out.append((name, init, {"init_decoder": bool(transfer)}))
    return out


def init_names(inits: tuple[str, ...], name_of=init_name) -> list[str]:
    """The name of each init (``name_of``: ``init_name``), two checkpoints of one task told
    apart by their folder."""
    names = []
    for init in inits:
        name = name_of(init)
        if name in names:  # two checkpoints of the same task: tell them apart by file
            name = f"{name}:{Path(init).parent.name or Path(init).stem}"
        names.append(name)
    return names


def slug(name: str) -> str:
    """An init's folder name under ``runs/`` (``+`` kept: ``imagenet+simclr``)."""
    return safe_name(name, limit=None, extra="+", strip_dots=False)


def recorded_init_name(init: str, runs: Path) -> str:
    """``init_name`` of ``init``, or when its checkpoint is gone (a benchmark's committed state),
    the name its finished runs under ``runs`` recorded (``metrics.json``'s ``init_name``)."""
    if init in ("random", "imagenet") or Path(init).exists():
        return init_name(init)
    for metrics in sorted(runs.glob("*/*/**/metrics.json")):
        m = json.loads(metrics.read_text())
        if m.get("init") == init and m.get("init_name"):
            return m["init_name"]
    raise UserError(f"--report-only: {init} is gone and no run under {runs} recorded its name")
