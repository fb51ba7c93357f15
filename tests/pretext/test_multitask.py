import pytest
import torch

from ssl_derm.config import PretrainConfig, build_config, to_dict
from ssl_derm.errors import UserError
from tests.pretext.base import TaskTest


class TestMultiTask(TaskTest):
    task_name = "multitask"
    init = "imagenet"
    steps = 30
    settings = {"parts": ["context_restore", "simclr"], "weights": [1.0, 0.5]}

    def config(self):
        cfg = super().config()
        small = {"context_restore": {"swaps": 10}, "simclr": {"hidden_dim": 128, "projection_dim": 32}}
        return build_config(PretrainConfig, to_dict(cfg), small)

    def test_parts_share_one_encoder_and_the_loss_is_the_weighted_sum(self, sample_images):
        task = self.make().eval()
        assert all(part.encoder is task.encoder for part in task.parts.values())
        x = self.batch(sample_images)
        with torch.no_grad():
            out = task(x, generator=torch.Generator().manual_seed(0))
        expected = out.scalars["context_restore/loss"] + 0.5 * out.scalars["simclr/loss"]
        assert torch.allclose(out.loss, expected)
        assert "simclr/embedding_spread" in out.scalars and "context_restore/restored" in out.images

    def test_parts_keep_their_own_settings_and_views(self):
        task = self.make()
        assert task.parts["context_restore"].swaps == 10
        assert task.parts["simclr"].settings.projection_dim == 32


def test_rotation_part_keeps_its_upright_views_beside_a_free_one():
    cfg = build_config(
        PretrainConfig, {"task": "multitask", "image_size": 64, "multitask.parts": "rotation,context_restore"}
    )
    from ssl_derm.encoders import build_encoder
    from ssl_derm.pretext import build_task

    task = build_task("multitask", build_encoder(), cfg)
    assert task.parts["rotation"].upright is not None  # no vertical flips for the rotation labels


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"multitask.parts": "rotation"}, "need >= 2 distinct tasks"),
        ({"multitask.parts": "rotation,nope"}, r"unknown task\(s\) \['nope'\]"),
        ({"multitask.weights": "1"}, "need one weight per part"),
        ({"multitask.weights": "1,0"}, "must be > 0"),
        ({"byol.momentum": 0.5}, r"settings for task\(s\) byol given, but the run trains task 'multitask'"),
    ],
)
def test_bad_settings_name_the_rule(settings, message):
    with pytest.raises(UserError, match=message):
        build_config(PretrainConfig, {"task": "multitask"}, settings)
