"""``ssl-derm benchmark``: finetune every init x label fraction x seed on one
lesion-grouped split, then tabulate.  Each finished run leaves a
``metrics.json``; a re-run skips those, so a long benchmark survives
interruption, and ``--report-only`` rewrites every table from the runs on disk.

``target=segmentation`` benchmarks lesion-segmentation U-Nets the same way
(results.csv columns ``init, label_fraction, seed, fold, recipe, val_dice,
dice, jaccard, jaccard_thresholded, pixel_accuracy, run``; the plot shows Dice).
An init with a U-Net decoder may then be given twice: ``PATH:encoder``
transfers its encoder only and is named after it (``context_restore``),
``PATH:decoder`` the decoder too (``context_restore+decoder``); a plain
``PATH`` follows ``init_decoder``.

What a target reports (its columns, titles, per-image scores and inits) its
``Target`` says (``finetune/targets``). One module per job: ``inits`` (naming the
inits on disk), ``runs`` (one run, cached by its key, budget doubling), ``select``
(recipe selection on validation), ``regenerate`` (outputs older runs lack),
``compare`` (paired comparisons and intervals), ``reports`` (the tables and
Markdown) and ``loop`` (the job loop and ``--report-only``).
"""

from ssl_derm.finetune.benchmark.compare import BASELINES
from ssl_derm.finetune.benchmark.loop import report_benchmark, run_benchmark
from ssl_derm.finetune.benchmark.runs import kept_last_epoch

__all__ = ["BASELINES", "kept_last_epoch", "report_benchmark", "run_benchmark"]
