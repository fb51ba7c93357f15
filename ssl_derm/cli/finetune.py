"""``ssl-derm finetune``: a focal-loss classifier (or a lesion-segmentation U-Net) on an encoder."""

from __future__ import annotations

import argparse

from ssl_derm.cli.flags import default, engine_flags, finetune_flags, settings
from ssl_derm.config import FinetuneConfig


def add(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="train a focal-loss classifier (or a lesion-segmentation U-Net) on a (pretrained) encoder",
        description="Attach pooling + dropout + linear head to the encoder from --init and fine-tune\n"
        "with focal loss; or, with --target segmentation, a U-Net trained on lesion masks.\n"
        "Writes OUT/model.ckpt, metrics.json (test split), splits.csv.",
        epilog="examples:\n  ssl-derm finetune --init runs/cr/ssl.ckpt --data ../shared/data/ham10000 --out runs/ft\n"
        "  ssl-derm finetune --target segmentation --init runs/cr/ssl.ckpt --data ../shared/data/ham10000 "
        "--out runs/seg\n  ssl-derm finetune --target segmentation --init runs/cr/ssl.ckpt --no-init-decoder "
        "--out runs/seg-enc",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--init", help=f"{default(FinetuneConfig, 'init')} (default), random, or PATH/ssl.ckpt")
    engine_flags(p, "finetune", "labelled source (default: bundled sample)", FinetuneConfig)
    finetune_flags(p, FinetuneConfig)
    p.set_defaults(run=run)


def run(args) -> int:
    from ssl_derm.finetune.train import run_finetune

    run_finetune(settings(args, FinetuneConfig), overwrite=args.overwrite, resume=args.resume)
    return 0
