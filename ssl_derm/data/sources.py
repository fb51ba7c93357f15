"""Labelled image sources, detected from the path given to ``--data``.

Every source becomes one table with the columns ``image`` (absolute path),
``label``, ``group`` (lesion or patient; the image itself when unknown) and,
when the source fixes it, ``split``:

- a HAM10000-style folder: ``HAM10000_metadata.csv`` plus images found by
  ``image_id`` anywhere below it (label = ``dx``, group = ``lesion_id``);
- a CSV file with columns ``image``, ``label`` and optional ``group``, ``split``,
  ``mask``;
- an ImageFolder root: one subfolder per class.

Lesion masks (for ``--target segmentation``) become an optional ``mask`` column
(absolute path, ``""`` where an image has none): a HAM10000 folder with a
``masks/`` folder gives ``masks/<image_id>_segmentation.png`` (0 skin, 255
lesion), a CSV its ``mask`` column (relative to the CSV or absolute).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from ssl_derm.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
HAM_METADATA = "HAM10000_metadata.csv"
SPLITS = ("train", "val", "test")
MASK_FOLDER = "masks"
MASK_SUFFIX = "_segmentation.png"


def sample_dir() -> Path:
    """The bundled real HAM10000 sample (316 images) used by the demo and tests."""
    return Path(str(resources.files("ssl_derm") / "sample_data" / "ham10000_sample"))


def sample_unlabeled() -> Path:
    """The bundled 64-image unlabelled ISIC archive."""
    return Path(str(resources.files("ssl_derm") / "sample_data" / "isic_unlabeled_sample.zip"))


def load_labeled(path: str | Path | None) -> pd.DataFrame:
    """Read a labelled source into a table (see module docstring); ``None`` = sample."""
    path = Path(path) if path is not None else sample_dir()
    if not path.exists():
        raise UserError(f"data source not found: {path}")
    if path.is_dir() and (path / HAM_METADATA).is_file():
        table = _ham10000(path)
    elif path.is_file() and path.suffix.lower() == ".csv":
        table = _csv(path)
    elif path.is_dir() and any(p.is_dir() for p in path.iterdir()):
        table = _image_folder(path)
    else:
        raise UserError(
            f"{path}: not a labelled source; expected a folder with {HAM_METADATA}, "
            "a CSV file (columns image,label[,group,split]) or an ImageFolder root"
        )
    if table.empty:
        raise UserError(f"{path}: the source holds no images")
    table["label"] = table["label"].astype(str)
    table["group"] = table["group"].astype(str)
    return table.reset_index(drop=True)


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{path}: cannot read CSV ({str(e).splitlines()[0]})") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(table.columns)}")
    return table


def _check_exists(table: pd.DataFrame, where: Path) -> None:
    missing = [p for p in table["image"] if not Path(p).is_file()]
    if missing:
        first = ", ".join(Path(p).name for p in missing[:3])
        raise UserError(f"{where}: {len(missing)} image(s) named there do not exist (first: {first})")


def _ham10000(root: Path) -> pd.DataFrame:
    meta = _read_csv(root / HAM_METADATA, ("lesion_id", "image_id", "dx"))
    found = {p.stem: p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}
    missing = [i for i in meta["image_id"] if i not in found]
    if missing:
        raise UserError(
            f"{root / HAM_METADATA}: {len(missing)} image_id(s) have no image file below "
            f"{root} (first: {', '.join(missing[:3])})"
        )
    table = pd.DataFrame(
        {
            "image": [str(found[i].resolve()) for i in meta["image_id"]],
            "label": meta["dx"],
            "group": meta["lesion_id"],
        }
    )
    masks = root / MASK_FOLDER
    if masks.is_dir():
        present = {p.name for p in masks.iterdir()}
        table["mask"] = [
            str((masks / f"{i}{MASK_SUFFIX}").resolve()) if f"{i}{MASK_SUFFIX}" in present else ""
            for i in meta["image_id"]
        ]
    return table


def _csv(path: Path) -> pd.DataFrame:
    raw = _read_csv(path, ("image", "label"))
    base = path.resolve().parent
    images = [str((base / p).resolve()) if p else "" for p in raw["image"]]
    table = pd.DataFrame({"image": images, "label": raw["label"]})
    table["group"] = raw["group"] if "group" in raw else [Path(p).stem for p in images]
    if (table["label"] == "").any():
        raise UserError(f"{path}: {(table['label'] == '').sum()} row(s) have an empty label")
    if "split" in raw:
        bad = sorted(set(raw["split"]) - set(SPLITS))
        if bad:
            raise UserError(f"{path}: unknown split value(s) {bad[:3]}; use train, val or test")
        table["split"] = raw["split"]
    if "mask" in raw:  # an empty cell: no mask for that image (an error for segmentation, named there)
        table["mask"] = [str((base / p).resolve()) if p else "" for p in raw["mask"]]
    _check_exists(table, path)
    return table


def _image_folder(root: Path) -> pd.DataFrame:
    rows = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for img in sorted(class_dir.rglob("*")):
            if img.suffix.lower() in IMAGE_SUFFIXES:
                rows.append((str(img.resolve()), class_dir.name, img.stem))
    return pd.DataFrame(rows, columns=["image", "label", "group"])


def is_labeled(path: Path) -> bool:
    """A labelled source: a HAM10000 folder, a CSV file, or an ImageFolder root (subfolders only)."""
    return (
        (path.is_dir() and (path / HAM_METADATA).is_file())
        or path.suffix.lower() == ".csv"
        or (path.is_dir() and any(p.is_dir() for p in path.iterdir()) and not any(p.is_file() for p in path.iterdir()))
    )
