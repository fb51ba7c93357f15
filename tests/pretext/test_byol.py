import torch

from tests.pretext.base import TaskTest


class TestBYOL(TaskTest):
    task_name = "byol"
    init = "imagenet"
    steps = 30
    settings = {"hidden_dim": 128, "projection_dim": 32}

    def test_target_follows_the_online_weights_with_rising_momentum(self):
        task = self.make()
        with torch.no_grad():
            for p in task.encoder.parameters():
                p.add_(1.0)
        before = [p.clone() for p in task.target_encoder.parameters()]
        task.on_train_step(0, 10)
        first = task.momentum
        moved = [(p - b).abs().max() for p, b in zip(task.target_encoder.parameters(), before)]
        assert first == 0.99 and all(m > 0 for m in moved)
        assert not any(p.requires_grad for p in task.target_encoder.parameters())
        task.on_train_step(9, 10)
        assert first < task.momentum <= 1.0
