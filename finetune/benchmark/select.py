"""Recipe selection on validation: every grid point on a selection seed of its own (test never
scored), one step beyond the grid's edge while the winner sits on it, the best kept."""

from __future__ import annotations

import json
from pathlib import Path

from ssl_derm.engine import RunFailed
from ssl_derm.finetune.benchmark.runs import Runner
from ssl_derm.finetune.targets import TARGETS, Target

SELECT_SEED = 1000  # the recipe-selection runs' seed offset: apart from the reported seeds 0..S-1


FAILED = "FAILED"  # in a selection run beyond the grid that diverged: its run_key and why (not tried again)


def recipe_slug(point: dict) -> str:
    return "_".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items()) or "default"


def select_recipe(
    runner: Runner,
    grid: list[dict],
    root: Path,
    where: str,
    init: str,
    frac: float,
    fold,
    variant: dict | None = None,
    target: Target | None = None,
) -> tuple:
    """Every grid point on the selection seed (``SELECT_SEED``, none of the reported seeds)
    with test unscored; the best validation score (balanced accuracy, or Dice for
    segmentation) wins (ties: the earlier point). Recorded in ``root/selection.json``. The
    reported seeds then run afresh with the winner: no reported run is a best-of-grid one,
    which would flatter the inits whose runs vary most."""
    target = target or TARGETS["classification"]
    scores = []

    def trial(point: dict, label: str, beyond: bool = False) -> None:
        slug = recipe_slug(point)
        run = root / "select" / slug
        failed = run / FAILED  # the run_key of the run that diverged, then why
        extra = {**(variant or {}), **point, "score_test": False}
        key = runner.key(run, init, frac, SELECT_SEED, fold, extra)
        try:
            recorded, _, why = (failed.read_text() if beyond and failed.is_file() else "").partition("\n")
            if recorded == key:  # the same run diverged before (a CPU run repeats exactly): not tried again
                raise RunFailed(why.strip())
            m = runner(f"{label} {where}: {slug}", run, init, frac, SELECT_SEED, fold, extra)
            score = m[target.val_key] or 0.0
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
    table = [{"recipe": slug, target.val_column: score} for score, _, slug, _ in scores]
    record = {"chosen": best[2], "on": "validation", "grid": table, "beyond_the_grid": len(scores) - len(grid)}
    (root / "selection.json").write_text(json.dumps(record, indent=2))
    return best[2], best[3]


def edge_step(scores: list[tuple[float, dict]], key: str = "encoder_lr") -> dict | None:
    """The point to try next when the best-scoring point's ``key`` is the lowest or the highest
    value tried with its other settings: one step beyond it, at the ratio of the two values
    nearest that edge (3 sig. digits). None when the best is inside the values tried, or
    when fewer than two were tried. Ties go to the earlier point, as in ``select_recipe``."""
    best = max(enumerate(scores), key=lambda t: (t[1][0], -t[0]))[1][1]
    if key not in best:
        return None
    others = {k: v for k, v in best.items() if k != key}
    tried = sorted({p[key] for _, p in scores if {k: v for k, v in p.items() if k != key} == others})
    if len(tried) < 2 or tried[0] < best[key] < tried[-1]:
        return None
    step = tried[-1] / tried[-2] if best[key] == tried[-1] else tried[0] / tried[1]
    return {**best, key: float(f"{best[key] * step:.3g}")}
