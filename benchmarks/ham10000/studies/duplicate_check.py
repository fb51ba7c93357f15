#!/usr/bin/env python
"""How well the content check tells copies from distinct images, on real data.

    .venv/bin/python benchmarks/ham10000/studies/duplicate_check.py --data ../shared/data/ham10000 \\
        --unlabeled ../shared/data/isic_unlabeled.zip --out benchmarks/ham10000/duplicate_check.json

Reports, with the fingerprints the toolkit uses (``ssl_derm/data/identity.py``):

- false positives: pairs of images of *distinct* lesions that the check would
  call copies, and the closest such pair's similarity (the margin below the
  threshold);
- true positives: every image of a random sample re-saved as an archive
  would hold it (resized to 180x180 or 300x225, JPEG quality 60-90): how many
  are found, and the lowest similarity among them;
- the archive: which of its files copy a labelled image, and the next closest.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from ssl_derm.data import FileList, decode_source, load_labeled, open_unlabeled
from ssl_derm.data.identity import NEAR_THRESHOLD, _unit, find_copies, thumbnail


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--unlabeled")
    p.add_argument("--size", type=int, default=96, help="decode size (the cache is shared with training)")
    p.add_argument("--copies", type=int, default=500, help="images re-saved to measure the detection rate")
    p.add_argument("--out")
    args = p.parse_args()
    table = load_labeled(args.data)
    ids = decode_source(FileList(args.data, list(table["image"])), args.size).ids()
    groups = table["group"].to_numpy()
    unit = _unit(ids.thumbs)
    worst, over, pairs = -1.0, 0, None
    for start in range(0, len(ids), 1024):
        sim = unit[start : start + 1024] @ unit.T
        same = groups[start : start + 1024, None] == groups[None, :]
        sim[same] = -1  # same lesion (the image itself included): not a false positive
        upper = np.arange(start, start + len(sim))[:, None] < np.arange(len(ids))[None, :]
        over += int(((sim >= NEAR_THRESHOLD) & upper).sum())
        i, j = np.unravel_index(sim.argmax(), sim.shape)
        if sim[i, j] > worst:
            worst, pairs = float(sim[i, j]), (ids.names[start + i], ids.names[j])
    exact = len(ids.sha1) - len(set(ids.sha1))
    report = {
        "threshold": NEAR_THRESHOLD,
        "images": len(ids),
        "distinct_lesion_pairs": int((len(ids) ** 2 - sum(np.unique(groups, return_counts=True)[1] ** 2)) // 2),
        "distinct_lesion_pairs_over_threshold": over,
        "closest_distinct_lesion_pair": {"similarity": round(worst, 4), "images": [Path(n).name for n in pairs]},
        "identical_files_within_the_source": exact,
    }
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(ids))[: args.copies]
    thumbs, lowest = [], 1.0
    for k, i in enumerate(pick):
        im = Image.open(table["image"][i]).convert("RGB")
        size = (180, 180) if k % 2 else (300, 225)
        buf = io.BytesIO()
        im.resize(size, Image.BILINEAR).save(buf, "JPEG", quality=int(60 + 30 * (k % 4) / 3))
        thumbs.append(thumbnail(Image.open(io.BytesIO(buf.getvalue()))))
    query = type(ids)([f"copy{k}" for k in range(len(pick))], [""] * len(pick), np.stack(thumbs))
    found = {i: (j, s) for i, j, s in find_copies(query, ids)}
    hits = [k for k in range(len(pick)) if k in found and found[k][0] == pick[k]]
    sims = (_unit(query.thumbs) * unit[pick]).sum(1)
    lowest = float(sims.min())
    report["resaved_copies"] = {"tried": len(pick), "found": len(hits), "lowest_similarity": round(lowest, 4)}
    if args.unlabeled:
        source = open_unlabeled(args.unlabeled)
        archive = decode_source(source, args.size).ids()
        copies = find_copies(archive, ids)
        sim = _unit(archive.thumbs) @ unit.T
        best = np.sort(sim.max(1))[::-1]
        report["archive"] = {
            "files": len(archive),
            "copies": [
                {"file": archive.names[i], "copies": Path(ids.names[j]).name, "similarity": round(s, 4)}
                for i, j, s in copies
            ],
            "closest_non_copy_similarity": round(float(best[len(copies)]), 4) if len(best) > len(copies) else None,
        }
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
