"""tools/fraction_probe.py: the frozen-encoder linear probe at each label fraction, on the
bundled sample (64 px): every init, fraction and seed scored, differences paired, and the same
numbers again from its cache."""

from __future__ import annotations

import json

from ssl_derm.cli import main as ssl_derm
from ssl_derm.data import sample_dir


def test_every_init_fraction_and_seed_is_scored_and_cached(tool_module, tmp_path):
    probe = tool_module("fraction_probe")
    assert ssl_derm(["data", "split", str(sample_dir()), "--out", str(tmp_path / "split")]) == 0
    args = ["--data", str(sample_dir()), "--splits", str(tmp_path / "split" / "splits.csv"), "--inits", "imagenet"]
    args += ["random", "--fractions", "0.5", "1.0", "--seeds", "2", "--image-size", "64", "--adapt", "64"]
    args += ["--cache", str(tmp_path / "cache")]
    assert probe.main([*args, "--out", str(tmp_path / "a.json")]) == 0
    rows = json.loads((tmp_path / "a.json").read_text())["results"]
    assert len(rows) == 2 * 2 * 2  # BatchNorm statistics x fractions x inits
    for r in rows:
        assert r["seeds"] == (1 if r["label_fraction"] == 1.0 else 2)  # fraction 1.0: one draw, one fit
        assert r["ci95"][0] <= r["mean"] <= r["ci95"][1]
        if r["init"] == "random":
            assert r["lo"] <= r["vs_imagenet"] <= r["hi"] and r["verdict"] in ("ahead", "tie", "behind")
    assert sorted(p.name for p in (tmp_path / "cache" / "val").iterdir()) == ["imagenet.json", "random.json"]
    assert probe.main([*args, "--out", str(tmp_path / "b.json")]) == 0  # from the cache
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
