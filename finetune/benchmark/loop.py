"""The benchmark's job loop: every init x label fraction x seed (x fold) on one split, each
init's recipe chosen on validation first, the report rewritten after every run."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import pandas as pd

from ssl_derm.checkpoint import init_seen
from ssl_derm.config import BenchmarkConfig, FinetuneConfig, save_yaml, select_grid
from ssl_derm.data.labeled import LabeledData, labeled_from_config
from ssl_derm.data.leaks import check_split_by_content, check_unseen
from ssl_derm.data.splits import make_folds
from ssl_derm.encoders import resolve_encoder_settings
from ssl_derm.engine import run_dir
from ssl_derm.errors import UserError
from ssl_derm.finetune.benchmark.inits import recorded_init_name, slug
from ssl_derm.finetune.benchmark.regenerate import ensure_cam_in_lesion, ensure_predictions
from ssl_derm.finetune.benchmark.reports import write_reports, written_reports
from ssl_derm.finetune.benchmark.runs import Runner, kept_last_epoch
from ssl_derm.finetune.benchmark.select import select_recipe
from ssl_derm.finetune.report import results_markdown
from ssl_derm.finetune.targets import TARGETS, Target


def run_benchmark(cfg: BenchmarkConfig, overwrite: bool = False, resume: bool = False) -> pd.DataFrame:
    """``resume`` is accepted for symmetry: a benchmark always continues where it stopped.

    With ``folds`` K >= 3 every init is fine-tuned on each of K lesion-grouped stratified
    folds; with ``select_on=val`` each init, label fraction and fold first tries every
    point of ``select_grid`` on a selection seed of its own without scoring test, keeps the
    point with the best validation score, and runs every reported seed with it (test scored
    once per run)."""
    target = TARGETS[cfg.target]
    entries = target.benchmark_inits(cfg)
    names = [n for n, _, _ in entries]
    inits = [i for _, i, _ in entries]
    out = run_dir(cfg.out, "benchmark", overwrite, resume=True)
    if cfg.blind:
        _warn_of_tables(out)
    save_yaml(cfg, out / "config.yaml")
    base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(FinetuneConfig)}
    first = resolve_encoder_settings(FinetuneConfig(**{**base, "init": inits[0]}))
    lab = labeled_from_config(cfg, first.image_size, masks=target.masks)
    check_split_by_content(lab)
    save_split = target.write_table
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
    runner = Runner(cfg, base)
    rows, started = [], time.time()
    jobs = _jobs(cfg, folds, entries)
    for j, (name, init, frac, s, fold, variant) in enumerate(jobs, 1):
        root = _job_root(out, name, frac, fold)
        where = f"{name}, label fraction {frac:g}" + (f", {fold['name']}" if fold["name"] else "")
        recipe, extra = "", dict(variant)
        if grid is not None:
            recipe, point = select_recipe(runner, grid, root, where, init, frac, fold, variant, target)
            extra = {**variant, **point}
        m = runner(f"[{j}/{len(jobs)}] {where}, seed {s}", root / f"seed{s}", init, frac, s, fold, extra)
        run = m.pop("_dir")  # a longer run's folder when the budget was doubled
        if target.per_class:
            ensure_predictions(run, fold["lab"], tta=cfg.tta)
            if cfg.cam_in_lesion:
                ensure_cam_in_lesion(run, fold["lab"], cfg.data)
        rows.append(_row(target, name, frac, s, fold["k"], recipe, m, run))
        if not cfg.blind:  # after every run: an interrupted benchmark still reports
            results = write_reports(rows, out, names, target)
    if cfg.blind:
        return _blind_summary(rows, out, target, time.time() - started)
    print(results_markdown(results, list(target.metrics)))
    print(f"wrote {out / 'results.csv'}, results.md, label_efficiency.png ({time.time() - started:.0f} s)")
    return results


def _warn_of_tables(out: Path) -> None:
    """A blind benchmark writes no test table, but one of an earlier pass may be in ``out``."""
    old = written_reports(out)
    if old:
        print(
            f"note: {out} holds test tables of an earlier pass ({', '.join(old)}); --blind neither reads nor "
            "updates them: move them away to keep test out of view",
            file=sys.stderr,
        )


def _blind_summary(rows: list[dict], out: Path, target: Target, seconds: float) -> pd.DataFrame:
    """What a ``blind`` benchmark shows: the validation score per init and fraction (mean ± std
    over seeds), no test figure; each run's test scores stay in its metrics.json."""
    val = pd.DataFrame(rows)[["init", "label_fraction", target.val_column]]
    val[target.val_column] = pd.to_numeric(val[target.val_column], errors="coerce")  # a run without one: n/a
    print("Validation only (blind): mean ± std over seeds. Every run scored test, kept in its metrics.json.\n")
    print(results_markdown(val, [target.val_column], note=False))
    print(
        f"{len(rows)} run(s) in {out / 'runs'} ({seconds:.0f} s). Once the study is complete, "
        f"ssl-derm benchmark --report-only --out {out} writes the test tables."
    )
    return val


def _jobs(cfg: BenchmarkConfig, folds: list[dict], entries: list[tuple]) -> list[tuple]:
    """(name, init, fraction, seed, fold, variant) of every reported run, seed-major: after each
    seed the table already compares every init and fraction."""
    return [
        (n, i, f, s, fold, variant)
        for s in range(cfg.seeds)
        for fold in folds
        for f in cfg.label_fractions
        for n, i, variant in entries
    ]


def _job_root(out: Path, name: str, frac: float, fold: dict) -> Path:
    """The folder of one init, label fraction and fold: its seeds and its selection."""
    root = out / "runs" / slug(name) / f"fraction{frac:g}"
    return root / fold["name"] if fold["name"] else root


def _row(target: Target, name: str, frac: float, seed: int, fold: int, recipe: str, m: dict, run: Path) -> dict:
    """One row of the report from a finished run's metrics ``m`` (the longest run's)."""
    row = {
        "init": name,
        "label_fraction": frac,
        "seed": seed,
        "fold": fold,
        "recipe": recipe,
        target.val_column: m.get(target.val_key),
        **{c: m[c] for c in target.metrics},
        "_run": run,
    }
    if "confusion_matrix" in m:
        row["confusion_matrix"] = m["confusion_matrix"]
    return row


def _finished(seed_dir: Path, doublings: int) -> tuple[dict, Path] | None:
    """The metrics and folder a benchmark reports for one seed: the run in ``seed_dir``, or the
    longest of its ``budget_x2``, ``budget_x4``, ... runs while each kept its last epoch (as
    ``Runner`` ran them); None while one of them has not finished."""
    run = seed_dir
    for k in range(doublings + 1):
        if k:
            run = seed_dir / f"budget_x{2**k}"
        done = run / "metrics.json"
        if not done.is_file():
            return None
        m = json.loads(done.read_text())
        if not kept_last_epoch(m):
            break
    return m, run


def report_benchmark(out: str | Path) -> pd.DataFrame:
    """Rewrite every table of the benchmark folder ``out`` from the runs on disk, training
    nothing: the inits, fractions, seeds, folds, selection and budget rule are read from its
    ``config.yaml``, each job's recipe from its ``selection.json``, each run's scores from its
    own files. A checkpoint that is gone is named as its runs recorded it. Runs are taken as
    they are (no ``run_key`` is checked, as that needs the init checkpoints); jobs not yet
    finished are left out and counted."""
    from ssl_derm.config import build_config, load_yaml

    out = Path(out)
    if not (out / "config.yaml").is_file():
        raise UserError(f"--report-only: {out} holds no benchmark (no config.yaml)")
    cfg = build_config(BenchmarkConfig, load_yaml(out / "config.yaml"), {}, {})
    target = TARGETS[cfg.target]
    entries = target.benchmark_inits(cfg, name_of=lambda init: recorded_init_name(init, out / "runs"))
    folds = [{"name": f"fold{k}", "k": k} for k in range(cfg.folds)] if cfg.folds else [{"name": "", "k": 0}]
    rows, missing = [], 0
    for name, _, frac, s, fold, _ in _jobs(cfg, folds, entries):
        root = _job_root(out, name, frac, fold)
        recipe = ""
        if cfg.select_on == "val":
            selection = root / "selection.json"
            if not selection.is_file():
                missing += 1
                continue
            recipe = json.loads(selection.read_text())["chosen"]
        found = _finished(root / f"seed{s}", cfg.budget_doublings)
        if found is None:
            missing += 1
            continue
        rows.append(_row(target, name, frac, s, fold["k"], recipe, *found))
    if not rows:
        raise UserError(f"--report-only: no finished run in {out / 'runs'}")
    results = write_reports(rows, out, [n for n, _, _ in entries], target)
    print(results_markdown(results, list(target.metrics)))
    left = f"; {missing} job(s) not finished, left out" if missing else ""
    print(f"wrote {out / 'results.csv'}, results.md, label_efficiency.png from {len(rows)} run(s){left}")
    return results
