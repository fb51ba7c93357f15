"""``ssl-derm export``: a classifier or encoder others can run without ssl-derm."""

from __future__ import annotations

import argparse

from ssl_derm.cli.flags import implemented_by


def add(sub) -> None:
    p = sub.add_parser(
        "export",
        help="a classifier or encoder others can run without ssl-derm",
        description="Export a model.ckpt (classifier: normalised image in, logits out) or an ssl.ckpt "
        "(encoder: pooled features out). torchscript and onnx take a float [B, 3, S, S] batch already "
        "normalised with the checkpoint's mean/std (written beside the file as FILE.json); safetensors "
        "holds the weights under the plain timm / torchvision names of the architecture; init writes an "
        "encoder file that --init takes (the encoder and its record of the images it saw, no heads, no "
        "optimiser state: the checkpoint to share).",
        epilog="examples:\n  ssl-derm export --checkpoint runs/ft/model.ckpt --format onnx --out model.onnx\n"
        "  ssl-derm export --checkpoint runs/cr/ssl.ckpt --format safetensors --out encoder.safetensors\n"
        "  ssl-derm export --checkpoint runs/cr/ssl.ckpt --format init --half --out cr.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="model.ckpt or ssl.ckpt")
    p.add_argument(
        "--format",
        dest="fmt",
        metavar="FORMAT",
        required=True,
        choices=["torchscript", "onnx", "safetensors", "init"],
        help="torchscript, onnx, safetensors (run elsewhere) or init (an encoder file for --init)",
    )
    p.add_argument("--half", action="store_true", help="init: store the weights in fp16 (half the size)")
    p.add_argument("--out", required=True, help="file to write (its folder is created)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(run=run)


run = implemented_by("ssl_derm.commands.export", "run_export")
