"""``ssl-derm evaluate``: metrics and predictions of a fine-tuned model on a labelled source."""

from __future__ import annotations

from ssl_derm.cli.flags import implemented_by, output_flags, tta_flag


def add(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="metrics and predictions of a fine-tuned model on a source",
        description="Score a model.ckpt on a labelled source. A classifier: OUT/metrics.json and "
        "predictions.csv (probabilities per class). A segmenter (finetune --target segmentation): "
        "OUT/metrics.json (Dice, Jaccard, Jaccard thresholded at 0.65, pixel accuracy; mean and per "
        "image), predictions.csv and the predicted masks as OUT/masks/<image>.png (0/255, working size).",
    )
    p.add_argument("--checkpoint", required=True, help="model.ckpt written by finetune")
    p.add_argument(
        "--data",
        help="labelled source (default: bundled sample); one that holds none of the model's train/val/test "
        "images is an external set, scored whole",
    )
    p.add_argument(
        "--split",
        choices=["all", "train", "val", "test"],
        default="test",
        help="images to score: test (default), val or train of the split the model was trained with "
        "(recorded in model.ckpt), or all images of --data. Images the model or its pretraining "
        "saw are refused for every split but train",
    )
    p.add_argument("--splits", help="take train/val/test from this splits.csv instead")
    tta_flag(p)
    p.add_argument(
        "--skip-missing-masks",
        dest="skip_missing_masks",
        action="store_true",
        help="a segmenter: leave out (and count) images whose mask is missing or unreadable",
    )
    output_flags(p, "evaluate")
    p.set_defaults(run=run)


run = implemented_by("ssl_derm.finetune.evaluate", "run_evaluate")
