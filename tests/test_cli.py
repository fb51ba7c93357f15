"""End to end on the bundled real sample, through the command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from ssl_derm import __version__
from ssl_derm.cli import main
from ssl_derm.encoders import build_encoder

TINY = ["--image-size", "64", "--batch-size", "16", "--no-progress", "--set", "log_every_n_steps=1"]


def test_help_lists_commands_and_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for cmd in ("data", "pretrain", "finetune", "evaluate", "benchmark"):
        assert cmd in text
    with pytest.raises(SystemExit):
        main(["--version"])
    assert __version__ in capsys.readouterr().out


def test_task_choices_come_from_the_registry_without_importing_torch():
    code = (
        "import sys; from ssl_derm.cli import build_parser; build_parser(); "
        "from ssl_derm.pretext import task_names; print(','.join(task_names())); print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names, torch_loaded = done.stdout.split()
    assert names.split(",") == ["byol", "context_restore", "moco", "multitask", "rotation", "simclr"]
    assert torch_loaded == "False"


def test_data_inspect_json_on_bundled_sample(capsys):
    assert main(["data", "inspect", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 316 and len(report["classes"]) == 7 and report["unreadable"] == 0
    assert report["classes"]["nv"] == 102 and report["groups"] == 217


def test_data_split_writes_lesion_disjoint_splits(tmp_path):
    assert main(["data", "split", "--out", str(tmp_path / "s"), "--seed", "1"]) == 0
    table = pd.read_csv(tmp_path / "s" / "splits.csv")
    assert list(table.columns) == ["image", "label", "group", "split"]
    assert table.groupby("group")["split"].nunique().max() == 1


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cr"
    code = main(
        [
            "pretrain",
            "--task",
            "context_restore",
            "--out",
            str(out),
            "--max-steps",
            "3",
            "--unlabeled",
            str(_sample_zip()),
            "--data",
            str(_sample_dir()),
            *TINY,
            "--set",
            "log_images_every_n_steps=2",
            "--set",
            "context_restore.swaps=5",
        ]
    )
    assert code == 0
    return out


def _sample_zip():
    from ssl_derm.data import sample_unlabeled

    return sample_unlabeled()


def _sample_dir():
    from ssl_derm.data import sample_dir

    return sample_dir()


def test_pretrain_writes_portable_checkpoint_and_tensorboard(pretrained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ckpt = torch.load(pretrained / "ssl.ckpt", weights_only=True)
    assert ckpt["task"] == "context_restore" and ckpt["image_size"] == 64 and ckpt["global_step"] == 3
    assert "decoder_state_dict" in ckpt and ckpt["normalization"]["mean"] == [0.5] * 3
    enc = build_encoder(init=str(pretrained / "ssl.ckpt"))  # strict keys
    assert torch.equal(enc.state_dict()["model.conv_stem.weight"], ckpt["encoder_state_dict"]["model.conv_stem.weight"])
    assert (pretrained / "config.yaml").is_file() and (pretrained / "checkpoints" / "last.ckpt").is_file()
    events = EventAccumulator(str(pretrained / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    assert any("train" in t and "loss" in t for t in tags["scalars"])
    assert {"val/loss", "val/knn_balanced_accuracy", "train/images_per_s"} <= set(tags["scalars"])
    assert any(t.startswith("lr") for t in tags["scalars"])
    assert {"train/corrupted", "train/restored", "train/original"} <= set(tags["images"])
    pool = pd.read_csv(pretrained / "splits.csv")
    assert set(pool["split"]) == {"train", "val", "test"}


def test_pretrain_on_an_archive_alone_says_so(tmp_path, capsys):
    """--unlabeled with no --data: the pool is the archive, not the bundled sample too."""
    out = tmp_path / "cr"
    args = ["pretrain", "--task", "rotation", "--out", str(out), "--max-steps", "1", "--unlabeled", str(_sample_zip())]
    assert main([*args, *TINY]) == 0
    captured = capsys.readouterr()
    assert "no --data: the pool is the --unlabeled archives alone" in captured.err
    with zipfile.ZipFile(_sample_zip()) as z:
        n = sum(1 for name in z.namelist() if name.lower().endswith((".jpg", ".jpeg", ".png")))
    sizes = re.search(r"pretraining rotation on ([\d,]+) images \(([\d,]+) held out\)", captured.out)
    assert sizes, captured.out
    assert sum(int(g.replace(",", "")) for g in sizes.groups()) == n  # every archive image, nothing else
    assert not (out / "splits.csv").exists()  # no labelled source was read


def test_resume_continues_from_the_saved_step(pretrained, tmp_path):
    import shutil

    run = tmp_path / "cr"
    shutil.copytree(pretrained, run)
    args = [
        "pretrain",
        "--task",
        "context_restore",
        "--out",
        str(run),
        "--unlabeled",
        str(_sample_zip()),
        "--data",
        str(_sample_dir()),
        *TINY,
        "--set",
        "context_restore.swaps=5",
    ]
    assert main([*args, "--max-steps", "5"]) == 2  # non-empty folder without --resume/--overwrite
    assert main([*args, "--max-steps", "5", "--resume"]) == 0
    assert torch.load(run / "ssl.ckpt", weights_only=True)["global_step"] == 5


def test_finetune_evaluate_benchmark_end_to_end(pretrained, tmp_path, capsys):
    ft = tmp_path / "ft"
    assert (
        main(
            [
                "finetune",
                "--init",
                str(pretrained / "ssl.ckpt"),
                "--out",
                str(ft),
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--no-progress",
            ]
        )
        == 0
    )
    metrics = json.loads((ft / "metrics.json").read_text())
    for key in (
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "weighted_f1",
        "auc_macro",
        "per_class",
        "confusion_matrix",
        "n_images",
    ):
        assert key in metrics
    assert metrics["split"] == "test" and metrics["n_images"] == int(
        (pd.read_csv(ft / "splits.csv")["split"] == "test").sum()
    )
    model = torch.load(ft / "model.ckpt", weights_only=True)
    assert model["image_size"] == 64 and len(model["class_names"]) == 7  # image size came from ssl.ckpt

    ev = tmp_path / "ev"
    assert main(["evaluate", "--checkpoint", str(ft / "model.ckpt"), "--out", str(ev)]) == 0
    pred = pd.read_csv(ev / "predictions.csv")
    test_rows = int((pd.read_csv(ft / "splits.csv")["split"] == "test").sum())  # the model's own test split
    assert len(pred) == test_rows and list(pred.columns[:3]) == ["image", "true_label", "predicted_label"]
    assert pred.filter(like="prob_").sum(axis=1).round(4).eq(1).all()

    bm = tmp_path / "bm"
    args = [
        "benchmark",
        "--inits",
        f"random,{pretrained / 'ssl.ckpt'}",
        "--seeds",
        "1",
        "--label-fractions",
        "0.5,1.0",
        "--epochs",
        "1",
        "--image-size",
        "64",
        "--batch-size",
        "16",
        "--out",
        str(bm),
        "--no-progress",
    ]
    # --blind: every run trains and scores test, and the output holds validation scores only
    capsys.readouterr()
    assert main([*args, "--blind"]) == 0
    out = capsys.readouterr().out
    assert out.count("(test scored, held back)") == 4 and "test:" not in out and "Validation only" in out
    assert not (bm / "results.csv").exists() and not (bm / "results.md").exists()
    scored = [json.loads(m.read_text()) for m in bm.glob("runs/*/*/seed0/metrics.json")]
    assert len(scored) == 4 and all(m["split"] == "test" and "balanced_accuracy" in m for m in scored)
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    events = [e for f in bm.glob("runs/*/*/seed0/tensorboard/events*") for e in EventFileLoader(str(f)).Load()]
    tags = {v.tag for e in events for v in e.summary.value}
    assert any(tag.startswith("val/") for tag in tags) and not any(tag.startswith("test/") for tag in tags)
    # ... and --report-only on the blind folder writes its tables
    assert main(["benchmark", "--report-only", "--out", str(bm)]) == 0
    assert "from 4 run(s)" in capsys.readouterr().out and (bm / "paired.csv").is_file()
    assert main([*args, "--blind"]) == 0  # a blind pass over a folder with tables says so
    assert "holds test tables of an earlier pass" in capsys.readouterr().err
    assert main(args) == 0  # the same runs, reported
    assert capsys.readouterr().out.count("done, skipped") == 4
    results = pd.read_csv(bm / "results.csv")
    assert list(results.columns) == [
        "init",
        "label_fraction",
        "seed",
        "fold",
        "recipe",
        "val_balanced_accuracy",
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "weighted_f1",
        "auc_macro",
        "run",
    ]
    assert sorted(set(results["init"])) == ["context_restore", "random"] and len(results) == 4
    assert all((bm / run / "model.ckpt").is_file() for run in results["run"])
    assert results["val_balanced_accuracy"].between(0, 1).all()
    for name in ("results.md", "label_efficiency.png", "confusion_random.png", "confusion_context_restore.png"):
        assert (bm / name).is_file(), name
    # every run keeps its test probabilities; the paired table's observed difference is the
    # difference of the two inits' balanced accuracies in results.csv, seed by seed
    kept = sorted(bm.glob("runs/*/fraction*/seed0/test_predictions.csv"))
    assert len(kept) == 4
    probs = pd.read_csv(kept[0])
    assert len(probs) == test_rows and probs.drop(columns=["image", "label"]).sum(axis=1).round(4).eq(1).all()
    paired = pd.read_csv(bm / "paired.csv")
    assert len(paired) == 2 and set(paired["baseline"]) == {"random"} and set(paired["init"]) == {"context_restore"}
    ba = results.set_index(["init", "label_fraction"])["balanced_accuracy"]
    for r in paired.itertuples():
        expected = ba[("context_restore", r.label_fraction)] - ba[("random", r.label_fraction)]
        assert abs(r.diff - expected) < 1e-9 and r.lo <= r.diff <= r.hi and r.seeds == 1
    # the draws resample the test split's lesions, all images of one together
    held = pd.read_csv(ft / "splits.csv").query("split == 'test'")
    assert (paired["images"] == test_rows).all() and (paired["lesions"] == held["group"].nunique()).all()
    assert held["group"].nunique() < test_rows  # the sample has lesions with several images in test
    assert "## Paired differences in test balanced accuracy" in (bm / "results.md").read_text()
    assert "## How the runs ended" in (bm / "results.md").read_text()
    # each init's balanced accuracy with its interval over test images (and seeds): the plot's bars
    spans = pd.read_csv(bm / "intervals.csv").set_index(["init", "label_fraction"])
    assert len(spans) == 4 and (spans["seeds"] == 1).all() and (spans["images"] == test_rows).all()
    for r in results.itertuples():
        span = spans.loc[(r.init, r.label_fraction)]
        assert abs(span["mean"] - r.balanced_accuracy) < 1e-6 and span["lo"] <= span["mean"] <= span["hi"]
    assert "## Test balanced accuracy with 95% intervals" in (bm / "results.md").read_text()

    capsys.readouterr()
    kept[0].unlink()  # a run finished before runs kept their probabilities: rescored, not retrained
    assert main(args) == 0  # finished runs are skipped, not redone
    assert capsys.readouterr().out.count("done, skipped") == 4
    assert pd.read_csv(kept[0]).equals(probs)
    assert pd.read_csv(bm / "paired.csv").equals(paired)

    # --tta: the same models also score test with the 8 dihedral views, nothing is retrained
    assert main([*args, "--tta"]) == 0
    assert capsys.readouterr().out.count("done, skipped") == 4
    tta = pd.read_csv(bm / "tta.csv")
    assert len(tta) == 4 and (tta["seeds"] == 1).all()
    for r in tta.itertuples():
        run = bm / results.set_index(["init", "label_fraction"]).loc[(r.init, r.label_fraction), "run"]
        views = pd.read_csv(run / "test_predictions_tta.csv")
        classes = list(views.columns[2:])
        truth = views["label"].map({c: i for i, c in enumerate(classes)})
        assert np.isclose(r.tta, balanced_accuracy_score(truth, views[classes].to_numpy().argmax(1)))
        assert np.isclose(r.plain, ba[(r.init, r.label_fraction)], atol=1e-6)
        assert np.isclose(r.diff, r.tta - r.plain) and r.lo <= r.diff <= r.hi
    assert "## Test-time augmentation" in (bm / "results.md").read_text()

    # recall per class in results.md: each run's recall, from its metrics
    report = (bm / "results.md").read_text()
    assert "## Recall per class" in report
    run = bm / results["run"].iloc[0]
    per_class = json.loads((run / "metrics.json").read_text())["per_class"]
    recall = report.split("## Recall per class")[1].split("\n## ")[0].splitlines()
    line = next(ln for ln in recall if ln.startswith(f"| {results['init'].iloc[0]} | 0.5 | 0 | 1 |"))
    cells = [c.strip() for c in line.strip("|").split("|")][4:]
    assert [float(c.split(" ± ")[0]) for c in cells] == [round(v["recall"], 2) for v in per_class.values()]

    # --cam-in-lesion: where each model looks, per test image, as ssl-derm explain measures it
    assert main([*args, "--cam-in-lesion"]) == 0
    assert capsys.readouterr().out.count("done, skipped") == 4
    cams = pd.read_csv(run / "test_cam_in_lesion.csv")
    assert len(cams) == test_rows and cams["lesion_area"].between(0, 1, inclusive="neither").all()
    assert cams["cam_in_lesion"].dropna().between(0, 1).all() and cams["cam_in_lesion"].notna().sum() > 0
    ex = tmp_path / "ex"
    explain = ["explain", "--checkpoint", str(run / "model.ckpt"), "--split", "test", "--n", "0"]
    assert main([*explain, "--out", str(ex), "--no-progress"]) == 0
    theirs = pd.read_csv(ex / "explain.csv").set_index("image").loc[cams["image"]]
    assert (theirs["predicted_label"].to_numpy() == cams["predicted"].to_numpy()).all()
    assert np.allclose(theirs["cam_in_lesion"], cams["cam_in_lesion"], atol=1e-3, equal_nan=True)
    assert np.allclose(theirs["lesion_area"], cams["lesion_area"], atol=1e-3)
    table = pd.read_csv(bm / "cam_in_lesion.csv").set_index(["init", "label_fraction"])
    row = table.loc[(results["init"].iloc[0], 0.5)]
    assert np.isclose(row["cam_in_lesion"], cams["cam_in_lesion"].fillna(cams["lesion_area"]).mean())
    assert row["seeds"] == 1 and row["images"] == test_rows
    other = table.loc[("context_restore", 1.0)]
    assert other["vs_random_lo"] <= other["vs_random"] <= other["vs_random_hi"]
    assert np.isclose(other["vs_random"], other["cam_in_lesion"] - table.loc[("random", 1.0), "cam_in_lesion"])

    # --report-only: every table rewritten from the runs on disk, nothing trained, the same bytes
    tables = ["results.csv", "results.md", "paired.csv", "intervals.csv", "tta.csv", "cam_in_lesion.csv"]
    before = {t: (bm / t).read_bytes() for t in tables}
    for t in tables:
        (bm / t).unlink()
    capsys.readouterr()
    assert main(["benchmark", "--report-only", "--out", str(bm)]) == 0
    assert "from 4 run(s)" in capsys.readouterr().out
    assert {t: (bm / t).read_bytes() for t in tables} == before
    assert "## Grad-CAM mass inside the lesion" in (bm / "results.md").read_text()

    # a run whose recorded settings or init weights differ from this benchmark's is run again
    first = bm / results["run"].iloc[0] / "metrics.json"
    first.write_text(json.dumps({**json.loads(first.read_text()), "run_key": "other settings"}))
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("done, skipped") == 3 and out.count("stale") == 1
    # ... and so is one trained on another training part than this split's (another data folder)
    second = bm / results["run"].iloc[1]
    split = pd.read_csv(second / "splits.csv")
    split.drop(index=split.index[split["split"] == "train"][:1]).to_csv(second / "splits.csv", index=False)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("done, skipped") == 3 and out.count("stale") == 1


def test_ci_runs_the_readme_test_command():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    second = [ln for ln in (root / "README.md").read_text().splitlines() if "pytest" in ln][0]
    command = second.split("#")[0].strip()
    assert command in (root / ".ci" / "run").read_text()
