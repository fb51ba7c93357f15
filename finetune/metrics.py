"""The metrics the field reports, computed with scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)


def auc_macro(y_true: np.ndarray, probs: np.ndarray) -> float | None:
    """One-vs-rest ROC AUC averaged over the classes present with both outcomes."""
    scores = []
    for k in range(probs.shape[1]):
        pos = y_true == k
        if pos.any() and (~pos).any():
            scores.append(roc_auc_score(pos, probs[:, k]))
    return float(np.mean(scores)) if scores else None


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """accuracy, balanced accuracy (mean recall), macro/weighted F1, macro AUC,
    per-class precision/recall/F1/support and the confusion matrix."""
    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (len(y_true), len(classes)):
        raise ValueError(f"probs must be [N={len(y_true)}, K={len(classes)}], got {probs.shape}")
    y_pred = probs.argmax(1)
    labels = list(range(len(classes)))
    present = np.unique(y_true)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n_images": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        # mean recall over the classes present in y_true (the ISIC challenge metric)
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "auc_macro": auc_macro(y_true, probs),
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(classes)
        },
        "confusion_matrix": {
            "labels": list(classes),
            "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        },
    }
