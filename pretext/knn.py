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


def knn_scores(bank: torch.Tensor, query: torch.Tensor, knn: dict, k: int) -> float:
    from lightly.utils.benchmarking import knn_predict

    labels = knn["bank_labels"].to(bank.device)
    pred = knn_predict(query, bank.T, labels, num_classes=len(knn["classes"]), knn_k=k)[:, 0]
    return float(balanced_accuracy_score(knn["query_labels"].numpy(), pred.cpu().numpy()))


def linear_probe_score(bank: torch.Tensor, query: torch.Tensor, knn: dict, seed: int = 0) -> float:
    """Balanced accuracy of a class-balanced logistic regression on the bank's features."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000, random_state=seed)
    clf.fit(bank.cpu().numpy(), knn["bank_labels"].numpy())
    return float(balanced_accuracy_score(knn["query_labels"].numpy(), clf.predict(query.cpu().numpy())))


def knn_balanced_accuracy(encoder: nn.Module, knn: dict, pipeline: ImagePipeline, k: int, device) -> float:
    """Balanced accuracy of the kNN classifier on the validation queries (see ``knn_data``)."""
    bank = encoder_features(encoder, knn["bank"], pipeline, device)
    query = encoder_features(encoder, knn["query"], pipeline, device)
    return knn_scores(bank, query, knn, k)


def frozen_probe(encoder: nn.Module, knn: dict, pipeline: ImagePipeline, k: int, device) -> dict[str, float]:
    """kNN and linear-probe balanced accuracy of one pass of features."""
    bank = encoder_features(encoder, knn["bank"], pipeline, device)
    query = encoder_features(encoder, knn["query"], pipeline, device)
    return {"knn": knn_scores(bank, query, knn, k), "linear_probe": linear_probe_score(bank, query, knn)}
