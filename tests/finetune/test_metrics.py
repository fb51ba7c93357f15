import numpy as np
import pytest

from ssl_derm.finetune.metrics import classification_metrics


def test_metrics_against_hand_computed_values():
    # true:  a a a a b b c c     pred:  a a a b b c c a
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 0, 1, 1, 2, 2, 0])
    probs = np.full((8, 3), 0.1)
    probs[np.arange(8), pred] = 0.8
    m = classification_metrics(y, probs, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 1 / 2) / 3)  # mean recall
    f1 = {"a": 2 * 0.75 * 0.75 / 1.5, "b": 0.5, "c": 0.5}  # precision a = 3/4, b = 1/2, c = 1/2
    assert m["macro_f1"] == pytest.approx(np.mean(list(f1.values())))
    assert m["weighted_f1"] == pytest.approx((4 * f1["a"] + 2 * f1["b"] + 2 * f1["c"]) / 8)
    assert m["per_class"]["a"] == {"precision": 0.75, "recall": 0.75, "f1": pytest.approx(0.75), "support": 4}
    assert m["confusion_matrix"] == {"labels": ["a", "b", "c"], "matrix": [[3, 1, 0], [0, 1, 1], [1, 0, 1]]}
    assert m["n_images"] == 8
    assert 0.5 < m["auc_macro"] <= 1.0


def test_perfect_scores_give_auc_one():
    y = np.array([0, 1, 2, 1])
    m = classification_metrics(y, np.eye(3)[y], ["a", "b", "c"])
    assert m["balanced_accuracy"] == m["auc_macro"] == m["macro_f1"] == 1.0
