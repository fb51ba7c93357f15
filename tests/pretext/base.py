"""The shared test every pretext task subclasses in a few lines (after smp's tests):
adding a task is its module plus a test module with one ``TaskTest`` subclass."""

from __future__ import annotations

import io

import pytest
import torch

from ssl_derm.config import PretrainConfig, build_config, to_dict
from ssl_derm.encoders import build_encoder
from ssl_derm.errors import UserError
from ssl_derm.pretext import build_task, get_task
from ssl_derm.pretext.base import StepOutput


def flat(tree, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors of a nested dict/list of views or parameters, by path."""
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    elif hasattr(tree, "data"):  # kornia's ParamItem
        return flat(tree.data, prefix)
    else:
        return {}
    out = {}
    for k, v in items:
        out.update(flat(v, f"{prefix}/{k}"))
    return out


def same(a, b) -> bool:
    fa, fb = flat(a), flat(b)
    return fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa)


class TaskTest:
    task_name: str = ""
    settings: dict = {}  # the task's own settings for the tests (its YAML section)
    # True where fresh draws every step make 20 steps too few to learn (rotation without
    # shortcuts): the loss must then fall on one repeated draw, which still needs every
    # part of the path (inputs, encoder, head, loss) to learn.
    repeat_draws: bool = False
    steps: int = 20
    # Two-view methods from a random init need far more than 20 steps before two views of
    # an image agree more than two images do; from ImageNet (continued pretraining, the
    # benchmark's path) they learn within them. Their tests start from there.
    init: str = "random"

    def config(self) -> PretrainConfig:
        return build_config(
            PretrainConfig,
            {"task": self.task_name, "encoder": "efficientnet-lite0", "image_size": 64, self.task_name: self.settings},
        )

    def make(self, seed: int = 0):
        torch.manual_seed(seed)
        return build_task(self.task_name, build_encoder("efficientnet-lite0", self.init), self.config())

    def batch(self, sample_images, n: int = 8) -> torch.Tensor:
        return sample_images[:n]  # real decoded images, float in [0, 1]

    def test_registered_under_its_name_in_its_own_module(self):
        cls = get_task(self.task_name)
        assert cls.name == self.task_name and cls.Settings.task == self.task_name
        assert cls.__module__.startswith("ssl_derm.pretext.")
        assert cls.apply is torch.nn.Module.apply  # draw/make_views: nothing shadows nn.Module.apply

    def test_settings_round_trip_through_yaml_and_refuse_unknown_keys(self):
        cfg = self.config()
        again = build_config(PretrainConfig, to_dict(cfg))
        assert again.task_settings == cfg.task_settings
        with pytest.raises(UserError, match=rf"unknown setting {self.task_name}\.bogus; valid: {self.task_name}\."):
            build_config(PretrainConfig, {"task": self.task_name, f"{self.task_name}.bogus": 1})

    def test_output_contract(self, sample_images):
        x = self.batch(sample_images)
        out = self.make()(x, generator=torch.Generator().manual_seed(0))
        assert isinstance(out, StepOutput)
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        assert all(torch.isfinite(torch.as_tensor(v)).all() for v in out.scalars.values()), out.scalars
        assert out.images and all(v.ndim == 4 and v.shape[0] == len(x) for v in out.images.values())
        assert all(isinstance(text(), str) for text in out.texts.values())

    def test_uint8_and_float_batches_train_alike(self, sample_images):
        x = self.batch(sample_images)
        u8 = (x * 255).round().to(torch.uint8)
        task = self.make().eval()
        with torch.no_grad():  # no queue updates between the two calls
            a = task(u8, generator=torch.Generator().manual_seed(0)).loss
            b = task(u8.float() / 255, generator=torch.Generator().manual_seed(0)).loss
        assert torch.allclose(a, b)

    def test_every_trainable_parameter_gets_a_gradient(self, sample_images):
        task = self.make()
        task(self.batch(sample_images), generator=torch.Generator().manual_seed(0)).loss.backward()
        trainable = task.trainable_parameters()
        assert trainable
        names = {id(p): n for n, p in task.named_parameters()}
        missing = [names[id(p)] for p in trainable if p.grad is None or not p.grad.any()]
        assert not missing, missing[:5]

    def test_forward_trains_on_the_replayable_draw(self, sample_images):
        """forward = compute(make_views(draw)): a replayed draw is what was trained on."""
        x = self.batch(sample_images)
        task = self.make(seed=1).eval()
        params = task.draw(x, torch.Generator().manual_seed(7))
        with torch.no_grad():  # no queue updates between the two calls
            replayed = task.compute(x, task.make_views(x, params), params).loss
            trained = task(x, generator=torch.Generator().manual_seed(7)).loss
        assert torch.equal(replayed, trained)

    def test_same_seed_same_views_and_first_loss(self, sample_images):
        x = self.batch(sample_images)
        losses, views = [], []
        for _ in range(2):
            task = self.make(seed=1).eval()
            views.append(task.make_views(x, task.draw(x, torch.Generator().manual_seed(7))))
            losses.append(task(x, generator=torch.Generator().manual_seed(7)).loss.item())
        assert same(views[0], views[1])
        assert losses[0] == losses[1]
        task = self.make(seed=1)
        other = task.make_views(x, task.draw(x, torch.Generator().manual_seed(8)))
        assert not same(other, views[0])

    def test_loss_falls_on_real_images(self, sample_images):
        task = self.make().train()
        x = self.batch(sample_images, 16)
        opt = torch.optim.AdamW(task.trainable_parameters(), lr=2e-3)
        losses = []
        for step in range(self.steps):
            task.on_train_step(step, self.steps)
            out = task(x, generator=torch.Generator().manual_seed(0 if self.repeat_draws else step))
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            losses.append(out.loss.item())
        early, late = sum(losses[:3]) / 3, sum(losses[-5:]) / 5
        assert late < early - 0.2 * max(abs(early), 0.1), losses

    def test_extra_state_loads_with_weights_only(self):
        buf = io.BytesIO()
        torch.save(self.make().extra_state(), buf)
        buf.seek(0)
        torch.load(buf, weights_only=True)

    def test_wrong_shape_fails_loudly(self):
        with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
            self.make()(torch.rand(2, 1, 64, 64))
