import kornia
import pytest
import torch
import torch.nn.functional as F

from ssl_derm.finetune import FocalLoss, focal_loss


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(32, 7, generator=g, dtype=torch.float64), torch.randint(0, 7, (32,), generator=g)


def test_gamma_zero_without_weights_is_cross_entropy():
    logits, y = _data()
    torch.testing.assert_close(focal_loss(logits, y, gamma=0.0), F.cross_entropy(logits, y))


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_agrees_with_kornia(gamma):
    logits, y = _data(1)
    weight = torch.linspace(0.5, 2.0, 7)
    # kornia's scalar alpha treats class 0 as background; its per-class ``weight`` is our alpha.
    ref = kornia.losses.focal_loss(logits.float(), y, alpha=None, gamma=gamma, reduction="sum", weight=weight)
    ours = focal_loss(logits.float(), y, gamma=gamma, alpha=weight, reduction="sum")
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_class_weights_scale_each_sample():
    logits, y = _data(2)
    alpha = torch.arange(1, 8, dtype=torch.float32)
    per = focal_loss(logits, y, gamma=1.0, reduction="none")
    torch.testing.assert_close(focal_loss(logits, y, 1.0, alpha, "none"), per * alpha[y])


def test_focusing_down_weights_easy_examples():
    easy = torch.tensor([[5.0, 0.0]])
    y = torch.tensor([0])
    assert focal_loss(easy, y, gamma=2.0) < 0.01 * focal_loss(easy, y, gamma=0.0)


def test_gradcheck():
    logits, y = _data(3)
    logits.requires_grad_(True)
    alpha = torch.rand(7, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: FocalLoss(1.5, alpha)(z, y), (logits,), eps=1e-6, atol=1e-4)


def test_shape_errors_are_loud():
    with pytest.raises(ValueError, match=r"logits must be \[B, K\]"):
        focal_loss(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="alpha must be"):
        focal_loss(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), alpha=torch.ones(5))
