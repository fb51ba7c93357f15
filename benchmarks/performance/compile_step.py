"""Eager against torch.compile for one pretext task's training step on this CPU: images/s over
timed steps after a warm-up, and the loss of the same N steps (same draws) in both modes."""

import sys
import time

import torch

from ssl_derm.config import PretrainConfig, build_config
from ssl_derm.data import FileList, ImageBank, decode_source, load_labeled, sample_dir
from ssl_derm.encoders import build_encoder
from ssl_derm.engine import step_generator
from ssl_derm.pretext import build_task

task_name = sys.argv[1] if len(sys.argv) > 1 else "moco"
steps, warm, batch, size = 20, 3, 64, 96
table = load_labeled(sample_dir())
bank = ImageBank([decode_source(FileList("sample", list(table["image"])), size, progress=False)])
images = bank.gather(list(range(len(bank))))


def run(compiled: bool):
    torch.manual_seed(0)
    cfg = build_config(PretrainConfig, {"task": task_name, "image_size": size, "init": "imagenet"})
    task = build_task(task_name, build_encoder("efficientnet-lite0", "imagenet"), cfg)
    task = task.to(memory_format=torch.channels_last).train()
    if compiled:
        task.encoder = torch.compile(task.encoder)
    opt = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=3e-4)
    losses, times = [], []
    for step in range(warm + steps):
        x = images[(torch.arange(batch) + step * batch) % len(images)]
        t0 = time.perf_counter()
        task.on_train_step(step, warm + steps)
        out = task(x, generator=step_generator(0, 0, step))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(float(out.loss))
    timed = times[warm:]
    return losses, batch * len(timed) / sum(timed), times[0]


eager = run(False)
comp = run(True)
diff = max(abs(a - b) / max(1e-8, abs(a)) for a, b in zip(eager[0], comp[0]))
print(
    f"{task_name}: eager {eager[1]:.1f} img/s, compiled {comp[1]:.1f} img/s, ratio {comp[1] / eager[1]:.2f}; "
    f"first step {eager[2]:.1f} s vs {comp[2]:.1f} s (compile); max relative loss difference over "
    f"{warm + steps} steps {diff:.2e}"
)
print("eager losses", [round(v, 4) for v in eager[0]])
print("compiled    ", [round(v, 4) for v in comp[0]])
