"""The benchmark's report: ``results.csv``, ``results.md`` (the main table, then one section per
comparison), ``paired.csv``, ``intervals.csv``, ``tta.csv``, ``cam_in_lesion.csv``, the
label-efficiency plot and the confusion matrices, all from the finished runs' folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ssl_derm.finetune.benchmark.compare import (
    cam_comparisons,
    paired_comparisons,
    score_intervals,
    seed_std,
    tta_comparisons,
)
from ssl_derm.finetune.benchmark.inits import slug
from ssl_derm.finetune.benchmark.runs import kept_last_epoch
from ssl_derm.finetune.report import label_efficiency_plot, results_markdown, save_confusion
from ssl_derm.finetune.targets import TARGETS, Target
from ssl_derm.stats import format_interval

# the files write_reports writes beside the confusion matrices (confusion_<init>.png): test figures
REPORTS = (
    "results.csv", "results.md", "paired.csv", "intervals.csv", "tta.csv", "cam_in_lesion.csv", "label_efficiency.png",
)  # fmt: skip


def written_reports(out: Path) -> list[str]:
    """The names of the report files (``write_reports``'s) already in ``out``."""
    return [p.name for p in sorted(out.glob("*")) if p.name in REPORTS or p.name.startswith("confusion_")]


def write_reports(rows: list[dict], out: Path, names: list[str], target: Target | None = None) -> pd.DataFrame:
    """results.csv, results.md, label_efficiency.png and (classification) confusion matrices
    from the runs so far."""
    target = target or TARGETS["classification"]
    results = pd.DataFrame(rows)[target.columns]
    runs = [str(Path(r["_run"]).relative_to(out)) if "_run" in r else "" for r in rows]
    results.assign(run=runs).to_csv(out / "results.csv", index=False)  # run: the folder, under out
    paired = paired_comparisons(rows, target)
    paired.to_csv(out / "paired.csv", index=False)
    intervals = score_intervals(rows, target)
    if not intervals.empty:
        intervals.to_csv(out / "intervals.csv", index=False)
    else:  # (with folds, once a second fold runs): no table left from the first
        (out / "intervals.csv").unlink(missing_ok=True)
    more = ""
    if target.per_class:
        table = tta_comparisons(rows)
        if not table.empty:
            table.to_csv(out / "tta.csv", index=False)
        cam = cam_comparisons(rows)
        if not cam.empty:
            cam.to_csv(out / "cam_in_lesion.csv", index=False)
        more = recall_markdown(rows) + tta_markdown(table) + cam_markdown(cam)
    more += training_markdown(rows)
    (out / "results.md").write_text(
        f"{target.title}\n\n"
        + results_markdown(results, list(target.metrics))
        + intervals_markdown(intervals, target)
        + paired_markdown(paired, target)
        + more
    )
    label_efficiency_plot(results, out / "label_efficiency.png", target.plot_metric, target.plot_label, intervals)
    if not target.per_class:
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
            out / f"confusion_{slug(name)}.png",
            f"{name}, label fraction {top:g}, summed over {len(cms)} seed(s)",
        )
    return results


def intervals_markdown(intervals: pd.DataFrame, target: Target) -> str:
    if intervals.empty:
        return ""
    lines = section_header(
        f"Test {target.plot_metric.replace('_', ' ')} with 95% intervals",
        "Mean over seeds; 95% bootstrap interval over test lesions (all images of a lesion drawn together) "
        "and seeds (the label-efficiency plot's bars).",
        ["init", "label fraction", "seeds", f"{target.plot_metric.replace('_', ' ')} [95% CI]"],
    )
    for r in intervals.sort_values(["label_fraction", "init"]).to_dict("records"):
        lines.append(
            f"| {r['init']} | {r['label_fraction']:g} | {r['seeds']} | {r['mean']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] |"
        )
    return "\n".join(lines) + "\n"


def cam_markdown(cam: pd.DataFrame) -> str:
    if cam.empty:
        return ""
    lines = section_header(
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
    lines = section_header(
        "Recall per class",
        "Test recall of each class, mean ± std over seeds: where each init's balanced accuracy comes from.",
        ["init", "label fraction", "fold", "seeds", *labels],
    )
    for (frac, fold, init), recalls in sorted(groups.items(), key=lambda kv: kv[0]):
        cells = " | ".join(
            f"{np.mean(v):.2f} ± {seed_std(v):.2f}" if len(v) else "–"
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
    lines = section_header(
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
    lines = section_header(
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


def section_header(title: str, text: str, columns: str | list[str]) -> list[str]:
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


def paired_markdown(paired: pd.DataFrame, target: Target) -> str:
    if paired.empty:
        return ""
    metric = target.score_name
    lines = section_header(
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
