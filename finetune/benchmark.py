"""``ssl-derm benchmark``: finetune every init x label fraction x seed on one
lesion-grouped split, then tabulate.  Each finished run leaves a
``metrics.json``; a re-run skips those, so a long benchmark survives
interruption.

``target=segmentation`` benchmarks lesion-segmentation U-Nets the same way
(results.csv columns ``init, label_fraction, seed, fold, recipe, val_dice,
dice, jaccard, jaccard_thresholded, pixel_accuracy, run``; the plot shows Dice).
An init with a U-Net decoder may then be given twice: ``PATH:encoder``
transfers its encoder only and is named after it (``context_restore``),
``PATH:decoder`` the decoder too (``context_restore+decoder``); a plain
``PATH`` follows ``init_decoder``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_derm.checkpoint import (
    FORMAT_VERSION,
    atomic_write_text,
    init_name,
    init_seen,
    load_checkpoint,
    weights_fingerprint,
)
from ssl_derm.config import BenchmarkConfig, FinetuneConfig, save_yaml, select_grid, to_dict
from ssl_derm.data.labeled import (
    LabeledData,
    attach_masks,
    labeled_from_config,
    prepare_labeled,
    write_splits_with_masks,
)
from ssl_derm.data.leaks import check_split_by_content, check_unseen
from ssl_derm.data.splits import label_fraction, make_folds, write_splits
from ssl_derm.encoders import resolve_encoder_settings
from ssl_derm.engine import RunFailed, default_device, run_dir
from ssl_derm.errors import UserError
from ssl_derm.finetune.metrics import SEGMENTATION_METRICS
from ssl_derm.finetune.report import METRICS, label_efficiency_plot, results_markdown, save_confusion
from ssl_derm.finetune.train import PREDICTIONS, PREDICTIONS_TTA, run_finetune, test_metrics
from ssl_derm.stats import balanced_accuracy_draws, bootstrap_interval, format_interval, paired_bootstrap

COLUMNS = ["init", "label_fraction", "seed", "fold", "recipe", "val_balanced_accuracy", *METRICS]
BASELINES = ("imagenet", "random")  # every other init is compared with each of these, paired


@dataclass(frozen=True)
class Kind:
    """What a benchmark of one target reports."""

    val_key: str  # the validation score in a run's metrics.json
    val_column: str
    metrics: tuple[str, ...]
    title: str
    plot_metric: str
    plot_label: str

    @property
    def columns(self) -> list[str]:
        return ["init", "label_fraction", "seed", "fold", "recipe", self.val_column, *self.metrics]


KINDS = {
    "classification": Kind(
        "best_epoch_val_balanced_accuracy",
        "val_balanced_accuracy",
        tuple(METRICS),
        "# Benchmark: test split, balanced accuracy = mean recall",
        "balanced_accuracy",
        "balanced accuracy (test)",
    ),
    "segmentation": Kind(
        "best_epoch_val_dice",
        "val_dice",
        tuple(SEGMENTATION_METRICS),
        "# Segmentation benchmark: test split, means over images (Jaccard thresholded at 0.65: ISIC 2018)",
        "dice",
        "Dice (test)",
    ),
}
VARIANTS = {":encoder": False, ":decoder": True}


def split_variant(entry: str) -> tuple[str, bool | None]:
    """``PATH:encoder`` -> (PATH, False), ``PATH:decoder`` -> (PATH, True), else (entry, None)."""
    for suffix, decoder in VARIANTS.items():
        if entry.endswith(suffix) and not Path(entry).exists():
            return entry[: -len(suffix)], decoder
    return entry, None


def segmentation_inits(cfg: BenchmarkConfig) -> list[tuple[str, str, dict]]:
    """(name, init, extra settings) per entry of ``inits`` for a segmentation benchmark."""
    from ssl_derm.finetune.segmentation import has_decoder

    out: list[tuple[str, str, dict]] = []
    for entry in cfg.inits:
        init, decoder = split_variant(entry)
        name = init_name(init)
        has = has_decoder(init)
        if decoder and not has:
            raise UserError(
                f"--inits {entry}: {init} has no U-Net decoder to transfer (context-restoration checkpoints "
                "and segmenters have one); name it without :decoder"
            )
        transfer = has and (cfg.init_decoder if decoder is None else decoder)
        name = f"{name}+decoder" if transfer else name
        if name in [n for n, _, _ in out]:
            name = f"{name}:{Path(init).parent.name or Path(init).stem}"
        out.append((name, init, {"init_decoder": bool(transfer)}))
    return out


def init_names(inits: tuple[str, ...]) -> list[str]:
    names = []
    for init in inits:
        name = init_name(init)
        if name in names:  # two checkpoints of the same task: tell them apart by file
            name = f"{name}:{Path(init).parent.name or Path(init).stem}"
        names.append(name)
    return names


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


def write_reports(rows: list[dict], out: Path, names: list[str], kind: Kind | None = None) -> pd.DataFrame:
    """results.csv, results.md, label_efficiency.png and (classification) confusion matrices
    from the runs so far."""
    kind = kind or KINDS["classification"]
    results = pd.DataFrame(rows)[kind.columns]
    runs = [str(Path(r["_run"]).relative_to(out)) if "_run" in r else "" for r in rows]
    results.assign(run=runs).to_csv(out / "results.csv", index=False)  # run: the folder, under out
    paired = paired_comparisons(rows, kind)
    paired.to_csv(out / "paired.csv", index=False)
    intervals = score_intervals(rows, kind)
    if not intervals.empty:
        intervals.to_csv(out / "intervals.csv", index=False)
    else:  # (with folds, once a second fold runs): no table left from the first
        (out / "intervals.csv").unlink(missing_ok=True)
    more = ""
    if kind is KINDS["classification"]:
        table = tta_comparisons(rows)
        if not table.empty:
            table.to_csv(out / "tta.csv", index=False)
        cam = cam_comparisons(rows)
        if not cam.empty:
            cam.to_csv(out / "cam_in_lesion.csv", index=False)
        more = recall_markdown(rows) + tta_markdown(table) + cam_markdown(cam)
    more += training_markdown(rows)
    (out / "results.md").write_text(
        f"{kind.title}\n\n"
        + results_markdown(results, list(kind.metrics))
        + intervals_markdown(intervals, kind)
        + paired_markdown(paired, kind)
        + more
    )
    label_efficiency_plot(results, out / "label_efficiency.png", kind.plot_metric, kind.plot_label, intervals)
    if kind is not KINDS["classification"]:
        return results
    for name in names:
        mine = [r for r in rows if r["init"] == name]
        if not mine:
            continue
        top = max(r["label_fraction"] for r in mine)
        cms = [r["confusion_matrix"] for r in mine if r["label_fraction"] == top]
        total = {"labels": cms[0]["labels"], "matrix": np.sum([np.array(c["matrix"]) for c in cms], axis=0)}
        save_confusion(
            total,
            out / f"confusion_{_slug(name)}.png",
            f"{name}, label fraction {top:g}, summed over {len(cms)} seed(s)",
        )
    return results


def ensure_predictions(run: Path, lab: LabeledData, tta: bool = False) -> None:
    """Write a finished classification run's test probabilities from its ``model.ckpt`` where
    they are missing: ``test_predictions.csv`` for runs older than the file, and with ``tta``
    ``test_predictions_tta.csv`` (the 8 dihedral views). The metrics are unchanged, and a run
    whose test split was never scored is left alone (test is scored once, by the benchmark)."""
    from ssl_derm.finetune.evaluate import load_classifier

    missing = [f for f in (PREDICTIONS, *([PREDICTIONS_TTA] if tta else [])) if not (run / f).is_file()]
    if not missing or not (run / "model.ckpt").is_file():
        return
    if json.loads((run / "metrics.json").read_text()).get("split") != "test":
        return
    ckpt = load_checkpoint(run / "model.ckpt")
    if ckpt["image_size"] != lab.bank.image_size:
        return
    model, ckpt = load_classifier(run / "model.ckpt", ckpt)
    device = default_device()
    for name in missing:
        test_metrics(model, lab, ckpt["normalization"], device, run, tta=name == PREDICTIONS_TTA)


CAM_FILE = "test_cam_in_lesion.csv"


def ensure_cam_in_lesion(run: Path, lab: LabeledData, data=None) -> None:
    """Where does a finished classification run look? For each test image, the share of the
    Grad-CAM mass of its predicted class (the encoder's last stage, ``explain.compute_cams``)
    inside the HAM10000 lesion mask, with the two baselines of ``ssl-derm explain``: the
    lesion's share of the image (a uniform map's score) and a map peaked at the centre.
    Written once to ``test_cam_in_lesion.csv`` from ``model.ckpt`` and ``test_predictions.csv``
    (nothing when either is gone); an image without a mask gets empty cells."""
    from ssl_derm.cam import cam_in_lesion, centre_map, compute_cams, read_mask
    from ssl_derm.data import ImagePipeline
    from ssl_derm.finetune.evaluate import load_classifier

    if (run / CAM_FILE).is_file() or not (run / "model.ckpt").is_file() or not (run / PREDICTIONS).is_file():
        return
    rows = attach_masks(lab.rows("test"), data)
    if (rows["mask"] == "").all():
        print(f"{run}: no lesion masks for its test images, so no Grad-CAM mass inside the lesion", file=sys.stderr)
        return
    ckpt = load_checkpoint(run / "model.ckpt")
    size = ckpt["image_size"]
    if size != lab.bank.image_size:
        print(
            f"{run}: trained at {size} px, not the benchmark's {lab.bank.image_size}: no CAM in lesion", file=sys.stderr
        )
        return
    probs = pd.read_csv(run / PREDICTIONS)
    if list(probs["image"]) != list(rows["image"]):
        raise UserError(f"{run / PREDICTIONS}: not the test split of this benchmark")
    predicted = probs[list(lab.classes)].to_numpy().argmax(1)
    model, ckpt = load_classifier(run / "model.ckpt", ckpt)
    images = lab.bank.gather(lab.indices("test"))
    cams = compute_cams(model, images, predicted, ImagePipeline(ckpt["normalization"]), "gradcam", default_device())
    resize, centre, out = ckpt["config"].get("resize", "crop"), centre_map(size), []
    for (image, label, mask_file), cam, pred in zip(rows[["image", "label", "mask"]].to_numpy(), cams, predicted):
        mask = read_mask(Path(mask_file), image, size, resize) if mask_file else None
        out.append(
            {
                "image": image,
                "label": label,
                "predicted": lab.classes[pred],
                "cam_in_lesion": cam_in_lesion(cam, mask) if mask is not None else np.nan,
                "lesion_area": float(mask.mean()) if mask is not None else np.nan,
                "centre_in_lesion": cam_in_lesion(centre, mask) if mask is not None else np.nan,
            }
        )
    pd.DataFrame(out).to_csv(run / CAM_FILE, index=False, float_format="%.4g")


def per_image_scores(
    run: Path, kind: Kind, predictions: str = PREDICTIONS
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """``(images, scores, labels)`` of a run's test split, sorted by image: hits and class
    indices for classification (``predictions``: ``test_predictions.csv``, or the TTA file),
    Dice and None for segmentation (``metrics.json``'s ``per_image``). None when the run did
    not keep them."""
    if kind is KINDS["classification"]:
        path = run / predictions
        if not path.is_file():
            return None
        table = pd.read_csv(path).sort_values("image", kind="stable")
        if predictions == CAM_FILE:  # Grad-CAM mass inside the lesion; NaN where there is no mask
            return table["image"].to_numpy(), _cam_scores(table), None
        classes = [c for c in table.columns if c not in ("image", "label")]
        lookup = {c: i for i, c in enumerate(classes)}
        labels = table["label"].map(lookup).to_numpy()
        hits = (table[classes].to_numpy().argmax(1) == labels).astype(float)
        return table["image"].to_numpy(), hits, labels
    m = json.loads((run / "metrics.json").read_text())
    per = sorted(m.get("per_image") or [], key=lambda r: r["image"])
    if not per:
        return None
    return np.array([r["image"] for r in per]), np.array([r[kind.plot_metric] for r in per]), None


def _lesions(run: Path, images: np.ndarray) -> np.ndarray | None:
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


def _aligned(pairs: list[tuple[tuple[Path, str], tuple[Path, str]]], kind: Kind, what: str) -> tuple:
    """Per-image scores of each ``((run, predictions file), (run, predictions file))`` pair,
    as two lists of rows over the same test images, their class labels and their lesions
    (``_lesions``). Pairs where a side kept no scores are left out; test images that differ
    are an error naming ``what``."""
    a, b, labels, images, lesions = [], [], None, None, None
    for (run_a, file_a), (run_b, file_b) in pairs:
        x = per_image_scores(run_a, kind, file_a)
        y = x if (run_b, file_b) == (run_a, file_a) else per_image_scores(run_b, kind, file_b)
        if x is None or y is None:
            continue
        if images is None:
            images, labels, lesions = x[0], x[2], _lesions(run_a, x[0])
        if not (np.array_equal(x[0], images) and np.array_equal(y[0], images)):
            raise UserError(f"{what} were tested on different images")
        a.append(x[1])
        b.append(y[1])
    return a, b, labels, lesions


def _runs_by_group(rows: list[dict], file: str | None = None) -> dict[tuple, dict[int, Path]]:
    """The finished runs of ``rows`` by (init, label fraction, fold), then by seed; with
    ``file``, only the runs that kept it."""
    runs: dict[tuple, dict[int, Path]] = {}
    for r in rows:
        if "_run" in r and (file is None or (Path(r["_run"]) / file).is_file()):
            runs.setdefault((r["init"], r["label_fraction"], r["fold"]), {})[r["seed"]] = Path(r["_run"])
    return runs


def _versus(runs: dict[tuple, dict[int, Path]], group: tuple, bases, file: str, kind: Kind):
    """``(baseline, a, b, labels, lesions)`` for each of ``bases`` that ran the label fraction
    and fold of ``group`` (init, fraction, fold): the per-image scores in ``file`` of the seeds
    both kept, stacked ``[S, N]`` (``_aligned``)."""
    init, frac, fold = group
    mine = runs[group]
    for base in bases:
        theirs = runs.get((base, frac, fold))
        if base == init or theirs is None:
            continue
        pairs = [((mine[s], file), (theirs[s], file)) for s in sorted(set(mine) & set(theirs))]
        a, b, labels, lesions = _aligned(pairs, kind, f"the runs of {init} and {base}")
        if a:
            yield base, np.stack(a), np.stack(b), labels, lesions


def paired_comparisons(rows: list[dict], kind: Kind) -> pd.DataFrame:
    """Each init against each baseline of ``BASELINES`` in the benchmark (and ``X+decoder``
    against ``X``, its encoder alone), per label fraction and fold: the mean difference of the
    test score (balanced accuracy; Dice for segmentation) over the seeds both ran, with a 95%
    bootstrap interval over test lesions (all images of a lesion drawn together) and seeds
    (``stats.paired_bootstrap``). A run that kept no per-image scores is left out."""
    runs = _runs_by_group(rows)
    out = []
    for init, frac, fold in runs:
        # a restored decoder is also judged against the same encoder alone
        decoder_of = [init.removesuffix("+decoder")] if init.endswith("+decoder") else []
        for base, a, b, labels, lesions in _versus(
            runs, (init, frac, fold), (*BASELINES, *decoder_of), PREDICTIONS, kind
        ):
            result = paired_bootstrap(a, b, labels, groups=lesions)
            out.append({"init": init, "baseline": base, "label_fraction": frac, "fold": fold, **result})
    columns = ["init", "baseline", "label_fraction", "fold", "diff", "lo", "hi", "seeds", "images", "lesions"]
    return pd.DataFrame(out, columns=[*columns, "verdict"])


def score_intervals(rows: list[dict], kind: Kind) -> pd.DataFrame:
    """Each init's test score (balanced accuracy; Dice for segmentation) per label fraction,
    the mean over its seeds with a 95% bootstrap interval over test lesions and seeds
    (``stats.bootstrap_interval``), from the runs that kept per-image scores; one split
    only (with folds the test images differ between runs: empty)."""
    columns = ["init", "label_fraction", "mean", "lo", "hi", "seeds", "images"]
    if any(r["fold"] for r in rows):
        return pd.DataFrame(columns=columns)
    out = []
    for (init, frac, _), seeds in _runs_by_group(rows).items():
        runs = list(seeds.values())
        file = PREDICTIONS  # (segmentation reads metrics.json's per-image Dice)
        a, _, labels, lesions = _aligned([((run, file), (run, file)) for run in runs], kind, f"the runs of {init}")
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


def intervals_markdown(intervals: pd.DataFrame, kind: Kind) -> str:
    if intervals.empty:
        return ""
    lines = _section(
        f"Test {kind.plot_metric.replace('_', ' ')} with 95% intervals",
        "Mean over seeds; 95% bootstrap interval over test lesions (all images of a lesion drawn together) "
        "and seeds (the label-efficiency plot's bars).",
        ["init", "label fraction", "seeds", f"{kind.plot_metric.replace('_', ' ')} [95% CI]"],
    )
    for r in intervals.sort_values(["label_fraction", "init"]).to_dict("records"):
        lines.append(
            f"| {r['init']} | {r['label_fraction']:g} | {r['seeds']} | {r['mean']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] |"
        )
    return "\n".join(lines) + "\n"


def tta_comparisons(rows: list[dict]) -> pd.DataFrame:
    """What test-time augmentation adds to each init's test balanced accuracy, per label
    fraction and fold: the runs that kept both prediction files, TTA against plain on the
    same model, paired over test lesions and seeds like ``paired_comparisons``."""
    kind = KINDS["classification"]
    out = []
    for (init, frac, fold), runs in _runs_by_group(rows).items():
        pairs = [((run, PREDICTIONS_TTA), (run, PREDICTIONS)) for run in runs.values()]
        tta, plain, labels, lesions = _aligned(pairs, kind, f"the runs of {init} at label fraction {frac:g}")
        if not plain:
            continue
        ones = np.ones((1, len(labels)))
        means = [float(np.mean([balanced_accuracy_draws(labels, h, ones)[0] for h in v])) for v in (plain, tta)]
        result = paired_bootstrap(np.stack(tta), np.stack(plain), labels, groups=lesions)
        out.append({"init": init, "label_fraction": frac, "fold": fold, "plain": means[0], "tta": means[1], **result})
    columns = ["init", "label_fraction", "fold", "plain", "tta", "diff", "lo", "hi", "seeds", "images", "lesions"]
    columns += ["verdict"]
    return pd.DataFrame(out, columns=columns)


def _cam_scores(table: pd.DataFrame) -> np.ndarray:
    """Per image of a ``test_cam_in_lesion.csv``: the Grad-CAM mass inside the lesion, a map
    that is all zero (it points nowhere) scored as a uniform one, at the lesion's area share;
    NaN for an image without a mask."""
    return table["cam_in_lesion"].fillna(table["lesion_area"]).to_numpy(float)


def _std(values) -> float:
    """The sample std over seeds (as ``results.md``'s ± std), 0 for one seed."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def cam_comparisons(rows: list[dict]) -> pd.DataFrame:
    """Where each init's fine-tuned models look, per label fraction and fold, from the runs
    that kept ``test_cam_in_lesion.csv``: the mean share of the Grad-CAM mass inside the
    lesion (mean ± std over seeds), the lesion's area share (chance) and the centre map's
    score; and each init against each baseline of ``BASELINES``, paired over the test
    images with a mask and the seeds both kept (``stats.paired_bootstrap`` of the means)."""
    kind = KINDS["classification"]
    runs = _runs_by_group(rows, CAM_FILE)
    out = []
    for (init, frac, fold), mine in runs.items():
        tables = [pd.read_csv(run / CAM_FILE) for run in mine.values()]
        masked = tables[0]["lesion_area"].notna()  # the test images with a mask: the same for every run
        if not masked.any():
            continue
        per_seed = [float(_cam_scores(t)[t["lesion_area"].notna()].mean()) for t in tables]
        row = {
            "init": init,
            "label_fraction": frac,
            "fold": fold,
            "seeds": len(tables),
            "images": int(masked.sum()),
            "cam_in_lesion": float(np.mean(per_seed)),
            "cam_std": _std(per_seed),
            "lesion_area": float(tables[0]["lesion_area"][masked].mean()),
            "centre_in_lesion": float(tables[0]["centre_in_lesion"][masked].mean()),
        }
        for base, a, b, _, lesions in _versus(runs, (init, frac, fold), BASELINES, CAM_FILE, kind):
            keep = np.isfinite(a).all(0) & np.isfinite(b).all(0)  # the images with a mask
            if keep.any():
                result = paired_bootstrap(a[:, keep], b[:, keep], groups=None if lesions is None else lesions[keep])
                row.update({f"vs_{base}": result["diff"], f"vs_{base}_lo": result["lo"], f"vs_{base}_hi": result["hi"]})
        out.append(row)
    columns = ["init", "label_fraction", "fold", "seeds", "images", "cam_in_lesion", "cam_std", "lesion_area"]
    columns += ["centre_in_lesion"]
    columns += [f"vs_{b}{end}" for b in BASELINES for end in ("", "_lo", "_hi")]
    return pd.DataFrame(out, columns=columns)


def cam_markdown(cam: pd.DataFrame) -> str:
    if cam.empty:
        return ""
    lines = _section(
        "Grad-CAM mass inside the lesion",
        "Per test image with a lesion mask, the share of the Grad-CAM map of the predicted class (the "
        "encoder's last stage) inside the lesion; mean over those images, then mean ± std over seeds. A "
        "uniform map scores the lesion's area share (chance; an all-zero map, which points nowhere, is "
        "scored so), a fixed map peaked at the image centre the next column. Differences to the baselines "
        "over the same images and the seeds both ran, with a 95% bootstrap interval over lesions and seeds; "
        "one that contains zero is a tie.",
        "init, label fraction, fold, seeds, images, CAM in lesion, chance, centre map, vs imagenet [95% CI], "
        "vs random [95% CI]",
    )

    def versus(r: dict, base: str) -> str:
        result = {key: r[f"vs_{base}{end}"] for key, end in (("diff", ""), ("lo", "_lo"), ("hi", "_hi"))}
        if pd.isna(result["diff"]):
            return "–"
        return format_interval(result) + (" tie" if result["lo"] <= 0 <= result["hi"] else "")

    for r in cam.sort_values(["label_fraction", "init"]).to_dict("records"):
        lines.append(
            f"| {r['init']} | {r['label_fraction']:g} | {r['fold']} | {r['seeds']} | {r['images']} | "
            f"{r['cam_in_lesion']:.3f} ± "
            f"{r['cam_std']:.3f} | {r['lesion_area']:.3f} | {r['centre_in_lesion']:.3f} | {versus(r, 'imagenet')} | "
            f"{versus(r, 'random')} |"
        )
    return "\n".join(lines) + "\n"


def recall_markdown(rows: list[dict]) -> str:
    """Test recall of every class, mean ± std over seeds, per init and label fraction (from
    the runs' confusion matrices): where an init's balanced accuracy comes from."""
    groups: dict[tuple, list[np.ndarray]] = {}
    labels: list[str] = []
    for r in rows:
        cm = r.get("confusion_matrix")
        if not cm:
            continue
        matrix = np.asarray(cm["matrix"], float)
        labels = list(cm["labels"])
        with np.errstate(invalid="ignore"):
            recall = np.diag(matrix) / matrix.sum(1)  # NaN for a class the test part lacks
        groups.setdefault((r["label_fraction"], r["fold"], r["init"]), []).append(recall)
    if not groups:
        return ""
    lines = _section(
        "Recall per class",
        "Test recall of each class, mean ± std over seeds: where each init's balanced accuracy comes from.",
        ["init", "label fraction", "fold", "seeds", *labels],
    )
    for (frac, fold, init), recalls in sorted(groups.items(), key=lambda kv: kv[0]):
        cells = " | ".join(
            f"{np.mean(v):.2f} ± {_std(v):.2f}" if len(v) else "–"
            for v in (c[np.isfinite(c)] for c in np.array(recalls).T)
        )
        lines.append(f"| {init} | {frac:g} | {fold} | {len(recalls)} | {cells} |")
    return "\n".join(lines) + "\n"


def training_markdown(rows: list[dict]) -> str:
    """How each init's reported runs ended (their ``metrics.json``): the epoch kept and the
    epochs run per seed, against the budget. A run that the budget ended, not the patience,
    may not have converged: the table counts them."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        path = Path(r["_run"]) / "metrics.json" if "_run" in r else None
        if path is None or not path.is_file():
            continue
        m = json.loads(path.read_text())
        if m.get("epochs_budget") is None:  # written before runs recorded how they ended
            continue
        groups.setdefault((r["label_fraction"], r["fold"], r["init"]), []).append({**m, "recipe": r.get("recipe", "")})
    if not groups:
        return ""
    lines = _section(
        "How the runs ended",
        "Per seed, the epoch kept (best validation score) and the epochs run; early stopping may end a run "
        "only from min epochs on, after `patience` epochs without a new best. A run the budget ended may "
        "not have converged; one that kept its last epoch has not (with `budget_doublings` it ran again "
        "at twice the budget, and the longest run is the one reported).",
        "init, label fraction, fold, recipe, epoch kept, epochs run, min epochs, budget, ended by the budget, "
        "kept the last epoch",
    )

    def per_seed(ms: list[dict], key: str) -> str:  # one value when every seed shares it
        values = [str(m.get(key, "–")) for m in ms]
        return values[0] if len(set(values)) == 1 else ", ".join(values)

    for (frac, fold, init), ms in sorted(groups.items(), key=lambda kv: kv[0]):
        kept = ", ".join(str(m.get("best_epoch")) for m in ms)
        ran = ", ".join(str(m.get("epochs_run")) for m in ms)
        by_budget = sum(m.get("epochs_run", 0) >= m["epochs_budget"] for m in ms)
        last = sum(kept_last_epoch(m) for m in ms)
        lines.append(
            f"| {init} | {frac:g} | {fold} | {ms[0]['recipe'] or '–'} | {kept} | {ran} | "
            f"{per_seed(ms, 'min_epochs')} | {per_seed(ms, 'epochs_budget')} | {by_budget} of {len(ms)} | "
            f"{last} of {len(ms)} |"
        )
    return "\n".join(lines) + "\n"


def tta_markdown(tta: pd.DataFrame) -> str:
    if tta.empty:
        return ""
    lines = _section(
        "Test-time augmentation (the 8 flips and 90-degree rotations)",
        "Test balanced accuracy of the same models without and with TTA, mean over seeds; the gain "
        "with a 95% bootstrap interval over test lesions and seeds. An interval that contains zero is a tie.",
        "init, label fraction, fold, seeds, test BA, with TTA, gain [95% CI], verdict",
    )
    for r in tta.sort_values(["label_fraction", "init"]).to_dict("records"):
        lines.append(
            f"| {r['init']} | {r['label_fraction']:g} | {r['fold']} | {r['seeds']} | {r['plain']:.3f} | "
            f"{r['tta']:.3f} | {format_interval(r)} | {r['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def _section(title: str, text: str, columns: str | list[str]) -> list[str]:
    """The opening lines of a results.md section: its title, what it shows, and the header
    of its table (``columns``: a list, or a string of names separated by ", ")."""
    names = columns.split(", ") if isinstance(columns, str) else columns
    return [
        "",
        f"## {title}",
        "",
        text,
        "",
        "| " + " | ".join(names) + " |",
        "| " + " | ".join("---" for _ in names) + " |",
    ]


def paired_markdown(paired: pd.DataFrame, kind: Kind) -> str:
    if paired.empty:
        return ""
    metric = "balanced accuracy" if kind is KINDS["classification"] else "Dice"
    lines = _section(
        f"Paired differences in test {metric}",
        "Mean over the seeds both inits ran; 95% bootstrap interval over test lesions (all images of a "
        "lesion drawn together) and seeds (the same draws for both). An interval that contains zero is a tie.",
        "init, vs, label fraction, fold, seeds, difference [95% CI], verdict",
    )
    for r in paired.sort_values(["baseline", "label_fraction", "init"]).to_dict("records"):
        lines.append(
            f"| {r['init']} | {r['baseline']} | {r['label_fraction']:g} | {r['fold']} | {r['seeds']} | "
            f"{format_interval(r)} | {r['verdict']} |"
        )
    return "\n".join(lines) + "\n"


SELECT_SEED = 1000  # the recipe-selection runs' seed offset: apart from the reported seeds 0..S-1
FAILED = "FAILED"  # in a selection run beyond the grid that diverged: its run_key and why (not tried again)

# Settings that say where a run lives or how it reports, not what it trains.
_NOT_IN_KEY = {"out", "splits", "data", "cache_dir", "progress", "num_workers", "score_test", "log_every_n_steps"}


def run_key(run_cfg: FinetuneConfig, init_fingerprint: str) -> str:
    """What a run trains, as a hash: every setting that changes its result, with the init's
    weights by content (``weights_fingerprint``), so a run of other settings or of another
    checkpoint under the same path is never taken for a finished one."""
    settings = {k: v for k, v in to_dict(run_cfg).items() if k not in _NOT_IN_KEY}
    settings["init"] = init_fingerprint
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def _current(metrics_file: Path, table: pd.DataFrame, key: str, fraction: float = 1.0, seed: int = 0) -> bool:
    """A finished run counts only if this ssl-derm's checkpoint format wrote it (older ones
    had no leak checks), it trained what this benchmark would train (``key``: ``run_key``)
    and it was trained, validated and tested on this benchmark's split: the ``fraction`` of
    its training part that ``seed`` draws (``label_fraction``), its validation and test parts."""
    try:
        metrics = json.loads(metrics_file.read_text())
    except json.JSONDecodeError:  # cut short (a copy taken mid-write): not a finished run
        return False
    if metrics.get("format_version") != FORMAT_VERSION or metrics.get("run_key") != key:
        return False
    split_file = metrics_file.parent / "splits.csv"
    if not split_file.is_file():
        return False
    run = pd.read_csv(split_file, dtype=str, keep_default_na=False)

    def parts(t):
        return set(map(tuple, t.loc[t["split"].isin(["train", "val", "test"]), ["image", "split"]].to_numpy()))

    return parts(run) == parts(label_fraction(table, fraction, seed))


def _slug_recipe(point: dict) -> str:
    return "_".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items()) or "default"


def kept_last_epoch(metrics: dict) -> bool:
    """The run kept the last epoch of its budget: validation was still rising when the budget
    ended it, so the run is not known to have converged."""
    best, budget = metrics.get("best_epoch"), metrics.get("epochs_budget")
    return best is not None and budget is not None and best >= budget


class _Runner:
    """One fine-tuning run of the benchmark, skipped when a current one is on disk."""

    def __init__(self, cfg: BenchmarkConfig, base: dict) -> None:
        self.cfg, self.base, self.labs, self.prints = cfg, base, {}, {}

    def settings(self, run: Path, init: str, frac: float, seed: int, fold, extra: dict) -> tuple:
        """The run's ``FinetuneConfig`` and its ``run_key``."""
        settings = {
            **self.base,
            **extra,
            "init": init,
            "label_fraction": frac,
            "seed": self.cfg.seed + seed,
            "out": str(run),
            "splits": str(fold["splits"]),
        }
        run_cfg = resolve_encoder_settings(FinetuneConfig(**settings))
        if init not in self.prints:
            self.prints[init] = weights_fingerprint(init)
        return run_cfg, run_key(run_cfg, self.prints[init])

    def key(self, run: Path, init: str, frac: float, seed: int, fold, extra: dict) -> str:
        return self.settings(run, init, frac, seed, fold, extra)[1]

    def __call__(self, label: str, run: Path, init: str, frac: float, seed: int, fold, extra: dict) -> dict:
        """The run's metrics, with ``_dir``: the folder of the run they come from. A run that kept
        the last epoch of its budget runs again in ``run/budget_x2`` (then ``budget_x4``, ...)
        with twice the budget, up to ``budget_doublings`` times; the longest run's metrics are
        returned, and the shorter runs stay on disk."""
        m = self._once(label, run, init, frac, seed, fold, extra)
        for k in range(1, getattr(self.cfg, "budget_doublings", 0) + 1):
            if not kept_last_epoch(m):
                break
            why = f"kept epoch {m['best_epoch']} of {m['epochs_budget']}"
            m = self._once(
                f"{label}, budget x{2**k} ({why})",
                run / f"budget_x{2**k}",
                init,
                frac,
                seed,
                fold,
                {**extra, **self.doubled(extra, 2**k)},
            )
        return m

    def doubled(self, extra: dict, factor: int) -> dict:
        """``epochs``, ``min_steps`` and ``min_epochs`` of the run's settings times ``factor``."""
        settings = {**self.base, **extra}
        return {k: settings[k] * factor for k in ("epochs", "min_steps", "min_epochs")}

    def _once(self, label: str, run: Path, init: str, frac: float, seed: int, fold, extra: dict) -> dict:
        done = run / "metrics.json"
        lab = fold["lab"]
        run_cfg, key = self.settings(run, init, frac, seed, fold, extra)
        if done.is_file() and not _current(done, lab.table, key, run_cfg.label_fraction, run_cfg.seed):
            print(f"{label}: stale (older ssl-derm, another split, other settings or init weights), run again")
            done.unlink()
        if done.is_file():
            print(f"{label}: done, skipped")
            return {**json.loads(done.read_text()), "_dir": run}
        print(label)
        if run_cfg.image_size != fold["size"]:  # an init checkpoint at another size: same splits, other pixels
            data_key = (fold["splits"], run_cfg.image_size)
            if data_key not in self.labs:
                self.labs[data_key] = prepare_labeled(
                    None,
                    run_cfg.image_size,
                    splits=fold["splits"],
                    cache_dir=self.cfg.cache_dir,
                    progress=self.cfg.progress,
                    resize=self.cfg.resize,
                    masks=self.cfg.target == "segmentation",
                    skip_missing_masks=self.cfg.skip_missing_masks,
                )
            lab = self.labs[data_key]
        run_finetune(run_cfg, overwrite=True, lab=lab)
        metrics = {**json.loads(done.read_text()), "run_key": key}
        atomic_write_text(json.dumps(metrics, indent=2), done)  # never half a file for a copy to take
        return {**metrics, "_dir": run}


def run_benchmark(cfg: BenchmarkConfig, overwrite: bool = False, resume: bool = False) -> pd.DataFrame:
    """``resume`` is accepted for symmetry: a benchmark always continues where it stopped.

    With ``folds`` K >= 3 every init is fine-tuned on each of K lesion-grouped stratified
    folds; with ``select_on=val`` each init, label fraction and fold first tries every
    point of ``select_grid`` on a selection seed of its own without scoring test, keeps the
    point with the best validation score, and runs every reported seed with it (test scored
    once per run)."""
    kind = KINDS[cfg.target]
    if cfg.target == "segmentation":
        entries = segmentation_inits(cfg)
    else:
        bad = [i for i in cfg.inits if split_variant(i)[1] is not None]
        if bad:
            raise UserError(
                f"--inits {bad[0]}: :encoder / :decoder choose a decoder transfer, for --target segmentation"
            )
        entries = [(n, i, {}) for n, i in zip(init_names(cfg.inits), cfg.inits)]
    names = [n for n, _, _ in entries]
    inits = [i for _, i, _ in entries]
    out = run_dir(cfg.out, "benchmark", overwrite, resume=True)
    save_yaml(cfg, out / "config.yaml")
    base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(FinetuneConfig)}
    first = resolve_encoder_settings(FinetuneConfig(**{**base, "init": inits[0]}))
    lab = labeled_from_config(cfg, first.image_size)
    check_split_by_content(lab)
    save_split = write_splits_with_masks if cfg.target == "segmentation" else write_splits
    if cfg.folds:
        folds = []
        for k, table in enumerate(make_folds(lab.table, cfg.folds, cfg.seed)):
            fold_lab = LabeledData(table, lab.bank, lab.classes)
            (out / "folds" / f"fold{k}").mkdir(parents=True, exist_ok=True)
            path = save_split(table, out / "folds" / f"fold{k}")
            folds.append({"name": f"fold{k}", "k": k, "lab": fold_lab, "splits": path, "size": first.image_size})
    else:
        folds = [{"name": "", "k": 0, "lab": lab, "splits": save_split(lab.table, out), "size": first.image_size}]
    for fold in folds:  # before any run: a leaky comparison is refused whole, not after hours
        for init in dict.fromkeys(inits):
            check_unseen(
                init_seen(init),
                fold["lab"],
                f"the init {init}" + (f" ({fold['name']})" if fold["name"] else ""),
                "pretrain on the benchmark's split (pretrain --splits FILE) "
                "or benchmark with --splits <its run>/splits.csv"
                + ("; with --folds every fold's test part must be unseen" if cfg.folds else ""),
            )
    grid = select_grid(cfg) if cfg.select_on == "val" else None
    runner = _Runner(cfg, base)
    rows, started = [], time.time()
    # Seed-major order: after each seed the table already compares every init and fraction.
    jobs = [
        (n, i, f, s, fold, variant)
        for s in range(cfg.seeds)
        for fold in folds
        for f in cfg.label_fractions
        for n, i, variant in entries
    ]
    for j, (name, init, frac, s, fold, variant) in enumerate(jobs, 1):
        root = out / "runs" / _slug(name) / f"fraction{frac:g}"
        if fold["name"]:
            root = root / fold["name"]
        where = f"{name}, label fraction {frac:g}" + (f", {fold['name']}" if fold["name"] else "")
        recipe, extra = "", dict(variant)
        if grid is not None:
            recipe, point = _select(runner, grid, root, where, init, frac, fold, variant, kind)
            extra = {**variant, **point}
        m = runner(f"[{j}/{len(jobs)}] {where}, seed {s}", root / f"seed{s}", init, frac, s, fold, extra)
        run = m.pop("_dir")  # a longer run's folder when the budget was doubled
        row = {
            "init": name,
            "label_fraction": frac,
            "seed": s,
            "fold": fold["k"],
            "recipe": recipe,
            kind.val_column: m.get(kind.val_key),
            **{c: m[c] for c in kind.metrics},
            "_run": run,
        }
        if kind is KINDS["classification"]:
            ensure_predictions(run, fold["lab"], tta=cfg.tta)
            if cfg.cam_in_lesion:
                ensure_cam_in_lesion(run, fold["lab"], cfg.data)
        if "confusion_matrix" in m:
            row["confusion_matrix"] = m["confusion_matrix"]
        rows.append(row)
        results = write_reports(rows, out, names, kind)  # after every run: an interrupted benchmark still reports
    print(results_markdown(results, list(kind.metrics)))
    print(f"wrote {out / 'results.csv'}, results.md, label_efficiency.png ({time.time() - started:.0f} s)")
    return results


def _select(
    runner: _Runner,
    grid: list[dict],
    root: Path,
    where: str,
    init: str,
    frac: float,
    fold,
    variant: dict | None = None,
    kind: Kind | None = None,
) -> tuple:
    """Every grid point on the selection seed (``SELECT_SEED``, none of the reported seeds)
    with test unscored; the best validation score (balanced accuracy, or Dice for
    segmentation) wins (ties: the earlier point). Recorded in ``root/selection.json``. The
    reported seeds then run afresh with the winner: no reported run is a best-of-grid one,
    which would flatter the inits whose runs vary most."""
    kind = kind or KINDS["classification"]
    scores = []

    def trial(point: dict, label: str, beyond: bool = False) -> None:
        slug = _slug_recipe(point)
        run = root / "select" / slug
        failed = run / FAILED  # the run_key of the run that diverged, then why
        extra = {**(variant or {}), **point, "score_test": False}
        key = runner.key(run, init, frac, SELECT_SEED, fold, extra)
        try:
            recorded, _, why = (failed.read_text() if beyond and failed.is_file() else "").partition("\n")
            if recorded == key:  # the same run diverged before (a CPU run repeats exactly): not tried again
                raise RunFailed(why.strip())
            m = runner(f"{label} {where}: {slug}", run, init, frac, SELECT_SEED, fold, extra)
            score = m[kind.val_key] or 0.0
        except RunFailed as e:
            if not beyond:  # a grid point that diverges is the recipe's problem: say so and stop
                raise
            run.mkdir(parents=True, exist_ok=True)
            failed.write_text(f"{key}\n{e}\n")
            print(f"{label} {where}: {slug} failed ({e}); scored as the worst point")
            score = -1.0
        scores.append((score, -len(scores) - 1, slug, point))

    for n, point in enumerate(grid, 1):
        trial(point, f"select {n}/{len(grid)}")
    for n in range(1, getattr(runner.cfg, "select_extend", 0) + 1):  # the winner at the grid's edge: one step on
        point = edge_step([(score, p) for score, _, _, p in scores])
        if point is None:
            break
        trial(point, f"select, beyond the grid's edge {n}/{runner.cfg.select_extend}", beyond=True)
    best = max(scores)
    table = [{"recipe": slug, kind.val_column: score} for score, _, slug, _ in scores]
    record = {"chosen": best[2], "on": "validation", "grid": table, "beyond_the_grid": len(scores) - len(grid)}
    (root / "selection.json").write_text(json.dumps(record, indent=2))
    return best[2], best[3]


def edge_step(scores: list[tuple[float, dict]], key: str = "encoder_lr") -> dict | None:
    """The point to try next when the best-scoring point's ``key`` is the lowest or the highest
    value tried with its other settings: one step beyond it, at the ratio of the two values
    nearest that edge (3 sig. digits). None when the best is inside the values tried, or
    when fewer than two were tried. Ties go to the earlier point, as in ``_select``."""
    best = max(enumerate(scores), key=lambda t: (t[1][0], -t[0]))[1][1]
    if key not in best:
        return None
    others = {k: v for k, v in best.items() if k != key}
    tried = sorted({p[key] for _, p in scores if {k: v for k, v in p.items() if k != key} == others})
    if len(tried) < 2 or tried[0] < best[key] < tried[-1]:
        return None
    step = tried[-1] / tried[-2] if best[key] == tried[-1] else tried[0] / tried[1]
    return {**best, key: float(f"{best[key] * step:.3g}")}
