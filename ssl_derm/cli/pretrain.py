"""``ssl-derm pretrain``: self-supervised pretraining of an encoder."""

from __future__ import annotations

import argparse

from ssl_derm.cli.flags import default, engine_flags, settings
from ssl_derm.config import PretrainConfig
from ssl_derm.pretext.registry import task_names, task_summaries  # reads the source: no torch import


def add(sub) -> None:
    tasks = "\n".join(f"  {name:16s}{line}" for name, line in task_summaries().items())
    p = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining of an encoder",
        description="Train an encoder with a pretext task on the training split of --data "
        "plus every --unlabeled archive. Writes OUT/ssl.ckpt, config.yaml, TensorBoard logs.",
        epilog=f"tasks:\n{tasks}\n\na task's own settings: --set <task>.<key>=value, or a YAML section <task>:\n"
        "  e.g. --set context_restore.swaps=10, --set simclr.temperature=0.2,\n"
        "       --task multitask --set multitask.parts=context_restore,rotation --set multitask.weights=1,0.5\n"
        "  (configs/pretrain/default.yaml lists every setting)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--task", choices=task_names(), help=f"pretext task (default {default(PretrainConfig, 'task')}; see below)"
    )
    p.add_argument(
        "--init",
        help=f"{default(PretrainConfig, 'init')} (default), imagenet, or an ssl-derm checkpoint to continue from",
    )
    p.add_argument(
        "--unlabeled",
        action="append",
        metavar="PATH",
        help="extra unlabelled images: folder, .zip, .tar[.gz], glob or .txt list; repeatable. Files that "
        "copy a validation/test image of --data (by content) are dropped and listed in OUT/duplicates.txt",
    )
    p.add_argument(
        "--splits",
        help="a splits.csv (e.g. from ssl-derm data split): the pool takes its train rows; "
        "fine-tune later with the same file so no validation/test image was pretrained on",
    )
    engine_flags(
        p,
        "pretrain",
        "labelled source whose training split joins the pool (default: the bundled sample; with "
        "--unlabeled and no --data, the archives alone: no labelled images, no kNN monitor)",
        PretrainConfig,
    )
    p.set_defaults(run=run)


def run(args) -> int:
    from ssl_derm.pretext.train import run_pretrain

    run_pretrain(settings(args, PretrainConfig), overwrite=args.overwrite, resume=args.resume)
    return 0
