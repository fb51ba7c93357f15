"""Files written whole or not at all: checkpoints (ssl-derm's and the trainer's), decode-cache
entries and the benchmark's finished-run records go through ``atomic_write``, so a kill (or a
copy taken mid-write) never finds half of one."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it to ``path``; a write
    that raises leaves ``path`` as it was and removes its temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def atomic_write_text(text: str, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_save_npy(array: np.ndarray, path: str | Path) -> Path:
    """``np.save`` of ``array`` to ``path`` (through a file object: ``np.save`` would append
    ``.npy`` to the temporary name)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    return atomic_write(path, write)


def safe_name(text: str, limit: int | None = 80, extra: str = "", strip_dots: bool = True) -> str:
    """``text`` as a file or folder name: characters other than [A-Za-z0-9_.-] and ``extra``
    replaced by ``_``, cut to ``limit``; with ``strip_dots``, never ``.``, ``..`` or hidden
    (leading and trailing dots removed, ``_`` if nothing is left)."""
    name = re.sub(f"[^A-Za-z0-9_.{re.escape(extra)}-]", "_", text)[:limit]
    return (name.strip(".") or "_") if strip_dots else name
