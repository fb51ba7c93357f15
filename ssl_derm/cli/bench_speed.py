"""``ssl-derm bench-speed``: images/s of every stage against a plain PyTorch loop."""

from __future__ import annotations

import argparse

from ssl_derm.cli.flags import implemented_by


def add(sub) -> None:
    p = sub.add_parser(
        "bench-speed",
        help="images/s of every stage against a plain PyTorch loop",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the command line below on its lines
        epilog="the GPU profile's sizes:\n"
        "  ssl-derm bench-speed --image-size 224 --batch-size 256 --finetune-batch-size 64 \\\n"
        "    --precision bf16-mixed --steps 30 --no-archive-probe",
    )
    p.add_argument("--out", help="output folder (default: runs/bench-speed-<timestamp>)")
    p.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    p.add_argument("--data", help="labelled source (default: bundled sample)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.add_argument("--image-size", type=int, help="px, multiple of 32 (default 128; --quick 64)")
    p.add_argument("--batch-size", type=int, help="pretraining batch (default 32; --quick 16)")
    p.add_argument("--finetune-batch-size", type=int, help="fine-tuning and loader batch (default: --batch-size)")
    p.add_argument("--steps", type=int, help="timed steps per stage, after the warm-up (default 10; --quick 3)")
    p.add_argument(
        "--precision",
        default="32-true",
        choices=["32-true", "bf16-mixed", "16-mixed"],
        help="32-true (default), bf16-mixed, 16-mixed (GPU); the plain loop autocasts (and scales) alike",
    )
    p.add_argument(
        "--augmentation",
        default="kornia",
        choices=["kornia", "fused"],
        help="the augmentation recipes every training stage uses: kornia (default) or fused",
    )
    p.add_argument(
        "--no-archive-probe",
        dest="archive",
        action="store_false",
        help="skip the archive-streaming memory probe",
    )
    p.add_argument(
        "--sync-report",
        action="store_true",
        help="GPU: instead of timing, count the calls that make the host wait for the GPU per training step, by line",
    )
    p.set_defaults(run=run)


run = implemented_by("ssl_derm.commands.bench_speed", "run_bench_speed")
