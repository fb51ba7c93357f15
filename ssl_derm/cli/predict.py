"""``ssl-derm predict``: classify (or segment) new images with a fine-tuned model."""

from __future__ import annotations

import argparse

from ssl_derm.cli.flags import implemented_by, output_flags, tta_flag

SOURCE_HELP = (
    "images: a folder, .zip, .tar[.gz], glob or .txt list, or a labelled source (HAM10000 folder, "
    "CSV, ImageFolder) whose labels are then used where they help; repeatable (default: bundled sample)"
)


def add(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="classify (or segment) new images with a fine-tuned model",
        description="Run a model.ckpt over every image of --data. Writes OUT/predictions.csv (image, source, "
        "predicted label, one probability column per class) and OUT/skipped.txt for unreadable files. "
        "A segmentation model.ckpt (finetune --target segmentation) writes OUT/masks/<image>.png instead "
        "(255 = lesion, at the model's working size) and each image's predicted lesion area.",
        epilog="examples:\n  ssl-derm predict --checkpoint runs/ft/model.ckpt "
        "--data ../shared/data/isic_unlabeled.zip --tta --out runs/pred\n"
        "  ssl-derm predict --checkpoint runs/seg/model.ckpt --data new_images/ --out runs/masks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="model.ckpt written by finetune")
    p.add_argument("--data", action="append", metavar="SOURCE", help=SOURCE_HELP)
    tta_flag(p, " (8x slower)")
    output_flags(p, "predict")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=128)
    p.set_defaults(run=run)


run = implemented_by("ssl_derm.commands.predict", "run_predict")
