"""``ssl-derm benchmark``: fine-tune every init x label fraction x seed on the same splits."""

from __future__ import annotations

import argparse

from ssl_derm.cli.flags import default, engine_flags, finetune_flags, settings, tta_flag
from ssl_derm.config import BenchmarkConfig
from ssl_derm.errors import UserError


def add(sub) -> None:
    cls = BenchmarkConfig
    p = sub.add_parser(
        "benchmark",
        help="finetune every init x label fraction x seed on the same splits",
        description="Compare initialisations on one lesion-grouped split. Writes results.csv,\n"
        "results.md, label_efficiency.png, confusion matrices (classification). Finished runs are\n"
        "skipped on re-run. --target segmentation compares U-Nets on lesion masks (Dice, Jaccard,\n"
        "thresholded Jaccard, pixel accuracy; label_efficiency.png plots Dice).",
        epilog="segmentation inits: a checkpoint with a U-Net decoder (context restoration) may be named\n"
        "twice: PATH:encoder transfers the encoder only (named e.g. context_restore), PATH:decoder the\n"
        "encoder and the decoder (context_restore+decoder); a plain PATH follows --init-decoder.\n"
        "example:\n  ssl-derm benchmark --target segmentation --data ../shared/data/ham10000 --out runs/segbench \\\n"
        "    --inits random,imagenet,runs/cr/ssl.ckpt:encoder,runs/cr/ssl.ckpt:decoder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--inits",
        help=f"comma list of random, imagenet, checkpoint paths (default {default(cls, 'inits')}); "
        "segmentation: PATH:encoder / PATH:decoder choose the decoder transfer per init",
    )
    p.add_argument("--seeds", type=int, help=f"seeds per init and fraction (default {default(cls, 'seeds')})")
    p.add_argument(
        "--label-fractions",
        dest="label_fractions",
        help=f"comma list in (0,1] (default {default(cls, 'label_fractions')})",
    )
    p.add_argument(
        "--folds",
        type=int,
        help="lesion-grouped stratified K-fold (K >= 3): fold i tests on part i, validates on part i+1; "
        f"mean ± std over folds and seeds (default {default(cls, 'folds')}: one split)",
    )
    p.add_argument(
        "--select-on",
        dest="select_on",
        choices=["none", "val"],
        help="val: per init, fraction and fold, try every --select-grid point on a selection seed of its "
        "own (test never scored), keep the best validation score, and run every reported seed with it",
    )
    p.add_argument(
        "--select-grid",
        dest="select_grid",
        help=f"key=v1,v2;key=v1,v2 over fine-tuning settings (default {default(cls, 'select_grid')})",
    )
    p.add_argument(
        "--select-extend",
        dest="select_extend",
        type=int,
        help="with --select-on val: while the winning encoder_lr is the lowest or highest tried, try one more "
        f"step beyond it (the grid's own ratio), at most N times (default {default(cls, 'select_extend')}: "
        "the grid alone)",
    )
    p.add_argument(
        "--budget-doublings",
        dest="budget_doublings",
        type=int,
        help="a run whose kept (best validation) epoch is the last of its budget runs again from scratch "
        "with twice the epochs, --min-steps and --min-epochs (patience unchanged), at most N times; the "
        f"longer run replaces it in selection and tables (default {default(cls, 'budget_doublings')}: the "
        "budget as set)",
    )
    tta_flag(
        p,
        ", also keeping each run's test predictions with them (test_predictions_tta.csv), and report TTA's "
        "gain per init with a paired interval (classification)",
        default=None,
    )
    p.add_argument(
        "--cam-in-lesion",
        dest="cam_in_lesion",
        action="store_true",
        default=None,
        help="also keep, per test image, the share of each run's Grad-CAM map inside the lesion mask "
        "(test_cam_in_lesion.csv; data with masks/) and compare the inits with paired intervals (classification)",
    )
    p.add_argument(
        "--blind",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score test in every run but print validation scores only and write no table, so that "
        "nothing is chosen on a test figure while a study runs; --report-only writes the tables once it "
        "is complete (default: off)",
    )
    p.add_argument(
        "--report-only",
        dest="report_only",
        action="store_true",
        help="train nothing: rewrite every table of the benchmark in --out from its finished runs "
        "(settings from its config.yaml; no other flag is read)",
    )
    engine_flags(p, "benchmark", "labelled source (default: bundled sample)", cls)
    finetune_flags(p, cls)
    p.set_defaults(run=run)


def run(args) -> int:
    from ssl_derm.finetune.benchmark import report_benchmark, run_benchmark

    if args.report_only:
        if not args.out:
            raise UserError("--report-only: name the benchmark folder with --out")
        report_benchmark(args.out)
        return 0
    run_benchmark(settings(args, BenchmarkConfig), overwrite=args.overwrite, resume=args.resume)
    return 0
