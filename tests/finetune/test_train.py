"""Fine-tuning schedule: the step budget and the frozen-encoder warm-up, on the bundled sample."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping
from torch.utils.data import DataLoader, TensorDataset

from ssl_derm.cli import main
from ssl_derm.config import FinetuneConfig
from ssl_derm.encoders import build_encoder
from ssl_derm.finetune.run import FreshEarlyStopping, early_stopping_trainer, step_budget

TINY = ["--image-size", "64", "--batch-size", "16", "--no-progress", "--init", "imagenet"]


def test_step_budget_stretches_epochs_and_the_frozen_share_together():
    cfg = FinetuneConfig(epochs=3, freeze_epochs=1, min_steps=80, patience=3, min_epochs=2)
    small = step_budget(cfg, steps_per_epoch=8)  # label fraction 0.1 of HAM10000 at batch 64
    assert (small.epochs, small.freeze_epochs, small.patience) == (10, 3, 10)  # patience 3 of 3 epochs
    assert small.min_epochs == 7  # 2 of 3 epochs, rounded up
    assert step_budget(cfg, steps_per_epoch=88) is cfg  # enough steps already: untouched
    assert step_budget(FinetuneConfig(epochs=3, min_steps=0), 1).epochs == 3
    assert step_budget(FinetuneConfig(epochs=3, min_steps=80), 8).freeze_epochs == 0


def _epochs_run(tmp_path, name: str, *extra: str) -> dict:
    """A run whose validation score cannot move (a learning rate of 1e-12, BatchNorm statistics
    frozen): early stopping with patience 1 ends it after its second epoch unless held back."""
    out = tmp_path / name
    flat = ["--epochs", "4", "--set", "patience=1", "--set", "lr=1e-12", "--set", "encoder_lr=1e-12"]
    assert main(["finetune", "--out", str(out), "--freeze-bn", *flat, *TINY, *extra]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {h["balanced_accuracy"] for h in metrics["val_history"]} == {metrics["val_history"][0]["balanced_accuracy"]}
    return metrics


def test_early_stopping_waits_for_min_epochs(tmp_path):
    assert _epochs_run(tmp_path, "free")["epochs_run"] == 2  # stopped on its first flat epoch
    held = _epochs_run(tmp_path, "held", "--set", "min_epochs=3")
    assert (held["epochs_run"], held["min_epochs"]) == (3, 3)


class _Scripted(pl.LightningModule):
    """A module whose validation score per epoch is given: early stopping on a known curve."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores, self.w = scores, torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, _):
        return (self.w - batch[0]).pow(2).mean()

    def validation_step(self, batch, _):
        self.log("val/score", self.scores[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize(
    ("scores", "epochs_run"),
    [
        ([0.5, 0.4, 0.4, 0.4, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5], 7),  # patience ran out at 3, a new best at 5
        ([0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4], 5),  # ran out at 3, held until min_epochs
        ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.7, 0.7], 10),  # patience runs out at 10 = budget
    ],
)
def test_early_stopping_counts_patience_from_the_last_best_after_min_epochs(tmp_path, scores, epochs_run):
    cfg = FinetuneConfig(epochs=10, patience=2, min_epochs=5, warmup_epochs=0, log_every_n_steps=1)
    trainer, _ = early_stopping_trainer(cfg, tmp_path, steps_per_epoch=2, monitor="val/score")
    data = DataLoader(TensorDataset(torch.zeros(4, 1)), batch_size=2)
    trainer.fit(_Scripted(scores), data, data)
    assert trainer.current_epoch == epochs_run


def test_fresh_early_stopping_resumes_from_an_early_stopping_checkpoint():
    """Lightning files a callback's state under its state_key: EarlyStopping's, so a last.ckpt
    written before FreshEarlyStopping resumes with its best score and patience count."""
    fresh = FreshEarlyStopping(monitor="val/balanced_accuracy", mode="max")
    assert fresh.state_key == EarlyStopping(monitor="val/balanced_accuracy", mode="max").state_key


def _encoder_after(tmp_path, name: str, epochs: int, freeze: int, *extra: str) -> dict[str, torch.Tensor]:
    out = tmp_path / name
    args = ["finetune", "--out", str(out), "--epochs", str(epochs), "--freeze-epochs", str(freeze), *TINY, *extra]
    assert main(args) == 0
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    return {k.removeprefix("model.encoder."): v for k, v in state.items() if k.startswith("model.encoder.")}


def test_frozen_epochs_leave_encoder_weights_and_statistics_untouched(tmp_path):
    encoder = build_encoder("efficientnet-lite0", "imagenet")
    imagenet, trainable = encoder.state_dict(), [k for k, _ in encoder.named_parameters()]
    frozen = _encoder_after(tmp_path, "frozen", epochs=1, freeze=1)
    assert frozen.keys() == imagenet.keys()
    assert all(torch.equal(frozen[k], imagenet[k]) for k in imagenet)  # BatchNorm running stats included
    thawed = _encoder_after(tmp_path, "thawed", epochs=2, freeze=1)
    still = [k for k in trainable if torch.equal(thawed[k], imagenet[k])]
    assert not still  # the second epoch trains every encoder parameter
    # ... in train mode: the BatchNorm running statistics move once the encoder thaws
    stats = [k for k in imagenet if k.endswith(("running_mean", "running_var"))]
    assert len(stats) > 40
    assert not [k for k in stats if torch.equal(thawed[k], imagenet[k])]


def test_freeze_bn_keeps_the_statistics_while_the_weights_train(tmp_path):
    imagenet = build_encoder("efficientnet-lite0", "imagenet").state_dict()
    after = _encoder_after(tmp_path, "freeze-bn", 2, 1, "--freeze-bn")
    stats = [k for k in imagenet if k.endswith(("running_mean", "running_var"))]
    assert all(torch.equal(after[k], imagenet[k]) for k in stats)
    assert not torch.equal(after["model.conv_stem.weight"], imagenet["model.conv_stem.weight"])


def test_short_epochs_validate_on_a_step_schedule():
    """At label fraction 0.03 an epoch is 2 steps: with val_check_steps=25 a run validates every
    12 epochs, its budget a multiple of 12 and patience counted in checks; epochs at least as
    long as the schedule validate every epoch, as without it."""
    from ssl_derm.finetune.run import patience_checks, val_every

    cfg = FinetuneConfig(epochs=3, min_steps=300, patience=3, min_epochs=2, val_check_steps=25)
    small = step_budget(cfg, steps_per_epoch=2)
    assert val_every(small, 2) == 12 and small.epochs == 156 and small.epochs % 12 == 0  # 150 rounded up
    assert small.patience == 150 and patience_checks(small, 2) == 13  # 150 epochs of patience, in checks
    assert val_every(cfg, 88) == 1 and step_budget(cfg, 150) is cfg
    assert val_every(FinetuneConfig(), 2) == 1


def test_a_step_scheduled_run_validates_only_on_its_checks(tmp_path):
    out = tmp_path / "sched"
    args = ["finetune", "--out", str(out), "--epochs", "5", *TINY, "--set", "label_fraction=0.1"]
    args += ["--set", "val_check_steps=3"]  # about 25 training images: 1 step of 16 per epoch
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    every = m["val_every_epochs"]
    assert every == 3 and m["epochs_budget"] == 6  # 5 epochs, rounded up to a multiple of 3
    assert [h["epoch"] for h in m["val_history"]] == list(range(every, m["epochs_run"] + 1, every))
    assert m["best_epoch"] % every == 0


def test_a_setting_added_at_its_old_behaviour_keeps_run_keys():
    """val_check_steps=0 trains as every run did before it existed: their run keys stand."""
    from ssl_derm.config import key_values

    assert "val_check_steps" not in key_values(FinetuneConfig())
    assert key_values(FinetuneConfig(val_check_steps=25))["val_check_steps"] == 25
