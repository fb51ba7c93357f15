"""``ssl-derm explain``: Grad-CAM heat maps of a fine-tuned model."""

from __future__ import annotations

import argparse

from ssl_derm.cli.flags import implemented_by, output_flags
from ssl_derm.cli.predict import SOURCE_HELP


def add(sub) -> None:
    p = sub.add_parser(
        "explain",
        help="Grad-CAM heat maps: where the fine-tuned model looks",
        description="Class activation maps (pytorch-grad-cam) on the encoder's last stage for --n images of "
        "--data: OUT/images/*.png (image, overlay, labels), OUT/grid_<class>.png, OUT/explain.csv and a "
        "TensorBoard image summary. With labels, the worst mistakes come first; with lesion masks "
        "(HAM10000's masks/ folder), the share of the map inside the lesion is reported.",
        epilog="example:\n  ssl-derm explain --checkpoint runs/ft/model.ckpt --data ../shared/data/ham10000 "
        "--split test --n 32 --out runs/explain",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="model.ckpt written by finetune")
    p.add_argument("--data", action="append", metavar="SOURCE", help=SOURCE_HELP)
    p.add_argument("--n", type=int, default=16, help="images to explain (default 16; 0 = all)")
    p.add_argument(
        "--target",
        default="predicted",
        help="the class each map explains: predicted (default), true (needs labels) or a class name",
    )
    p.add_argument(
        "--method",
        choices=["gradcam", "gradcam++", "eigencam", "scorecam"],
        default="gradcam",
        help="CAM method (default gradcam)",
    )
    p.add_argument(
        "--split",
        choices=["all", "train", "val", "test"],
        default="all",
        help="for a labelled --data: only this split of the model's training run (default all)",
    )
    p.add_argument("--masks", help="folder of lesion masks <image_id>_segmentation.png (default: SOURCE/masks)")
    output_flags(p, "explain")
    p.set_defaults(run=run)


run = implemented_by("ssl_derm.commands.explain", "run_explain")
