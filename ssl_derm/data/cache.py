"""Decode once: every image is decoded and resized once to the working size and
kept as uint8 ``[3, S, S]`` in a memory-mapped ``.npy`` cache file keyed by the
source's fingerprint, the size and the resize mode.  Later epochs and later
runs never decode a JPEG again.  Unreadable members are skipped, counted and
reported.  The same pass records each image's content fingerprints
(``ssl_derm.data.identity``) for the leak checks.

Resize modes: ``crop`` (default) scales the short side to S and keeps the
centre square, so the pixels keep their aspect ratio; ``squash`` scales the
whole frame to S x S, which stretches HAM10000's 4:3 images anisotropically,
a low-level orientation cue that gives rotation labels away
(``scripts/shortcut_probe.py``).
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
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from ssl_derm.data.archives import ImageSource
from ssl_derm.data.identity import THUMB, ContentIds, file_sha1, thumbnail
from ssl_derm.errors import UserError

CACHE_VERSION = 3
RESIZE_MODES = ("crop", "squash")
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
    sha1: list[str] = field(default_factory=list)  # per member, "" where unreadable
    thumbs: np.ndarray | None = None  # int8 [N, THUMB * THUMB]

    def ids(self) -> ContentIds:
        """Content fingerprints of the valid members, in bank order."""
        keep = np.flatnonzero(self.ok)
        return ContentIds([self.names[i] for i in keep], [self.sha1[i] for i in keep], np.asarray(self.thumbs)[keep])


def decode_image(data: bytes, size: int, resize: str = "crop") -> tuple[np.ndarray, np.ndarray]:
    """Bytes of one image file -> uint8 ``[3, size, size]`` (RGB, bilinear, antialiased)
    and its int8 content thumbnail."""
    with Image.open(io.BytesIO(data)) as im:
        # JPEG: let the decoder downscale by 2/4/8 for free, to no less than 256 px, so that the
        # content thumbnail is the same whatever the working size (up to 256)
        im.draft("RGB", (max(size, 256),) * 2)
        rgb = im.convert("RGB")
    if resize == "crop":
        out = ImageOps.fit(rgb, (size, size), Image.BILINEAR, centering=(0.5, 0.5))
    else:
        out = rgb.resize((size, size), Image.BILINEAR)
    return np.asarray(out).transpose(2, 0, 1), thumbnail(rgb)


def _decode_or_reason(item: tuple[str, bytes | None], size: int, resize: str) -> tuple | str:
    name, data = item
    if data is None:
        return "unreadable member"
    if not data:
        return "empty file"
    try:
        pixels, thumb = decode_image(data, size, resize)
        return pixels, thumb, file_sha1(data)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        return f"cannot decode ({type(e).__name__}: {str(e)[:60]})"


def decode_source(
    source: ImageSource,
    size: int,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    threads: int | None = None,
    resize: str = "crop",
) -> Decoded:
    """Decode every member of ``source`` at ``size`` px, through the cache."""
    if len(source) == 0:
        raise UserError(f"{source.label}: holds no image files")
    if resize not in RESIZE_MODES:
        raise UserError(f"resize={resize!r}: choose {' or '.join(RESIZE_MODES)}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = hashlib.sha1(f"v{CACHE_VERSION}|{source.fingerprint()}|{size}|{resize}".encode()).hexdigest()[:20]
    npy, meta, thumbs_npy = cache / f"{key}.npy", cache / f"{key}.json", cache / f"{key}.thumbs.npy"
    if npy.is_file() and meta.is_file() and thumbs_npy.is_file():
        info = json.loads(meta.read_text())
        pixels = np.load(npy, mmap_mode="r")
        if pixels.shape == (len(source), 3, size, size):
            skipped = [tuple(s) for s in info["skipped"]]
            ok = np.array(info["ok"], bool)
            return Decoded(source.label, source.names, pixels, ok, skipped, info["sha1"], np.load(thumbs_npy))
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f"{key}.{os.getpid()}.tmp.npy"
    shape = (len(source), 3, size, size)
    ok = np.zeros(len(source), bool)
    sha1 = [""] * len(source)
    thumbs = np.zeros((len(source), THUMB * THUMB), np.int8)
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
            for (name, _), out in zip(chunk, pool.map(lambda it: _decode_or_reason(it, size, resize), chunk)):
                if isinstance(out, str):
                    skipped.append((name, out))
                    out = blank
                else:
                    out, thumbs[i], sha1[i] = out
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
    thumbs_tmp = cache / f"{key}.{os.getpid()}.tmp.thumbs.npy"
    np.save(thumbs_tmp, thumbs)
    os.replace(thumbs_tmp, thumbs_npy)
    meta_tmp = meta.with_suffix(f".{os.getpid()}.tmp")
    info = {"ok": ok.tolist(), "skipped": skipped, "label": source.label, "resize": resize, "sha1": sha1}
    meta_tmp.write_text(json.dumps(info))
    os.replace(meta_tmp, meta)
    if skipped:
        warnings.warn(f"{source.label}: skipped {len(skipped)} of {len(source)} files", stacklevel=2)
    return Decoded(source.label, source.names, np.load(npy, mmap_mode="r"), ok, skipped, sha1, thumbs)
