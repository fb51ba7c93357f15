"""CPU cost of a training step with glibc's default allocator against ssl-derm's
``keep_freed_memory`` (ssl_derm/allocator.py), each mode in fresh processes, alternated.

    python benchmarks/performance/allocator_check.py [--steps 8] [--repeats 2] [--tasks moco,simclr,finetune]

One torch thread; EfficientNet-Lite0 from ImageNet at 96 px, batch 64, the bundled sample's
images; a pretext task's step is ``task(x, generator)`` (views, forward, loss), backward and
AdamW; ``finetune`` is the encoder with a linear head under cross-entropy. Reports per step the
CPU seconds (user + system, which the other processes of a shared machine do not change much),
the system share, the minor page faults and the wall time, the process's peak resident memory, and whether the
two modes' losses are bit-identical over the same steps. The modes alternate in ABBA order, and
the environment's own malloc tuning is dropped for both."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

SIZE, BATCH, WARM = 96, 64, 2


def child(task_name: str, steps: int) -> dict:
    from ssl_derm.allocator import keep_freed_memory

    kept = keep_freed_memory()
    import resource

    import torch

    from ssl_derm.config import PretrainConfig, build_config
    from ssl_derm.data import FileList, ImageBank, decode_source, load_labeled, sample_dir
    from ssl_derm.encoders import build_encoder, feature_dim, pooled_features
    from ssl_derm.engine import step_generator
    from ssl_derm.pretext import build_task

    torch.set_num_threads(1)
    torch.manual_seed(0)
    table = load_labeled(sample_dir())
    bank = ImageBank([decode_source(FileList("sample", list(table["image"])), SIZE, progress=False)])
    images = bank.gather(list(range(len(bank))))
    labels = torch.as_tensor(table["label"].astype("category").cat.codes.to_numpy(), dtype=torch.long)
    encoder = build_encoder("efficientnet-lite0", "imagenet").to(memory_format=torch.channels_last)
    if task_name == "finetune":
        head = torch.nn.Linear(feature_dim(encoder), 7)
        model = torch.nn.ModuleDict({"encoder": encoder, "head": head}).train()

        def loss_of(x, y, step):
            x = x.float().div(255).sub(0.45).div(0.25).contiguous(memory_format=torch.channels_last)
            return torch.nn.functional.cross_entropy(head(pooled_features(encoder, x)), y)
    else:
        cfg = build_config(PretrainConfig, {"task": task_name, "image_size": SIZE, "init": "imagenet"})
        model = build_task(task_name, encoder, cfg).to(memory_format=torch.channels_last).train()

        def loss_of(x, y, step):
            model.on_train_step(step, WARM + steps)
            return model(x, generator=step_generator(0, 0, step)).loss

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    losses = []
    for step in range(WARM + steps):
        if step == WARM:
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), __import__("time").perf_counter()
        rows = (torch.arange(BATCH) + step * BATCH) % len(images)
        loss = loss_of(images[rows], labels[rows], step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    wall = __import__("time").perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    user, system = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
    return {
        "task": task_name,
        "kept": kept,
        "cpu_s_per_step": (user + system) / steps,
        "system_share": system / (user + system),
        "minor_faults_per_step": (r1.ru_minflt - r0.ru_minflt) / steps,
        "wall_s_per_step": wall / steps,
        "peak_rss_mb": r1.ru_maxrss / 1024,  # a fresh process (not a fork): its own peak
        "losses": losses,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=8, help="timed steps per process (after 2 warm-up steps)")
    p.add_argument("--repeats", type=int, default=2, help="processes per mode and task, alternated")
    p.add_argument("--tasks", default="moco,simclr,finetune")
    p.add_argument("--out", help="also write the rows as JSON here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.steps)))
        return
    mine = ("SSL_DERM_MALLOC", "GLIBC_TUNABLES", "LD_PRELOAD", "MALLOC_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(mine)}
    base["OMP_NUM_THREADS"] = "1"
    rows = []
    for task in a.tasks.split(","):
        for i in range(a.repeats):
            for mode in ("system", "kept") if i % 2 == 0 else ("kept", "system"):
                env = {**base, **({"SSL_DERM_MALLOC": "system"} if mode == "system" else {})}
                cmd = [sys.executable, __file__, "--child", task, "--steps", str(a.steps)]
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
                row = {"mode": mode, **json.loads(out.strip().splitlines()[-1])}
                if row["kept"] != (mode == "kept"):
                    sys.exit(f"{task}: the {mode} process did not run in its mode (kept={row['kept']})")
                rows.append(row)
    print("| task | mode | CPU s/step | system share | minor faults/step | wall s/step | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['task']} | {r['mode']} | {r['cpu_s_per_step']:.2f} | {r['system_share']:.0%} | "
            f"{r['minor_faults_per_step']:,.0f} | {r['wall_s_per_step']:.2f} | {r['peak_rss_mb']:,.0f} |"
        )
    for task in a.tasks.split(","):
        mine = [r for r in rows if r["task"] == task]
        cpu = {m: sum(r["cpu_s_per_step"] for r in mine if r["mode"] == m) / a.repeats for m in ("system", "kept")}
        same = len({tuple(r["losses"]) for r in mine}) == 1
        print(
            f"{task}: CPU per step kept/system {cpu['kept'] / cpu['system']:.2f}; "
            f"losses bit-identical across modes and processes: {same}"
        )
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
