"""What a benchmark of each target reports (its validation score, metrics and titles), and
the baselines every other init is compared with."""

from __future__ import annotations

from dataclasses import dataclass

from ssl_derm.finetune.metrics import SEGMENTATION_METRICS
from ssl_derm.finetune.report import METRICS

BASELINES = ("imagenet", "random")  # every other init is compared with each of these, paired


@dataclass(frozen=True)
class Kind:
    """What a benchmark of one target reports."""

    val_key: str  # the validation score in a run's metrics.json
    val_column: str
    metrics: tuple[str, ...]
    title: str
    plot_metric: str
    plot_label: str

    @property
    def columns(self) -> list[str]:
        return ["init", "label_fraction", "seed", "fold", "recipe", self.val_column, *self.metrics]


KINDS = {
    "classification": Kind(
        "best_epoch_val_balanced_accuracy",
        "val_balanced_accuracy",
        tuple(METRICS),
        "# Benchmark: test split, balanced accuracy = mean recall",
        "balanced_accuracy",
        "balanced accuracy (test)",
    ),
    "segmentation": Kind(
        "best_epoch_val_dice",
        "val_dice",
        tuple(SEGMENTATION_METRICS),
        "# Segmentation benchmark: test split, means over images (Jaccard thresholded at 0.65: ISIC 2018)",
        "dice",
        "Dice (test)",
    ),
}
