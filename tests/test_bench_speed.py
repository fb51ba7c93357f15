"""bench-speed end to end (quick sizes): every registered task and every stage is timed."""

from __future__ import annotations

import json

from ssl_derm.pretext import task_names

from ssl_derm.cli import main


def test_bench_speed_quick_times_every_task_and_stage(tmp_path):
    out = tmp_path / "speed"
    assert main(["bench-speed", "--quick", "--out", str(out)]) == 0
    result = json.loads((out / "speed.json").read_text())
    stages = ["loader", *(f"pretrain_{t}" for t in task_names()), "finetune", "inference"]
    for stage in stages:
        r = result[stage]
        assert r["images_per_s"] > 0 and r["plain_loop_images_per_s"] > 0, stage
    assert all(0 < result[f"pretrain_{t}"]["views_share_of_step"] < 1 for t in task_names())
    assert set(result["archive_streaming_peak_rss_mb"]) == {"1000", "4000"}
