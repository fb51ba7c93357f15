"""Shortcut probe for the rotation task: can the angle be read off the pixels
without looking at the lesion?

A small classifier (logistic regression and gradient-boosted trees, the better
one counts) is trained on hand-made low-level features of the rotation task's
own inputs and scored with 5-fold cross-validation grouped by image (the six
rotations of one image are never split across folds):

- histograms of gradient orientations (mod 180 degrees, 18 bins) and
  directions (mod 360, 36 bins), weighted by magnitude, at the pixel scale
  (2x2 differences) and two coarser ones (Sobel), and the structure tensor's
  dominant orientation and coherence: anisotropic stretching, the resampling
  grid, axis-aligned artefacts (JPEG blocks, the frame), reflection seams and
  lighting from one side all show here;
- mean and standard deviation of the four corners and the four border strips
  per channel: empty or filled corners and the vignette show here.

Near chance (1/K) means no such cue is left, so a rotation network that scores
well must have learned from the content.  ``pipeline="old"`` rebuilds the
inputs of ssl-derm <= 0.1 (squashed 4:3 images, vertical flips and aspect
jitter in the augmentation, rotated with black corners under a circle mask) to
show what the probe catches.

    .venv/bin/python benchmarks/ham10000/tools/shortcut_probe.py --data ../shared/data/ham10000 \\
        --n 2000 --size 96 --out benchmarks/ham10000/shortcut_probe.json

scores the old inputs and the current ones on the same images (``PIPELINES``): the first
should be far above chance (1/6), the second near it. Not part of the installed package:
the product never calls it, and its test imports it from here.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ssl_derm.data import FileList, ImageBank, decode_source, load_labeled
from ssl_derm.data.transforms import train_augment
from ssl_derm.pretext.rotation import RotationWarp

PIPELINES = ("old", "new")
ANGLES = (0, 60, 120, 180, 240, 300)


def _old_augment(size: int):
    import kornia.augmentation as K

    return K.AugmentationSequential(
        K.RandomResizedCrop((size, size), scale=(0.6, 1.0), ratio=(0.8, 1.25)),
        K.RandomHorizontalFlip(),
        K.RandomVerticalFlip(),
        K.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.15, hue=0.0, p=0.8),
    )


def _old_rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    from kornia.geometry.transform import rotate

    size = x.shape[-1]
    r = (torch.arange(size, dtype=torch.float32) - (size - 1) / 2) / (size / 2)
    mask = ((r[None, :] ** 2 + r[:, None] ** 2) <= 1.0).float()[None, None]
    return rotate(x, degrees) * mask


@torch.no_grad()
def task_inputs(images: torch.Tensor, pipeline: str, seed: int = 0, stretch: float = 1.25):
    """The rotation task's inputs for uint8 ``images`` ``[N, 3, S, S]`` (decoded with
    ``resize="squash"`` for the old pipeline, ``"crop"`` otherwise): every image at
    each of the six angles, independently augmented.  Returns float ``[6N, 3, S, S]``
    in [0, 1], labels ``[6N]`` and groups ``[6N]`` (the image index)."""
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline={pipeline!r}: choose {', '.join(PIPELINES)}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n, size = len(images), images.shape[-1]
    augment = _old_augment(size) if pipeline == "old" else train_augment(size, preserve_up=True)
    angles = torch.tensor(ANGLES, dtype=torch.float32)
    task = None if pipeline == "old" else RotationWarp(ANGLES, 5.0, stretch)
    xs, labels, groups = [], [], []
    for start in range(0, n, 128):
        batch = images[start : start + 128].float() / 255
        for k in range(len(ANGLES)):
            x = augment(batch).clamp(0, 1)
            label = torch.full((len(x),), k)
            if task is None:
                degrees = angles[label] + (torch.rand(len(x), generator=gen) * 2 - 1) * 5.0
                xs.append(_old_rotate(x, degrees))
            else:  # the task's own draw and warp, with the label fixed
                params = task.draw(x, gen)
                params["labels"] = label
                xs.append(task.apply(x, params))
            labels.append(label)
            groups.append(torch.arange(start, start + len(x)))
    return torch.cat(xs), torch.cat(labels).numpy(), torch.cat(groups).numpy()


def _histogram(theta: torch.Tensor, mag: torch.Tensor, period: float, bins: int) -> torch.Tensor:
    idx = ((theta % period) / period * bins).long().clamp(max=bins - 1)
    hist = torch.zeros(len(theta), bins).scatter_add_(1, idx, mag)
    return hist / hist.sum(1, keepdim=True).clamp_min(1e-8)


def _orientation_features(grey: torch.Tensor, bins: int = 18) -> torch.Tensor:
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3) / 8
    gx = F.conv2d(grey, kx)
    gy = F.conv2d(grey, kx.transpose(2, 3))
    mag = (gx**2 + gy**2).sqrt().flatten(1)
    theta = torch.atan2(gy, gx).flatten(1)
    # orientation (mod 180 degrees) and direction (mod 360: which side is brighter)
    hist = torch.cat([_histogram(theta, mag, torch.pi, bins), _histogram(theta, mag, 2 * torch.pi, 2 * bins)], 1)
    jxx, jyy, jxy = (gx * gx).mean((1, 2, 3)), (gy * gy).mean((1, 2, 3)), (gx * gy).mean((1, 2, 3))
    phi = torch.atan2(2 * jxy, jxx - jyy)  # twice the dominant orientation
    coherence = ((jxx - jyy) ** 2 + 4 * jxy**2).sqrt() / (jxx + jyy).clamp_min(1e-8)
    return torch.cat([hist, torch.stack([phi.cos(), phi.sin(), coherence], 1)], 1)


def _fine_features(grey: torch.Tensor, bins: int = 36) -> torch.Tensor:
    """Pixel-scale differences (2x2 kernels): the resampling grid shows here first."""
    dx = grey[..., :-1, 1:] - grey[..., :-1, :-1]
    dy = grey[..., 1:, :-1] - grey[..., :-1, :-1]
    theta = torch.atan2(dy, dx).flatten(1)
    return _histogram(theta, (dx**2 + dy**2).sqrt().flatten(1), 2 * torch.pi, bins)


def features(x: torch.Tensor) -> np.ndarray:
    """Low-level features ``[N, D]`` of float images ``[N, 3, S, S]`` in [0, 1]."""
    grey = x.mean(1, keepdim=True)
    s = x.shape[-1]
    c, b = max(2, s // 8), 2
    regions = [
        x[..., :c, :c],
        x[..., :c, -c:],
        x[..., -c:, :c],
        x[..., -c:, -c:],  # corners
        x[..., :b, :],
        x[..., -b:, :],
        x[..., :, :b],
        x[..., :, -b:],  # border strips
    ]
    stats = [torch.cat([r.mean((2, 3)), r.std((2, 3))], 1) for r in regions]
    parts = [_fine_features(grey), _orientation_features(grey), _orientation_features(F.avg_pool2d(grey, 2)), *stats]
    return torch.cat(parts, 1).numpy()


def probe_accuracy(
    feats: np.ndarray, labels: np.ndarray, groups: np.ndarray, seed: int = 0, classifiers=("logreg", "trees")
) -> dict:
    """5-fold cross-validated accuracy, grouped by image, of small classifiers (the best one counts)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = GroupKFold(n_splits=5)
    models = {
        "logreg": make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000)),
        "trees": HistGradientBoostingClassifier(max_iter=150, learning_rate=0.1, random_state=seed),
    }
    out = {
        name: float(cross_val_score(models[name], feats, labels, groups=groups, cv=folds).mean())
        for name in classifiers
    }
    out["probe"] = max(out.values())
    out["chance"] = 1 / len(np.unique(labels))
    out["samples"] = len(labels)
    return out


def run_probe(images: torch.Tensor, pipeline: str, seed: int = 0, classifiers=("logreg", "trees")) -> dict:
    x, labels, groups = task_inputs(images, pipeline, seed)
    return probe_accuracy(features(x), labels, groups, seed, classifiers)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", help="labelled source (default: bundled sample)")
    p.add_argument("--n", type=int, default=2000, help="images drawn at random (each at all six angles)")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="JSON file for the figures")
    args = p.parse_args()
    table = load_labeled(args.data)
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.permutation(len(table))[: args.n])
    files = FileList(str(args.data or "sample"), [table["image"][i] for i in pick])
    report = {"data": str(args.data or "bundled sample"), "images": len(pick), "size": args.size, "seed": args.seed}
    for pipeline in PIPELINES:
        t0 = time.time()
        decoded = decode_source(files, args.size, resize="squash" if pipeline == "old" else "crop")
        images = ImageBank([decoded]).gather(np.arange(int(decoded.ok.sum())))
        report[pipeline] = run_probe(images, pipeline, args.seed)
        r = report[pipeline]
        print(
            f"{pipeline}: probe accuracy {r['probe']:.3f} (logistic regression {r['logreg']:.3f}, "
            f"trees {r['trees']:.3f}; chance {r['chance']:.3f}; {r['samples']} inputs, {time.time() - t0:.0f} s)"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
