"""``ssl-derm benchmark``: finetune every init x label fraction x seed on one
lesion-grouped split, then tabulate.  Each finished run leaves a
``metrics.json``; a re-run skips those, so a long benchmark survives
interruption.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from ssl_derm.finetune.report import METRICS, label_efficiency_plot, results_markdown, save_confusion
from ssl_derm.finetune.train import run_finetune, test_metrics

from ssl_derm.checkpoint import FORMAT_VERSION, init_name, init_seen
from ssl_derm.config import BenchmarkConfig, FinetuneConfig, save_yaml, select_grid
from ssl_derm.data.labeled import LabeledData, labeled_from_config, prepare_labeled
from ssl_derm.data.leaks import check_split_by_content, check_unseen
from ssl_derm.data.splits import make_folds, write_splits
from ssl_derm.encoders import resolve_encoder_settings
from ssl_derm.engine import run_dir

COLUMNS = ["init", "label_fraction", "seed", "fold", "recipe", "val_balanced_accuracy", *METRICS]


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


def write_reports(rows: list[dict], out: Path, names: list[str]) -> pd.DataFrame:
    """results.csv, results.md, label_efficiency.png and confusion matrices from the runs so far."""
    results = pd.DataFrame(rows)[COLUMNS]
    results.to_csv(out / "results.csv", index=False)
    (out / "results.md").write_text(
        "# Benchmark: test split, balanced accuracy = mean recall\n\n" + results_markdown(results)
    )
    label_efficiency_plot(results, out / "label_efficiency.png")
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


def _current(metrics_file: Path, table: pd.DataFrame) -> bool:
    """A finished run counts only if this ssl-derm's checkpoint format wrote it (older ones
    had no leak checks) and it was validated and tested on this benchmark's split."""
    if json.loads(metrics_file.read_text()).get("format_version") != FORMAT_VERSION:
        return False
    split_file = metrics_file.parent / "splits.csv"
    if not split_file.is_file():
        return False
    run = pd.read_csv(split_file, dtype=str, keep_default_na=False)

    def held(t):
        return set(map(tuple, t.loc[t["split"].isin(["val", "test"]), ["image", "split"]].to_numpy()))

    return held(run) == held(table)


def _slug_recipe(point: dict) -> str:
    return "_".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items()) or "default"


def score_test(run: Path, lab: LabeledData) -> dict:
    """Score a validation-only run's ``model.ckpt`` on the test split, once; update its metrics.json."""
    from ssl_derm.finetune.evaluate import load_classifier

    model, ckpt = load_classifier(run / "model.ckpt")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.update(test_metrics(model, lab, ckpt["normalization"], device))
    metrics["split"] = "test"
    (run / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


class _Runner:
    """One fine-tuning run of the benchmark, skipped when a current one is on disk."""

    def __init__(self, cfg: BenchmarkConfig, base: dict) -> None:
        self.cfg, self.base, self.labs = cfg, base, {}

    def __call__(self, label: str, run: Path, init: str, frac: float, seed: int, fold, extra: dict) -> dict:
        done = run / "metrics.json"
        lab = fold["lab"]
        if done.is_file() and not _current(done, lab.table):
            print(f"{label}: stale (older ssl-derm or another split), run again")
            done.unlink()
        if done.is_file():
            print(f"{label}: done, skipped")
            return json.loads(done.read_text())
        print(label)
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
        if run_cfg.image_size != fold["size"]:  # an init checkpoint at another size: same splits, other pixels
            key = (fold["splits"], run_cfg.image_size)
            if key not in self.labs:
                self.labs[key] = prepare_labeled(
                    None,
                    run_cfg.image_size,
                    splits=fold["splits"],
                    cache_dir=self.cfg.cache_dir,
                    progress=self.cfg.progress,
                    resize=self.cfg.resize,
                )
            lab = self.labs[key]
        run_finetune(run_cfg, overwrite=True, lab=lab)
        return json.loads(done.read_text())


def run_benchmark(cfg: BenchmarkConfig, overwrite: bool = False, resume: bool = False) -> pd.DataFrame:
    """``resume`` is accepted for symmetry: a benchmark always continues where it stopped.

    With ``folds`` K >= 3 every init is fine-tuned on each of K lesion-grouped stratified
    folds; with ``select_on=val`` each init, label fraction and fold first tries every
    point of ``select_grid`` on seed 0 without scoring test, keeps the point with the best
    validation balanced accuracy, scores that run on test once, and runs the other seeds
    with it."""
    names = init_names(cfg.inits)
    out = run_dir(cfg.out, "benchmark", overwrite, resume=True)
    save_yaml(cfg, out / "config.yaml")
    base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(FinetuneConfig)}
    first = resolve_encoder_settings(FinetuneConfig(**{**base, "init": cfg.inits[0]}))
    lab = labeled_from_config(cfg, first.image_size)
    check_split_by_content(lab)
    if cfg.folds:
        folds = []
        for k, table in enumerate(make_folds(lab.table, cfg.folds, cfg.seed)):
            fold_lab = LabeledData(table, lab.bank, lab.classes)
            (out / "folds" / f"fold{k}").mkdir(parents=True, exist_ok=True)
            path = write_splits(table, out / "folds" / f"fold{k}")
            folds.append({"name": f"fold{k}", "k": k, "lab": fold_lab, "splits": path, "size": first.image_size})
    else:
        folds = [{"name": "", "k": 0, "lab": lab, "splits": write_splits(lab.table, out), "size": first.image_size}]
    for fold in folds:  # before any run: a leaky comparison is refused whole, not after hours
        for init in cfg.inits:
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
        (n, i, f, s, fold)
        for s in range(cfg.seeds)
        for fold in folds
        for f in cfg.label_fractions
        for n, i in zip(names, cfg.inits)
    ]
    for j, (name, init, frac, s, fold) in enumerate(jobs, 1):
        root = out / "runs" / _slug(name) / f"fraction{frac:g}"
        if fold["name"]:
            root = root / fold["name"]
        where = f"{name}, label fraction {frac:g}" + (f", {fold['name']}" if fold["name"] else "")
        recipe, extra = "", {}
        if grid is not None:
            recipe, extra = _select(runner, grid, root, where, init, frac, fold)
        run = root / f"seed{s}"
        if grid is not None and s == 0:
            run = root / "select" / recipe  # the chosen selection run is seed 0's run
            m = json.loads((run / "metrics.json").read_text())
            if m.get("split") != "test":
                m = score_test(run, fold["lab"])
        else:
            m = runner(f"[{j}/{len(jobs)}] {where}, seed {s}", run, init, frac, s, fold, extra)
        rows.append(
            {
                "init": name,
                "label_fraction": frac,
                "seed": s,
                "fold": fold["k"],
                "recipe": recipe,
                "val_balanced_accuracy": m.get("best_epoch_val_balanced_accuracy"),
                **{c: m[c] for c in METRICS},
                "confusion_matrix": m["confusion_matrix"],
            }
        )
        results = write_reports(rows, out, names)  # after every run: an interrupted benchmark still reports
    print(results_markdown(results))
    print(f"wrote {out / 'results.csv'}, results.md, label_efficiency.png ({time.time() - started:.0f} s)")
    return results


def _select(runner: _Runner, grid: list[dict], root: Path, where: str, init: str, frac: float, fold) -> tuple:
    """Every grid point on seed 0 with test unscored; the best validation balanced accuracy wins
    (ties: the earlier point). Recorded in ``root/selection.json``."""
    scores = []
    for n, point in enumerate(grid, 1):
        slug = _slug_recipe(point)
        label = f"select {n}/{len(grid)} {where}: {slug}"
        m = runner(label, root / "select" / slug, init, frac, 0, fold, {**point, "score_test": False})
        scores.append((m["best_epoch_val_balanced_accuracy"] or 0.0, -n, slug, point))
    best = max(scores)
    table = [{"recipe": slug, "val_balanced_accuracy": score} for score, _, slug, _ in scores]
    (root / "selection.json").write_text(json.dumps({"chosen": best[2], "on": "validation", "grid": table}, indent=2))
    return best[2], best[3]
