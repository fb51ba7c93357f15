"""MoCo v2 (Chen et al. 2020): a query encoder matches each image's key from a
momentum encoder against a queue of keys from past batches (the negatives), so
small batches, the norm on one GPU or a CPU, still see thousands of negatives.
Built on lightly's ``MoCoProjectionHead``, ``NTXentLoss`` with a memory bank (the
queue), ``update_momentum`` and ``cosine_schedule``."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from ssl_derm.encoders import pooled_features
from ssl_derm.pretext.base import StepOutput, TwoViewSettings, TwoViewTask, embedding_health
from ssl_derm.pretext.registry import register_task


@dataclass(frozen=True)
class Settings(TwoViewSettings):
    hidden_dim: int = 2048
    temperature: float = 0.2
    queue_size: int = 4096  # negatives kept from past batches
    momentum: float = 0.99  # key-encoder momentum at the first step; it rises to 1 by the last

    def validate(self) -> None:
        super().validate()
        self.require("temperature", 0 < self.temperature <= 10, "must be in (0, 10]")
        self.require("queue_size", self.queue_size >= 1, "must be >= 1")
        self.require("momentum", 0 <= self.momentum < 1, "must be in [0, 1)")


@register_task("moco")
class MoCoTask(TwoViewTask):
    """Match each query to its momentum key against a queue of past keys (lightly)."""

    Settings = Settings

    def __init__(self, encoder: nn.Module, cfg) -> None:
        super().__init__(encoder, cfg)
        s = self.settings
        self.projection = MoCoProjectionHead(self.feature_dim, s.hidden_dim, s.projection_dim)
        self.key_encoder = copy.deepcopy(encoder)
        self.key_projection = copy.deepcopy(self.projection)
        deactivate_requires_grad(self.key_encoder)
        deactivate_requires_grad(self.key_projection)
        # Every rank enqueues the keys of all ranks (gather_distributed): DDP broadcasts rank 0's
        # buffers each step, so a rank-local queue would keep rank 0's keys only.
        self.criterion = NTXentLoss(
            temperature=s.temperature, memory_bank_size=(s.queue_size, s.projection_dim), gather_distributed=True
        )
        # lightly keeps the queue in non-persistent buffers; made persistent, it is saved in
        # last.ckpt and --resume continues it instead of restarting from random negatives.
        bank = self.criterion.memory_bank
        bank._non_persistent_buffers_set.difference_update({"bank", "bank_ptr"})
        self.momentum = s.momentum

    def on_train_step(self, step: int, total_steps: int) -> None:
        self.momentum = cosine_schedule(step, max(1, total_steps), self.settings.momentum, 1.0)
        update_momentum(self.encoder, self.key_encoder, m=self.momentum)
        update_momentum(self.projection, self.key_projection, m=self.momentum)

    def compute(self, x, views, params):
        query = self.projection(self.features(views["view0"]))
        with torch.no_grad():
            key = self.key_projection(pooled_features(self.key_encoder, views["view1"]))
        loss = self.criterion(query, key)  # enqueues the keys (training only)
        scalars = {**embedding_health(query, key), "momentum": self.momentum}
        return StepOutput(loss, scalars=scalars, images={"view0": views["view0"], "view1": views["view1"]})

    def extra_state(self):
        return {"projection_state_dict": self.projection.state_dict()}
