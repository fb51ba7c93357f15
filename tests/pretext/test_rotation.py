import math

import pytest
import torch

from ssl_derm.data import train_augment
from ssl_derm.pretext.rotation import rotate_batch
from tests.pretext.base import TaskTest


class TestRotation(TaskTest):
    task_name = "rotation"
    repeat_draws = True

    def test_every_angle_samples_only_inside_the_source_circle(self):
        """No empty corners and no filled-in corners at any angle, 0 included: a source whose
        outside-the-inscribed-circle ring is bright leaves no trace in any rotated input."""
        task = self.make()
        assert task.angles.tolist() == [0, 60, 120, 180, 240, 300]
        r = (torch.arange(64, dtype=torch.float32) - 31.5) / 32
        ring = ((r[None, :] ** 2 + r[:, None] ** 2) > 1.02**2).float()  # just outside the circle
        x = ring.expand(6, 3, 64, 64).clone()
        params = task.warp.draw(x, torch.Generator().manual_seed(0))
        params["labels"] = torch.arange(6)
        params["stretch"] = torch.full((6,), task.warp.stretch)  # the most stretched draw
        out = task.warp.apply(x, params)
        assert out.max() < 0.05, out.amax((1, 2, 3))

    def test_angles_differ_and_jitter_resamples_angle_zero(self, sample_images):
        task = self.make()
        x = self.batch(sample_images, 1).repeat(2, 1, 1, 1)
        base = {"stretch": torch.ones(2), "direction": torch.zeros(2)}
        zero = task.warp.apply(x, {**base, "labels": torch.tensor([0, 0]), "jitter": torch.tensor([0.0, 2.0])})
        assert not torch.allclose(zero[0], zero[1], atol=1e-3)
        half = task.warp.apply(x, {**base, "labels": torch.tensor([0, 3]), "jitter": torch.zeros(2)})
        assert torch.allclose(half[1], half[0].flip(-1).flip(-2), atol=1e-4)  # 180 degrees, exactly

    def test_a_quarter_turn_is_counter_clockwise(self):
        x = torch.zeros(1, 1, 32, 32)
        x[..., 14:18, 22:26] = 1  # a dot right of the centre
        y = rotate_batch(x, torch.tensor([90.0]))
        cy, cx = torch.nonzero(y[0, 0] > 0.5).float().mean(0).tolist()
        assert cy < 15.5 and abs(cx - 15.5) < 3  # now above the centre


def test_rotation_augmentation_keeps_up():
    """The augmentation before the rotation task may flip left-right but never turns "up":
    with vertical flips (the old pipeline) angles 180 apart come from one distribution."""
    torch.manual_seed(0)
    x = torch.zeros(64, 3, 64, 64)
    x[:, :, :20] = 1.0  # a bright top
    keep = train_augment(64, preserve_up=True)(x, torch.Generator().manual_seed(0))
    assert (keep[:, :, :32].mean((1, 2, 3)) > keep[:, :, 32:].mean((1, 2, 3))).all()
    free = train_augment(64)(x, torch.Generator().manual_seed(0))
    assert (free[:, :, :32].mean((1, 2, 3)) < free[:, :, 32:].mean((1, 2, 3))).any()


def test_rotation_augmentation_crops_are_square():
    """A crop of another aspect ratio, resized to a square, stretches along the image axes,
    and the axis of that stretch turns with the label: a shortcut."""
    aug = train_augment(64, preserve_up=True)
    crop = aug[0]
    params = crop.forward_parameters(torch.Size([256, 3, 96, 64]))
    src = params["src"]
    w = src[:, 1, 0] - src[:, 0, 0]
    h = src[:, 2, 1] - src[:, 1, 1]
    assert torch.allclose(w, h, atol=1.01)


@pytest.mark.parametrize("stretch", [1.0, 1.25])
def test_draw_and_apply_replay_exactly(sample_images, stretch):
    from ssl_derm.pretext.rotation import RotationWarp

    warp = RotationWarp(stretch=stretch)
    x = sample_images[:4]
    a = warp.apply(x, warp.draw(x, torch.Generator().manual_seed(3)))
    b = warp.apply(x, warp.draw(x, torch.Generator().manual_seed(3)))
    assert torch.equal(a, b) and math.isfinite(float(a.sum()))
