import torch

from tests.pretext.base import TaskTest


class TestMoCo(TaskTest):
    task_name = "moco"
    init = "imagenet"
    steps = 30
    settings = {"hidden_dim": 128, "projection_dim": 32, "queue_size": 64}

    def make(self, seed: int = 0, frozen_queue: bool = False):
        task = super().make(seed)
        if frozen_queue:
            bank = task.criterion.memory_bank
            forward = bank.forward
            bank.forward = lambda output, labels=None, update=False: forward(output, labels, update=False)
        return task

    def test_loss_falls_on_real_images(self, sample_images, monkeypatch):
        """With the queue frozen: on 16 images the queue fills with keys of the same
        images (their own stale keys become negatives), which no real pool does; the
        queue's own behaviour is tested below."""
        make = self.make
        monkeypatch.setattr(self, "make", lambda seed=0: make(seed, frozen_queue=True))
        super().test_loss_falls_on_real_images(sample_images)

    def test_the_queue_is_saved_with_the_trainer_state(self):
        state = self.make().state_dict()  # what last.ckpt holds, so --resume continues the queue
        assert state["criterion.memory_bank.bank"].shape == (64, 32)

    def test_keys_enter_the_queue_in_training_only(self, sample_images):
        task = self.make()
        bank = task.criterion.memory_bank.bank  # [queue_size, projection_dim]
        before = bank.clone()
        x = self.batch(sample_images)
        with torch.no_grad():
            task(x, generator=torch.Generator().manual_seed(0))
        assert torch.equal(bank, before)  # validation passes leave the queue alone
        task(x, generator=torch.Generator().manual_seed(0))
        changed = (task.criterion.memory_bank.bank != before).any(1).sum()
        assert changed == len(x)  # one key per image enqueued
