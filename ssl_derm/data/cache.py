"""Decode once: every image is decoded and resized once to the working size and
kept as uint8 ``[3, S, S]`` in a memory-mapped ``.npy`` cache file keyed by the
source's fingerprint and the size.  Later epochs and later runs never decode a
JPEG again.  Unreadable members are skipped, counted and reported.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from ssl_derm.data.archives import ImageSource
from ssl_derm.errors import UserError

CACHE_VERSION = 1
_CHUNK = 256


def default_cache_dir() -> Path:
    return Path(os.environ.get("SSL_DERM_CACHE", Path.home() / ".cache" / "ssl-derm"))


@dataclass
class Decoded:
    """Decoded pixels of one source: ``pixels[i]`` is valid where ``ok[i]``."""

    label: str
    names: list[str]
    pixels: np.ndarray  # uint8 [N, 3, S, S], possibly a read-only memmap
    ok: np.ndarray  # bool [N]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Bytes of one image file -> uint8 ``[3, size, size]`` (RGB, bilinear, antialiased)."""
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (size, size))  # JPEG: let the decoder downscale by 2/4/8 for free
        rgb = im.convert("RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(rgb).transpose(2, 0, 1)


def _decode_or_reason(item: tuple[str, bytes | None], size: int) -> np.ndarray | str:
    name, data = item
    if data is None:
        return "unreadable member"
    if not data:
        return "empty file"
    try:
        return decode_image(data, size)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        return f"cannot decode ({type(e).__name__}: {str(e)[:60]})"


def decode_source(
    source: ImageSource,
    size: int,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> Decoded:
    """Decode every member of ``source`` at ``size`` px, through the cache."""
    if len(source) == 0:
        raise UserError(f"{source.label}: holds no image files")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = hashlib.sha1(f"v{CACHE_VERSION}|{source.fingerprint()}|{size}".encode()).hexdigest()[:20]
    npy, meta = cache / f"{key}.npy", cache / f"{key}.json"
    if npy.is_file() and meta.is_file():
        info = json.loads(meta.read_text())
        pixels = np.load(npy, mmap_mode="r")
        if pixels.shape == (len(source), 3, size, size):
            skipped = [tuple(s) for s in info["skipped"]]
            return Decoded(source.label, source.names, pixels, np.array(info["ok"], bool), skipped)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f"{key}.{os.getpid()}.tmp.npy"
    shape = (len(source), 3, size, size)
    ok = np.zeros(len(source), bool)
    skipped: list[tuple[str, str]] = []
    blank = np.zeros(shape[1:], np.uint8)
    bar = tqdm(
        total=len(source),
        desc=f"decoding {Path(source.label).name} @{size}px",
        unit="img",
        disable=not progress,
        leave=False,
    )
    # Appended chunk by chunk with plain writes (not through a memory map, whose written
    # pages would stay resident): memory stays flat however large the archive is.
    with open(tmp, "wb") as f, ThreadPoolExecutor(max_workers=threads or min(8, os.cpu_count() or 1)) as pool:
        np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": shape})
        i = 0
        stream = source.iter_bytes()
        while True:
            chunk = list(itertools.islice(stream, _CHUNK))
            if not chunk:
                break
            for (name, _), out in zip(chunk, pool.map(lambda it: _decode_or_reason(it, size), chunk)):
                if isinstance(out, str):
                    skipped.append((name, out))
                    out = blank
                else:
                    ok[i] = True
                f.write(np.ascontiguousarray(out).tobytes())
                i += 1
            bar.update(len(chunk))
        if i != len(source):  # a truncated archive ended early: the rest is unreadable
            skipped += [(n, "archive ended early") for n in source.names[i:]]
            for _ in range(len(source) - i):
                f.write(blank.tobytes())
    bar.close()
    os.replace(tmp, npy)
    meta_tmp = meta.with_suffix(f".{os.getpid()}.tmp")
    meta_tmp.write_text(json.dumps({"ok": ok.tolist(), "skipped": skipped, "label": source.label}))
    os.replace(meta_tmp, meta)
    if skipped:
        warnings.warn(f"{source.label}: skipped {len(skipped)} of {len(source)} files", stacklevel=2)
    return Decoded(source.label, source.names, np.load(npy, mmap_mode="r"), ok, skipped)
