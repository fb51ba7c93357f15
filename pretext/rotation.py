"""Rotation prediction over K angles (Gidaris et al., ICLR 2018), six by default.

Rotating by angles that are not multiples of 90 degrees leaves empty corners,
and only those angles are resampled.  So that neither cue gives the answer
away, every version of an image, angle 0 included, gets (1) a small random
jitter of the angle, so each is interpolated the same way, and (2) the same
inscribed-circle mask, so the borders look alike whatever the angle.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.geometry.transform import rotate
from ssl_derm.pretext.base import PretextTask
from torch import nn

from ssl_derm.encoders import feature_dim, pooled_features


def circle_mask(size: int, device=None) -> torch.Tensor:
    """``[1, 1, size, size]`` float mask of the inscribed circle (1 inside)."""
    r = (torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2) / (size / 2)
    return ((r[None, :] ** 2 + r[:, None] ** 2) <= 1.0).float()[None, None]


class RotationTask(PretextTask):
    name = "rotation"
    augment_rotation = False  # the labels are rotations

    def __init__(self, encoder: nn.Module, angles=(0, 60, 120, 180, 240, 300), angle_jitter: float = 5.0) -> None:
        super().__init__(encoder)
        self.register_buffer("angles", torch.tensor([float(a) for a in angles]), persistent=False)
        self.angle_jitter = float(angle_jitter)
        self.head = nn.Linear(feature_dim(encoder), len(angles))

    def draw(self, x, generator=None):
        b = x.shape[0]
        labels = torch.randint(len(self.angles), (b,), generator=generator)
        jitter = (torch.rand(b, generator=generator) * 2 - 1) * self.angle_jitter
        return {"labels": labels.to(x.device), "jitter": jitter.to(x.device)}

    def apply(self, x, params):
        degrees = self.angles[params["labels"]] + params["jitter"]
        return rotate(x, degrees.to(x.dtype)) * circle_mask(x.shape[-1], x.device).to(x.dtype)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        self.check_input(x)
        params = self.draw(x, generator)
        inputs = self.apply(x, params)
        logits = self.head(pooled_features(self.encoder, inputs))
        loss = F.cross_entropy(logits, params["labels"])
        accuracy = (logits.argmax(1) == params["labels"]).float().mean()
        return {"loss": loss, "accuracy": accuracy, "inputs": inputs, "logits": logits, "labels": params["labels"]}

    def visuals(self, x, out):
        return {"rotated_inputs": out["inputs"]}

    def describe(self, out, n: int = 8) -> str:
        pred = self.angles[out["logits"][:n].argmax(1)].tolist()
        true = self.angles[out["labels"][:n]].tolist()
        return "predicted / true angle: " + ", ".join(f"{p:.0f}/{t:.0f}" for p, t in zip(pred, true))

    def extra_state(self):
        return {"head_state_dict": self.head.state_dict(), "angles": self.angles.tolist()}
