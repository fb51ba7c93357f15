"""bench-speed end to end (quick sizes): every registered task and every stage is timed."""

from __future__ import annotations

import json

from ssl_derm.cli import main
from ssl_derm.pretext import task_names


def test_bench_speed_quick_times_every_task_and_stage(tmp_path):
    out = tmp_path / "speed"
    assert main(["bench-speed", "--quick", "--out", str(out)]) == 0
    result = json.loads((out / "speed.json").read_text())
    stages = ["loader", *(f"pretrain_{t}" for t in task_names()), "finetune", "inference"]
    for stage in stages:
        r = result[stage]
        assert r["images_per_s"] > 0 and r["plain_loop_images_per_s"] > 0, stage
    stages = [f"pretrain_{t}" for t in task_names()] + ["finetune"]
    assert all(0 < result[k]["views_share_of_step"] < 1 for k in stages)
    assert all(0 < result[k]["data_movement_share_of_step"] < 1 for k in stages)
    assert not any(result[k]["data_on_device"] for k in stages)  # auto: only on a GPU
    assert set(result["archive_streaming_peak_rss_mb"]) == {"1000", "4000"}


def test_bench_speed_takes_a_profiles_sizes_and_precision(tmp_path):
    # the GPU profile's flags, at sizes a CPU runs in seconds: each is recorded and used
    out = tmp_path / "speed"
    args = ["bench-speed", "--quick", "--out", str(out), "--image-size", "32", "--batch-size", "8"]
    args += ["--finetune-batch-size", "4", "--steps", "1", "--precision", "bf16-mixed", "--no-archive-probe"]
    assert main(args) == 0
    result = json.loads((out / "speed.json").read_text())
    settings = result["settings"]
    assert (settings["image_size"], settings["batch_size"], settings["finetune_batch_size"]) == (32, 8, 4)
    assert (settings["timed_steps"], settings["precision"]) == (1, "bf16-mixed")
    assert "archive_streaming_peak_rss_mb" not in result
    assert result["finetune"]["images_per_s"] > 0 and result["pretrain_rotation"]["plain_loop_images_per_s"] > 0


def test_bench_speed_refuses_a_size_off_the_grid_before_making_its_folder(tmp_path, capsys):
    assert main(["bench-speed", "--quick", "--out", str(tmp_path / "s"), "--image-size", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_sync_report_counts_the_warnings_of_the_timed_steps_by_line(monkeypatch):
    # the plumbing of --sync-report without a GPU: torch's sync warnings are stood in for
    import warnings
    from types import SimpleNamespace

    import torch

    from ssl_derm.commands import bench_speed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: None)
    monkeypatch.setattr(bench_speed, "_now", lambda: 0.0)
    warnings.simplefilter("ignore")  # outside the timer's window (pytest restores the filters)
    timer = bench_speed._Timer(warmup=1, steps=2, syncs=True)
    trainer = SimpleNamespace(global_step=0)
    timer.on_train_batch_start(trainer, None, None, 0)
    warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=1)  # warm-up: not counted
    trainer.global_step = 1
    timer.on_train_batch_start(trainer, None, None, 0)  # the window opens at the first timed step
    for _ in range(2):  # two timed steps, three syncs
        warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=1)
    warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=1)
    warnings.warn("something else", UserWarning, stacklevel=1)
    trainer.global_step = 3
    timer.on_train_batch_start(trainer, None, None, 0)  # the step after the last timed one: closed
    warnings.warn("called a synchronizing CUDA operation", UserWarning, stacklevel=1)  # the closing save: not counted
    timer.on_train_end(trainer, None)
    report = timer.sync_report()
    assert report["syncs_per_step"] == 1.5 and report["steps"] == 2
    assert sorted(report["sync_sites"].values()) == [1, 2] and all(
        k.startswith("test_bench_speed.py:") for k in report["sync_sites"]
    )
