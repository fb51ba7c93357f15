"""Naming a benchmark's inits on disk: an init's folder name, and the name of an init whose
checkpoint is gone. (Each target names its inits: ``Target.benchmark_inits``.)"""

from __future__ import annotations

import json
from pathlib import Path

from ssl_derm.checkpoint import init_name, is_checkpoint
from ssl_derm.errors import UserError
from ssl_derm.files import safe_name


def slug(name: str) -> str:
    """An init's folder name under ``runs/`` (``+`` kept: ``imagenet+simclr``)."""
    return safe_name(name, limit=None, extra="+", strip_dots=False)


def recorded_init_name(init: str, runs: Path) -> str:
    """``init_name`` of ``init``, or when its checkpoint is gone (a benchmark's committed state),
    the name its finished runs under ``runs`` recorded (``metrics.json``'s ``init_name``)."""
    if init in ("random", "imagenet") or is_checkpoint(init):
        return init_name(init)
    for metrics in sorted(runs.glob("*/*/**/metrics.json")):
        m = json.loads(metrics.read_text())
        if m.get("init") == init and m.get("init_name"):
            return m["init_name"]
    raise UserError(f"--report-only: {init} is gone and no run under {runs} recorded its name")
