"""The pretraining module: one random stream per rank and step, logs whatever a task returns."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from ssl_derm.config import PretrainConfig
from ssl_derm.encoders import build_encoder, encoder_spec
from ssl_derm.pretext import build_task
from ssl_derm.pretext.module import PretextModule


def _module(task: str = "context_restore", **settings):
    cfg = PretrainConfig(task=task, image_size=64, task_settings={task: settings})
    task = build_task(task, build_encoder("efficientnet-lite0"), cfg)
    return PretextModule(task, cfg, encoder_spec("efficientnet-lite0").normalization, steps_per_epoch=10)


def _swaps(module, rank: int, step: int) -> torch.Tensor:
    module._trainer = SimpleNamespace(global_rank=rank, global_step=step)
    x = torch.zeros(4, 3, 64, 64)
    return module.task.draw(x, module.step_generator())["swaps"]


def test_corruptions_differ_per_rank_and_step_and_repeat_after_resume():
    a, b = _module(swaps=5), _module(swaps=5)  # b: a fresh process resuming at the same step
    assert not torch.equal(_swaps(a, 0, 7), _swaps(a, 1, 7))  # DDP ranks see different corruptions
    assert not torch.equal(_swaps(a, 0, 7), _swaps(a, 0, 8))  # every step draws anew
    assert torch.equal(_swaps(a, 0, 7), _swaps(b, 0, 7))  # a resumed run continues the same stream


def test_the_module_logs_the_scalars_a_task_returns(sample_images):
    module = _module("simclr", hidden_dim=64, projection_dim=16)
    module._trainer = SimpleNamespace(global_rank=0, global_step=1)
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, value)
    module.training_step((sample_images[:8] * 255).to(torch.uint8), 0)
    assert {"train/loss", "train/positive_similarity", "train/embedding_spread"} <= set(logged)
