"""Paired comparisons from the runs' per-image test scores: each init against the baselines,
each init's own interval, TTA against plain, and where the models look (Grad-CAM in the
lesion); the bootstrap is ``ssl_derm.stats``'."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_derm.errors import UserError
from ssl_derm.finetune.benchmark.regenerate import CAM_FILE
from ssl_derm.finetune.targets import TARGETS, Target
from ssl_derm.finetune.targets.classification import PREDICTIONS, PREDICTIONS_TTA
from ssl_derm.stats import balanced_accuracy_draws, bootstrap_interval, paired_bootstrap

BASELINES = ("imagenet", "random")  # every other init is compared with each of these, paired


def per_image_scores(
    run: Path, target: Target, predictions: str = PREDICTIONS
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """``(images, scores, labels)`` of a run's test split, sorted by image, as its target keeps
    them (``Target.per_image_scores``; for a classifier ``predictions`` names the file:
    ``test_predictions.csv``, the TTA file, or the Grad-CAM file). None when the run did not
    keep them."""
    if predictions == CAM_FILE:  # Grad-CAM mass inside the lesion; NaN where there is no mask
        path = run / predictions
        if not path.is_file():
            return None
        table = pd.read_csv(path).sort_values("image", kind="stable")
        return table["image"].to_numpy(), cam_scores(table), None
    return target.per_image_scores(run, predictions)


def lesions_of(run: Path, images: np.ndarray) -> np.ndarray | None:
    """The lesion (the split's ``group``) of each of ``images`` (paths, or file names as in a
    segmentation run's per-image Dice), from the run's ``splits.csv``; None where the run did
    not keep it, so the bootstrap draws images (and says so)."""
    path = run / "splits.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "group" not in table.columns:
        return None
    group = dict(zip(table["image"], table["group"]))
    group.update(zip(table["image"].map(lambda p: Path(p).name), table["group"]))
    found = [group.get(str(image), "") for image in images]
    if not all(found):
        print(f"{run}: test images missing from its splits.csv; intervals drawn over images", file=sys.stderr)
        return None
    return np.array(found)


def aligned_scores(pairs: list[tuple[tuple[Path, str], tuple[Path, str]]], target: Target, what: str) -> tuple:
    """Per-image scores of each ``((run, predictions file), (run, predictions file))`` pair,
    as two lists of rows over the same test images, their class labels and their lesions
    (``lesions_of``). Pairs where a side kept no scores are left out; test images that differ
    are an error naming ``what``."""
    a, b, labels, images, lesions = [], [], None, None, None
    for (run_a, file_a), (run_b, file_b) in pairs:
        x = per_image_scores(run_a, target, file_a)
        y = x if (run_b, file_b) == (run_a, file_a) else per_image_scores(run_b, target, file_b)
        if x is None or y is None:
            continue
        if images is None:
            images, labels, lesions = x[0], x[2], lesions_of(run_a, x[0])
        if not (np.array_equal(x[0], images) and np.array_equal(y[0], images)):
            raise UserError(f"{what} were tested on different images")
        a.append(x[1])
        b.append(y[1])
    return a, b, labels, lesions


def runs_by_group(rows: list[dict], file: str | None = None) -> dict[tuple, dict[int, Path]]:
    """The finished runs of ``rows`` by (init, label fraction, fold), then by seed; with
    ``file``, only the runs that kept it."""
    runs: dict[tuple, dict[int, Path]] = {}
    for r in rows:
        if "_run" in r and (file is None or (Path(r["_run"]) / file).is_file()):
            runs.setdefault((r["init"], r["label_fraction"], r["fold"]), {})[r["seed"]] = Path(r["_run"])
    return runs


def against_baselines(runs: dict[tuple, dict[int, Path]], group: tuple, bases, file: str, target: Target):
    """``(baseline, a, b, labels, lesions)`` for each of ``bases`` that ran the label fraction
    and fold of ``group`` (init, fraction, fold): the per-image scores in ``file`` of the seeds
    both kept, stacked ``[S, N]`` (``aligned_scores``)."""
    init, frac, fold = group
    mine = runs[group]
    for base in bases:
        theirs = runs.get((base, frac, fold))
        if base == init or theirs is None:
            continue
        pairs = [((mine[s], file), (theirs[s], file)) for s in sorted(set(mine) & set(theirs))]
        a, b, labels, lesions = aligned_scores(pairs, target, f"the runs of {init} and {base}")
        if a:
            yield base, np.stack(a), np.stack(b), labels, lesions


def paired_comparisons(rows: list[dict], target: Target) -> pd.DataFrame:
    """Each init against each baseline of ``BASELINES`` in the benchmark (and ``X+decoder``
    against ``X``, its encoder alone), per label fraction and fold: the mean difference of the
    test score (balanced accuracy; Dice for segmentation) over the seeds both ran, with a 95%
    bootstrap interval over test lesions (all images of a lesion drawn together) and seeds
    (``stats.paired_bootstrap``). A run that kept no per-image scores is left out."""
    runs = runs_by_group(rows)
    out = []
    for init, frac, fold in runs:
        # a restored decoder is also judged against the same encoder alone
        decoder_of = [init.removesuffix("+decoder")] if init.endswith("+decoder") else []
        for base, a, b, labels, lesions in against_baselines(
            runs, (init, frac, fold), (*BASELINES, *decoder_of), PREDICTIONS, target
        ):
            result = paired_bootstrap(a, b, labels, groups=lesions)
            out.append({"init": init, "baseline": base, "label_fraction": frac, "fold": fold, **result})
    columns = ["init", "baseline", "label_fraction", "fold", "diff", "lo", "hi", "seeds", "images", "lesions"]
    return pd.DataFrame(out, columns=[*columns, "verdict"])


def score_intervals(rows: list[dict], target: Target) -> pd.DataFrame:
    """Each init's test score (balanced accuracy; Dice for segmentation) per label fraction,
    the mean over its seeds with a 95% bootstrap interval over test lesions and seeds
    (``stats.bootstrap_interval``), from the runs that kept per-image scores; one split
    only (with folds the test images differ between runs: empty)."""
    columns = ["init", "label_fraction", "mean", "lo", "hi", "seeds", "images"]
    if any(r["fold"] for r in rows):
        return pd.DataFrame(columns=columns)
    out = []
    for (init, frac, _), seeds in runs_by_group(rows).items():
        runs = list(seeds.values())
        file = PREDICTIONS  # (segmentation reads metrics.json's per-image Dice)
        a, _, labels, lesions = aligned_scores(
            [((run, file), (run, file)) for run in runs], target, f"the runs of {init}"
        )
        if len(a) < len(runs):  # a run that kept no per-image scores: no interval rather than a partial one
            continue
        a = np.stack(a)
        out.append(
            {
                "init": init,
                "label_fraction": frac,
                **bootstrap_interval(a, labels, groups=lesions),
                "seeds": len(a),
                "images": a.shape[1],
            }
        )
    return pd.DataFrame(out, columns=columns)


def tta_comparisons(rows: list[dict]) -> pd.DataFrame:
    """What test-time augmentation adds to each init's test balanced accuracy, per label
    fraction and fold: the runs that kept both prediction files, TTA against plain on the
    same model, paired over test lesions and seeds like ``paired_comparisons``."""
    target = TARGETS["classification"]
    out = []
    for (init, frac, fold), runs in runs_by_group(rows).items():
        pairs = [((run, PREDICTIONS_TTA), (run, PREDICTIONS)) for run in runs.values()]
        tta, plain, labels, lesions = aligned_scores(pairs, target, f"the runs of {init} at label fraction {frac:g}")
        if not plain:
            continue
        ones = np.ones((1, len(labels)))
        means = [float(np.mean([balanced_accuracy_draws(labels, h, ones)[0] for h in v])) for v in (plain, tta)]
        result = paired_bootstrap(np.stack(tta), np.stack(plain), labels, groups=lesions)
        out.append({"init": init, "label_fraction": frac, "fold": fold, "plain": means[0], "tta": means[1], **result})
    columns = ["init", "label_fraction", "fold", "plain", "tta", "diff", "lo", "hi", "seeds", "images", "lesions"]
    columns += ["verdict"]
    return pd.DataFrame(out, columns=columns)


def cam_scores(table: pd.DataFrame) -> np.ndarray:
    """Per image of a ``test_cam_in_lesion.csv``: the Grad-CAM mass inside the lesion, a map
    that is all zero (it points nowhere) scored as a uniform one, at the lesion's area share;
    NaN for an image without a mask."""
    return table["cam_in_lesion"].fillna(table["lesion_area"]).to_numpy(float)


def seed_std(values) -> float:
    """The sample std over seeds (as ``results.md``'s ± std), 0 for one seed."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def cam_comparisons(rows: list[dict]) -> pd.DataFrame:
    """Where each init's fine-tuned models look, per label fraction and fold, from the runs
    that kept ``test_cam_in_lesion.csv``: the mean share of the Grad-CAM mass inside the
    lesion (mean ± std over seeds), the lesion's area share (chance) and the centre map's
    score; and each init against each baseline of ``BASELINES``, paired over the test
    images with a mask and the seeds both kept (``stats.paired_bootstrap`` of the means)."""
    target = TARGETS["classification"]
    runs = runs_by_group(rows, CAM_FILE)
    out = []
    for (init, frac, fold), mine in runs.items():
        tables = [pd.read_csv(run / CAM_FILE) for run in mine.values()]
        masked = tables[0]["lesion_area"].notna()  # the test images with a mask: the same for every run
        if not masked.any():
            continue
        per_seed = [float(cam_scores(t)[t["lesion_area"].notna()].mean()) for t in tables]
        row = {
            "init": init,
            "label_fraction": frac,
            "fold": fold,
            "seeds": len(tables),
            "images": int(masked.sum()),
            "cam_in_lesion": float(np.mean(per_seed)),
            "cam_std": seed_std(per_seed),
            "lesion_area": float(tables[0]["lesion_area"][masked].mean()),
            "centre_in_lesion": float(tables[0]["centre_in_lesion"][masked].mean()),
        }
        for base, a, b, _, lesions in against_baselines(runs, (init, frac, fold), BASELINES, CAM_FILE, target):
            keep = np.isfinite(a).all(0) & np.isfinite(b).all(0)  # the images with a mask
            if keep.any():
                result = paired_bootstrap(a[:, keep], b[:, keep], groups=None if lesions is None else lesions[keep])
                row.update({f"vs_{base}": result["diff"], f"vs_{base}_lo": result["lo"], f"vs_{base}_hi": result["hi"]})
        out.append(row)
    columns = ["init", "label_fraction", "fold", "seeds", "images", "cam_in_lesion", "cam_std", "lesion_area"]
    columns += ["centre_in_lesion"]
    columns += [f"vs_{b}{end}" for b in BASELINES for end in ("", "_lo", "_hi")]
    return pd.DataFrame(out, columns=columns)
