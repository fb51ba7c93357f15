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
(``benchmarks/ham10000/tools/shortcut_probe.py``).

Lesion masks (``decode_masks``) go through the same crop as their images,
with nearest-neighbour sampling, into their own cache entry: uint8 ``{0, 1}``
``[N, 1, S, S]``.  A mask is first brought to the size of its image as the
image decoder sees it (HAM10000's masks are smaller than its full-size
images), so pixel (y, x) of the mask lies on pixel (y, x) of the image.
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
from ssl_derm.files import atomic_save_npy, atomic_write, atomic_write_text

CACHE_VERSION = 3
MASK_CACHE_VERSION = 1
RESIZE_MODES = ("crop", "squash")
_CHUNK = 256


def default_cache_dir() -> Path:
    return Path(os.environ.get("SSL_DERM_CACHE", Path.home() / ".cache" / "ssl-derm"))


def _entry(cache_dir: str | Path | None, kind: str, fingerprint: str, size: int, resize: str) -> Path:
    """The cache entry (a path stem) of one decode: ``kind`` (the decoder and its version),
    the inputs' ``fingerprint``, the size and the resize mode."""
    if resize not in RESIZE_MODES:
        raise UserError(f"resize={resize!r}: choose {' or '.join(RESIZE_MODES)}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return cache / hashlib.sha1(f"{kind}|{fingerprint}|{size}|{resize}".encode()).hexdigest()[:20]


def _cached(npy: Path, meta: Path, shape: tuple) -> tuple[np.ndarray, dict] | None:
    """A finished cache entry whose array has ``shape``: (its memory map, its record); else None."""
    if npy.is_file() and meta.is_file():
        arr = np.load(npy, mmap_mode="r")
        if arr.shape == shape:
            return arr, json.loads(meta.read_text())
    return None


def _in_parallel(items, decode, threads: int | None):
    """``(item, decode(item))`` for every item, in order, decoded on a thread pool chunk by
    chunk (a stream is never read far ahead: memory stays flat)."""
    with ThreadPoolExecutor(max_workers=threads or min(8, os.cpu_count() or 1)) as pool:
        stream = iter(items)
        while chunk := list(itertools.islice(stream, _CHUNK)):
            yield from zip(chunk, pool.map(decode, chunk))


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
    masks: np.ndarray | None = None  # uint8 {0, 1} [N, 1, S, S] when lesion masks were decoded (decode_masks)

    def ids(self) -> ContentIds:
        """Content fingerprints of the valid members, in bank order."""
        keep = np.flatnonzero(self.ok)
        return ContentIds([self.names[i] for i in keep], [self.sha1[i] for i in keep], np.asarray(self.thumbs)[keep])


def _draft(im: Image.Image, size: int) -> None:
    # JPEG: let the decoder downscale by 2/4/8 for free, to no less than 256 px, so that the
    # content thumbnail is the same whatever the working size (up to 256)
    im.draft("RGB", (max(size, 256),) * 2)


def _fit(im: Image.Image, size: int, resize: str, resample) -> Image.Image:
    """The one crop of images and masks: ``crop`` = short side to ``size``, centre square."""
    if resize == "crop":
        return ImageOps.fit(im, (size, size), resample, centering=(0.5, 0.5))
    return im.resize((size, size), resample)


def decode_image(data: bytes, size: int, resize: str = "crop") -> tuple[np.ndarray, np.ndarray]:
    """Bytes of one image file -> uint8 ``[3, size, size]`` (RGB, bilinear, antialiased)
    and its int8 content thumbnail."""
    with Image.open(io.BytesIO(data)) as im:
        _draft(im, size)
        rgb = im.convert("RGB")
    out = _fit(rgb, size, resize, Image.BILINEAR)
    return np.asarray(out).transpose(2, 0, 1), thumbnail(rgb)


def decoded_size(path: str | Path, size: int) -> tuple[int, int] | None:
    """(width, height) of image file ``path`` as ``decode_image`` sees it before the crop
    (after the JPEG draft); read from the header, no pixels decoded. None if unreadable."""
    try:
        with Image.open(path) as im:
            _draft(im, size)
            return im.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def fit_mask(
    mask: Image.Image, size: int, resize: str = "crop", image_size: tuple[int, int] | None = None
) -> np.ndarray:
    """bool ``[size, size]``: a lesion mask (0 skin, 255 lesion; grey levels >= 128 count as
    lesion) cropped as ``decode_image`` crops its image, nearest-neighbour: the one mask
    alignment of training (``decode_mask``) and of Grad-CAM (``ssl_derm.cam.read_mask``).

    ``image_size`` (width, height) is the image's as the decoder sees it (``decoded_size``):
    a mask of another size is first resized to it (nearest neighbour), then both take the
    same crop. Palette masks are read through their palette (some HAM10000 masks are
    palette PNGs whose index 0 is white)."""
    m = mask.convert("L")
    if image_size is not None and tuple(image_size) != m.size:
        m = m.resize(tuple(image_size), Image.NEAREST)
    return np.asarray(_fit(m, size, resize, Image.NEAREST)) >= 128


def decode_mask(data: bytes, size: int, resize: str = "crop", image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Bytes of one lesion mask -> uint8 ``{0, 1}`` ``[1, size, size]`` (``fit_mask``)."""
    with Image.open(io.BytesIO(data)) as im:
        return fit_mask(im, size, resize, image_size).astype(np.uint8)[None]


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
    stem = _entry(cache_dir, f"v{CACHE_VERSION}", source.fingerprint(), size, resize)
    npy, meta, thumbs_npy = stem.with_suffix(".npy"), stem.with_suffix(".json"), stem.with_suffix(".thumbs.npy")
    found = _cached(npy, meta, (len(source), 3, size, size)) if thumbs_npy.is_file() else None
    if found is not None:
        pixels, info = found
        skipped = [tuple(s) for s in info["skipped"]]
        ok = np.array(info["ok"], bool)
        return Decoded(source.label, source.names, pixels, ok, skipped, info["sha1"], np.load(thumbs_npy))
    stem.parent.mkdir(parents=True, exist_ok=True)
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
    def write_pixels(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": shape})
            i = 0
            for (name, _), out in _in_parallel(
                source.iter_bytes(), lambda it: _decode_or_reason(it, size, resize), threads
            ):
                if isinstance(out, str):
                    skipped.append((name, out))
                    out = blank
                else:
                    out, thumbs[i], sha1[i] = out
                    ok[i] = True
                f.write(np.ascontiguousarray(out).tobytes())
                i += 1
                bar.update(1)
            if i != len(source):  # a truncated archive ended early: the rest is unreadable
                skipped.extend((n, "archive ended early") for n in source.names[i:])
                for _ in range(len(source) - i):
                    f.write(blank.tobytes())

    atomic_write(npy, write_pixels)
    bar.close()
    atomic_save_npy(thumbs, thumbs_npy)
    info = {"ok": ok.tolist(), "skipped": skipped, "label": source.label, "resize": resize, "sha1": sha1}
    atomic_write_text(json.dumps(info), meta)
    if skipped:
        warnings.warn(f"{source.label}: skipped {len(skipped)} of {len(source)} files", stacklevel=2)
    return Decoded(source.label, source.names, np.load(npy, mmap_mode="r"), ok, skipped, sha1, thumbs)


@dataclass
class DecodedMasks:
    """Masks of one table of images: ``masks[i]`` is valid where ``ok[i]``; ``problems`` are
    ``(mask path, reason)`` of the others (``missing`` when there is no mask file)."""

    masks: np.ndarray  # uint8 {0, 1} [N, 1, S, S], possibly a read-only memmap
    ok: np.ndarray  # bool [N]
    problems: list[tuple[str, str]]


def _mask_or_reason(item: tuple[str, str], size: int, resize: str) -> np.ndarray | str:
    mask_path, image_path = item
    if not mask_path:
        return "no mask given"
    try:
        data = Path(mask_path).read_bytes()
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable ({type(e).__name__})"
    if not data:
        return "empty file"
    try:
        return decode_mask(data, size, resize, decoded_size(image_path, size))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        return f"cannot decode ({type(e).__name__}: {str(e)[:60]})"


def decode_masks(
    masks: list[str],
    images: list[str],
    size: int,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    resize: str = "crop",
    threads: int | None = None,
) -> DecodedMasks:
    """Decode the lesion mask ``masks[i]`` of image ``images[i]`` (file paths; ``""`` = none)
    at ``size`` px through the cache (its own entry, keyed by both files' names, sizes and
    times, the size and the resize mode). Missing and unreadable masks are reported, not raised."""
    if len(masks) != len(images):
        raise ValueError(f"{len(masks)} masks for {len(images)} images")
    h = hashlib.sha1()
    for m, i in zip(masks, images):
        for p in (m, i):
            try:
                st = os.stat(p) if p else None
                h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode() if st else f"{p}|none\n".encode())
            except OSError:
                h.update(f"{p}|missing\n".encode())
    stem = _entry(cache_dir, f"masks-v{MASK_CACHE_VERSION}", h.hexdigest(), size, resize)
    npy, meta = stem.with_suffix(".masks.npy"), stem.with_suffix(".masks.json")
    found = _cached(npy, meta, (len(masks), 1, size, size))
    if found is not None:
        arr, info = found
        return DecodedMasks(arr, np.array(info["ok"], bool), [tuple(p) for p in info["problems"]])
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = np.zeros((len(masks), 1, size, size), np.uint8)
    ok = np.zeros(len(masks), bool)
    problems: list[tuple[str, str]] = []
    results = _in_parallel(zip(masks, images), lambda it: _mask_or_reason(it, size, resize), threads)
    bar = tqdm(results, total=len(masks), desc=f"decoding masks @{size}px", unit="mask", disable=not progress)
    for i, (item, res) in enumerate(bar):
        if isinstance(res, str):
            problems.append((item[0] or item[1], res))
        else:
            out[i], ok[i] = res, True
    atomic_save_npy(out, npy)
    atomic_write_text(json.dumps({"ok": ok.tolist(), "problems": problems}), meta)
    return DecodedMasks(np.load(npy, mmap_mode="r"), ok, problems)
