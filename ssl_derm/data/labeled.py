"""A labelled source, split and decoded, ready for training and evaluation."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_derm.data.archives import FileList
from ssl_derm.data.cache import decode_source
from ssl_derm.data.dataset import ImageBank
from ssl_derm.data.sources import load_labeled
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
) -> LabeledData:
    """Load, split (or read ``splits``), and decode a labelled source."""
    table = read_splits(splits) if splits else make_splits(load_labeled(data), fractions, seed)
    decoded = decode_source(
        FileList(str(data or "sample"), list(table["image"])), image_size, cache_dir, progress, resize=resize
    )
    if decoded.skipped:
        names = ", ".join(Path(n).name for n, _ in decoded.skipped[:3])
        warnings.warn(
            f"{len(decoded.skipped)} labelled image(s) could not be decoded and are left out: {names}", stacklevel=2
        )
    bank = ImageBank([decoded])
    table = table[decoded.ok].copy()
    table["row"] = np.arange(len(table))
    found = sorted(table["label"].unique())
    if classes is None:
        classes = found
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise UserError(f"label(s) {unknown[:5]} are not among the model's classes {classes}")
    return LabeledData(table.reset_index(drop=True), bank, list(classes))


def labeled_from_config(cfg, image_size: int | None = None) -> LabeledData:
    """``prepare_labeled`` with the data, split, cache and progress settings of an EngineConfig."""
    return prepare_labeled(
        cfg.data,
        image_size or cfg.image_size,
        fractions=cfg.split_fractions,
        seed=cfg.seed,
        splits=getattr(cfg, "splits", None),
        cache_dir=cfg.cache_dir,
        progress=cfg.progress,
        resize=cfg.resize,
    )
