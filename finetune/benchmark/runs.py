"""One fine-tuning run of a benchmark: its settings and ``run_key``, skipped when a current run is
on disk, resumed from its trainer checkpoint when it was interrupted, and run again at twice the
budget while it keeps its last epoch."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import torch

from ssl_derm.allocator import release_freed_memory
from ssl_derm.checkpoint import FORMAT_VERSION, weights_fingerprint
from ssl_derm.config import BenchmarkConfig, FinetuneConfig, check_resume_settings, key_values
from ssl_derm.data.labeled import prepare_labeled
from ssl_derm.data.splits import label_fraction
from ssl_derm.encoders import resolve_encoder_settings
from ssl_derm.engine import RunFailed
from ssl_derm.errors import UserError
from ssl_derm.files import atomic_write_text
from ssl_derm.finetune.benchmark.regenerate import CAM_FILE
from ssl_derm.finetune.targets import TARGETS
from ssl_derm.finetune.targets.classification import PREDICTIONS, PREDICTIONS_TTA
from ssl_derm.finetune.train import run_finetune


def run_key(run_cfg: FinetuneConfig, init_fingerprint: str) -> str:
    """What a run trains, as a hash: every setting that changes its result, with the init's
    weights by content (``weights_fingerprint``), so a run of other settings or of another
    checkpoint under the same path is never taken for a finished one."""
    settings = key_values(run_cfg)  # what changes the result (a setting's role is declared on its field)
    settings["init"] = init_fingerprint
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def same_split(split_file: Path, table: pd.DataFrame, fraction: float, seed: int) -> bool:
    """``split_file`` (a run's ``splits.csv``) holds this benchmark's split: the ``fraction`` of
    its training part that ``seed`` draws (``label_fraction``), its validation and test parts."""
    if not split_file.is_file():
        return False
    run = pd.read_csv(split_file, dtype=str, keep_default_na=False)

    def parts(t):
        return set(map(tuple, t.loc[t["split"].isin(["train", "val", "test"]), ["image", "split"]].to_numpy()))

    return parts(run) == parts(label_fraction(table, fraction, seed))


def is_current(metrics_file: Path, table: pd.DataFrame, key: str, fraction: float = 1.0, seed: int = 0) -> bool:
    """A finished run counts only if this ssl-derm's checkpoint format wrote it (older ones
    had no leak checks), it trained what this benchmark would train (``key``: ``run_key``)
    and it was trained, validated and tested on this benchmark's split (``same_split``)."""
    try:
        metrics = json.loads(metrics_file.read_text())
    except json.JSONDecodeError:  # cut short (a copy taken mid-write): not a finished run
        return False
    if metrics.get("format_version") != FORMAT_VERSION or metrics.get("run_key") != key:
        return False
    return same_split(metrics_file.parent / "splits.csv", table, fraction, seed)


# what a finished run's folder holds of its test split besides metrics.json, written at its end or
# after it (finetune/benchmark/regenerate.py), so never yet by a run that is about to train
TEST_OUTPUTS = (PREDICTIONS, PREDICTIONS_TTA, CAM_FILE)

STARTED = "run_key.started"  # in a run folder while its run trains: what it trains (started_record)


def started_record(key: str) -> str:
    return json.dumps({"run_key": key, "format_version": FORMAT_VERSION})


def resumable(run: Path, run_cfg: FinetuneConfig, key: str, table: pd.DataFrame) -> int | None:
    """The step an interrupted run can resume from (its ``last.ckpt``), or None: no trainer
    checkpoint, or one of a run that trained something else (another ``run_key`` or checkpoint
    format, another split, other data settings); such a run starts afresh."""
    last, started = run / "checkpoints" / "last.ckpt", run / STARTED
    if not (last.is_file() and started.is_file() and started.read_text() == started_record(key)):
        return None
    if not same_split(run / "splits.csv", table, run_cfg.label_fraction, run_cfg.seed):
        return None
    try:
        check_resume_settings(run_cfg, run / "config.yaml")
    except UserError:
        return None
    return int(torch.load(last, map_location="cpu", weights_only=True)["global_step"])


def kept_last_epoch(metrics: dict) -> bool:
    """The run kept the last epoch of its budget: validation was still rising when the budget
    ended it, so the run is not known to have converged."""
    best, budget = metrics.get("best_epoch"), metrics.get("epochs_budget")
    return best is not None and budget is not None and best >= budget


class Runner:
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
        if done.is_file() and not is_current(done, lab.table, key, run_cfg.label_fraction, run_cfg.seed):
            print(f"{label}: stale (older ssl-derm, another split, other settings or init weights), run again")
            done.unlink()
        if done.is_file():
            print(f"{label}: done, skipped")
            return {**json.loads(done.read_text()), "_dir": run}
        step = resumable(run, run_cfg, key, lab.table)
        print(label if step is None else f"{label}: resuming its interrupted run at step {step}")
        for name in TEST_OUTPUTS:  # a resumed folder may hold another run's (a stale or restored one)
            (run / name).unlink(missing_ok=True)
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
                    masks=TARGETS[self.cfg.target].masks,
                    skip_missing_masks=self.cfg.skip_missing_masks,
                )
            lab = self.labs[data_key]
        try:
            run_finetune(
                run_cfg,
                overwrite=step is None,
                resume=step is not None,
                lab=lab,
                started=lambda out: atomic_write_text(started_record(key), out / STARTED),
                blind=getattr(self.cfg, "blind", False),
            )
        except RunFailed:  # a diverged run is not resumed: it runs again from the start
            (run / STARTED).unlink(missing_ok=True)
            raise
        finally:
            release_freed_memory()  # the next run's model and batches start from a trimmed heap
        metrics = {**json.loads(done.read_text()), "run_key": key}
        if step is not None:
            metrics["resumed_at_step"] = step  # the run continued from its trainer checkpoint there
        atomic_write_text(json.dumps(metrics, indent=2), done)  # never half a file for a copy to take
        (run / STARTED).unlink(missing_ok=True)  # only once metrics.json holds the run_key
        return {**metrics, "_dir": run}
