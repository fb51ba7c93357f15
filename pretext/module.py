"""The LightningModule that trains any pretext task; the loop itself is Lightning's."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score
from ssl_derm.pretext.base import PretextTask
from torch import nn
from torchvision.utils import make_grid

from ssl_derm.data import Normalize, to_float, train_augment
from ssl_derm.encoders import pooled_features
from ssl_derm.engine import RunFailed, cosine_schedule


@torch.no_grad()
def knn_balanced_accuracy(encoder: nn.Module, knn: dict, norm: Normalize, k: int, device) -> float:
    """Balanced accuracy of lightly's kNN classifier on L2-normalised pooled features of
    ``encoder`` (in eval mode): ``knn["query"]`` images against the ``knn["bank"]`` ones
    (see ``knn_data``). The encoder's train/eval mode is restored afterwards."""
    from lightly.utils.benchmarking import knn_predict

    def features(images: torch.Tensor) -> torch.Tensor:
        feats = []
        for i in range(0, len(images), 256):
            x = norm(to_float(images[i : i + 256].to(device)))
            feats.append(F.normalize(pooled_features(encoder, x).float(), dim=1))
        return torch.cat(feats)

    was_training = encoder.training
    encoder.eval()
    bank, query = features(knn["bank"]), features(knn["query"])
    encoder.train(was_training)
    labels = knn["bank_labels"].to(device)
    pred = knn_predict(query, bank.T, labels, num_classes=len(knn["classes"]), knn_k=k)[:, 0]
    return float(balanced_accuracy_score(knn["query_labels"].numpy(), pred.cpu().numpy()))


class PretextModule(pl.LightningModule):
    def __init__(
        self, task: PretextTask, cfg, normalization: dict, steps_per_epoch: int, knn: dict | None = None
    ) -> None:
        super().__init__()
        self.task = task
        self.cfg = cfg
        self.norm = Normalize(normalization["mean"], normalization["std"])
        self.augment = train_augment(cfg.image_size, preserve_up=task.preserves_up) if cfg.augment else None
        self.steps_per_epoch = steps_per_epoch
        self.knn = knn  # {"bank": uint8 [N,3,S,S], "bank_labels", "query", "query_labels", "classes"}

    def step_generator(self) -> torch.Generator:
        """The corruption stream of this rank at this step, derived from (seed, rank, step):
        DDP ranks draw different corruptions, and a run resumed from ``last.ckpt`` draws at
        step k exactly what the uninterrupted run drew there, without any state to save."""
        state = np.random.SeedSequence([self.cfg.seed, self.global_rank, self.global_step]).generate_state(2)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    # --- data on the device -------------------------------------------------
    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x = to_float(batch)
        if self.trainer is not None and self.trainer.training and self.augment is not None:
            x = self.augment(x)
        # channels_last: 1.6x faster convolutions on CPU (depthwise) and tensor cores on GPU
        return self.norm(x).contiguous(memory_format=torch.channels_last)

    def denorm(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.norm.std + self.norm.mean).clamp(0, 1)

    def on_fit_start(self) -> None:
        # The kornia augmentation draws from the global generator: one stream per DDP rank.
        torch.manual_seed(self.cfg.seed * 1_000 + self.global_rank)

    # --- steps --------------------------------------------------------------
    def training_step(self, x, batch_idx):
        out = self.task(x, generator=self.step_generator())
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise RunFailed(
                f"non-finite training loss ({loss.item()}) at step {self.global_step}; "
                "lower --lr; the last good checkpoint is kept"
            )
        self.log("train/loss", loss, prog_bar=True)
        for key in ("accuracy", "mse_swapped"):
            if key in out:
                self.log(f"train/{key}", out[key])
        every = self.cfg.log_images_every_n_steps
        if self.global_step % every == 0 and self.global_rank == 0:
            self._log_images("train", x, out)
        return loss

    def validation_step(self, x, batch_idx):
        # A fixed generator per batch: the held-out loss compares like with like across epochs.
        gen = torch.Generator().manual_seed(10_000 + batch_idx)
        out = self.task(x, generator=gen)
        self.log("val/loss", out["loss"], sync_dist=True, batch_size=x.shape[0])
        for key in ("accuracy", "mse_swapped"):
            if key in out:
                self.log(f"val/{key}", out[key], sync_dist=True, batch_size=x.shape[0])
        if batch_idx == 0 and self.global_rank == 0:
            self._log_images("val", x, out)

    def _log_images(self, stage: str, x, out) -> None:
        writer = getattr(self.logger, "experiment", None)
        if writer is None or not hasattr(writer, "add_image"):
            return
        for name, images in self.task.visuals(x, out).items():
            grid = make_grid(self.denorm(images[:8].detach().float()), nrow=8)
            writer.add_image(f"{stage}/{name}", grid.cpu(), self.global_step)
        if hasattr(self.task, "describe"):
            writer.add_text(f"{stage}/predictions", self.task.describe(out), self.global_step)

    # --- kNN monitor --------------------------------------------------------
    @torch.no_grad()
    def on_validation_epoch_end(self) -> None:
        if not self.knn:
            return
        score = knn_balanced_accuracy(self.task.encoder, self.knn, self.norm, self.cfg.knn_k, self.device)
        self.log("val/knn_balanced_accuracy", float(np.float32(score)), prog_bar=True)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        return cosine_schedule(opt, self.cfg, self.steps_per_epoch)
