"""The LightningModule that trains any pretext task; the loop itself is Lightning's.

It knows no task: the task makes its own views from the decoded batch and
returns a ``StepOutput`` whose scalars, images and texts are logged under their
own names.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torchvision.utils import make_grid

from ssl_derm.data.transforms import ImagePipeline
from ssl_derm.engine import cosine_schedule, step_generator
from ssl_derm.pretext.base import PretextTask, StepOutput
from ssl_derm.pretext.knn import knn_balanced_accuracy


class PretextModule(pl.LightningModule):
    def __init__(
        self, task: PretextTask, cfg, normalization: dict, steps_per_epoch: int, knn: dict | None = None
    ) -> None:
        super().__init__()
        self.task = task
        self.cfg = cfg
        self.pipeline = ImagePipeline(normalization)  # the kNN monitor's path; tasks have their own
        self.steps_per_epoch = steps_per_epoch
        self.knn = knn  # {"bank": uint8 [N,3,S,S], "bank_labels", "query", "query_labels", "classes"}

    def step_generator(self) -> torch.Generator:
        """The random stream of this rank at this step: the views a task draws."""
        return step_generator(self.cfg.seed, self.global_rank, self.global_step)

    def on_fit_start(self) -> None:
        # Anything left on the global generator (dropout) gets one stream per DDP rank.
        torch.manual_seed(self.cfg.seed * 1_000 + self.global_rank)

    def on_train_start(self) -> None:
        self.total_steps = int(self.trainer.estimated_stepping_batches)  # for momentum schedules; once

    # --- steps --------------------------------------------------------------
    def training_step(self, images, batch_idx):
        self.task.on_train_step(self.global_step, getattr(self, "total_steps", 1))
        out = self.task(images, generator=self.step_generator())  # a non-finite loss: FiniteLossGuard
        # progress-bar metrics are read back every step: a GPU sync, so only with a bar to show
        self.log("train/loss", out.loss, prog_bar=self.cfg.progress)
        for key, value in self._on_device(out.scalars).items():
            self.log(f"train/{key}", value)
        if self.global_step % self.cfg.log_images_every_n_steps == 0 and self.global_rank == 0:
            self._log_visuals("train", out)
        return out.loss

    def validation_step(self, images, batch_idx):
        # A fixed generator per batch: the held-out loss compares like with like across epochs.
        out = self.task(images, generator=torch.Generator().manual_seed(10_000 + batch_idx))
        n = images.shape[0]
        self.log("val/loss", out.loss, sync_dist=True, batch_size=n)
        for key, value in self._on_device(out.scalars).items():
            self.log(f"val/{key}", value, sync_dist=True, batch_size=n)
        if batch_idx == 0 and self.global_rank == 0:
            self._log_visuals("val", out)

    def _on_device(self, scalars: dict) -> dict:
        """Python floats (a momentum) as tensors filled on the device: Lightning would copy
        each from the host, making it wait for the GPU, every step."""
        return {k: torch.full((), v, device=self.device) if isinstance(v, float) else v for k, v in scalars.items()}

    def _log_visuals(self, stage: str, out: StepOutput) -> None:
        writer = getattr(self.logger, "experiment", None)
        if writer is None or not hasattr(writer, "add_image"):
            return
        for name, images in out.images.items():
            if images.shape[1] != 3:  # masks and other non-RGB maps
                continue
            grid = make_grid(self.task.pipeline.denormalize(images[:8].detach()), nrow=8)
            writer.add_image(f"{stage}/{name}", grid.cpu(), self.global_step)
        for name, text in out.texts.items():
            writer.add_text(f"{stage}/{name}", text(), self.global_step)

    # --- kNN monitor --------------------------------------------------------
    @torch.no_grad()
    def on_validation_epoch_end(self) -> None:
        if not self.knn:
            return
        score = knn_balanced_accuracy(self.task.encoder, self.knn, self.pipeline, self.cfg.knn_k, self.device)
        self.log("val/knn_balanced_accuracy", float(np.float32(score)), prog_bar=True)

    def configure_optimizers(self):
        params = self.task.trainable_parameters()
        opt = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        return cosine_schedule(opt, self.cfg, self.steps_per_epoch)
