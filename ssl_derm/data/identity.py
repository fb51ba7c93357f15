"""Content identity: which image a file holds, whatever its name, size or encoding.

Every decoded image gets two fingerprints, computed once in the decode cache:

- ``sha1`` of the file's bytes: exact copies under another name;
- a 32x32 high-pass thumbnail of the whole frame (grey, box-downscaled, minus
  its Gaussian blur, zero mean, unit norm, int8): re-encoded and resized
  copies.  Two images are copies when the cosine similarity of their
  thumbnails is at least ``NEAR_THRESHOLD``.

The high-pass step matters on dermoscopy: plain thumbnails are dominated by
the dark vignette and the skin tone, so distinct lesions correlate at 0.98.
Measured on the 8,017 HAM10000 images of ``../shared/data`` (see
``benchmarks/ham10000/studies/duplicate_check.py``): the closest pair of distinct lesions scores
0.919, copies saved under another name and size 0.987-0.992; 0.95 separates
them.  Not detected: crops, flips and rotations of an image (a different
frame, not a copy).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

THUMB = 32
NEAR_THRESHOLD = 0.95


def thumbnail(im: Image.Image) -> np.ndarray:
    """int8 ``[THUMB * THUMB]`` high-pass thumbnail of the whole frame (aspect ignored)."""
    grey = im.convert("L").resize((THUMB, THUMB), Image.BOX)
    hp = np.asarray(grey, np.float32) - np.asarray(grey.filter(ImageFilter.GaussianBlur(2)), np.float32)
    hp = hp.ravel() - hp.mean()
    peak = float(np.abs(hp).max())
    if peak == 0:  # a flat image: no structure to compare
        return np.zeros(THUMB * THUMB, np.int8)
    return np.round(hp * (127.0 / peak)).astype(np.int8)


def file_sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@dataclass
class ContentIds:
    """Fingerprints of a list of images; ``names`` are for messages only."""

    names: list[str]
    sha1: list[str]
    thumbs: np.ndarray  # int8 [N, THUMB * THUMB]

    def __len__(self) -> int:
        return len(self.sha1)

    @classmethod
    def empty(cls) -> ContentIds:
        return cls([], [], np.zeros((0, THUMB * THUMB), np.int8))

    def subset(self, idx) -> ContentIds:
        idx = np.asarray(idx, dtype=np.int64)
        return ContentIds([self.names[i] for i in idx], [self.sha1[i] for i in idx], self.thumbs[idx])

    @classmethod
    def concat_parts(cls, parts: list[ContentIds]) -> ContentIds:
        """All rows of all parts in order, duplicates kept (row i stays row i)."""
        if not parts:
            return cls.empty()
        return cls(
            [n for p in parts for n in p.names],
            [h for p in parts for h in p.sha1],
            np.concatenate([p.thumbs for p in parts]).astype(np.int8),
        )

    @classmethod
    def concat(cls, parts: list[ContentIds]) -> ContentIds:
        """All parts in order, each sha1 kept once."""
        names, sha1, rows, seen = [], [], [], set()
        for part in parts:
            for i, h in enumerate(part.sha1):
                if not h or h not in seen:  # rows without a sha1 are never merged
                    seen.add(h)
                    names.append(part.names[i])
                    sha1.append(h)
                    rows.append(part.thumbs[i])
        thumbs = np.stack(rows).astype(np.int8) if rows else cls.empty().thumbs
        return cls(names, sha1, thumbs)

    def to_state(self) -> dict:
        """Plain lists and a tensor: loads with ``torch.load(weights_only=True)``."""
        return {
            "names": [Path(n).name for n in self.names],
            "sha1": list(self.sha1),
            "thumbs": torch.from_numpy(np.ascontiguousarray(self.thumbs)),
        }

    @classmethod
    def from_state(cls, state: dict | None) -> ContentIds:
        if not state:
            return cls.empty()
        return cls(list(state["names"]), list(state["sha1"]), state["thumbs"].numpy().astype(np.int8))


def find_copies(
    query: ContentIds, reference: ContentIds, threshold: float = NEAR_THRESHOLD, chunk: int = 2048
) -> list[tuple[int, int, float]]:
    """``(query index, reference index, similarity)`` for every query image that
    copies a reference image (its best match; 1.0 for an identical file)."""
    if not len(query) or not len(reference):
        return []
    found: dict[int, tuple[int, float]] = {}
    where = {h: j for j, h in enumerate(reference.sha1) if h}
    for i, h in enumerate(query.sha1):
        if h and h in where:
            found[i] = (where[h], 1.0)
    ref = _unit(reference.thumbs)
    for start in range(0, len(query), chunk):
        q = _unit(query.thumbs[start : start + chunk])
        sim = q @ ref.T
        best, arg = sim.max(1), sim.argmax(1)
        for k in np.flatnonzero(best >= threshold):
            i = start + int(k)
            if i not in found:
                found[i] = (int(arg[k]), float(best[k]))
    return [(i, j, s) for i, (j, s) in sorted(found.items())]


def _unit(thumbs: np.ndarray) -> np.ndarray:
    x = thumbs.astype(np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm == 0, np.inf, norm)  # flat images match nothing


def describe_copies(copies, query: ContentIds, reference: ContentIds, n: int = 3) -> str:
    """``a.jpg = b.jpg, ...`` for the first ``n`` copies, for one-line errors."""
    pairs = [f"{Path(query.names[i]).name} = {Path(reference.names[j]).name}" for i, j, _ in copies[:n]]
    return ", ".join(pairs) + (" ..." if len(copies) > n else "")
