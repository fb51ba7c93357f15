"""Focal loss (Lin et al., ICCV 2017): ``-alpha_t (1 - p_t)^gamma log p_t``.

A function plus a module, after kornia.  With ``gamma=0`` and no ``alpha`` it
is exactly cross-entropy; ``alpha`` holds one weight per class (e.g. from
``class_weights``), and the mean is over the batch as in kornia.

Targets are class indices ``[B]`` or probabilities ``[B, K]`` (mixup and
CutMix): the loss is then ``sum_k t_k alpha_k (1 - p_k)^gamma (-log p_k)``,
which is the hard-target loss when ``t`` is one-hot.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 1.0,
    alpha: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """``logits`` ``[B, K]``, ``target`` ``[B]`` int64 or ``[B, K]`` probabilities, ``alpha`` ``[K]`` or None."""
    if logits.ndim != 2:
        raise ValueError(f"logits must be [B, K], got {tuple(logits.shape)}")
    if target.shape != logits.shape[:1] and target.shape != logits.shape:
        raise ValueError(
            f"target must be [B]={logits.shape[0]} or [B, K]={tuple(logits.shape)}, got {tuple(target.shape)}"
        )
    if alpha is not None and alpha.shape != logits.shape[1:]:
        raise ValueError(f"alpha must be [K]={logits.shape[1]}, got {tuple(alpha.shape)}")
    logits = logits if logits.dtype == torch.float64 else logits.float()  # AMP: the loss in >= fp32
    logp = F.log_softmax(logits, dim=1)
    if target.ndim == 2:  # soft targets: the expectation of the per-class loss under t
        per_class = -logp if gamma == 0 else -((1 - logp.exp()).clamp_min(0) ** gamma) * logp
        if alpha is not None:
            per_class = per_class * alpha.to(per_class)
        loss = (target.to(per_class) * per_class).sum(1)
    else:
        logp_t = logp.gather(1, target[:, None]).squeeze(1)
        loss = -logp_t if gamma == 0 else -((1 - logp_t.exp()).clamp_min(0) ** gamma) * logp_t
        if alpha is not None:
            loss = alpha.to(loss)[target] * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")


class FocalLoss(nn.Module):
    def __init__(self, gamma: float = 1.0, alpha: torch.Tensor | None = None, reduction: str = "mean") -> None:
        super().__init__()
        self.gamma = gamma
        self.reduction = reduction
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return focal_loss(logits, target, self.gamma, self.alpha, self.reduction)
