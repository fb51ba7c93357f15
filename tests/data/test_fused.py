"""The fused augmentation (``ssl_derm/data/fused.py``) against the kornia recipes it stands
for: the same parameter distributions (two-sample tests on 10,000 draws), masks that stay on
their images, replayed draws that are exact, and the colour map and blur that kornia's
formulas give."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from ssl_derm.data.fused import FusedAugment, fused_train_augment, fused_two_view_augment
from ssl_derm.data.transforms import train_augment, two_view_augment

N = 10_000


class _Shape:  # the draws read only the batch's shape
    shape = torch.Size([N, 3, 150, 200])  # HAM10000 here: 200 x 150


def _kornia(aug) -> dict[str, np.ndarray]:
    p = {item.name.rsplit("_", 1)[0]: item.data for item in aug.draw(_Shape, torch.Generator().manual_seed(1))}
    src = p["RandomResizedCrop"]["src"]
    w = (src[:, 1, 0] - src[:, 0, 0] + 1).numpy()
    h = (src[:, 2, 1] - src[:, 1, 1] + 1).numpy()
    rot = p.get("RandomRotation")
    out = {
        "area": w * h / (150 * 200),
        "aspect": w / h,
        "hflip": p["RandomHorizontalFlip"]["batch_prob"].numpy() > 0.5,
        "vflip": p["RandomVerticalFlip"]["batch_prob"].numpy() > 0.5
        if "RandomVerticalFlip" in p
        else np.zeros(N, bool),
        "angle": (rot["degrees"] * rot["batch_prob"]).numpy() if rot else np.zeros(N),
    }
    colour = p["ColorJitter"]
    on = colour["batch_prob"].numpy() > 0.5
    for k in ("brightness", "contrast", "saturation"):
        out[k] = np.where(on, colour[f"{k}_factor"].numpy(), 1.0)
    return out


def _fused(aug: FusedAugment) -> dict[str, np.ndarray]:
    p = aug.draw(_Shape, torch.Generator().manual_seed(1))
    w, h = p["box"][:, 2].numpy(), p["box"][:, 3].numpy()
    out = {"area": w * h / (150 * 200), "aspect": w / h, "hflip": p["hflip"].numpy(), "vflip": p["vflip"].numpy()}
    out["angle"] = p["angle"].numpy()
    for i, k in enumerate(("brightness", "contrast", "saturation")):
        out[k] = p["colour"][:, i].numpy()
    return out


@pytest.mark.parametrize(
    ("kornia", "fused"),
    [
        (train_augment(96), fused_train_augment(96)),
        (train_augment(96, preserve_up=True), fused_train_augment(96, preserve_up=True)),
        (two_view_augment(96), fused_two_view_augment(96)),
    ],
    ids=["train", "train-preserve-up", "two-view"],
)
def test_the_fused_draws_follow_the_kornia_recipes(kornia, fused):
    a, b = _kornia(kornia), _fused(fused)
    for k in ("area", "aspect", "angle", "brightness", "contrast", "saturation"):
        if np.ptp(a[k]) == 0:
            assert np.ptp(b[k]) == 0 and a[k][0] == pytest.approx(b[k][0]), k
            continue
        assert ks_2samp(a[k], b[k]).pvalue > 1e-3, k  # 10,000 draws each: a real gap shows
    for k in ("hflip", "vflip"):
        assert abs(a[k].mean() - b[k].mean()) < 0.03, k


def test_a_replayed_draw_is_bit_identical(sample_images):
    aug = fused_two_view_augment(64)
    x = sample_images[:8].float() / 255
    one = aug.apply(x, aug.draw(x, torch.Generator().manual_seed(7)))
    two = aug.apply(x, aug.draw(x, torch.Generator().manual_seed(7)))
    other = aug.apply(x, aug.draw(x, torch.Generator().manual_seed(8)))
    assert torch.equal(one, two) and not torch.equal(one, other)
    assert one.shape == (8, 3, 64, 64) and 0 <= float(one.min()) and float(one.max()) <= 1


def test_a_mask_stays_on_its_image(sample_table):
    """The image's own lesion, drawn into the image, warped bilinear, against the mask warped
    nearest by the same draw: IoU > 0.9 for every image."""
    from PIL import Image

    rows = sample_table[sample_table["mask"] != ""].head(16)
    masks = torch.stack(
        [torch.from_numpy(np.asarray(Image.open(m).convert("L").resize((200, 150))) >= 128) for m in rows["mask"]]
    )[:, None].float()
    image = masks.repeat(1, 3, 1, 1)
    aug = FusedAugment(96, scale=(0.3, 1.0), rotate=1.0, colour=0.0)
    params = aug.draw(image, torch.Generator().manual_seed(0))
    warped, m = aug.apply_pair(image, masks, params)
    a, b = warped[:, 0] > 0.5, m[:, 0] > 0.5
    iou = (a & b).sum((1, 2)).float() / (a | b).sum((1, 2)).clamp(min=1)
    assert bool((iou > 0.9).all()), iou


def test_the_colour_map_is_the_three_adjustments_in_any_order():
    """torchvision's brightness, contrast and saturation one after another (no clamp between,
    values kept inside [0, 1]) in two orders: the fused map gives the same image."""
    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.4 * torch.rand(4, 3, 16, 16, generator=g)
    f = torch.tensor([[1.1, 0.9, 1.1], [0.9, 1.1, 0.9], [1.0, 1.0, 1.0], [1.05, 0.95, 0.9]])
    grey = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)

    def bright(y, v):
        return y * v.view(-1, 1, 1, 1)

    def contrast(y, v):
        m = (y * grey).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        return v.view(-1, 1, 1, 1) * y + (1 - v.view(-1, 1, 1, 1)) * m

    def saturation(y, v):
        return v.view(-1, 1, 1, 1) * y + (1 - v.view(-1, 1, 1, 1)) * (y * grey).sum(1, keepdim=True)

    fused = FusedAugment(16).colour_map(x, f)
    one = saturation(contrast(bright(x, f[:, 0]), f[:, 1]), f[:, 2])
    two = bright(saturation(contrast(x, f[:, 1]), f[:, 2]), f[:, 0])
    assert torch.allclose(fused, one, atol=1e-6) and torch.allclose(fused, two, atol=1e-6)


def test_the_batched_blur_is_kornias_per_image():
    from kornia.filters import gaussian_blur2d

    x = torch.rand(3, 3, 20, 20, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.5, 0.0, 1.7])
    out = FusedAugment(20, kernel=5).blur_batch(x, sigma)
    assert torch.equal(out[1], x[1])  # sigma 0: left sharp
    for i in (0, 2):
        ref = gaussian_blur2d(x[i : i + 1], (5, 5), (float(sigma[i]), float(sigma[i])), border_type="reflect")
        assert torch.allclose(out[i], ref[0], atol=1e-5)


def test_the_augmentation_setting_picks_the_fused_recipes():
    assert isinstance(train_augment(64, fused=True), FusedAugment)
    assert isinstance(two_view_augment(64, 0.5, 0.0, fused=True), FusedAugment)
    assert not isinstance(train_augment(64), FusedAugment)  # kornia stays the default


@pytest.mark.parametrize("task", ["rotation", "context_restore", "simclr"])
def test_pretraining_runs_with_the_fused_recipes(tmp_path, task):
    """Every kind of view a task makes (upright + warp, augmented + corrupted, two views)."""
    from ssl_derm.cli import main

    out = tmp_path / task
    args = ["pretrain", "--task", task, "--init", "imagenet", "--out", str(out), "--max-steps", "2"]
    args += ["--image-size", "64", "--batch-size", "8", "--no-progress", "--augmentation", "fused"]
    assert main(args) == 0
    ckpt = torch.load(out / "ssl.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["config"]["augmentation"] == "fused"


@pytest.mark.parametrize("target", ["classification", "segmentation"])
def test_fine_tuning_runs_with_the_fused_recipe(tmp_path, target):
    """Classification, and segmentation, whose masks take the same warp."""
    from ssl_derm.cli import main

    out = tmp_path / target
    args = ["finetune", "--target", target, "--out", str(out), "--max-steps", "2", "--image-size", "64"]
    args += ["--batch-size", "8", "--no-progress", "--init", "imagenet", "--augmentation", "fused"]
    assert main(args) == 0
    assert (out / "metrics.json").is_file()
