#!/usr/bin/env python
"""Shortcut probe for the rotation task (see ssl_derm/pretext/shortcut_probe.py).

    .venv/bin/python scripts/shortcut_probe.py --data ../shared/data/ham10000 --n 2000 --size 96 \\
        --out docs/benchmarks/ham10000_cpu/shortcut_probe.json

Scores the old inputs (squashed images, vertical flips, black corners) and the
current ones on the same images: a classifier on low-level features should be
far above chance (1/6) on the first and near it on the second.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ssl_derm.data import FileList, ImageBank, decode_source, load_labeled
from ssl_derm.pretext.shortcut_probe import PIPELINES, run_probe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="labelled source (default: bundled sample)")
    p.add_argument("--n", type=int, default=2000, help="images drawn at random (each at all six angles)")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="JSON file for the figures")
    args = p.parse_args()
    table = load_labeled(args.data)
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.permutation(len(table))[: args.n])
    files = FileList(str(args.data or "sample"), [table["image"][i] for i in pick])
    report = {"data": str(args.data or "bundled sample"), "images": len(pick), "size": args.size, "seed": args.seed}
    for pipeline in PIPELINES:
        t0 = time.time()
        decoded = decode_source(files, args.size, resize="squash" if pipeline == "old" else "crop")
        images = ImageBank([decoded]).gather(np.arange(int(decoded.ok.sum())))
        report[pipeline] = run_probe(images, pipeline, args.seed)
        r = report[pipeline]
        print(
            f"{pipeline}: probe accuracy {r['probe']:.3f} (logistic regression {r['logreg']:.3f}, "
            f"trees {r['trees']:.3f}; chance {r['chance']:.3f}; {r['samples']} inputs, {time.time() - t0:.0f} s)"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
