"""``ssl-derm embed``: encoder features of every image, a 2-D map of them, probe scores."""

from __future__ import annotations

import argparse

from ssl_derm.cli.flags import implemented_by, output_flags
from ssl_derm.cli.predict import SOURCE_HELP


def add(sub) -> None:
    p = sub.add_parser(
        "embed",
        help="encoder features of every image, a 2-D map of them, kNN / linear-probe scores",
        description="Pooled encoder features of every image of --data (and --unlabeled): OUT/features.npy, "
        "OUT/embeddings.csv (image, source, label, x, y), scatter plots coloured by label and by source, "
        "TensorBoard projector files, and with labels the kNN and linear-probe balanced accuracy.",
        epilog="example:\n  ssl-derm embed --checkpoint runs/cr/ssl.ckpt --data ../shared/data/ham10000 "
        "--unlabeled ../shared/data/isic_unlabeled.zip --method tsne --out runs/embed",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--checkpoint", required=True, help="ssl.ckpt, model.ckpt, imagenet or random (then --encoder, --image-size)"
    )
    p.add_argument("--data", action="append", metavar="SOURCE", help=SOURCE_HELP)
    p.add_argument("--unlabeled", action="append", metavar="SOURCE", help="more sources, shown by source; repeatable")
    p.add_argument(
        "--method", choices=["tsne", "umap", "pca"], default="tsne", help="2-D map (umap: pip install umap-learn)"
    )
    p.add_argument("--encoder", help="for imagenet/random: efficientnet-lite0 (default), resnet18, ...")
    p.add_argument("--image-size", dest="image_size", type=int, help="default: the checkpoint's, else 128")
    p.add_argument("--seed", type=int, default=0, help="seed of t-SNE/UMAP and of the probe's folds")
    output_flags(p, "embed")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=128)
    p.set_defaults(run=run)


run = implemented_by("ssl_derm.commands.embed", "run_embed")
