"""One shared test class every pretext task subclasses in a few lines (after smp's tests)."""

from __future__ import annotations

import torch
from ssl_derm.pretext import build_task

from ssl_derm.config import PretrainConfig
from ssl_derm.encoders import build_encoder


class TaskTest:
    task_name: str = ""
    settings: dict = {}
    # True where fresh draws every step make 20 steps too few to learn (rotation without
    # shortcuts): the loss must then fall on one repeated draw, which still needs every
    # part of the path (inputs, encoder, head, loss) to learn.
    repeat_draws: bool = False

    def make(self, seed: int = 0):
        torch.manual_seed(seed)
        cfg = PretrainConfig(task=self.task_name, encoder="efficientnet-lite0", image_size=64, **self.settings)
        return build_task(self.task_name, build_encoder("efficientnet-lite0"), cfg)

    def batch(self, sample_images, n: int = 8) -> torch.Tensor:
        return (sample_images[:n] - 0.5) / 0.5  # real images, lite0 normalisation

    def test_output_contract(self, sample_images):
        out = self.make()(self.batch(sample_images), generator=torch.Generator().manual_seed(0))
        assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])

    def test_every_trainable_parameter_gets_a_gradient(self, sample_images):
        task = self.make()
        task(self.batch(sample_images), generator=torch.Generator().manual_seed(0))["loss"].backward()
        missing = [n for n, p in task.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
        assert not missing, missing[:5]

    def test_same_seed_same_corruption_and_first_loss(self, sample_images):
        x = self.batch(sample_images)
        losses, inputs = [], []
        for _ in range(2):
            task = self.make(seed=1).eval()
            gen = torch.Generator().manual_seed(7)
            params = task.draw(x, torch.Generator().manual_seed(7))
            inputs.append(task.apply(x, params))
            losses.append(task(x, generator=gen)["loss"].item())
        assert torch.equal(inputs[0], inputs[1])
        assert losses[0] == losses[1]
        other = self.make(seed=1).apply(x, self.make().draw(x, torch.Generator().manual_seed(8)))
        assert not torch.equal(other, inputs[0])

    def test_loss_falls_over_twenty_steps_on_real_images(self, sample_images):
        task = self.make().train()
        x = self.batch(sample_images, 16)
        opt = torch.optim.AdamW(task.parameters(), lr=2e-3)
        losses = []
        for step in range(20):
            out = task(x, generator=torch.Generator().manual_seed(0 if self.repeat_draws else step))
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            losses.append(out["loss"].item())
        assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:3]) / 3, losses

    def test_wrong_shape_fails_loudly(self):
        import pytest

        with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
            self.make()(torch.rand(2, 1, 64, 64))
