"""The metrics the field reports: classification with scikit-learn, lesion segmentation
(Dice, Jaccard, the ISIC 2018 thresholded Jaccard, pixel accuracy) per image."""

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


SEGMENTATION_METRICS = ["dice", "jaccard", "jaccard_thresholded", "pixel_accuracy"]
JACCARD_THRESHOLD = 0.65  # ISIC 2018 task 1: an image with Jaccard below 0.65 scores 0


def mask_counts(pred, true) -> np.ndarray:
    """Per-image ``[N, 4]`` int64 counts ``(tp, fp, fn, tn)`` of boolean masks ``pred`` and
    ``true`` (``[N, H, W]`` or ``[N, 1, H, W]``, numpy or torch)."""
    import torch

    if isinstance(pred, torch.Tensor):
        pred, true = pred.bool().flatten(1), true.bool().flatten(1)
        tp = (pred & true).sum(1)
        fp = (pred & ~true).sum(1)
        fn = (~pred & true).sum(1)
        tn = (~pred & ~true).sum(1)
        return torch.stack([tp, fp, fn, tn], 1).cpu().numpy().astype(np.int64)
    pred = np.asarray(pred, bool).reshape(len(pred), -1)
    true = np.asarray(true, bool).reshape(len(true), -1)
    return np.stack(
        [(pred & true).sum(1), (pred & ~true).sum(1), (~pred & true).sum(1), (~pred & ~true).sum(1)], 1
    ).astype(np.int64)


def scores_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image scores from ``mask_counts``: ``dice`` = 2TP / (2TP + FP + FN), ``jaccard``
    (IoU) = TP / (TP + FP + FN), both 1 when prediction and truth are both empty;
    ``jaccard_thresholded`` = jaccard where it is >= 0.65, else 0 (ISIC 2018 task 1);
    ``pixel_accuracy`` = (TP + TN) / all pixels."""
    tp, fp, fn, tn = (np.asarray(counts, np.float64)[:, i] for i in range(4))
    union = tp + fp + fn
    empty = union == 0
    dice = np.where(empty, 1.0, 2 * tp / np.maximum(2 * tp + fp + fn, 1))
    jaccard = np.where(empty, 1.0, tp / np.maximum(union, 1))
    return {
        "dice": dice,
        "jaccard": jaccard,
        "jaccard_thresholded": np.where(jaccard >= JACCARD_THRESHOLD, jaccard, 0.0),
        "pixel_accuracy": (tp + tn) / np.maximum(tp + fp + fn + tn, 1),
    }


def segmentation_metrics(probs, masks, names: list[str] | None = None, threshold: float = 0.5) -> dict:
    """Per-image and mean Dice, Jaccard, thresholded Jaccard and pixel accuracy of predicted
    lesion probabilities ``probs`` (``[N, H, W]`` or ``[N, 1, H, W]`` in [0, 1]; a pixel is
    lesion where ``probs > threshold``) against ``masks`` ({0, 1} or bool, same shape).
    Means are over images (each image weighs the same, as in ISIC 2018). ``per_image`` lists
    every image's scores and its true and predicted lesion area share."""
    probs = np.asarray(probs, dtype=np.float32)
    masks = np.asarray(masks)
    if probs.shape != masks.shape:
        raise ValueError(f"probs {probs.shape} and masks {masks.shape} differ in shape")
    pred, true = probs > threshold, masks > 0.5
    counts = mask_counts(pred, true)
    scores = scores_from_counts(counts)
    n = len(counts)
    pixels = np.maximum(counts.sum(1), 1)
    names = list(names) if names is not None else [str(i) for i in range(n)]
    per_image = [
        {
            "image": names[i],
            **{k: float(v[i]) for k, v in scores.items()},
            "lesion_area_true": float((counts[i, 0] + counts[i, 2]) / pixels[i]),
            "lesion_area_pred": float((counts[i, 0] + counts[i, 1]) / pixels[i]),
        }
        for i in range(n)
    ]
    return {
        "n_images": int(n),
        **{k: float(v.mean()) if n else None for k, v in scores.items()},
        "threshold": float(threshold),
        "per_image": per_image,
    }
