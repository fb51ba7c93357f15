#!/usr/bin/env python
"""Pack the SSL budget study's pretraining pool for a GPU lease, small enough to travel (the
tree sent to the device is capped at 64 MiB; HAM10000's images and the archive alone are 53 MB):
the v2 split's *training* images (tar.gz), that split's training rows (CSV, paths relative to
the tar's folder), and the unlabelled archive less every member that copies a validation or
test image, found by content as ``ssl-derm pretrain`` finds them. The device then needs no
validation or test image: the check that would drop those copies has been made here, and every
later fine-tuning run checks the encoder's seen_images against its validation and test images
again.

    python benchmarks/ham10000/gpu/pack_pool.py --data ../shared/data/ham10000 \\
        --unlabeled ../shared/data/isic_unlabeled.zip --out .gpu_data
"""

from __future__ import annotations

import argparse
import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_derm.data.archives import open_unlabeled
from ssl_derm.data.cache import decode_source
from ssl_derm.data.labeled import prepare_labeled
from ssl_derm.data.leaks import drop_copies, heldout_ids

ROOT = Path(__file__).resolve().parents[3]
SPLIT = ROOT / "benchmarks/ham10000/state/split/splits.csv.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the HAM10000 folder")
    ap.add_argument("--unlabeled", required=True, help="the unlabelled archive (.zip)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table = pd.read_csv(gzip.open(SPLIT, "rt"))
    images = Path(args.data) / "images"
    table["image"] = [str(images / Path(p).name) for p in table["image"]]  # this machine's copy
    split = args.out / "splits_full.csv"
    table.to_csv(split, index=False)
    lab = prepare_labeled(args.data, 96, splits=split, progress=False)
    held = heldout_ids(lab)
    archive = decode_source(open_unlabeled(args.unlabeled), 96, progress=False)
    keep, copies = drop_copies(archive.ids(), held)
    names = set(np.array(archive.names)[keep])
    with zipfile.ZipFile(args.unlabeled) as src, zipfile.ZipFile(args.out / "pool_archive.zip", "w") as dst:
        for member in src.namelist():
            if member in names:
                dst.writestr(member, src.read(member))
    train = table[table["split"] == "train"].copy()
    with tarfile.open(args.out / "train_images.tgz", "w:gz") as tar:
        for path in train["image"]:
            tar.add(path, arcname=f"images/{Path(path).name}")
    train["image"] = [f"images/{Path(p).name}" for p in train["image"]]
    buf = io.StringIO()
    train.to_csv(buf, index=False)
    (args.out / "splits_train.csv").write_text(buf.getvalue())
    split.unlink()
    print(
        f"{len(train):,} training images, archive {len(names):,} of {len(archive.names):,} members "
        f"({len(copies)} copies of validation/test images dropped) -> {args.out}"
    )


if __name__ == "__main__":
    main()
