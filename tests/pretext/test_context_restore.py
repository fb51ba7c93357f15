import torch

from ssl_derm.pretext.context_restore import draw_swaps, swap_patches
from tests.pretext.base import TaskTest


class TestContextRestore(TaskTest):
    task_name = "context_restore"
    settings = {"swaps": 10}

    def test_decoder_is_a_unet_on_the_shared_encoder(self):
        task = self.make()
        assert task.unet.encoder is task.encoder
        assert type(task.unet).__name__ == "Unet"


def test_swapped_patches_never_overlap_and_stay_inside():
    s = draw_swaps(64, 64, 48, patch=8, swaps=20, generator=torch.Generator().manual_seed(0))
    y1, x1, y2, x2 = s.unbind(-1)
    assert ((y1 - y2).abs().ge(8) | (x1 - x2).abs().ge(8)).all()
    assert s[..., 0].max() <= 56 and s[..., 1].max() <= 40 and s.min() >= 0


def test_one_swap_exchanges_exactly_two_patches(sample_images):
    x = sample_images[:2]
    swaps = torch.tensor([[[0, 0, 16, 24]], [[40, 40, 8, 8]]])
    out, touched = swap_patches(x, swaps, 8)
    assert torch.equal(out[0, :, 0:8, 0:8], x[0, :, 16:24, 24:32])
    assert torch.equal(out[0, :, 16:24, 24:32], x[0, :, 0:8, 0:8])
    assert torch.equal(out[1, :, 40:48, 40:48], x[1, :, 8:16, 8:16])
    assert touched.sum() == 2 * 2 * 64
    untouched = touched == 0
    assert torch.equal(out.masked_select(untouched.expand_as(x)), x.masked_select(untouched.expand_as(x)))


def test_corruption_is_a_permutation_of_pixels(sample_images):
    x = sample_images[:4]
    out, _ = swap_patches(x, draw_swaps(4, 64, 64, 6, 20, torch.Generator().manual_seed(1)), 6)
    assert not torch.equal(out, x)
    assert torch.equal(out.flatten(1).sort(1).values, x.flatten(1).sort(1).values)


def test_tight_patches_are_still_disjoint_and_impossible_ones_refused():
    # 9 px patches in 20 px images: a first patch near the middle leaves no room for a
    # second one beside it, so redrawing only the second patch would give up overlapping.
    s = draw_swaps(64, 20, 20, patch=9, swaps=20, generator=torch.Generator().manual_seed(0))
    y1, x1, y2, x2 = s.unbind(-1)
    assert ((y1 - y2).abs().ge(9) | (x1 - x2).abs().ge(9)).all()
    import pytest

    with pytest.raises(ValueError, match="cannot be placed"):
        draw_swaps(2, 20, 20, patch=11, swaps=1)
