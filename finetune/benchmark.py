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
from ssl_derm.finetune.report import METRICS, label_efficiency_plot, results_markdown, save_confusion
from ssl_derm.finetune.train import run_finetune

from ssl_derm.checkpoint import FORMAT_VERSION, init_name, init_seen
from ssl_derm.config import BenchmarkConfig, FinetuneConfig, save_yaml
from ssl_derm.data.labeled import labeled_from_config, prepare_labeled
from ssl_derm.data.leaks import check_split_by_content, check_unseen
from ssl_derm.data.splits import write_splits
from ssl_derm.encoders import resolve_encoder_settings
from ssl_derm.engine import run_dir

COLUMNS = ["init", "label_fraction", "seed", *METRICS]


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


def run_benchmark(cfg: BenchmarkConfig, overwrite: bool = False, resume: bool = False) -> pd.DataFrame:
    """``resume`` is accepted for symmetry: a benchmark always continues where it stopped."""
    names = init_names(cfg.inits)
    out = run_dir(cfg.out, "benchmark", overwrite, resume=True)
    save_yaml(cfg, out / "config.yaml")
    base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(FinetuneConfig)}
    first = resolve_encoder_settings(FinetuneConfig(**{**base, "init": cfg.inits[0]}))
    labs = {first.image_size: labeled_from_config(cfg, first.image_size)}
    splits = write_splits(labs[first.image_size].table, out)
    check_split_by_content(labs[first.image_size])
    for init in cfg.inits:  # before any run: a leaky comparison is refused whole, not after hours
        check_unseen(
            init_seen(init),
            labs[first.image_size],
            f"the init {init}",
            "pretrain on the benchmark's split (pretrain --splits FILE) "
            "or benchmark with --splits <its run>/splits.csv",
        )
    rows, started = [], time.time()
    # Seed-major order: after each seed the table already compares every init and fraction.
    jobs = [(n, i, f, s) for s in range(cfg.seeds) for f in cfg.label_fractions for n, i in zip(names, cfg.inits)]
    for k, (name, init, frac, s) in enumerate(jobs, 1):
        run = out / "runs" / _slug(name) / f"fraction{frac:g}" / f"seed{s}"
        done = run / "metrics.json"
        if done.is_file() and not _current(done, labs[first.image_size].table):
            print(
                f"[{k}/{len(jobs)}] {name}, label fraction {frac:g}, seed {s}: "
                "stale (older ssl-derm or another split), run again"
            )
            done.unlink()
        if done.is_file():
            print(f"[{k}/{len(jobs)}] {name}, label fraction {frac:g}, seed {s}: done, skipped")
        else:
            print(f"[{k}/{len(jobs)}] {name}, label fraction {frac:g}, seed {s}")
            settings = {
                **base,
                "init": init,
                "label_fraction": frac,
                "seed": cfg.seed + s,
                "out": str(run),
                "splits": str(splits),
            }
            run_cfg = resolve_encoder_settings(FinetuneConfig(**settings))
            if run_cfg.image_size not in labs:  # an init checkpoint at another size: same splits, other pixels
                labs[run_cfg.image_size] = prepare_labeled(
                    None,
                    run_cfg.image_size,
                    splits=splits,
                    cache_dir=cfg.cache_dir,
                    progress=cfg.progress,
                    resize=cfg.resize,
                )
            run_finetune(run_cfg, overwrite=True, lab=labs[run_cfg.image_size])
        m = json.loads(done.read_text())
        rows.append(
            {
                "init": name,
                "label_fraction": frac,
                "seed": s,
                **{c: m[c] for c in METRICS},
                "confusion_matrix": m["confusion_matrix"],
            }
        )
        results = write_reports(rows, out, names)  # after every run: an interrupted benchmark still reports
    print(results_markdown(results))
    print(f"wrote {out / 'results.csv'}, results.md, label_efficiency.png ({time.time() - started:.0f} s)")
    return results
