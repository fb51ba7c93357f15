"""Flag groups that several commands share, declared once, and the two ways a command hands
its arguments on: ``settings`` (a training command's config dataclass) and ``call_with`` (a
command's run function, by parameter name). Defaults quoted in help texts are read from the
settings dataclasses, where they live."""

from __future__ import annotations

import argparse
import importlib
import inspect
from dataclasses import fields
from typing import Any

from ssl_derm.config import TARGETS, EngineConfig, FinetuneConfig

CACHE_HELP = "decode cache (default ~/.cache/ssl-derm or $SSL_DERM_CACHE)"


def default(cls: type, name: str) -> Any:
    """The default of setting ``name`` of the dataclass ``cls``, for a help text."""
    value = next(f.default for f in fields(cls) if f.name == name)
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) if isinstance(value, tuple) else value


def output_flags(g, command: str) -> None:
    """--out, --overwrite, --cache-dir and --no-progress (on a parser or a group ``g``): every
    command that writes a folder, decodes images and shows progress takes them, the same way."""
    g.add_argument("--out", help=f"output folder (default: runs/{command}-<timestamp>)")
    g.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    g.add_argument("--cache-dir", dest="cache_dir", help=CACHE_HELP)
    g.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bars")


def tta_flag(p: argparse.ArgumentParser, extra: str = "", default: Any = False) -> None:
    p.add_argument(
        "--tta",
        action="store_true",
        default=default,
        help=f"average over the 8 flips and 90-degree rotations{extra}",
    )


def engine_flags(p: argparse.ArgumentParser, command: str, data_help: str, cls: type = EngineConfig) -> None:
    """The flags of every training command (pretrain, finetune, benchmark)."""
    g = p.add_argument_group("data and run folder")
    g.add_argument("--data", help=data_help)
    output_flags(g, command)
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument("--strict", action="store_true", default=None, help="unreadable images are an error, not skipped")
    g.add_argument(
        "--seed", type=int, help=f"seed for splits, sampling and corruption (default {default(cls, 'seed')})"
    )
    m = p.add_argument_group("model and optimisation")
    m.add_argument("--encoder", help="efficientnet-lite0 (default), resnet18, resnet34, resnet50")
    m.add_argument("--image-size", dest="image_size", type=int, help="working size in px, multiple of 32")
    m.add_argument("--batch-size", dest="batch_size", type=int, help=f"default {default(cls, 'batch_size')}")
    m.add_argument("--epochs", type=int, help=f"default {default(cls, 'epochs')}")
    m.add_argument("--max-steps", dest="max_steps", type=int, help="stop after this many steps (overrides epochs)")
    m.add_argument("--lr", type=float, help=f"learning rate (AdamW, warm-up + cosine; default {default(cls, 'lr')})")
    m.add_argument(
        "--augmentation",
        choices=["kornia", "fused"],
        help="kornia (default): the augmentation recipes as kornia ops; fused: the same recipes as one warp "
        "and one colour map per batch, much less host work per step on a GPU (not yet the default)",
    )
    h = p.add_argument_group("hardware (Lightning)")
    h.add_argument("--accelerator", help=f"{default(cls, 'accelerator')} (default), cpu, gpu")
    h.add_argument("--devices", help=f"{default(cls, 'devices')} (default) or a count; >1 runs DDP")
    h.add_argument("--num-nodes", dest="num_nodes", type=int)
    h.add_argument("--precision", help=f"{default(cls, 'precision')} (default), bf16-mixed, 16-mixed (GPU)")
    h.add_argument(
        "--data-on-device",
        dest="data_on_device",
        choices=["auto", "on", "off"],
        help="keep the decoded images on the GPU and index batches there (default auto: when they fit "
        "in a quarter of its free memory; the size is printed)",
    )
    c = p.add_argument_group("configuration")
    c.add_argument("--config", help="YAML file of settings (see configs/)")
    c.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any setting; repeatable")


def finetune_flags(p: argparse.ArgumentParser, cls: type = FinetuneConfig) -> None:
    """The fine-tuning recipe and the segmentation target (finetune, benchmark)."""
    g = p.add_argument_group("fine-tuning")
    g.add_argument(
        "--focal-gamma",
        dest="focal_gamma",
        type=float,
        help=f"focal loss gamma (default {default(cls, 'focal_gamma')}; 0 = CE)",
    )
    g.add_argument(
        "--class-weights",
        dest="class_weights",
        choices=["auto", "none", "balanced", "median"],
        help="focal alpha per class (default auto: balanced, or none with --balanced-sampler)",
    )
    g.add_argument(
        "--label-fraction",
        dest="label_fraction",
        type=float,
        help="train on this lesion-grouped, stratified fraction of the training split (every class keeps at "
        "least two training images)",
    )
    g.add_argument("--splits", help="a splits.csv to reuse (columns image,label,group,split)")
    g.add_argument(
        "--freeze-epochs",
        dest="freeze_epochs",
        type=int,
        help="epochs with the encoder frozen first (LP-FT); then it trains, BatchNorm statistics included",
    )
    g.add_argument(
        "--freeze-bn",
        dest="freeze_bn",
        action="store_true",
        default=None,
        help="keep the init's BatchNorm running statistics for the whole run (affine weights still train)",
    )
    g.add_argument(
        "--freeze-blocks",
        dest="freeze_blocks",
        type=int,
        help="keep the first N encoder stages frozen the whole run, BatchNorm statistics included "
        "(EfficientNet-Lite0: stem, blocks.0-6; ResNet: stem, layer1-4); for sequential fine-tuning",
    )
    g.add_argument("--mixup", type=float, help="mixup alpha (e.g. 0.2): mix image pairs and their labels; 0 = off")
    g.add_argument("--cutmix", type=float, help="CutMix alpha (e.g. 1.0): paste a box of another image; 0 = off")
    g.add_argument(
        "--ema",
        type=float,
        help="decay of an exponential moving average of the weights (e.g. 0.999), validated and kept; 0 = off",
    )
    g.add_argument(
        "--logit-adjust",
        dest="logit_adjust",
        type=float,
        help="post-hoc logit adjustment tau (e.g. 1.0): logits - tau*log(class prior), for balanced accuracy",
    )
    g.add_argument(
        "--two-stage",
        dest="two_stage",
        action="store_true",
        default=None,
        help=f"two classifiers on one encoder: {default(cls, 'two_stage_class')} (two_stage_class) vs the rest, "
        "then the other diagnoses among the rest, combined into ordinary class probabilities",
    )
    g.add_argument(
        "--balanced-sampler",
        dest="balanced_sampler",
        action="store_true",
        default=None,
        help="draw training images class-balanced (then class weights default to none)",
    )
    g.add_argument(
        "--linear-probe",
        dest="linear_probe",
        action="store_true",
        default=None,
        help="train the head only (encoder frozen throughout)",
    )
    s = p.add_argument_group(
        "lesion segmentation (--target segmentation)",
        "A U-Net whose encoder comes from --init and, from a context-restoration checkpoint,\n"
        "whose decoder too; Dice + BCE on lesion masks (HAM10000: masks/<image_id>_segmentation.png;\n"
        "CSV: a mask column), early-stopped on validation Dice. Focal loss, class weights and dropout\n"
        "do not apply; mixup, cutmix, two-stage, logit adjustment and the balanced sampler are refused.",
    )
    s.add_argument(
        "--target",
        choices=list(TARGETS),
        help=f"what to fine-tune for (default {default(cls, 'target')})",
    )
    s.add_argument(
        "--init-decoder",
        dest="init_decoder",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start the U-Net decoder from the --init checkpoint's restored decoder when it has one "
        "(default on; --no-init-decoder trains it from scratch, to compare)",
    )
    s.add_argument(
        "--skip-missing-masks",
        dest="skip_missing_masks",
        action="store_true",
        default=None,
        help="leave out (and count) images whose mask is missing or unreadable, instead of stopping",
    )


def settings(args: argparse.Namespace, cls: type):
    """The command's settings: ``cls``'s defaults, then ``--config``, then every flag that names a
    field of ``cls`` (the others, such as --overwrite, steer the command), then ``--set``."""
    from ssl_derm.config import build_config, load_yaml, parse_set

    names = {f.name for f in fields(cls)}
    flags = {k: v for k, v in vars(args).items() if v is not None and k in names}
    if "unlabeled" in flags:
        flags["unlabeled"] = tuple(flags["unlabeled"])
    base = load_yaml(args.config) if args.config else {}
    return build_config(cls, base, flags, parse_set(args.set))


def call_with(func, args: argparse.Namespace, **fixed):
    """``func`` called with every one of its parameters that the command line has, by name
    (``fixed`` first): a new flag is its declaration and its parameter, nothing between."""
    given = vars(args)
    kwargs = {}
    for name, param in inspect.signature(func).parameters.items():
        if name in fixed:
            kwargs[name] = fixed[name]
        elif name in given and given[name] is not None:
            kwargs[name] = given[name]
        elif param.default is inspect.Parameter.empty and name in given:
            kwargs[name] = given[name]
    return func(**kwargs)


def implemented_by(module: str, function: str):
    """A command's ``run``: import ``module`` only when the command runs (building the parser
    imports no torch), then call its ``function`` with the command line's arguments
    (``call_with``)."""

    def run(args: argparse.Namespace) -> int:
        call_with(getattr(importlib.import_module(module), function), args)
        return 0

    return run


__all__ = [
    "call_with",
    "default",
    "engine_flags",
    "finetune_flags",
    "implemented_by",
    "output_flags",
    "settings",
    "tta_flag",
]
