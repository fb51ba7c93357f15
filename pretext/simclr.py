"""SimCLR (Chen et al., ICML 2020): two augmented views of every image, a projection
head, and the NT-Xent loss that pulls an image's views together and pushes the
other images of the batch away.  Built on lightly's ``SimCLRProjectionHead`` and
``NTXentLoss`` (negatives gathered across DDP ranks)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import nn

from ssl_derm.pretext.base import StepOutput, TwoViewSettings, TwoViewTask, embedding_health
from ssl_derm.pretext.registry import register_task


@dataclass(frozen=True)
class Settings(TwoViewSettings):
    temperature: float = 0.1  # lower than SimCLR's 0.5: small batches have few negatives

    def validate(self) -> None:
        super().validate()
        self.require("temperature", 0 < self.temperature <= 10, "must be in (0, 10]")


@register_task("simclr")
class SimCLRTask(TwoViewTask):
    """Pull two views of an image together, push other images away (NT-Xent, lightly)."""

    Settings = Settings

    def __init__(self, encoder: nn.Module, cfg) -> None:
        super().__init__(encoder, cfg)
        s = self.settings
        self.projection = SimCLRProjectionHead(self.feature_dim, s.hidden_dim, s.projection_dim)
        self.criterion = NTXentLoss(temperature=s.temperature, gather_distributed=True)

    def compute(self, x, views, params):
        # both views in one pass: one BatchNorm statistic over the pair, as in SimCLR
        z0, z1 = self.projection(self.features(torch.cat([views["view0"], views["view1"]]))).chunk(2)
        loss = self.criterion(z0, z1)
        return StepOutput(
            loss, scalars=embedding_health(z0, z1), images={"view0": views["view0"], "view1": views["view1"]}
        )

    def extra_state(self):
        return {"projection_state_dict": self.projection.state_dict()}
