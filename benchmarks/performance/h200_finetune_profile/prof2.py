# Follow-up to prof_ft.py: RandomResizedCrop's default cropping ("slice": one resize per image)
# against "resample" (one batched warp), alone and in bench-speed's fine-tune stage.
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import kornia.augmentation as K
import numpy as np
import torch

import ssl_derm.commands.bench_speed as bs
import ssl_derm.finetune.classifier as clf
from ssl_derm.data.labeled import prepare_labeled
from ssl_derm.data.transforms import Augment, ImagePipeline, _colour, to_float, train_augment
from ssl_derm.encoders import encoder_spec

warnings.filterwarnings("ignore")

size, batch, steps, warmup = (int(a) for a in sys.argv[1:5])
reps = int(os.environ.get("REPS", 30))
gpu = torch.cuda.is_available()
dev = torch.device("cuda" if gpu else "cpu")
prec = "bf16-mixed" if gpu else "32-true"
out = Path(os.environ.get("OUT", "/tmp/prof_out"))
out.mkdir(parents=True, exist_ok=True)
tmp = Path(tempfile.mkdtemp())
lab = prepare_labeled(None, size, cache_dir=tmp / "cache", progress=False)
res = {"size": size, "batch": batch, "steps": steps, "precision": prec, "torch": torch.__version__}


def save():
    (out / "prof2.json").write_text(json.dumps(res, indent=1))


def sync():
    if gpu:
        torch.cuda.synchronize()


def timed(fn, n):
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return round((time.perf_counter() - t0) / n * 1000, 3)


def resample_augment(size: int) -> Augment:  # train_augment's ops, the crop as one batched warp
    return Augment(
        K.RandomResizedCrop((size, size), scale=(0.6, 1.0), ratio=(0.8, 1.25), cropping_mode="resample"),
        K.RandomHorizontalFlip(),
        K.RandomVerticalFlip(),
        K.RandomRotation(degrees=180.0, p=0.5),
        _colour(),
    )


spec = encoder_spec("efficientnet-lite0")
xu = lab.bank.gather(np.resize(lab.indices("all"), batch)).to(dev)
xf = to_float(xu)
augs = {"slice": train_augment(size), "resample": resample_augment(size)}
pipes = {k: ImagePipeline(spec.normalization, a).to(dev) for k, a in augs.items()}
ms = {}
for rep in (1, 2):
    for k in augs:
        ms[f"pipeline_{k}_{rep}"] = timed(lambda p=pipes[k]: p(xu, train=True), reps)
        ms[f"crop_alone_{k}_{rep}"] = timed(lambda op=augs[k][0]: op(xf), reps)
res["augment_ms_per_batch"] = ms
# how far apart the two crops are, on the same drawn parameters
params = augs["slice"].draw(xf)
a, b = augs["slice"].apply(xf, params), augs["resample"].apply(xf, params)
res["same_params_abs_diff"] = {
    "mean": float((a - b).abs().mean()),
    "p99": float((a - b).abs().flatten().quantile(0.99)),
}
print(res, flush=True)
save()

stage = {}
for rep in (1, 2):
    for k, make in (("slice", train_augment), ("resample", resample_augment)):
        clf.train_augment = make
        r = bs._bench_training("finetune", lab, size, batch, steps, warmup, tmp / f"{k}{rep}", prec)
        stage[f"{k}_{rep}"] = r
        print(k, rep, r, flush=True)
        res["stage"] = stage
        save()
