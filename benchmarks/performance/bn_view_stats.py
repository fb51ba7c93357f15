"""How far the BatchNorm statistics of each recipe's views sit from clean images', kornia against
fused: the ImageNet encoder's per-layer batch statistics (AdaBN over N training images) on views
vs on the clean images, plus the views' pixel statistics. Validation images are not touched."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ssl_derm.data import ImagePipeline
from ssl_derm.data.labeled import prepare_labeled
from ssl_derm.data.transforms import to_float, train_augment, two_view_augment
from ssl_derm.encoders import build_encoder, encoder_spec
from ssl_derm.pretext.rotation import RotationWarp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ham10000" / "tools"))  # knn_probe.py
from knn_probe import adapt_batchnorm  # noqa: E402


def stored(encoder):
    """Every BatchNorm layer's running mean and variance, in module order."""
    bns = [m for m in encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    return [(m.running_mean.clone(), m.running_var.clone()) for m in bns]


def bn_stats(encoder, batches):
    """The statistics AdaBN (``knn_probe.adapt_batchnorm``) re-estimates over ``batches``,
    already normalised views."""
    adapt_batchnorm(encoder, torch.cat(batches), lambda x: x, batch=len(batches[0]))
    return stored(encoder)


def distance(a, ref):
    dm = [((m - mr).abs() / (vr + 1e-5).sqrt()).mean().item() for (m, _), (mr, vr) in zip(a, ref)]
    dv = [((v + 1e-5) / (vr + 1e-5)).log().abs().mean().item() for (_, v), (_, vr) in zip(a, ref)]
    return float(np.mean(dm)), float(np.mean(dv))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--splits", required=True)
    ap.add_argument("--n", type=int, default=768)
    ap.add_argument("--out")
    ap.add_argument(
        "--checkpoints",
        nargs="*",
        default=[],
        help="pretrained encoders whose *stored* BatchNorm statistics are compared with the clean images' too",
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    lab = prepare_labeled(args.data, 96, splits=args.splits, progress=False)
    idx = np.sort(np.random.default_rng(0).permutation(lab.indices("train"))[: args.n])
    images = lab.bank.gather(idx)
    pipe = ImagePipeline(encoder_spec("efficientnet-lite0").normalization)
    enc = build_encoder("efficientnet-lite0", "imagenet")
    chunks = [images[i : i + 128] for i in range(0, len(images), 128)]
    clean = bn_stats(enc, [pipe.normalize(to_float(c)) for c in chunks])
    warp = RotationWarp()

    def views(recipe, fused, seed):
        g = torch.Generator().manual_seed(seed)
        out = []
        for c in chunks:
            x = to_float(c)
            if recipe == "rotation":
                x = train_augment(96, preserve_up=True, fused=fused)(x, g)
                x = warp.apply(x, warp.draw(x, g))
            elif recipe == "train_augment":
                x = train_augment(96, fused=fused)(x, g)
            else:
                x = two_view_augment(96, 0.2, 0.5, fused=fused)(x, g)
            out.append(x)
        return out

    rows = {}
    for recipe in ("train_augment", "two_view", "rotation"):
        for name, fused, seed in (("kornia", False, 1), ("kornia_again", False, 2), ("fused", True, 1)):
            v = views(recipe, fused, seed)
            x = torch.cat(v)
            black = (x.amax(1) < 1 / 255).float().mean().item()
            st = bn_stats(enc, [pipe.normalize(b) for b in v])
            dm, dv = distance(st, clean)
            rows[f"{recipe}/{name}"] = {
                "bn_mean_shift": dm,
                "bn_log_var_ratio": dv,
                "black_fraction": black,
                "pixel_mean": x.mean((0, 2, 3)).tolist(),
                "pixel_std": x.std((0, 2, 3)).tolist(),
            }
            r = rows[f"{recipe}/{name}"]
            print(
                f"{recipe:14s} {name:13s} BN |dmean|/sd {dm:.3f}  |log var ratio| {dv:.3f}  black {black:.3f}  "
                f"mean {np.round(r['pixel_mean'], 3)} std {np.round(r['pixel_std'], 3)}",
                flush=True,
            )
    for ckpt in args.checkpoints:  # stored statistics against the same encoder's clean-image statistics
        trained = build_encoder("efficientnet-lite0", ckpt)
        dm, dv = distance(stored(trained), bn_stats(trained, [pipe.normalize(to_float(c)) for c in chunks]))
        name = Path(ckpt).parent.name  # the run folder: no machine path in the JSON
        rows[f"stored/{name}"] = {"bn_mean_shift": dm, "bn_log_var_ratio": dv}
        print(f"stored statistics of {name}: BN |dmean|/sd {dm:.3f}  |log var ratio| {dv:.3f}", flush=True)
    x = torch.cat([to_float(c) for c in chunks])
    rows["clean"] = {
        "black_fraction": (x.amax(1) < 1 / 255).float().mean().item(),
        "pixel_mean": x.mean((0, 2, 3)).tolist(),
        "pixel_std": x.std((0, 2, 3)).tolist(),
    }
    rows["meta"] = {
        "images": f"{args.n} training images of the split (numpy default_rng(0) permutation), 96 px, batches of 128",
        "encoder": "efficientnet-lite0, ImageNet weights, BatchNorm statistics averaged over the batches (AdaBN)",
        "views": "kornia draws from torch.Generator seed 1 (kornia_again: 2), fused from seed 1",
        "distance": "per layer: mean over channels of |mean - clean mean| / clean sd, and |log(var / clean var)|;"
        " averaged over layers",
        "command": "python benchmarks/performance/bn_view_stats.py --data DATA --splits SPLITS --out OUT",
    }
    print(f"clean pixel mean {np.round(rows['clean']['pixel_mean'], 3)} std {np.round(rows['clean']['pixel_std'], 3)}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
