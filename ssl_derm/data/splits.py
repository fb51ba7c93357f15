"""Group-aware stratified splits, label fractions and class weights.

Whole groups (lesions) are dealt to splits class by class, so no group ever
appears in two splits and every split keeps the class mix.  Deterministic for
a given seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ssl_derm.data.sources import SPLITS
from ssl_derm.errors import UserError


def _group_class(table: pd.DataFrame) -> pd.DataFrame:
    """One row per group: its size and its most frequent label (for stratifying)."""
    g = table.groupby("group", sort=True)["label"]
    return pd.DataFrame({"size": g.size(), "label": g.agg(lambda s: s.mode().iloc[0])})


def _deal(groups: pd.DataFrame, fractions: list[float], rng: np.random.Generator) -> dict[str, int]:
    """Assign each group a bucket index so buckets hit ``fractions`` per class."""
    out: dict[str, int] = {}
    bounds = np.cumsum(fractions)
    for _, cls in groups.groupby("label", sort=True):
        names = cls.index.to_numpy()
        names = names[rng.permutation(len(names))]
        sizes = cls.loc[names, "size"].to_numpy()
        total = sizes.sum()
        # Place each group where the middle of its image range falls.
        mids = (np.cumsum(sizes) - sizes / 2) / total
        buckets = np.searchsorted(bounds, mids, side="right").clip(0, len(fractions) - 1)
        # Small classes: make sure every non-empty bucket gets at least one group.
        for b, frac in enumerate(fractions):
            if frac > 0 and not (buckets == b).any() and len(names) > len(fractions) - 1:
                donor = np.bincount(buckets, minlength=len(fractions)).argmax()
                buckets[np.flatnonzero(buckets == donor)[-1]] = b
        out.update(zip(names, buckets.tolist()))
    return out


def make_splits(table: pd.DataFrame, fractions=(0.7, 0.15, 0.15), seed: int = 0) -> pd.DataFrame:
    """Return ``table`` with a ``split`` column; an existing one wins."""
    if "split" in table and (table["split"] != "").all():
        out = table.copy()
    else:
        rng = np.random.default_rng(seed)
        assign = _deal(_group_class(table), list(fractions), rng)
        out = table.copy()
        out["split"] = [SPLITS[assign[g]] for g in table["group"]]
    check_disjoint(out)
    return out


def make_folds(table: pd.DataFrame, k: int, seed: int = 0) -> list[pd.DataFrame]:
    """Lesion-grouped, stratified K-fold (scikit-learn's StratifiedGroupKFold): fold i
    tests on part i, validates on part i+1 (mod K) and trains on the rest; every image
    is tested exactly once over the K folds."""
    from sklearn.model_selection import StratifiedGroupKFold

    if k < 3:
        raise ValueError(f"folds={k}: need >= 3 (one part to test, one to validate, the rest to train)")
    parts = np.empty(len(table), dtype=int)
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for i, (_, test) in enumerate(cv.split(np.zeros(len(table)), table["label"], table["group"])):
        parts[test] = i
    folds = []
    for i in range(k):
        out = table.copy()
        out["split"] = np.where(parts == i, "test", np.where(parts == (i + 1) % k, "val", "train"))
        check_disjoint(out)
        folds.append(out)
    return folds


def check_disjoint(table: pd.DataFrame) -> None:
    per_group = table.groupby("group")["split"].nunique()
    leaked = per_group[per_group > 1].index.tolist()
    if leaked:
        raise UserError(f"group(s) {leaked[:3]} appear in more than one split; splits must be group-disjoint")


MIN_IMAGES_PER_CLASS = 2  # a label fraction keeps at least this many training images of every class


def label_fraction(table: pd.DataFrame, fraction: float, seed: int = 0) -> pd.DataFrame:
    """A stratified, group-aware ``fraction`` of the training split (val/test untouched).

    Every class keeps at least ``MIN_IMAGES_PER_CLASS`` training images (as many as it has,
    if fewer): where the stratified draw leaves a class short, as at small fractions of a rare
    class, more of its lesions are added, in the same seeded order, until it has them. A class
    that already has them is not touched, so larger fractions draw exactly as before."""
    if fraction >= 1:
        return table
    train = table[table["split"] == "train"]
    groups = _group_class(train)
    keep = _deal(groups, [fraction, 1 - fraction], np.random.default_rng(seed + 7919))
    drop = {g for g, b in keep.items() if b == 1}
    order = np.random.default_rng(seed + 104729).permutation(len(groups))
    for _, cls in groups.iloc[order].groupby("label", sort=True):
        have = int(cls.loc[[g for g in cls.index if g not in drop], "size"].sum())
        for g in cls.index:
            if have >= MIN_IMAGES_PER_CLASS:
                break
            if g in drop:
                drop.discard(g)
                have += int(cls.loc[g, "size"])
    return table[~((table["split"] == "train") & table["group"].isin(drop))].reset_index(drop=True)


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> np.ndarray | None:
    """``none``; ``balanced`` = N / (K * n_c); ``median`` = median(freq) / freq_c."""
    if mode == "none":
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    if (counts == 0).any():
        raise UserError("a class has no training images; class weights are undefined")
    if mode == "balanced":
        return counts.sum() / (num_classes * counts)
    if mode == "median":
        freq = counts / counts.sum()
        return np.median(freq) / freq
    raise UserError(f"class weights {mode!r}: choose none, balanced or median")


def write_splits(table: pd.DataFrame, out_dir: Path) -> Path:
    path = Path(out_dir) / "splits.csv"
    table[["image", "label", "group", "split"]].to_csv(path, index=False)
    return path


def read_splits(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"splits file not found: {path}")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"image", "label", "group", "split"} - set(table.columns)
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    check_disjoint(table)
    return table
