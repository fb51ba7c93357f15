"""Augmentation time per batch: the kornia recipes of ssl_derm/data/transforms.py against their
fused versions (ssl_derm/data/fused.py), interleaved in one run so that both see the same
machine. Draw + apply of one batch of HAM10000-sized images (150 x 200, float [0, 1]).

    python benchmarks/performance/fused_augment.py [--device cuda] [--batch 64] [--size 96]
"""

from __future__ import annotations

import argparse
import time

import torch

from ssl_derm.data.fused import fused_train_augment, fused_two_view_augment
from ssl_derm.data.transforms import train_augment, two_view_augment


def _time(aug, x, device, repeats: int) -> float:
    g = torch.Generator().manual_seed(0)
    aug(x, g)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        aug(x, g)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    device = torch.device(args.device)
    x = torch.rand(args.batch, 3, 150, 200, generator=torch.Generator().manual_seed(0)).to(device)
    print(
        f"{args.batch} images 150x200 -> {args.size} px on {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; ms per batch (draw + apply), median of 3 rounds"
    )
    for name, kornia, fused in (
        ("train_augment", train_augment(args.size), fused_train_augment(args.size)),
        ("two_view_augment", two_view_augment(args.size), fused_two_view_augment(args.size)),
    ):
        k, f = [], []
        for _ in range(3):  # interleaved: the two see the same load
            k.append(_time(kornia, x, device, args.repeats))
            f.append(_time(fused, x, device, args.repeats))
        k, f = sorted(k)[1] * 1e3, sorted(f)[1] * 1e3
        print(f"{name:17s} kornia {k:7.1f} ms  fused {f:7.1f} ms  ratio {k / f:5.2f}x")


if __name__ == "__main__":
    main()
