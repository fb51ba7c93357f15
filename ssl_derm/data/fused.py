"""The augmentation recipes of ``transforms.py`` as a few fused batched ops (a GPU's host
should not wait on five kornia ops per batch, each with its own host-side work).

- **Geometry in one warp:** random resized crop, horizontal and vertical flips and rotation
  are composed into one 2x3 matrix per image and applied to the whole batch with one
  ``affine_grid`` + ``grid_sample`` (bilinear; a mask takes the same matrices, nearest).
  One resampling instead of two (crop, then rotation). Where a rotated corner leaves the
  crop, it shows the image around the crop (zeros only outside the image), not black.
- **Colour in one map:** brightness, contrast and saturation (torchvision's formulas, as
  kornia's ``ColorJitter``: multiply; blend with the grey mean; blend with the grey image)
  commute when nothing is clamped between them, so together they are one per-image affine
  map in RGB (no HSV round trip), applied with one ``einsum`` and one clamp.
- **Blur as one batched separable convolution**, each image its own sigma (a delta kernel
  for the images the draw leaves sharp).

Every random number of a batch comes from one ``torch.rand`` call on the step's generator
(``draw``), and ``apply`` is deterministic given them, so a replayed draw is exactly what
was trained on. The parameter ranges are the recipes' (``fused_train_augment``,
``fused_two_view_augment``); tests check the drawn distributions against kornia's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GREY = (0.299, 0.587, 0.114)  # kornia's and torchvision's rgb_to_grayscale weights
TRIES = 10  # crop boxes tried per image before the fallback, as kornia and torchvision do


class FusedAugment:
    """Crop, flips, rotation, colour and blur as one warp, one colour map and one blur."""

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.6, 1.0),
        ratio: tuple[float, float] = (0.8, 1.25),
        hflip: float = 0.5,
        vflip: float = 0.5,
        rotate: float = 0.5,
        degrees: float = 180.0,
        colour: float = 0.8,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.15,
        blur: float = 0.0,
        kernel: int = 3,
        sigma: tuple[float, float] = (0.1, 2.0),
    ) -> None:
        self.size, self.scale, self.ratio = size, scale, ratio
        self.hflip, self.vflip, self.rotate, self.degrees = hflip, vflip, rotate, degrees
        self.colour, self.factors = colour, (brightness, contrast, saturation)
        self.blur, self.kernel, self.sigma = blur, kernel, sigma

    # ---------------------------------------------------------------- the draw

    def draw(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Every random number of the batch ``x`` (one ``torch.rand`` call), as parameters on
        the CPU: the crop box in pixels, the flips, the angle, the colour factors, the blur's sigma."""
        b, _, h, w = x.shape
        u = torch.rand((b, 2 * TRIES + 12), generator=generator, dtype=torch.float64)
        area = (self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, :TRIES]) * (h * w)
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        aspect = torch.exp(lo + (hi - lo) * u[:, TRIES : 2 * TRIES])
        cw, ch = torch.sqrt(area * aspect).round(), torch.sqrt(area / aspect).round()
        fits = (cw >= 1) & (cw <= w) & (ch >= 1) & (ch <= h)
        first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((b,), -1))
        pick = first.clamp(min=0)[:, None]
        cw, ch = cw.gather(1, pick)[:, 0], ch.gather(1, pick)[:, 0]
        # no box fits in TRIES: the centre crop of the ratio range nearest the image's (torchvision's fallback)
        side = min(h, w)
        fw = float(min(w, round(side * min(max(w / h, self.ratio[0]), self.ratio[1]))))
        fh = float(min(h, round(fw / min(max(w / h, self.ratio[0]), self.ratio[1]))))
        cw = torch.where(first < 0, torch.full_like(cw, fw), cw)
        ch = torch.where(first < 0, torch.full_like(ch, fh), ch)
        k = 2 * TRIES
        x0 = torch.floor(u[:, k] * (w - cw + 1)).clamp(max=w - cw)
        y0 = torch.floor(u[:, k + 1] * (h - ch + 1)).clamp(max=h - ch)
        x0 = torch.where(first < 0, torch.floor((w - cw) / 2), x0)
        y0 = torch.where(first < 0, torch.floor((h - ch) / 2), y0)
        turned = u[:, k + 4] < self.rotate
        angle = torch.where(turned, (2 * u[:, k + 5] - 1) * self.degrees, torch.zeros(b, dtype=u.dtype))
        factors = torch.stack([1 + (2 * u[:, k + 7 + i] - 1) * f for i, f in enumerate(self.factors)], 1)
        coloured = u[:, k + 6] < self.colour
        factors = torch.where(coloured[:, None], factors.clamp(min=0), torch.ones_like(factors))
        blurred = u[:, k + 10] < self.blur
        sigma = self.sigma[0] + (self.sigma[1] - self.sigma[0]) * u[:, k + 11]
        return {
            "box": torch.stack([x0, y0, cw, ch], 1).float(),  # x0, y0, width, height in source pixels
            "hflip": u[:, k + 2] < self.hflip,
            "vflip": u[:, k + 3] < self.vflip,
            "angle": angle.float(),  # degrees, 0 where not rotated
            "colour": factors.float(),  # brightness, contrast, saturation (1 where not jittered)
            "sigma": torch.where(blurred, sigma, torch.zeros_like(sigma)).float(),  # 0: not blurred
            "shape": torch.tensor([h, w]),
        }

    # ---------------------------------------------------------------- applying it

    def theta(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, 2, 3]``: output -> source coordinates (normalised, ``align_corners=False``)
        of crop, then flips, then rotation about the centre."""
        h, w = (float(v) for v in params["shape"])
        x0, y0, cw, ch = params["box"].unbind(1)
        a = torch.deg2rad(params["angle"])
        cos, sin = torch.cos(a), torch.sin(a)
        fx = 1 - 2 * params["hflip"].float()
        fy = 1 - 2 * params["vflip"].float()
        sx, sy = cw / w, ch / h
        theta = torch.zeros(len(a), 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = sx * fx * cos, -sx * fx * sin
        theta[:, 1, 0], theta[:, 1, 1] = sy * fy * sin, sy * fy * cos
        theta[:, 0, 2] = (2 * x0 + cw) / w - 1
        theta[:, 1, 2] = (2 * y0 + ch) / h - 1
        return theta

    def warp(self, x: torch.Tensor, params: dict, mode: str = "bilinear") -> torch.Tensor:
        theta = self.theta(params).to(x.device, torch.float32)
        grid = F.affine_grid(theta, [len(x), x.shape[1], self.size, self.size], align_corners=False)
        return F.grid_sample(x.float(), grid, mode=mode, padding_mode="zeros", align_corners=False)

    def colour_map(self, x: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
        """Brightness b, contrast c and saturation s as one map: ``b * (c * S x + (1 - c) * m)``,
        S the saturation blend with the grey image, m the image's mean grey."""
        b, c, s = (v.to(x.device)[:, None, None] for v in factors.unbind(1))
        grey = torch.tensor(GREY, device=x.device, dtype=x.dtype)
        sat = s * torch.eye(3, device=x.device, dtype=x.dtype) + (1 - s) * grey[None, None, :]  # [B, 3, 3]
        mean = torch.einsum("c,bchw->b", grey, x)[:, None, None] / (x.shape[2] * x.shape[3])
        out = torch.einsum("bij,bjhw->bihw", b * c * sat, x) + (b * (1 - c) * mean)[..., None]
        return out.clamp_(0, 1)

    def blur_batch(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Each image blurred with its own Gaussian (a delta where ``sigma`` is 0), reflect padding."""
        if not bool((sigma > 0).any()):
            return x
        n, ch, h, w = x.shape
        r = self.kernel // 2
        t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
        sd = sigma.to(x.device, x.dtype).clamp(min=1e-6)[:, None]
        g = torch.exp(-(t[None] ** 2) / (2 * sd**2))
        g = torch.where((sigma > 0).to(x.device)[:, None], g / g.sum(1, keepdim=True), (t == 0).to(x.dtype)[None])
        g = g.repeat_interleave(ch, 0)  # [B * C, k]
        y = F.pad(x.reshape(1, n * ch, h, w), (r, r, r, r), mode="reflect")
        y = F.conv2d(y, g[:, None, None, :], groups=n * ch)
        y = F.conv2d(y, g[:, None, :, None], groups=n * ch)
        return y.reshape(n, ch, h, w)

    def apply(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        x = self.warp(x, params)
        x = self.colour_map(x, params["colour"])
        return self.blur_batch(x, params["sigma"])

    def apply_pair(self, x: torch.Tensor, mask: torch.Tensor, params: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` as ``apply`` does and its ``[B, 1, H, W]`` mask through the same warp (nearest);
        colour and blur leave the mask alone. Returns the mask as float {0, 1}."""
        m = self.warp(mask.float(), params, mode="nearest")
        return self.apply(x, params), (m > 0.5).to(torch.float32)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(x, self.draw(x, generator))


def fused_train_augment(size: int, preserve_up: bool = False, colour: bool = True) -> FusedAugment:
    """``transforms.train_augment``'s recipe, fused."""
    return FusedAugment(
        size,
        scale=(0.6, 1.0),
        ratio=(1.0, 1.0) if preserve_up else (0.8, 1.25),
        vflip=0.0 if preserve_up else 0.5,
        rotate=0.0 if preserve_up else 0.5,
        colour=0.8 if colour else 0.0,
    )


def fused_two_view_augment(size: int, min_scale: float = 0.2, blur: float = 0.5) -> FusedAugment:
    """``transforms.two_view_augment``'s recipe, fused."""
    return FusedAugment(
        size,
        scale=(min_scale, 1.0),
        ratio=(0.75, 1.333),
        rotate=1.0,
        brightness=0.4,
        contrast=0.4,
        saturation=0.3,
        blur=blur,
        kernel=max(3, (size // 10) | 1),
    )
