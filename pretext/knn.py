"""The frozen-feature monitor of pretraining: kNN (lightly's ``knn_predict``) and a
linear probe (logistic regression) on pooled encoder features, scored by balanced
accuracy on the labelled validation split.

The bank is class-balanced: with HAM10000's two thirds of nevi, an unbalanced bank
votes "nv" for nearly everything and the balanced accuracy would sit at chance
whatever the features.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score
from torch import nn

from ssl_derm.data.transforms import ImagePipeline
from ssl_derm.encoders import pooled_features
from ssl_derm.stats import balanced_accuracy_draws, draw_weights


def balanced_bank(idx: np.ndarray, labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """At most ``size // K`` images per class of ``idx``, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels[idx])
    per = max(1, size // len(classes))
    keep = [rng.permutation(idx[labels[idx] == c])[:per] for c in classes]
    return np.sort(np.concatenate(keep))


def knn_data(lab, bank_size: int, seed: int) -> dict | None:
    """The monitor's images: a class-balanced bank from the training split of ``lab``
    (a ``LabeledData``), the validation split as queries (None without one). Uint8."""
    if not len(lab.indices("val")):
        return None
    labels = lab.table["label"].map({c: i for i, c in enumerate(lab.classes)}).to_numpy()
    bank_idx = balanced_bank(lab.indices("train"), labels, bank_size, seed)
    return {
        "bank": lab.bank.gather(bank_idx),
        "bank_labels": torch.as_tensor(labels[bank_idx]),
        "query": lab.bank.gather(lab.indices("val")),
        "query_labels": torch.as_tensor(labels[lab.indices("val")]),
        "query_groups": lab.table["group"].to_numpy()[lab.indices("val")] if "group" in lab.table else None,
        "classes": lab.classes,
    }


@torch.no_grad()
def encoder_features(encoder: nn.Module, images: torch.Tensor, pipeline: ImagePipeline, device, batch: int = 256):
    """L2-normalised pooled features of uint8 ``images``, the encoder in eval mode
    (its train/eval mode is restored afterwards)."""
    was_training = encoder.training
    encoder.eval()
    pipeline = pipeline.to(device)
    feats = []
    for i in range(0, len(images), batch):
        x = pipeline(images[i : i + batch].to(device))
        feats.append(F.normalize(pooled_features(encoder, x).float(), dim=1))
    encoder.train(was_training)
    return torch.cat(feats)


def knn_predictions(bank: torch.Tensor, query: torch.Tensor, knn: dict, k: int) -> np.ndarray:
    from lightly.utils.benchmarking import knn_predict

    labels = knn["bank_labels"].to(bank.device)
    return knn_predict(query, bank.T, labels, num_classes=len(knn["classes"]), knn_k=k)[:, 0].cpu().numpy()


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, query_x: np.ndarray, seed: int = 0) -> np.ndarray:
    """A class-balanced logistic regression fitted on ``train_x`` features, applied to ``query_x``."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000, random_state=seed)
    clf.fit(train_x, train_y)
    return clf.predict(query_x)


def linear_probe_predictions(bank: torch.Tensor, query: torch.Tensor, knn: dict, seed: int = 0) -> np.ndarray:
    """``linear_probe`` fitted on the bank's features, applied to the queries."""
    return linear_probe(bank.cpu().numpy(), knn["bank_labels"].numpy(), query.cpu().numpy(), seed)


def knn_balanced_accuracy(encoder: nn.Module, knn: dict, pipeline: ImagePipeline, k: int, device) -> float:
    """Balanced accuracy of the kNN classifier on the validation queries (see ``knn_data``)."""
    bank = encoder_features(encoder, knn["bank"], pipeline, device)
    query = encoder_features(encoder, knn["query"], pipeline, device)
    return float(balanced_accuracy_score(knn["query_labels"].numpy(), knn_predictions(bank, query, knn, k)))


def frozen_probe(encoder: nn.Module, knn: dict, pipeline: ImagePipeline, k: int, device) -> dict[str, np.ndarray]:
    """kNN and linear-probe predictions for the queries, from one pass of features."""
    bank = encoder_features(encoder, knn["bank"], pipeline, device)
    query = encoder_features(encoder, knn["query"], pipeline, device)
    return {"knn": knn_predictions(bank, query, knn, k), "linear_probe": linear_probe_predictions(bank, query, knn)}


def bootstrap_balanced_accuracy(
    labels: np.ndarray,
    predictions: dict[str, np.ndarray],
    reference: str | None = None,
    n: int = 2000,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, dict]:
    """Balanced accuracy of each prediction set with a 95% bootstrap interval over the
    queries (over their lesions with ``groups``: all images of a lesion drawn together), and
    the paired difference to ``reference`` (the same resamples for all)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    weights = draw_weights(len(labels), n, rng, groups)
    draws = {
        name: balanced_accuracy_draws(labels, (np.asarray(pred) == labels).astype(float), weights)
        for name, pred in predictions.items()
    }
    out = {}
    for name, pred in predictions.items():
        row = {
            "balanced_accuracy": float(balanced_accuracy_score(labels, pred)),
            "ci95": [float(np.percentile(draws[name], 2.5)), float(np.percentile(draws[name], 97.5))],
        }
        if reference is not None and name != reference:
            diff = draws[name] - draws[reference]
            row["diff_to_" + reference] = float(
                balanced_accuracy_score(labels, pred) - balanced_accuracy_score(labels, predictions[reference])
            )
            row["diff_ci95"] = [float(np.percentile(diff, 2.5)), float(np.percentile(diff, 97.5))]
        out[name] = row
    return out
