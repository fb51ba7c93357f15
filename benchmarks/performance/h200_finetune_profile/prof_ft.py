# Where fine-tuning's time goes, against bench-speed's plain loop (0.42-0.60 of it on an H200).
# 1. bench-speed's fine-tune stage with the augmentation on (as shipped) and off, twice each;
# 2. the augmentation alone: kornia's parameter draw on the CPU, each op, the whole pipeline;
# 3. plain loops adding, one at a time, what the real step adds: focal loss, augmentation;
# 4. torch.profiler over 15 steps of the real (Lightning) fine-tune: top ops by host and device time.
import functools
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

import ssl_derm.commands.bench_speed as bs
from ssl_derm.config import FinetuneConfig
from ssl_derm.data.labeled import prepare_labeled
from ssl_derm.data.transforms import ImagePipeline, to_float, train_augment
from ssl_derm.encoders import build_encoder, encoder_spec
from ssl_derm.finetune.classifier import Classifier
from ssl_derm.finetune.losses import FocalLoss

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
res = {"size": size, "batch": batch, "steps": steps, "warmup": warmup, "precision": prec, "torch": torch.__version__}
if gpu:
    res["gpu"] = torch.cuda.get_device_name(0)


def save():
    (out / "prof_ft.json").write_text(json.dumps(res, indent=1))


def sync():
    if gpu:
        torch.cuda.synchronize()


def timed(fn, reps):
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t0) / reps * 1000  # ms per call


# 1. the real stage, augmentation on and off (interleaved: the machine drifts between runs)
for tag, aug in (
    ()
    if os.environ.get("ONLY_PROF")
    else (("aug_on", True), ("aug_off", False), ("aug_on_2", True), ("aug_off_2", False))
):
    bs.FinetuneConfig = functools.partial(FinetuneConfig, augment=aug)
    r = bs._bench_training("finetune", lab, size, batch, steps, warmup, tmp / tag, prec)
    res[f"stage_{tag}"] = r
    print(tag, r, flush=True)
    save()
bs.FinetuneConfig = FinetuneConfig

# 2. the augmentation alone, fp32 as in on_after_batch_transfer (outside autocast)
spec = encoder_spec("efficientnet-lite0")
idx = lab.indices("all")[:batch]
xu = lab.bank.gather(np.resize(idx, batch)).to(dev)
xf = to_float(xu)
aug = train_augment(size)
pipe = ImagePipeline(spec.normalization, aug).to(dev)
ms = {
    "pipeline_train": timed(lambda: pipe(xu, train=True), reps),
    "pipeline_eval": timed(lambda: pipe(xu, train=False), reps),
    "draw_only": timed(lambda: aug.draw(xf), reps),
}
params = aug.draw(xf)
ms["apply_only"] = timed(lambda: aug.apply(xf, params), reps)
for i, op in enumerate(aug.seq.children()):
    ms[f"op{i}_{type(op).__name__}"] = timed(lambda op=op: op(xf), reps)
res["augment_ms_per_batch"] = {k: round(v, 3) for k, v in ms.items()}
print("augment ms/batch", res["augment_ms_per_batch"], flush=True)
save()

# 3. plain loops, adding the real step's parts one at a time
torch.manual_seed(0)
model = Classifier(build_encoder(), len(lab.classes)).to(dev).to(memory_format=torch.channels_last).train()
y = torch.as_tensor(lab.targets("all")[: len(idx)][np.resize(np.arange(len(idx)), batch)], device=dev)
focal = FocalLoss(2.0).to(dev)
xn = pipe(xu, train=False)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)


def loop(make_x, loss_fn, n=steps):
    def one():
        x = make_x()
        with bs._autocast(prec, dev):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        one()
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        one()
    sync()
    return round(n * batch / (time.perf_counter() - t0), 1)


ce = torch.nn.functional.cross_entropy
plain = {}
for rep in (1, 2):
    plain[f"plain_ce_{rep}"] = loop(lambda: xn, ce)
    plain[f"plain_focal_{rep}"] = loop(lambda: xn, focal)
    plain[f"plain_focal_normalize_{rep}"] = loop(lambda: pipe(xu, train=False), focal)
    plain[f"plain_focal_augment_{rep}"] = loop(lambda: pipe(xu, train=True), focal)
res["plain_loops_images_per_s"] = plain
print("plain loops img/s", plain, flush=True)
save()


# 4. the profiler over 15 real steps (augmentation on)
class ProfTimer(bs._Timer):
    prof = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        super().on_train_batch_start(trainer, module, batch, batch_idx)
        if trainer.global_step == self.warmup and ProfTimer.prof is None:
            acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if gpu else [])
            ProfTimer.prof = torch.profiler.profile(activities=acts)
            ProfTimer.prof.__enter__()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        super().on_train_batch_end(trainer, module, outputs, batch, batch_idx)
        if trainer.global_step == self.last:
            self.close()

    def on_train_end(self, trainer, module):
        super().on_train_end(trainer, module)
        self.close()

    def close(self):
        if ProfTimer.prof is not None and not getattr(ProfTimer, "closed", False):
            sync()
            ProfTimer.prof.__exit__(None, None, None)
            ProfTimer.closed = True


bs._Timer = ProfTimer
r = bs._bench_training("finetune", lab, size, batch, 15, warmup, tmp / "prof", prec)
res["stage_profiled"] = r
save()
p = ProfTimer.prof
if p is not None:
    ka = p.key_averages()
    dev_key = "self_device_time_total" if gpu else "self_cpu_time_total"
    (out / "prof_by_host.txt").write_text(
        ka.table(sort_by="self_cpu_time_total", row_limit=40, max_name_column_width=70)
    )
    (out / "prof_by_device.txt").write_text(ka.table(sort_by=dev_key, row_limit=40, max_name_column_width=70))
    (out / "prof_by_host_total.txt").write_text(
        ka.table(sort_by="cpu_time_total", row_limit=60, max_name_column_width=70)
    )
    # device busy time over the window, from the kernel events (overlaps merged)
    if gpu:
        try:
            spans = sorted(
                (e.time_range.start, e.time_range.end)
                for e in p.events()
                if e.device_type == torch.autograd.DeviceType.CUDA
            )
            busy, cur_s, cur_e = 0, None, None
            for s, e in spans:
                if cur_e is None or s > cur_e:
                    if cur_e is not None:
                        busy += cur_e - cur_s
                    cur_s, cur_e = s, e
                else:
                    cur_e = max(cur_e, e)
            if cur_e is not None:
                busy += cur_e - cur_s
            res["profiled_device_busy_us"] = busy
            res["profiled_kernels"] = len(spans)
        except Exception as e:  # noqa: BLE001
            res["busy_error"] = repr(e)
    save()
print("done", json.dumps({k: v for k, v in res.items() if k.startswith("stage")}), flush=True)
