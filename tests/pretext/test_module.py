"""The pretraining module's corruption stream: one per rank and step."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from ssl_derm.pretext import build_task
from ssl_derm.pretext.module import PretextModule

from ssl_derm.config import PretrainConfig
from ssl_derm.encoders import build_encoder, encoder_spec


def _module():
    cfg = PretrainConfig(task="context_restore", image_size=64, swaps=5)
    task = build_task("context_restore", build_encoder("efficientnet-lite0"), cfg)
    return PretextModule(task, cfg, encoder_spec("efficientnet-lite0").normalization, steps_per_epoch=10)


def _swaps(module, rank: int, step: int) -> torch.Tensor:
    module._trainer = SimpleNamespace(global_rank=rank, global_step=step)
    x = torch.zeros(4, 3, 64, 64)
    return module.task.draw(x, module.step_generator())["swaps"]


def test_corruptions_differ_per_rank_and_step_and_repeat_after_resume():
    a, b = _module(), _module()  # b: a fresh process resuming at the same step
    assert not torch.equal(_swaps(a, 0, 7), _swaps(a, 1, 7))  # DDP ranks see different corruptions
    assert not torch.equal(_swaps(a, 0, 7), _swaps(a, 0, 8))  # every step draws anew
    assert torch.equal(_swaps(a, 0, 7), _swaps(b, 0, 7))  # a resumed run continues the same stream
