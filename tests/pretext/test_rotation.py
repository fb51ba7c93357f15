import torch
from ssl_derm.pretext import circle_mask

from tests.pretext.base import TaskTest


class TestRotation(TaskTest):
    task_name = "rotation"

    def test_six_angles_share_the_same_masked_region(self, sample_images):
        task = self.make()
        assert task.angles.tolist() == [0, 60, 120, 180, 240, 300]
        x = self.batch(sample_images, 1).repeat(6, 1, 1, 1)
        params = {"labels": torch.arange(6), "jitter": torch.full((6,), 3.0)}
        rotated = task.apply(x, params)
        outside = circle_mask(64)[0, 0] == 0
        assert (rotated[:, :, outside] == 0).all()  # every angle, 0 included, is masked alike
        inside = (rotated.abs().sum(1) > 0).float()
        # The visible region is the same disc for all six angles (up to interpolation at its rim).
        assert (inside - inside[0:1]).abs().mean() < 0.01
        assert not torch.allclose(rotated[0], rotated[3])

    def test_jitter_resamples_angle_zero_too(self, sample_images):
        task = self.make()
        x = self.batch(sample_images, 1)
        masked = x * circle_mask(64)
        exact = task.apply(x, {"labels": torch.tensor([0]), "jitter": torch.tensor([0.0])})
        jittered = task.apply(x, {"labels": torch.tensor([0]), "jitter": torch.tensor([2.0])})
        assert torch.allclose(exact, masked, atol=1e-5)
        assert not torch.allclose(jittered, masked, atol=1e-3)
