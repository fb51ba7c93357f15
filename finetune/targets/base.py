"""The fine-tuning target contract: what ``finetune``, ``evaluate``, ``predict`` and
``benchmark`` ask of a target (a classifier, a lesion-segmentation U-Net, ...).

A target is one module holding a subclass of ``Target`` and one line in
``ssl_derm.config.TARGETS``. The shared code (``finetune/train.py``,
``finetune/evaluate.py``, ``commands/predict.py`` and the benchmark) does everything
that is the same for every target: the run folder and its leak checks, early stopping
that keeps the best epoch, metrics.json and model.ckpt's common fields, the split to
score and the images a model must not have seen. A target says only what is its own:

- **building**: its data check, its model and LightningModule with the step budget
  (``build`` calls ``finetune.run.step_budget`` once it knows the steps per epoch), its
  loaders (``loaders``, ``describe``), the validation score to keep the best epoch on
  (``monitor``), whether it needs lesion masks (``masks``);
- **exporting**: its test scores (``score_test``), its name for the init
  (``init_record``), its own checkpoint fields (``checkpoint_fields``) and how to load
  them back (``load``);
- **using**: how ``evaluate`` and ``predict`` score images and what they write
  (``evaluate``, ``predict``, ``prediction_table``);
- **reporting**: the benchmark's columns and titles, per-image test scores for the
  paired comparisons (``per_image_scores``) and its inits (``benchmark_inits``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ssl_derm.checkpoint import init_name
from ssl_derm.config import FinetuneConfig
from ssl_derm.data.identity import ContentIds
from ssl_derm.data.labeled import LabeledData
from ssl_derm.data.splits import write_splits
from ssl_derm.errors import UserError

VARIANTS = {":encoder": False, ":decoder": True}


def split_variant(entry: str) -> tuple[str, bool | None]:
    """``PATH:encoder`` -> (PATH, False), ``PATH:decoder`` -> (PATH, True), else (entry, None)."""
    for suffix, decoder in VARIANTS.items():
        if entry.endswith(suffix) and not Path(entry).exists():
            return entry[: -len(suffix)], decoder
    return entry, None


def init_names(inits, name_of=init_name) -> list[str]:
    """The name of each init (``name_of``: ``init_name``), two checkpoints of one task told
    apart by their folder."""
    names: list[str] = []
    for init in inits:
        name = name_of(init)
        if name in names:  # two checkpoints of the same task: tell them apart by file
            name = f"{name}:{Path(init).parent.name or Path(init).stem}"
        names.append(name)
    return names


def safe_init_name(init: str) -> str:
    """``init_name`` of ``init``, or the file's stem when it is not a checkpoint ssl-derm can name."""
    try:
        return init_name(init)
    except UserError:
        return Path(init).stem


@dataclass
class FinetuneRun:
    """Everything a target's ``build`` assembles for the fit and export steps."""

    cfg: FinetuneConfig
    out: Path
    lab: LabeledData
    inherited: ContentIds  # the images the --init checkpoint has seen
    model: Any
    module: Any  # the LightningModule; ends the fit with the best epoch's weights
    steps_per_epoch: int
    batch: int
    extra: dict = field(default_factory=dict)  # what else the target's later steps need


class Target:
    """One fine-tuning target. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]  # the --target value (also in ssl_derm.config.TARGETS, read by the CLI)
    task: ClassVar[str]  # the ``task`` its model.ckpt records
    masks: ClassVar[bool] = False  # needs lesion masks
    tag_metrics: ClassVar[bool] = True  # metrics.json records "target": name (before the run's record)
    # scores per class: the benchmark's confusion, recall, TTA and Grad-CAM sections, and the
    # per-image test files those read (regenerated for runs that predate them)
    per_class: ClassVar[bool] = False

    # what a benchmark reports
    monitor: ClassVar[str]  # the validation score the best epoch is kept on (higher is better), e.g. val/dice
    metrics: ClassVar[tuple[str, ...]]  # the test metrics of a run, as metrics.json names them
    title: ClassVar[str]  # the first line of the benchmark's results.md
    plot_metric: ClassVar[str]  # per image and on the label-efficiency plot
    score_name: ClassVar[str]  # plot_metric in a sentence: "balanced accuracy", "Dice"
    plot_label: ClassVar[str]

    @property
    def val_key(self) -> str:
        """The best epoch's validation score in a run's metrics.json."""
        return "best_epoch_" + self.monitor.replace("/", "_")

    @property
    def val_column(self) -> str:
        return self.monitor.replace("/", "_")

    @property
    def columns(self) -> list[str]:
        return ["init", "label_fraction", "seed", "fold", "recipe", self.val_column, *self.metrics]

    # ---------------------------------------------------------------- fine-tuning

    def write_table(self, table, out: Path) -> Path:
        """Write the run's ``splits.csv`` (the images of each split, and what the target needs)."""
        return write_splits(table, out)

    def check_data(self, lab: LabeledData) -> None:
        """Refuse data the target cannot train on, with a one-line ``UserError``."""

    def build(self, cfg: FinetuneConfig, out: Path, lab: LabeledData, inherited: ContentIds) -> FinetuneRun:
        """The model and LightningModule on the checked data; returns the run with ``cfg`` after
        ``finetune.run.step_budget`` for its steps per epoch (which the trainer then uses)."""
        raise NotImplementedError

    def loaders(self, run: FinetuneRun, pin: bool) -> tuple:
        """The training and validation loaders."""
        raise NotImplementedError

    def describe(self, run: FinetuneRun) -> str:
        """The line printed before training."""
        raise NotImplementedError

    def score_test(self, run: FinetuneRun, model, trainer, log: bool = True) -> dict:
        """Score the test split once (and with ``log`` show it in TensorBoard)."""
        raise NotImplementedError

    def init_record(self, run: FinetuneRun) -> dict:
        """The init's name in metrics.json (``init_name``, the model.ckpt's ``init_chain``) and
        anything else that describes the init."""
        return {"init_name": safe_init_name(run.cfg.init)}

    def checkpoint_fields(self, run: FinetuneRun, model) -> dict:
        """model.ckpt's fields beyond the encoder and the common records."""
        raise NotImplementedError

    def summary(self, metrics: dict, scored: bool) -> str:
        """The line printed after training: the test scores, or when test was not scored the
        validation score (``val_line``)."""
        raise NotImplementedError

    def val_line(self, metrics: dict) -> str:
        """The best validation score of a run, in words."""
        raise NotImplementedError

    # ---------------------------------------------------------------- using a model.ckpt

    def load(self, path, ckpt: dict) -> tuple[Any, dict]:
        """The fine-tuned model of a model.ckpt (strict keys), in eval mode, and the checkpoint."""
        raise NotImplementedError

    def evaluation_data(self, ckpt: dict, skip_missing_masks: bool) -> dict:
        """``prepare_labeled``'s target-specific arguments for ``evaluate``."""
        return {}

    def evaluate(self, model, ckpt: dict, lab: LabeledData, rows, device, tta: bool) -> tuple[dict, Any]:
        """Metrics of ``model`` on the table ``rows`` of ``lab``, and its outputs."""
        raise NotImplementedError

    def write_evaluation(self, folder: Path, rows, outputs, metrics: dict, split: str, ckpt: dict) -> str:
        """Write the per-image predictions of ``evaluate``; returns its summary lines."""
        raise NotImplementedError

    def predict(self, model, images, pipeline, device, batch_size: int, tta: bool, progress: bool):
        """The model's outputs for uint8 ``images``."""
        raise NotImplementedError

    def prediction_table(self, folder: Path, images, outputs, ckpt: dict) -> tuple:
        """``predict``'s table and what it writes beside it: (table, verb, also, summary fields)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- benchmarking

    def benchmark_inits(self, cfg, name_of=init_name) -> list[tuple[str, str, dict]]:
        """(name, init, extra settings) per entry of a benchmark's ``inits`` (``name_of`` names
        an init). A ``PATH:encoder`` / ``PATH:decoder`` entry is refused: only segmentation
        knows those."""
        bad = [i for i in cfg.inits if split_variant(i)[1] is not None]
        if bad:
            raise UserError(
                f"--inits {bad[0]}: :encoder / :decoder choose a decoder transfer, for --target segmentation"
            )
        return [(n, i, {}) for n, i in zip(init_names(cfg.inits, name_of), cfg.inits)]

    def per_image_scores(self, run: Path, predictions: str = ""):
        """``(images, scores, labels)`` of a finished run's test split, sorted by image (labels:
        class indices, or None); None when the run did not keep them. ``predictions``: which
        of the run's per-image files, for a target that keeps several (classification: plain
        or TTA)."""
        raise NotImplementedError
