"""No validation or test image reaches pretraining or training, under any name: checked
by content on real images, refused from the command line with one line (exit 2)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ssl_derm.cli import main
from ssl_derm.data import FileList, decode_source, sample_dir, sample_unlabeled
from ssl_derm.data.identity import ContentIds, find_copies, thumbnail
from ssl_derm.data.splits import make_splits

TINY = ["--image-size", "64", "--batch-size", "16", "--no-progress"]


def _err_line(capsys, code: int, expected: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("ssl-derm: error")]
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in err, err
    return lines[0]


def _recode(path: str, size=(180, 180), quality: int = 80) -> bytes:
    """A copy as archives hold them: resized to another shape and re-encoded."""
    buf = io.BytesIO()
    Image.open(path).convert("RGB").resize(size, Image.BILINEAR).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def split0(sample_table):
    return make_splits(sample_table, (0.7, 0.15, 0.15), seed=0)


@pytest.fixture(scope="module")
def messy_archive(tmp_path_factory, split0):
    """8 real ISIC images, re-encoded copies of 2 test and 1 validation image of the sample
    (seed-0 split) under new names, and a copy of 1 training image."""
    path = tmp_path_factory.mktemp("archive") / "archive.zip"
    test = split0[split0["split"] == "test"]["image"].tolist()
    val = split0[split0["split"] == "val"]["image"].tolist()
    train = split0[split0["split"] == "train"]["image"].tolist()
    with zipfile.ZipFile(sample_unlabeled()) as src, zipfile.ZipFile(path, "w") as dst:
        for name in sorted(src.namelist())[:8]:
            dst.writestr(name, src.read(name))
        dst.writestr("extra/scan_001.jpg", _recode(test[0]))
        dst.writestr("extra/scan_002.jpg", _recode(test[1], size=(300, 225), quality=60))
        dst.writestr("extra/scan_003.jpg", Path(val[0]).read_bytes())  # identical file, new name
        dst.writestr("extra/scan_004.jpg", _recode(train[0]))
    return path


def test_copies_are_found_by_content_and_distinct_lesions_are_not_merged(sample_table):
    paths = list(sample_table["image"])
    ids = decode_source(FileList("sample", paths), 64, progress=False).ids()
    copies = [_recode(p, (180, 180), 70) for p in paths[:10]] + [_recode(p, (400, 300), 90) for p in paths[10:20]]
    thumbs = np.stack([thumbnail(Image.open(io.BytesIO(c))) for c in copies])
    query = ContentIds([f"c{i}" for i in range(20)], [f"x{i}" for i in range(20)], thumbs)
    found = find_copies(query, ids)
    assert [(i, j) for i, j, _ in found] == [(i, i) for i in range(20)]
    # No image of the sample copies an image of another lesion (same-lesion photos may be alike).
    groups = sample_table["group"].to_numpy()
    for i in range(len(ids)):
        others = np.flatnonzero(groups != groups[i])
        assert not find_copies(ids.subset([i]), ids.subset(others)), paths[i]


def test_pretraining_drops_archive_copies_of_heldout_images(tmp_path, messy_archive, capsys):
    out = tmp_path / "pre"
    args = ["pretrain", "--task", "rotation", "--data", str(sample_dir()), "--unlabeled", str(messy_archive)]
    assert main([*args, "--out", str(out), "--max-steps", "1", *TINY]) == 0
    err = capsys.readouterr().err
    assert "dropped 3 of 12 archive files from archive.zip: copies of validation/test images" in err
    rows = [ln.split("\t") for ln in (out / "duplicates.txt").read_text().splitlines()]
    assert sorted(r[0] for r in rows) == ["extra/scan_001.jpg", "extra/scan_002.jpg", "extra/scan_003.jpg"]
    seen = ContentIds.from_state(torch.load(out / "ssl.ckpt", weights_only=True)["seen_images"])
    assert "scan_004.jpg" in seen.names and "scan_001.jpg" not in seen.names  # train copies stay
    splits = pd.read_csv(out / "splits.csv")
    assert len(seen) == (splits["split"] == "train").sum() + 8 + 1


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("leaks") / "pre"
    args = ["pretrain", "--task", "rotation", "--data", str(sample_dir()), "--out", str(out), "--max-steps", "1"]
    assert main([*args, *TINY]) == 0
    return out


def test_finetune_and_benchmark_refuse_a_split_that_tests_on_pretraining_images(pretrained, tmp_path, capsys):
    ssl = str(pretrained / "ssl.ckpt")
    line = _err_line(
        capsys,
        main(["finetune", "--init", ssl, "--seed", "1", "--out", str(tmp_path / "ft"), "--epochs", "1", *TINY]),
        "validation/test images were used to train the --init encoder",
    )
    assert "--splits" in line
    assert not (tmp_path / "ft" / "model.ckpt").exists()
    _err_line(
        capsys,
        main(["benchmark", "--inits", f"imagenet,{ssl}", "--seed", "1", "--out", str(tmp_path / "bm"), *TINY]),
        f"used to train the init {ssl}",
    )
    assert not (tmp_path / "bm" / "runs").exists()  # refused before the first run
    # The pretraining run's own split is clean: the same command with --splits works.
    args = ["finetune", "--init", ssl, "--seed", "1", "--splits", str(pretrained / "splits.csv")]
    assert main([*args, "--out", str(tmp_path / "ok"), "--epochs", "1", *TINY]) == 0


def test_evaluate_scores_the_models_own_test_split_and_refuses_trained_images(pretrained, tmp_path, capsys):
    ft = tmp_path / "ft"
    args = ["finetune", "--init", str(pretrained / "ssl.ckpt"), "--splits", str(pretrained / "splits.csv")]
    assert main([*args, "--out", str(ft), "--epochs", "1", *TINY]) == 0
    splits = pd.read_csv(ft / "splits.csv")
    assert main(["evaluate", "--checkpoint", str(ft / "model.ckpt"), "--out", str(tmp_path / "ev")]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    pred = pd.read_csv(tmp_path / "ev" / "predictions.csv")
    assert metrics["split"] == "test" and metrics["n_images"] == (splits["split"] == "test").sum()
    assert set(pred["image"]) == set(splits[splits["split"] == "test"]["image"])
    # Another split's "test" holds images this model trained on.
    other = tmp_path / "other"
    assert main(["data", "split", str(sample_dir()), "--seed", "5", "--out", str(other)]) == 0
    ev = ["evaluate", "--checkpoint", str(ft / "model.ckpt"), "--splits", str(other / "splits.csv")]
    line = _err_line(capsys, main([*ev, "--out", str(tmp_path / "ev2")]), "were used to train this model")
    assert ".jpg = ISIC_" in line  # names a few of them
    _err_line(capsys, main([*ev[:3], "--split", "all", "--out", str(tmp_path / "ev3")]), "--split all images")
    assert main([*ev[:3], "--split", "train", "--out", str(tmp_path / "ev4")]) == 0


def test_format_1_checkpoints_cannot_prove_what_they_saw(pretrained, tmp_path, capsys):
    ckpt = torch.load(pretrained / "ssl.ckpt", weights_only=True)
    ckpt["format_version"] = 1
    del ckpt["seen_images"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    _err_line(
        capsys,
        main(["finetune", "--init", str(tmp_path / "old.ckpt"), "--out", str(tmp_path / "ft"), *TINY]),
        "no record of the images it was trained on",
    )


def test_an_empty_test_split_is_an_error_not_a_relabelled_validation_score(tmp_path, capsys):
    args = ["finetune", "--init", "random", "--set", "split_fractions=0.8,0.2,0.0", "--out", str(tmp_path / "ft")]
    _err_line(capsys, main([*args, *TINY]), "the test split is empty")
    assert not (tmp_path / "ft" / "metrics.json").exists()


def test_resume_with_other_data_settings_is_refused(pretrained, tmp_path, capsys):
    """The weights in last.ckpt saw the old pool: resuming on another split would record the wrong one."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(pretrained, run)
    args = ["pretrain", "--task", "rotation", "--data", str(sample_dir()), "--out", str(run), "--max-steps", "2"]
    line = _err_line(capsys, main([*args, "--resume", "--seed", "1", *TINY]), "--resume with other data settings")
    assert "seed: 0 -> 1" in line
