"""Paired comparisons of two inits on the same test images and seeds.

A benchmark's claim is a difference between two inits, and two things make it noisy: which
test images happen to be in the split, and the fine-tuning seed. ``paired_bootstrap``
resamples both at once, keeping the pairing (init A and B are always scored on the same
resampled images, for the same resampled seeds), and returns the mean difference with its
percentile interval. An interval that contains zero is a tie. With ``groups`` (the lesion of
each test image) the draws resample lesions, all images of a lesion together: images of one
lesion are not independent, and counting them as such would narrow the interval.
"""

from __future__ import annotations

import numpy as np

BOOT = 2000


def balanced_accuracy_draws(labels: np.ndarray, hits: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Balanced accuracy (mean recall over the classes present) of per-image ``hits`` (1 where
    the prediction is right) under each row of bootstrap count ``weights`` ``[B, N]``: ``[B]``.
    A class that a draw leaves out does not count in that draw's mean."""
    classes = np.unique(labels)
    onehot = (labels[None, :] == classes[:, None]).astype(float)  # [C, N]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean((weights @ (onehot * hits).T) / (weights @ onehot.T), axis=1)


def mean_draws(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted mean of per-image ``scores`` (Dice, say) under each row of ``weights``."""
    return (weights @ scores) / weights.sum(1)


def draw_weights(n: int, boot: int, rng: np.random.Generator, groups: np.ndarray | None = None) -> np.ndarray:
    """``[boot, n]`` bootstrap counts of ``n`` items: each row draws ``n`` items with
    replacement or, with ``groups`` (``[n]`` labels), as many groups as there are, each drawn
    group counting once for every one of its items."""
    group = np.arange(n) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    g = n if groups is None else int(group.max()) + 1
    counts = np.stack([np.bincount(rng.integers(0, g, g), minlength=g) for _ in range(boot)])
    return counts[:, group].astype(float)


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    labels: np.ndarray | None = None,
    boot: int = BOOT,
    seed: int = 0,
    resample_seeds: bool = True,
    groups: np.ndarray | None = None,
) -> dict:
    """Mean over seeds of ``score(a) - score(b)`` with a 95% bootstrap interval.

    ``a`` and ``b`` are ``[S, N]``: per-image scores of the two inits for the same S seeds
    (row s of both: fine-tuning seed s) on the same N test images in the same order. With
    ``labels`` (``[N]`` class indices) the scores are hits and the statistic is balanced
    accuracy; without, the mean score. Each draw resamples the N images (with ``groups``,
    ``[N]`` lesion ids, whole lesions; the same draw for every seed and both inits) and, with
    ``resample_seeds``, the S seeds (the same for both inits). Returns ``diff`` (on the data
    as observed), ``lo``, ``hi``, ``seeds``, ``images``, ``lesions`` (the units resampled: the
    images without ``groups``) and ``verdict``: ``tie`` when the interval contains zero, else
    ``ahead`` or ``behind``."""
    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    if a.shape != b.shape:
        raise ValueError(f"paired scores differ in shape: {a.shape} and {b.shape}")
    s, n = a.shape
    if n == 0:
        raise ValueError("no test images to compare")
    rng = np.random.default_rng(seed)
    if groups is not None and len(groups) != n:
        raise ValueError(f"{len(groups)} lesion ids for {n} test images")
    weights = draw_weights(n, boot, rng, groups)
    observed = np.ones((1, n))

    def score(x: np.ndarray, w: np.ndarray) -> np.ndarray:  # [S, len(w)]
        if labels is not None:
            return np.stack([balanced_accuracy_draws(np.asarray(labels), row, w) for row in x])
        return np.stack([mean_draws(row, w) for row in x])

    diff = score(a, weights) - score(b, weights)  # [S, B]
    pick = rng.integers(0, s, (boot, s)) if resample_seeds and s > 1 else np.tile(np.arange(s), (boot, 1))
    draws = diff[pick, np.arange(boot)[:, None]].mean(1)  # [B]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    d = float((score(a, observed) - score(b, observed)).mean())
    return {
        "diff": d,
        "lo": float(lo),
        "hi": float(hi),
        "seeds": int(s),
        "images": int(n),
        "lesions": int(len(np.unique(groups))) if groups is not None else int(n),
        "verdict": "tie" if lo <= 0 <= hi else ("ahead" if lo > 0 else "behind"),
    }


def bootstrap_interval(
    a: np.ndarray,
    labels: np.ndarray | None = None,
    boot: int = BOOT,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict:
    """One init's score, the mean over seeds of ``a`` ``[S, N]`` (as ``paired_bootstrap``'s
    ``a``), with its 95% interval from the same draws of test images (or lesions, with
    ``groups``) and seeds: the paired difference to an init that is never right, whose score
    is 0 in every draw. Returns ``mean``, ``lo``, ``hi``."""
    zero = np.zeros_like(np.atleast_2d(np.asarray(a, float)))
    result = paired_bootstrap(a, zero, labels, boot, seed, groups=groups)
    return {"mean": result["diff"], "lo": result["lo"], "hi": result["hi"]}


def format_interval(result: dict) -> str:
    """``+0.039 [+0.007, +0.073]``."""
    return f"{result['diff']:+.3f} [{result['lo']:+.3f}, {result['hi']:+.3f}]"
