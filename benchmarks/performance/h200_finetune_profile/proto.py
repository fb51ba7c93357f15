# What a fused augmentation would cost: crop, flips and rotation as one affine matrix per image
# and one warp (kornia's warp_affine), against train_augment's five kornia ops. A timing
# prototype only. Also: what one last.ckpt save of a fine-tuning run costs.
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import kornia.geometry.transform as KT
import numpy as np
import torch

from ssl_derm.data.labeled import prepare_labeled
from ssl_derm.data.transforms import ImagePipeline, _colour, to_float, train_augment
from ssl_derm.encoders import encoder_spec

warnings.filterwarnings("ignore")

size, batch = int(sys.argv[1]), int(sys.argv[2])
reps = int(os.environ.get("REPS", 30))
gpu = torch.cuda.is_available()
dev = torch.device("cuda" if gpu else "cpu")
out = Path(os.environ.get("OUT", "/tmp/proto_out"))
out.mkdir(parents=True, exist_ok=True)
tmp = Path(tempfile.mkdtemp())
lab = prepare_labeled(None, size, cache_dir=tmp / "cache", progress=False)
res = {"size": size, "batch": batch, "torch": torch.__version__}


def sync():
    if gpu:
        torch.cuda.synchronize()


def timed(fn, n=reps):
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return round((time.perf_counter() - t0) / n * 1000, 3)


def fused_matrix(b: int, h: int, w: int, size: int, gen=None) -> torch.Tensor:
    """[b, 2, 3] source->output pixel maps: a crop of 60-100% of the area at aspect 0.8-1.25,
    resized to size x size, flipped left-right and up-down (p 0.5 each), rotated by up to 180
    degrees about the centre (p 0.5). Drawn on the CPU in a few batched ops."""
    area = torch.empty(b).uniform_(0.6, 1.0, generator=gen) * h * w
    logr = torch.empty(b).uniform_(math.log(0.8), math.log(1.25), generator=gen)
    cw = (area * logr.exp()).sqrt().clamp(max=w)
    ch = (area / logr.exp()).sqrt().clamp(max=h)
    x0 = torch.rand(b, generator=gen) * (w - cw)
    y0 = torch.rand(b, generator=gen) * (h - ch)
    fx = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    fy = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.where(
        torch.rand(b, generator=gen) < 0.5, torch.empty(b).uniform_(-math.pi, math.pi, generator=gen), 0.0
    )
    c = (size - 1) / 2
    # crop: p -> s (p - p0) - c (centred output); flip; rotate; + c
    sx, sy = (size - 1) / (cw - 1), (size - 1) / (ch - 1)
    cos, sin = theta.cos(), theta.sin()
    a11, a12 = cos * fx * sx, -sin * fy * sy
    a21, a22 = sin * fx * sx, cos * fy * sy
    tx = -(a11 * x0 + a12 * y0) - (cos * c * fx - sin * c * fy) + c
    ty = -(a21 * x0 + a22 * y0) - (sin * c * fx + cos * c * fy) + c
    # with flips about the output centre: x' = fx (x - c) + c, folded in above via the - c, + c terms
    return torch.stack([torch.stack([a11, a12, tx], 1), torch.stack([a21, a22, ty], 1)], 1)


spec = encoder_spec("efficientnet-lite0")
xu = lab.bank.gather(np.resize(lab.indices("all"), batch)).to(dev)
h, w = xu.shape[-2:]
pipe = ImagePipeline(spec.normalization, train_augment(size)).to(dev)
colour = _colour()
norm = ImagePipeline(spec.normalization).to(dev)


def fused(with_colour=True):
    x = to_float(xu)
    m = fused_matrix(batch, h, w, size).to(dev, non_blocking=True)
    x = KT.warp_affine(x, m, (size, size), align_corners=True)
    if with_colour:
        x = colour(x)
    return norm(x)


ms = {}
for rep in (1, 2):
    ms[f"current_{rep}"] = timed(lambda: pipe(xu, train=True))
    ms[f"fused_geometry_plus_kornia_colour_{rep}"] = timed(lambda: fused(True))
    ms[f"fused_geometry_only_{rep}"] = timed(lambda: fused(False))
    ms[f"kornia_colour_only_{rep}"] = timed(lambda: colour(to_float(xu)))
res["augment_ms_per_batch"] = ms
torch.manual_seed(0)
a, b = pipe(xu, train=True), fused(True)
res["output_mean_std"] = {"current": [float(a.mean()), float(a.std())], "fused": [float(b.mean()), float(b.std())]}
print(json.dumps(res), flush=True)
(out / "proto.json").write_text(json.dumps(res, indent=1))

# one last.ckpt save of a fine-tuning run (weights, AdamW moments, loop state)
import pytorch_lightning as pl  # noqa: E402

from ssl_derm.config import FinetuneConfig  # noqa: E402
from ssl_derm.data import BankDataset, make_loader  # noqa: E402
from ssl_derm.encoders import build_encoder  # noqa: E402
from ssl_derm.engine import make_trainer  # noqa: E402
from ssl_derm.finetune.classifier import Classifier, FinetuneModule  # noqa: E402

cfg = FinetuneConfig(
    encoder="efficientnet-lite0",
    image_size=size,
    batch_size=batch,
    max_steps=3,
    progress=False,
    precision="bf16-mixed" if gpu else "32-true",
    init="random",
)
model = Classifier(build_encoder(), len(lab.classes)).to(memory_format=torch.channels_last)
idx = np.resize(lab.indices("all"), batch * 4)
module = FinetuneModule(model, cfg, spec.normalization, lab.classes, None, 4)
saves = []


class SaveTimer(pl.Callback):  # saves during fit, weights and AdamW moments on the device
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == 2 and not saves:
            for i in range(5):
                sync()
                t0 = time.perf_counter()
                trainer.save_checkpoint(tmp / f"save{i}.ckpt")
                sync()
                saves.append(round((time.perf_counter() - t0) * 1000, 1))
            res["params_on"] = str(next(module.parameters()).device)


trainer = make_trainer(cfg, tmp / "ckpt", callbacks=[SaveTimer()], enable_val=False)
labels = lab.targets("all")[np.resize(np.arange(len(lab.indices("all"))), len(idx))]
trainer.fit(module, make_loader(BankDataset(lab.bank, idx, labels), batch, shuffle=True, seed=0, drop_last=True))
res["save_checkpoint_ms"] = saves
res["checkpoint_mb"] = round((tmp / "save0.ckpt").stat().st_size / 2**20, 1)
print(json.dumps(res), flush=True)
(out / "proto.json").write_text(json.dumps(res, indent=1))
