"""Fine-tuning: focal loss, the classifier, metrics, evaluation and the benchmark."""

from ssl_derm.finetune.losses import FocalLoss, focal_loss
from ssl_derm.finetune.metrics import classification_metrics

__all__ = ["FocalLoss", "classification_metrics", "focal_loss"]
