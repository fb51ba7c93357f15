"""BYOL (Grill et al., NeurIPS 2020): an online encoder with a projection and a
prediction head learns to predict a momentum (target) encoder's projection of the
other view; no negatives.  The target follows the online weights with a momentum
that rises from ``momentum`` to 1 on a cosine schedule.  Built on lightly's
``BYOLProjectionHead``, ``BYOLPredictionHead``, ``NegativeCosineSimilarity``,
``update_momentum`` and ``cosine_schedule``."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule
from torch import nn

from ssl_derm.encoders import pooled_features
from ssl_derm.pretext.base import StepOutput, TwoViewSettings, TwoViewTask, embedding_health
from ssl_derm.pretext.registry import register_task


@dataclass(frozen=True)
class Settings(TwoViewSettings):
    projection_dim: int = 256
    momentum: float = 0.99  # target momentum at the first step; it rises to 1 by the last

    def validate(self) -> None:
        super().validate()
        self.require("momentum", 0 <= self.momentum < 1, "must be in [0, 1)")


@register_task("byol")
class BYOLTask(TwoViewTask):
    """Predict a momentum encoder's projection of the other view; no negatives (lightly)."""

    Settings = Settings

    def __init__(self, encoder: nn.Module, cfg) -> None:
        super().__init__(encoder, cfg)
        s = self.settings
        self.projection = BYOLProjectionHead(self.feature_dim, s.hidden_dim, s.projection_dim)
        self.prediction = BYOLPredictionHead(s.projection_dim, s.hidden_dim, s.projection_dim)
        self.target_encoder = copy.deepcopy(encoder)
        self.target_projection = copy.deepcopy(self.projection)
        deactivate_requires_grad(self.target_encoder)
        deactivate_requires_grad(self.target_projection)
        self.criterion = NegativeCosineSimilarity()
        self.momentum = s.momentum

    def on_train_step(self, step: int, total_steps: int) -> None:
        self.momentum = cosine_schedule(step, max(1, total_steps), self.settings.momentum, 1.0)
        update_momentum(self.encoder, self.target_encoder, m=self.momentum)
        update_momentum(self.projection, self.target_projection, m=self.momentum)

    def compute(self, x, views, params):
        v = torch.cat([views["view0"], views["view1"]])
        z = self.projection(self.features(v))
        p0, p1 = self.prediction(z).chunk(2)
        with torch.no_grad():
            t0, t1 = self.target_projection(pooled_features(self.target_encoder, v)).chunk(2)
        loss = 0.5 * (self.criterion(p0, t1) + self.criterion(p1, t0))
        z0, z1 = z.chunk(2)
        scalars = {**embedding_health(z0, z1), "momentum": self.momentum}
        return StepOutput(loss, scalars=scalars, images={"view0": views["view0"], "view1": views["view1"]})

    def extra_state(self):
        return {
            "projection_state_dict": self.projection.state_dict(),
            "prediction_state_dict": self.prediction.state_dict(),
        }
