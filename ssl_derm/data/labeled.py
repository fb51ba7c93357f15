"""A labelled source, split and decoded, ready for training and evaluation.

With ``masks=True`` (lesion segmentation) every image also needs its lesion
mask: the table's ``mask`` column (a HAM10000 folder's ``masks/``, a CSV's
column, a segmentation run's ``splits.csv``), or for a table without one (a
classification ``splits.csv``, a CSV without the column) the masks ``data``
names for the same images or, failing that, the HAM10000 layout
``<folder>/masks/<image stem>_segmentation.png`` in a folder above the image.
Masks are decoded through the cache beside the images; a missing or unreadable
mask is an error naming it, or with ``skip_missing_masks`` its image is left
out and counted.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_derm.data.archives import FileList
from ssl_derm.data.cache import decode_masks, decode_source
from ssl_derm.data.dataset import ImageBank
from ssl_derm.data.sources import MASK_FOLDER, MASK_SUFFIX, load_labeled
from ssl_derm.data.splits import make_splits, read_splits
from ssl_derm.errors import UserError


@dataclass
class LabeledData:
    table: pd.DataFrame  # image, label, group, split, row (index into bank)
    bank: ImageBank
    classes: list[str]

    def rows(self, split: str = "all") -> pd.DataFrame:
        return self.table if split == "all" else self.table[self.table["split"] == split]

    def indices(self, split: str = "all") -> np.ndarray:
        return self.rows(split)["row"].to_numpy()

    def targets(self, split: str = "all") -> np.ndarray:
        lookup = {c: i for i, c in enumerate(self.classes)}
        return self.rows(split)["label"].map(lookup).to_numpy()


def prepare_labeled(
    data,
    image_size: int,
    *,
    fractions=(0.7, 0.15, 0.15),
    seed: int = 0,
    splits: str | Path | None = None,
    cache_dir=None,
    progress: bool = True,
    classes: list[str] | None = None,
    resize: str = "crop",
    masks: bool = False,
    skip_missing_masks: bool = False,
) -> LabeledData:
    """Load, split (or read ``splits``), and decode a labelled source; with ``masks`` its
    lesion masks too (``bank.gather_masks``), see the module docstring."""
    table = read_splits(splits) if splits else make_splits(load_labeled(data), fractions, seed)
    if masks:
        table = attach_masks(table, data)
    decoded = decode_source(
        FileList(str(data or "sample"), list(table["image"])), image_size, cache_dir, progress, resize=resize
    )
    if decoded.skipped:
        names = ", ".join(Path(n).name for n, _ in decoded.skipped[:3])
        warnings.warn(
            f"{len(decoded.skipped)} labelled image(s) could not be decoded and are left out: {names}", stacklevel=2
        )
    keep = decoded.ok.copy()
    if masks:
        lesions = decode_masks(
            list(table["mask"]), list(table["image"]), image_size, cache_dir, progress, resize=resize
        )
        keep &= _mask_check(lesions, table, decoded.ok, skip_missing_masks)
        decoded.masks = lesions.masks
    bank = ImageBank([decoded])
    table = table.assign(row=np.cumsum(decoded.ok) - 1)[keep].copy()
    found = sorted(table["label"].unique())
    if classes is None:
        classes = found
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise UserError(f"label(s) {unknown[:5]} are not among the model's classes {classes}")
    return LabeledData(table.reset_index(drop=True), bank, list(classes))


def labeled_from_config(cfg, image_size: int | None = None, masks: bool = False) -> LabeledData:
    """``prepare_labeled`` with the data, split, cache and progress settings of an EngineConfig,
    and the lesion masks with ``masks`` (a fine-tuning target that needs them: ``Target.masks``)."""
    return prepare_labeled(
        cfg.data,
        image_size or cfg.image_size,
        fractions=cfg.split_fractions,
        seed=cfg.seed,
        splits=getattr(cfg, "splits", None),
        cache_dir=cfg.cache_dir,
        progress=cfg.progress,
        resize=cfg.resize,
        masks=masks,
        skip_missing_masks=getattr(cfg, "skip_missing_masks", False),
    )


def _ham_mask(image: str, depth: int = 3) -> str:
    """``<folder>/masks/<stem>_segmentation.png`` in one of the ``depth`` folders above ``image``, or ""."""
    path = Path(image)
    for folder in list(path.parents)[:depth]:
        candidate = folder / MASK_FOLDER / f"{path.stem}{MASK_SUFFIX}"
        if candidate.is_file():
            return str(candidate.resolve())
    return ""


def attach_masks(table: pd.DataFrame, data) -> pd.DataFrame:
    """``table`` with a ``mask`` column: its own when it has one (an empty cell: no mask);
    else, for a splits file without one, the masks ``data`` names for the same images, and
    for images ``data`` does not know the HAM10000 layout (``_ham_mask``); "" where none is found."""
    table = table.copy()
    if "mask" in table:
        table["mask"] = table["mask"].fillna("").astype(str)
        return table
    lookup: dict[str, str] = {}
    if data is not None:
        source = load_labeled(data)
        if "mask" in source:
            lookup = dict(zip(source["image"], source["mask"]))
    table["mask"] = [lookup[i] if i in lookup else _ham_mask(i) for i in table["image"]]
    return table


def _mask_check(found, table: pd.DataFrame, image_ok: np.ndarray, skip: bool) -> np.ndarray:
    """Which rows keep their image: an error naming the first masks that are missing or
    unreadable, or with ``skip`` a count of the images left out for them."""
    bad = image_ok & ~found.ok
    if not bad.any():
        return np.ones(len(table), bool)
    reasons = dict(found.problems)
    rows = table[bad]
    names = [Path(m).name if m else f"(none for {Path(i).name})" for m, i in zip(rows["mask"], rows["image"])]
    why = [reasons.get(m or i, "?") for m, i in zip(rows["mask"], rows["image"])]
    if (table["mask"] == "").all():
        raise UserError(
            "no lesion masks found for segmentation: a HAM10000 folder needs masks/<image_id>_segmentation.png, "
            "a CSV source a mask column"
        )
    first = ", ".join(f"{n} ({w})" for n, w in list(zip(names, why))[:3])
    if not skip:
        raise UserError(
            f"{int(bad.sum()):,} of {int(image_ok.sum()):,} image(s) have no readable lesion mask (first: {first}); "
            "add the masks or pass --skip-missing-masks to leave those images out"
        )
    print(
        f"ssl-derm: skipped {int(bad.sum()):,} of {int(image_ok.sum()):,} image(s) without a readable lesion mask "
        f"(first: {first})",
        file=sys.stderr,
    )
    return ~bad


def write_splits_with_masks(table: pd.DataFrame, out_dir: Path) -> Path:
    """``splits.csv`` with the ``mask`` column too (a later ``--splits`` run finds the same masks)."""
    path = Path(out_dir) / "splits.csv"
    cols = ["image", "label", "group", "split"] + (["mask"] if "mask" in table else [])
    table[cols].to_csv(path, index=False)
    return path
