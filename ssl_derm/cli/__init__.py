"""``ssl-derm``: the command line. Each command is one module of this package that owns its
flags (``add``) and its run function (``run``); flag groups several commands share are declared
once in ``flags``. Building the parser imports no torch, so ``--help`` is fast.  Exit codes:
0 success, 2 bad input or usage (one line on stderr, no traceback), 1 unexpected failure.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from ssl_derm import __version__
from ssl_derm.allocator import keep_freed_memory
from ssl_derm.cli import bench_speed, benchmark, data, embed, evaluate, explain, export, finetune, predict, pretrain
from ssl_derm.errors import UserError

EPILOG = """\
typical session (defaults use the bundled 316-image HAM10000 sample):
  ssl-derm data inspect ../shared/data/ham10000
  ssl-derm pretrain --task context_restore --out runs/cr
  ssl-derm finetune --init runs/cr/ssl.ckpt --out runs/ft
  ssl-derm finetune --target segmentation --init runs/cr/ssl.ckpt --out runs/seg
  ssl-derm evaluate --checkpoint runs/ft/model.ckpt --out runs/ev
  ssl-derm benchmark --inits random,imagenet,runs/cr/ssl.ckpt --out runs/bench
  ssl-derm predict --checkpoint runs/ft/model.ckpt --data new_images.zip --out runs/pred
  ssl-derm explain --checkpoint runs/ft/model.ckpt --out runs/explain
  ssl-derm embed --checkpoint runs/cr/ssl.ckpt --out runs/embed
  ssl-derm export --checkpoint runs/ft/model.ckpt --format onnx --out runs/model.onnx
  tensorboard --logdir runs

settings: YAML defaults (--config FILE), then flags, then --set key=value.
exit codes: 0 ok, 2 bad input (one line on stderr), 1 unexpected failure.
"""


# the commands whose steps free and allocate the same large tensors over and over
# (ssl_derm.allocator); the others run once through their data and keep no peak
TRAINING = ("pretrain", "finetune", "benchmark", "bench-speed")

# in the order ``ssl-derm --help`` lists them
COMMANDS = (data, pretrain, finetune, evaluate, benchmark, predict, explain, embed, export, bench_speed)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ssl-derm",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Self-supervised pretraining and fine-tuning for dermoscopy images.",
    )
    p.add_argument("--version", action="version", version=f"ssl-derm {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in TRAINING:  # before the first tensor: each step reuses the last one's freed memory
        keep_freed_memory()
    warnings.filterwarnings("ignore", category=UserWarning, module="pytorch_lightning")
    from ssl_derm.engine import RunFailed

    try:
        if getattr(args, "run", None) is None:
            build_parser().print_help()
            return 2
        return args.run(args)
    except UserError as e:
        print(f"ssl-derm: error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"ssl-derm: run stopped: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ssl-derm: interrupted; continue with the same command and --resume", file=sys.stderr)
        return 130
