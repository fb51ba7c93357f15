"""Paired bootstrap of two inits' per-image test scores (ssl_derm/stats.py)."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from ssl_derm.stats import balanced_accuracy_draws, bootstrap_interval, paired_bootstrap


def _hits(labels: np.ndarray, recall: list[float], rng) -> np.ndarray:
    """Per-image hits with the given recall per class."""
    return (rng.random(len(labels)) < np.asarray(recall)[labels]).astype(float)


def test_observed_difference_is_the_difference_of_balanced_accuracies():
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=600, p=[0.7, 0.2, 0.1])  # imbalanced: BA differs from accuracy
    a = np.stack([_hits(labels, [0.9, 0.6, 0.5], rng) for _ in range(3)])
    b = np.stack([_hits(labels, [0.95, 0.4, 0.3], rng) for _ in range(3)])

    def ba(hits):
        return balanced_accuracy_score(labels, np.where(hits > 0, labels, (labels + 1) % 3))

    expected = np.mean([ba(x) - ba(y) for x, y in zip(a, b)])
    result = paired_bootstrap(a, b, labels, boot=500)
    assert result["diff"] == pytest.approx(expected, abs=1e-12)
    assert result["seeds"] == 3 and result["images"] == 600
    assert result["lo"] < result["diff"] < result["hi"]
    assert result["verdict"] == "ahead" and result["lo"] > 0  # +0.13 in recall of the rare classes


def test_identical_inits_tie_and_swapping_flips_the_sign():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 400)
    a = np.stack([_hits(labels, [0.6] * 4, rng) for _ in range(2)])
    b = np.stack([_hits(labels, [0.5] * 4, rng) for _ in range(2)])
    same = paired_bootstrap(a, a, labels, boot=300)
    assert same["diff"] == 0 and same["lo"] == 0 and same["hi"] == 0 and same["verdict"] == "tie"
    ab, ba = paired_bootstrap(a, b, labels, boot=300), paired_bootstrap(b, a, labels, boot=300)
    assert ab["diff"] == pytest.approx(-ba["diff"]) and ab["lo"] == pytest.approx(-ba["hi"])


def test_small_noisy_difference_is_a_tie():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 60)
    a = np.stack([_hits(labels, [0.7, 0.7], rng) for _ in range(3)])
    b = np.stack([_hits(labels, [0.68, 0.68], rng) for _ in range(3)])
    assert paired_bootstrap(a, b, labels, boot=500)["verdict"] == "tie"


def test_mean_scores_without_labels_and_the_pairing_narrows_the_interval():
    rng = np.random.default_rng(3)
    hard = rng.random(300)  # per-image difficulty shared by both inits: pairing cancels it
    a = np.clip(hard + 0.03 + rng.normal(0, 0.01, (2, 300)), 0, 1)
    b = np.clip(hard + rng.normal(0, 0.01, (2, 300)), 0, 1)
    result = paired_bootstrap(a, b, boot=500)
    assert result["diff"] == pytest.approx((a - b).mean())
    assert result["verdict"] == "ahead" and result["hi"] - result["lo"] < 0.01


def test_draws_match_sklearn_on_a_resample():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 200)
    hits = _hits(labels, [0.8, 0.5, 0.3], rng)
    idx = rng.integers(0, 200, 200)
    weights = np.bincount(idx, minlength=200)[None].astype(float)
    pred = np.where(hits > 0, labels, (labels + 1) % 3)
    assert balanced_accuracy_draws(labels, hits, weights)[0] == pytest.approx(
        balanced_accuracy_score(labels[idx], pred[idx])
    )


def test_shapes_must_pair():
    with pytest.raises(ValueError, match="differ in shape"):
        paired_bootstrap(np.ones((2, 5)), np.ones((3, 5)))


def test_one_inits_interval_is_its_mean_balanced_accuracy_and_narrows_with_images():
    rng = np.random.default_rng(1)
    labels = rng.choice(3, size=2000, p=[0.7, 0.2, 0.1])
    a = np.stack([_hits(labels, [0.9, 0.6, 0.5], rng) for _ in range(3)])

    def ba(hits):
        return balanced_accuracy_score(labels, np.where(hits > 0, labels, (labels + 1) % 3))

    whole = bootstrap_interval(a, labels, boot=500)
    assert whole["mean"] == pytest.approx(np.mean([ba(x) for x in a]), abs=1e-12)
    assert whole["lo"] < whole["mean"] < whole["hi"] and whole["lo"] < 2 / 3 < whole["hi"]  # true BA: 2/3
    part = bootstrap_interval(a[:, :200], labels[:200], boot=500)
    assert part["hi"] - part["lo"] > 2 * (whole["hi"] - whole["lo"])  # 10x fewer images: ~3x wider
    dice = bootstrap_interval(np.full((2, 50), 0.8), boot=100)  # mean scores, no spread
    assert dice == pytest.approx({"mean": 0.8, "lo": 0.8, "hi": 0.8})


def test_lesion_groups_resample_whole_lesions():
    """Four images of each lesion, scored alike (as a model scores near-copies): counted as 800
    independent images the interval is about half as wide as the 200 lesions allow."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 200)
    a = np.stack([_hits(labels, [0.7] * 3, rng) for _ in range(2)])
    b = np.stack([_hits(labels, [0.6] * 3, rng) for _ in range(2)])
    four = np.repeat(np.arange(200), 4)
    lesions = paired_bootstrap(a, b, labels, boot=1000)
    as_images = paired_bootstrap(a[:, four], b[:, four], labels[four], boot=1000)
    grouped = paired_bootstrap(a[:, four], b[:, four], labels[four], boot=1000, groups=four)
    assert as_images["diff"] == pytest.approx(grouped["diff"]) == pytest.approx(lesions["diff"])
    width = {k: r["hi"] - r["lo"] for k, r in [("lesions", lesions), ("images", as_images), ("grouped", grouped)]}
    assert width["grouped"] > 1.6 * width["images"]
    assert width["grouped"] == pytest.approx(width["lesions"], rel=0.2)
    assert (grouped["images"], grouped["lesions"]) == (800, 200)
    # one lesion per image is the image bootstrap, draw for draw
    assert paired_bootstrap(a, b, labels, boot=200, groups=np.arange(200)) == paired_bootstrap(a, b, labels, boot=200)
    narrow = bootstrap_interval(a[:, four], labels[four], boot=500)
    wide = bootstrap_interval(a[:, four], labels[four], boot=500, groups=four)
    assert wide["hi"] - wide["lo"] > 1.6 * (narrow["hi"] - narrow["lo"])
