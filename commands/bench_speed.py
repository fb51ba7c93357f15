"""``ssl-derm bench-speed``: images/s of every stage against a plain PyTorch loop.

Each stage runs the real ssl-derm path (Lightning engine, logging, decoded
cache, device augmentation) and a minimal hand-written loop over the same
model, batch size, image size, device and precision on pre-decoded tensors;
``ratio`` is ssl-derm / plain.  The loader's baseline is PIL decode + resize per
image.  On a GPU every timer waits for the device (``torch.cuda.synchronize``).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_lightning.callbacks import Callback

from ssl_derm.config import FinetuneConfig, PretrainConfig
from ssl_derm.data import BankDataset, ImagePipeline, make_loader, to_float
from ssl_derm.data.labeled import prepare_labeled
from ssl_derm.data.sources import sample_unlabeled
from ssl_derm.encoders import build_encoder, encoder_spec
from ssl_derm.engine import default_device, loader_pinning, make_trainer, run_dir
from ssl_derm.errors import UserError
from ssl_derm.finetune.classifier import Classifier, FinetuneModule, predict_proba
from ssl_derm.pretext import build_task, task_names
from ssl_derm.pretext.module import PretextModule


def _now() -> float:
    """perf_counter once the GPU, if any, has finished what was queued."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def _autocast(precision: str, device: torch.device):
    """The autocast Lightning applies for ``precision``, for the plain loop."""
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


class _Timer(Callback):
    """Wall time of ``steps`` training steps after ``warmup`` steps: the GPU, if any, is
    waited for at the first and the last only, as the plain loop is. With ``syncs`` (a GPU),
    it instead records every call that makes the host wait for the GPU, by the line that made
    it, from the start of step ``warmup`` to the start of step ``warmup + steps`` (the run
    needs one step more): whole steps, without the run's closing copies."""

    def __init__(self, warmup: int, steps: int, syncs: bool = False) -> None:
        self.warmup, self.last, self.start, self.end, self.images = warmup, warmup + steps, None, None, 0
        self.syncs = [] if syncs and torch.cuda.is_available() else None
        self._catch = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            self.start = _now()
            if self.syncs is not None:
                self._catch = warnings.catch_warnings(record=True)
                self.syncs = self._catch.__enter__()
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
        elif trainer.global_step == self.last:
            self._stop()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.start is not None and trainer.global_step <= self.last:
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            self.images += images.shape[0]
            if trainer.global_step == self.last:
                self.end = _now()

    def on_train_end(self, trainer, module) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._catch is not None:
            torch.cuda.set_sync_debug_mode("default")
            self._catch.__exit__(None, None, None)
            self._catch = None

    def sync_report(self) -> dict:
        """Host-GPU syncs per timed step, and every line that made them (most first). Syncs
        made only every N steps (logging, periodic checks, checkpoints) fall outside a short
        window."""
        steps = self.last - self.warmup
        where = collections.Counter(
            f"{Path(w.filename).name}:{w.lineno}" for w in self.syncs if "synchroniz" in str(w.message)
        )
        return {
            "syncs_per_step": round(sum(where.values()) / max(steps, 1), 2),
            "steps": steps,
            "sync_sites": dict(where.most_common()),
        }


def _plain_loop(
    model_step, params, x: torch.Tensor, y: torch.Tensor | None, steps: int, warmup: int, precision: str, device
) -> float:
    """``model_step(x, y, i)`` -> loss, under the autocast (and, for 16-mixed, the gradient
    scaling) that Lightning applies for ``precision``."""
    opt = torch.optim.AdamW(params, lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.startswith("16"))
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            t0 = _now()
        with _autocast(precision, device):
            loss = model_step(x, y, i)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return steps * x.shape[0] / (_now() - t0)


def _entry(ours: float, plain: float, **extra) -> dict:
    return {
        "images_per_s": round(ours, 2),
        "plain_loop_images_per_s": round(plain, 2),
        "ratio": round(ours / plain, 3),
        **extra,
    }


def _bench_training(
    kind: str,
    lab,
    size: int,
    batch: int,
    steps: int,
    warmup: int,
    out: Path,
    precision: str = "32-true",
    syncs: bool = False,
    augmentation: str = "kornia",
) -> dict:
    spec = encoder_spec("efficientnet-lite0")
    common = dict(
        encoder="efficientnet-lite0",
        image_size=size,
        batch_size=batch,
        max_steps=warmup + steps,
        progress=False,
        log_every_n_steps=10,
        precision=precision,
        augmentation=augmentation,
    )
    idx = lab.indices("all")
    need = batch * (warmup + steps + 1)
    idx = np.resize(idx, max(len(idx), need))  # repeat the sample so one epoch covers every timed step
    labels = lab.targets("all")[np.resize(np.arange(len(lab.indices("all"))), len(idx))]
    torch.manual_seed(0)
    if kind == "finetune":
        cfg = FinetuneConfig(**common, init="random")
        model = Classifier(build_encoder(), len(lab.classes)).to(memory_format=torch.channels_last)
        module = FinetuneModule(model, cfg, spec.normalization, lab.classes, None, len(idx) // batch)
        dataset = BankDataset(lab.bank, idx, labels)
    else:
        cfg = PretrainConfig(**common, task=kind, log_images_every_n_steps=10_000)
        task = build_task(kind, build_encoder(), cfg)
        model = task
        module = PretextModule(task, cfg, spec.normalization, len(idx) // batch).to(memory_format=torch.channels_last)
        dataset = BankDataset(lab.bank, idx)
    timer = _Timer(warmup, steps, syncs)
    if syncs:
        cfg = dataclasses.replace(cfg, max_steps=warmup + steps + 1)  # the window ends at the next step's start
    trainer = make_trainer(cfg, out / kind, callbacks=[timer], enable_val=False)
    gpu = torch.cuda.is_available()
    pin = loader_pinning(lab.bank, trainer, cfg.data_on_device)  # as training places it
    trainer.fit(module, make_loader(dataset, batch, shuffle=True, seed=0, drop_last=True, pin_memory=pin))
    if syncs:
        return timer.sync_report()
    ours = timer.images / (timer.end - timer.start)

    # the plain loop runs where Lightning ran (Lightning hands the model back on the CPU)
    device = torch.device("cuda" if gpu else "cpu")
    model.to(device).train()
    gen = torch.Generator().manual_seed(0)  # tasks draw on the CPU, as in training
    if kind == "finetune":
        # the plain loop's input is pre-normalised: no augmentation, no conversion per step
        x = ImagePipeline(spec.normalization).to(device)(lab.bank.gather(idx[:batch]).to(device))
        y = torch.as_tensor(labels[:batch], device=device)
        step = lambda x, y, i: torch.nn.functional.cross_entropy(model(x), y)
        params = model.parameters()
    else:
        x = to_float(lab.bank.gather(idx[:batch]).to(device))  # the task makes its views from decoded images
        y = None

        def step(x, y, i):
            model.on_train_step(i, warmup + steps)  # momentum encoders update here, as in training
            return model(x, generator=gen).loss

        params = model.trainable_parameters()
    x = x.contiguous(memory_format=torch.channels_last)
    plain = _plain_loop(step, params, x, y, steps, warmup, precision, device)
    step_s = batch / plain  # the plain loop's step: what each share below is a share of
    reps = 5
    if kind == "finetune":  # the views: augmentation of the uint8 batch on the device, normalised
        images = lab.bank.gather(idx[:batch]).to(device)
        module.pipeline.to(device)
        t0 = _now()
        for _ in range(reps):
            module.pipeline(images, train=True)
    else:  # the views: the task's augmentation (and corruption) of the decoded batch
        t0 = _now()
        with _autocast(precision, device):
            for _ in range(reps):
                model.make_views(x, model.draw(x, gen))
    views = (_now() - t0) / reps
    t0 = _now()
    for r in range(reps):  # data movement: a batch out of the loader's dataset onto the device
        got = dataset.__getitems__(list(range(r * batch, (r + 1) * batch)))
        got = got[0] if isinstance(got, tuple) else got
        (got.pin_memory() if pin else got).to(device, non_blocking=True)
    movement = (_now() - t0) / reps
    extra = {
        "views_share_of_step": round(views / step_s, 4),
        "data_movement_share_of_step": round(movement / step_s, 4),
    }
    return _entry(ours, plain, **extra, data_on_device=bool(lab.bank.resident))


def _bench_loader(lab, size: int, epochs: int, batch: int) -> dict:
    paths = list(lab.table["image"])
    t0 = time.perf_counter()
    for _ in range(epochs):  # the baseline: decode and resize every image, every epoch
        for p in paths:
            with Image.open(p) as im:
                arr = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
            torch.from_numpy(arr).permute(2, 0, 1)
    plain = epochs * len(paths) / (time.perf_counter() - t0)
    loader = make_loader(BankDataset(lab.bank, lab.indices("all"), lab.targets("all")), batch, True, 0)
    t0 = time.perf_counter()
    n = 0
    for _ in range(epochs):
        for images, _labels in loader:
            n += len(images)
    return _entry(
        n / (time.perf_counter() - t0),
        plain,
        note="cached uint8 loader after the first epoch vs PIL decode + resize per image per epoch",
    )


def _archive_rss(members: int, jpegs: list[bytes], work: Path) -> int:
    """Peak RSS (bytes) of a fresh process that streams a ``members``-image zip into the cache."""
    archive = work / f"archive_{members}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for i in range(members):
            zf.writestr(f"img/{i:06d}.jpg", jpegs[i % len(jpegs)])
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec.
    code = (
        "from ssl_derm.data import open_unlabeled, decode_source; "
        f"d = decode_source(open_unlabeled({str(archive)!r}), 64, {str(work / 'cache')!r}, progress=False); "
        "assert d.ok.sum() == len(d.names); "
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    archive.unlink()
    return int(done.stdout.strip().splitlines()[-1]) * 1024


def run_bench_speed(
    out: str | None,
    quick: bool,
    data: str | None,
    overwrite: bool = False,
    *,
    image_size: int | None = None,
    batch_size: int | None = None,
    finetune_batch_size: int | None = None,
    steps: int | None = None,
    precision: str = "32-true",
    archive: bool = True,
    sync_report: bool = False,
    augmentation: str = "kornia",
) -> dict:
    """Time every stage; the sizes default to --quick's or the full run's, each overridable
    (a GPU profile: ``image_size=224, batch_size=256, finetune_batch_size=64, precision="bf16-mixed"``).
    ``sync_report`` (a GPU): no timing; the host-GPU syncs per training step of each stage instead."""
    size, batch, n_steps, warmup = (64, 16, 3, 1) if quick else (128, 32, 10, 2)
    size, batch, n_steps = image_size or size, batch_size or batch, steps or n_steps
    ft_batch = finetune_batch_size or batch
    if size % 32:
        raise UserError(f"--image-size {size}: use a multiple of 32")
    if sync_report and not torch.cuda.is_available():
        raise UserError("--sync-report counts host-GPU syncs: it needs a GPU")
    folder = run_dir(out, "bench-speed", overwrite)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        lab = prepare_labeled(data, size, cache_dir=tmp / "cache", progress=False)
        result: dict = {
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                "torch": torch.__version__,
            },
            "settings": {
                "image_size": size,
                "batch_size": batch,
                "finetune_batch_size": ft_batch,
                "timed_steps": n_steps,
                "warmup_steps": warmup,
                "precision": precision,
                "augmentation": augmentation,
                "encoder": "efficientnet-lite0",
                "quick": quick,
            },
        }
        # every training stage: its key in the result, the task (or fine-tuning) and its batch
        stages = [*((f"pretrain_{t}", t, batch) for t in task_names()), ("finetune", "finetune", ft_batch)]
        if sync_report:
            for key, kind, b in stages:
                result[key] = r = _bench_training(
                    kind, lab, size, b, n_steps, warmup, tmp, precision, syncs=True, augmentation=augmentation
                )
                print(f"{key:26s} {r['syncs_per_step']:6.2f} syncs/step   {r['sync_sites']}", flush=True)
            (folder / "syncs.json").write_text(json.dumps(result, indent=2))
            print(f"wrote {folder / 'syncs.json'}")
            return result
        result["loader"] = _bench_loader(lab, size, 2 if quick else 3, ft_batch)
        for key, kind, b in stages:
            print(f"timing {kind} ...", flush=True)
            result[key] = _bench_training(
                kind, lab, size, b, n_steps, warmup, tmp, precision, augmentation=augmentation
            )
        result["inference"] = _bench_inference(lab, ft_batch * 4)
        if archive:
            with zipfile.ZipFile(sample_unlabeled()) as zf:
                jpegs = [zf.read(n) for n in zf.namelist() if n.endswith(".jpg")]
            sizes = (1_000, 4_000) if quick else (5_000, 50_000)
            rss = {str(n): _archive_rss(n, jpegs, tmp) for n in sizes}
            result["archive_streaming_peak_rss_mb"] = {k: round(v / 2**20, 1) for k, v in rss.items()}
    (folder / "speed.json").write_text(json.dumps(result, indent=2))
    for key in ("loader", *(key for key, _, _ in stages), "inference"):
        r = result[key]
        shares = (
            f"   views {r['views_share_of_step']:.1%}, data movement {r['data_movement_share_of_step']:.1%} of a step"
            if "views_share_of_step" in r
            else ""
        )
        print(
            f"{key:26s} {r['images_per_s']:9.1f} img/s   plain {r['plain_loop_images_per_s']:9.1f}   "
            f"ratio {r['ratio']:.2f}{shares}"
        )
    if archive:
        print(f"peak RSS streaming archives: {result['archive_streaming_peak_rss_mb']} MB")
    print(f"wrote {folder / 'speed.json'}")
    return result


@torch.no_grad()
def _bench_inference(lab, batch: int) -> dict:
    """fp32 on both sides: ``predict_proba`` (predict, evaluation) does not autocast."""
    spec = encoder_spec("efficientnet-lite0")
    model = Classifier(build_encoder(), len(lab.classes)).eval()
    images = lab.bank.gather(lab.indices("all"))
    pipeline = ImagePipeline(spec.normalization)
    device = default_device()
    # timed after a first pass over every batch shape, which is reported on its own: on a
    # GPU a first pass at a new shape pays a one-off set-up that a long prediction pays once
    t0 = _now()
    predict_proba(model, images, pipeline, device, batch)
    first = len(images) / (_now() - t0)
    reps = 5  # a sample is a few batches: time several passes
    t0 = _now()
    for _ in range(reps):
        predict_proba(model, images, pipeline, device, batch)
    ours = reps * len(images) / (_now() - t0)
    model.to(device)
    x = pipeline.to(device)(images.to(device))
    for i in range(0, len(x), batch):  # the same warm-up
        model(x[i : i + batch].contiguous(memory_format=torch.channels_last))
    t0 = _now()
    for _ in range(reps):
        for i in range(0, len(x), batch):
            model(x[i : i + batch].contiguous(memory_format=torch.channels_last)).softmax(1)
    return _entry(ours, reps * len(x) / (_now() - t0), first_pass_images_per_s=round(first, 2))


__all__ = ["run_bench_speed"]
