"""The frozen-feature probe's statistics: balanced accuracy with paired bootstrap intervals."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from ssl_derm.pretext.knn import balanced_bank, bootstrap_balanced_accuracy


def test_bootstrap_matches_sklearn_and_pairs_the_resamples():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 600)
    good = np.where(rng.random(600) < 0.7, y, rng.integers(0, 5, 600))
    same = good.copy()
    bad = np.where(rng.random(600) < 0.2, y, rng.integers(0, 5, 600))
    out = bootstrap_balanced_accuracy(y, {"good": good, "same": same, "bad": bad}, reference="good", n=500)
    assert np.isclose(out["good"]["balanced_accuracy"], balanced_accuracy_score(y, good))
    lo, hi = out["good"]["ci95"]
    assert lo < out["good"]["balanced_accuracy"] < hi and hi - lo < 0.15
    assert out["same"]["diff_ci95"] == [0.0, 0.0]  # identical predictions: no difference on any resample
    assert out["bad"]["diff_ci95"][1] < 0  # clearly worse: the whole interval below zero


def test_balanced_bank_caps_every_class():
    labels = np.array([0] * 100 + [1] * 10 + [2] * 40)
    bank = balanced_bank(np.arange(150), labels, size=60, seed=0)
    counts = np.bincount(labels[bank])
    assert counts.tolist() == [20, 10, 20]
