"""Bad input, faults and safety, from the command line, on real files."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from ssl_derm.cli import main
from ssl_derm.data import sample_dir
from ssl_derm.data.identity import ContentIds
from tests.conftest import write_messy_folder

TINY = ["--image-size", "64", "--batch-size", "16", "--no-progress"]
ROOT = Path(__file__).resolve().parents[1]


def _one_line_error(capsys, code, expected: str):
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and expected in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_messy_archive_is_skipped_listed_and_summarised(tmp_path, jpeg_bytes, capsys):
    messy = write_messy_folder(tmp_path / "messy", jpeg_bytes)
    out = tmp_path / "run"
    assert (
        main(
            ["pretrain", "--task", "rotation", "--unlabeled", str(messy), "--out", str(out), "--max-steps", "1", *TINY]
        )
        == 0
    )
    assert "skipped 3 of 8 files" in capsys.readouterr().out
    listed = (out / "skipped.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0].split("/")[-1] for line in listed) == ["empty.jpg", "notes.bin", "truncated.jpg"]
    assert (out / "ssl.ckpt").is_file()

    strict = tmp_path / "strict"
    code = main(
        [
            "pretrain",
            "--task",
            "rotation",
            "--unlabeled",
            str(messy),
            "--out",
            str(strict),
            "--max-steps",
            "1",
            "--strict",
            *TINY,
        ]
    )
    _one_line_error(capsys, code, "--strict: 3 unreadable file(s)")
    assert not (strict / "ssl.ckpt").exists()


def _csv(tmp_path: Path, rows: pd.DataFrame, name="labels.csv") -> Path:
    path = tmp_path / name
    rows.to_csv(path, index=False)
    return path


def test_bad_labelled_sources_exit_2_before_training(tmp_path, sample_table, capsys):
    def finetune(rows: pd.DataFrame, name: str) -> int:
        data = _csv(tmp_path, rows, f"{name}.csv")
        return main(["finetune", "--init", "random", "--data", str(data), "--out", str(tmp_path / name), *TINY])

    rows = sample_table.copy()
    _one_line_error(capsys, finetune(rows.drop(columns=["label"]), "r1"), "missing column(s) label")
    ghost = rows.copy()
    ghost.loc[0, "image"] = str(tmp_path / "ISIC_missing.jpg")
    _one_line_error(capsys, finetune(ghost, "r2"), "ISIC_missing.jpg")
    _one_line_error(capsys, finetune(rows.head(0), "r3"), "holds no images")
    # a class that only occurs outside the training split
    split = rows.copy()
    split["split"] = "train"
    split.loc[split["label"] == "df", "split"] = "val"
    first_groups = split[split["label"] == "nv"]["group"].unique()[:5]
    split.loc[split["group"].isin(first_groups), "split"] = "test"
    _one_line_error(capsys, finetune(split, "r4"), "have no training images")
    assert not any((tmp_path / f"r{i}" / "model.ckpt").exists() for i in range(1, 5))


def test_bad_flags_name_the_valid_range(tmp_path, capsys):
    _one_line_error(
        capsys,
        main(["finetune", "--label-fraction", "1.5", "--out", str(tmp_path / "a")]),
        "label_fraction=1.5: must be in (0, 1]",
    )
    _one_line_error(
        capsys, main(["pretrain", "--set", "nonsense=1", "--out", str(tmp_path / "b")]), "unknown setting 'nonsense'"
    )
    _one_line_error(capsys, main(["pretrain", "--image-size", "-64", "--out", str(tmp_path / "c")]), "multiple of 32")


class _Evil:
    target = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_hostile_and_broken_checkpoints_are_refused(tmp_path, capsys):
    _Evil.target = str(tmp_path / "pwned")
    evil = tmp_path / "evil.ckpt"
    torch.save({"format": "ssl-derm", "x": _Evil()}, evil)
    _one_line_error(capsys, main(["finetune", "--init", str(evil), "--out", str(tmp_path / "a")]), "refused")
    assert not (tmp_path / "pwned").exists()
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"format": "ssl-derm"}, f)
    _one_line_error(
        capsys,
        main(["finetune", "--init", str(tmp_path / "plain.pkl"), "--out", str(tmp_path / "b")]),
        str(tmp_path / "plain.pkl"),
    )
    _one_line_error(capsys, main(["evaluate", "--checkpoint", str(tmp_path / "missing.ckpt")]), "not found")


def test_evaluate_refuses_labels_outside_the_model(tmp_path, sample_table, capsys):
    from ssl_derm.checkpoint import save_checkpoint
    from ssl_derm.encoders import build_encoder, encoder_spec
    from ssl_derm.finetune.classifier import Classifier

    model = Classifier(build_encoder("resnet18"), 2)
    ckpt = save_checkpoint(
        tmp_path / "model.ckpt",
        encoder_name="resnet18",
        encoder_state_dict=model.encoder.state_dict(),
        image_size=64,
        normalization=encoder_spec("resnet18").normalization,
        task="classifier",
        config={},
        head_state_dict=model.head.state_dict(),
        class_names=["mel", "nv"],
        seen_images=ContentIds.empty().to_state(),
        split_images={s: {"names": [], "sha1": []} for s in ("train", "val", "test")},
    )
    _one_line_error(
        capsys,
        main(["evaluate", "--checkpoint", str(ckpt), "--split", "all", "--out", str(tmp_path / "ev")]),
        "are not among the model's classes",
    )


def test_non_empty_out_is_never_overwritten_silently(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    _one_line_error(capsys, main(["data", "split", "--out", str(out)]), "pass --overwrite")
    assert (out / "precious.txt").read_text() == "keep me"
    assert main(["data", "split", "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["splits.csv"]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    from ssl_derm.pretext.rotation import RotationTask

    real = RotationTask.forward
    calls = {"n": 0}

    def poisoned(self, x, generator=None):
        out = real(self, x, generator)
        calls["n"] += 1
        if self.training and calls["n"] > 20:  # well into the second epoch
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(RotationTask, "forward", poisoned)
    out = tmp_path / "run"
    code = main(["pretrain", "--task", "rotation", "--out", str(out), "--epochs", "3", *TINY])
    err = capsys.readouterr().err
    assert code == 1 and "non-finite training loss" in err and "Traceback" not in err
    ckpt = torch.load(out / "ssl.ckpt", weights_only=True)
    assert ckpt["epochs_completed"] == 1 and all(
        torch.isfinite(v).all() for v in ckpt["encoder_state_dict"].values() if v.is_floating_point()
    )


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ssl_derm", *args]


def test_kill_minus_9_then_resume_finishes(tmp_path):
    out = tmp_path / "run"
    args = ["pretrain", "--task", "rotation", "--out", str(out), "--epochs", "3", *TINY]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(_cli(*args), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert last.exists(), "no trainer checkpoint appeared"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed = torch.load(out / "ssl.ckpt", weights_only=True)  # a whole file, never half-written
    assert killed["epochs_completed"] in (1, 2)
    done = subprocess.run(_cli(*args, "--resume"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    final = torch.load(out / "ssl.ckpt", weights_only=True)
    assert final["epochs_completed"] == 3 and final["global_step"] > killed["global_step"]
    assert not list(out.rglob("*.tmp"))  # leftovers of a save cut short are cleared on resume
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt"]


def test_two_process_ddp_on_cpu(tmp_path):
    """Rotation, SimCLR (negatives gathered across ranks) and MoCo (momentum encoder,
    queue) in one multitask run on two CPU processes."""
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        _cli(
            "pretrain",
            "--task",
            "multitask",
            "--set",
            "multitask.parts=rotation,simclr,moco",
            "--set",
            "multitask.weights=1,1,1",
            "--accelerator",
            "cpu",
            "--devices",
            "2",
            "--max-steps",
            "2",
            "--out",
            str(out),
            "--data",
            str(sample_dir()),
            *TINY,
        ),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = torch.load(out / "ssl.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2
    assert shutil.which("true")  # the folder was shared by both ranks: one run folder only
    assert not [p for p in tmp_path.iterdir() if p.name != "ddp"]


def test_finetune_resume_continues_and_keeps_the_best_epoch(tmp_path):
    out = tmp_path / "ft"
    args = ["finetune", "--init", "random", "--out", str(out), *TINY]
    assert main([*args, "--epochs", "1"]) == 0
    first = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2 * first
    assert (out / "model.ckpt").is_file() and (out / "metrics.json").is_file()
    # the validation curve in metrics.json spans both sessions; its best epoch is the one kept
    metrics = json.loads((out / "metrics.json").read_text())
    curve = metrics["val_history"]
    assert [e["epoch"] for e in curve] == [1, 2] and metrics["epochs_run"] == 2
    kept = curve[metrics["best_epoch"] - 1]["balanced_accuracy"]
    assert abs(kept - max(e["balanced_accuracy"] for e in curve)) < 1e-6
    assert abs(metrics["best_epoch_val_balanced_accuracy"] - kept) < 1e-6


def test_finite_loss_guard_reads_the_loss_back_only_at_its_checks_and_names_the_first_bad_step():
    from types import SimpleNamespace

    from ssl_derm.engine import FiniteLossGuard, RunFailed

    guard = FiniteLossGuard(every=4, checkpoint_every=6)
    from pytorch_lightning.trainer.states import TrainerFn

    fitting = SimpleNamespace(fn=TrainerFn.FITTING)
    trainer = SimpleNamespace(global_step=0, state=fitting, sanity_checking=False)
    module = SimpleNamespace()  # no trainer attached: a single process
    checks = []
    real_check = guard.check
    guard.check = lambda m: (checks.append(trainer.global_step), real_check(m))
    for loss in [1.0, 2.0, float("nan"), 3.0]:  # steps 0-3; the bad one is step 2
        trainer.global_step += 1
        if trainer.global_step < 4:
            guard.on_train_batch_end(trainer, module, {"loss": torch.tensor(loss)}, None, 0)
    assert checks == []  # steps 1-3: nothing read back yet
    with pytest.raises(RunFailed, match="at step 2;"):
        guard.on_train_batch_end(trainer, module, {"loss": torch.tensor(3.0)}, None, 0)  # step 4: a check
    assert checks == [4]
    fresh = FiniteLossGuard(every=100, checkpoint_every=6)
    trainer.global_step = 6  # LastCheckpoint's step: checked before it saves
    with pytest.raises(RunFailed, match="at step 5;"):
        fresh.on_train_batch_end(trainer, module, torch.tensor(float("inf")), None, 0)
    calm = FiniteLossGuard(every=100)
    calm.on_train_batch_end(trainer, module, {"loss": torch.tensor(0.5)}, None, 0)
    calm.on_validation_start(trainer, module)
    calm.on_train_epoch_end(trainer, module)  # finite losses: every check passes
    bad = FiniteLossGuard(every=100)
    bad.on_train_batch_end(trainer, module, {"loss": torch.tensor(float("nan"))}, None, 0)
    trainer.state = SimpleNamespace(fn=TrainerFn.VALIDATING)
    bad.on_validation_start(trainer, module)  # a validation outside fit: not the guard's business
    trainer.state = fitting
    with pytest.raises(RunFailed):
        bad.on_validation_start(trainer, module)  # before best.ckpt is chosen and saved


def test_non_finite_fine_tuning_loss_stops_before_validation_scores_or_saves_it(tmp_path, monkeypatch, capsys):
    # no periodic check (log_every_n_steps=1000): the check before validation must catch it
    from ssl_derm.finetune.losses import FocalLoss

    real = FocalLoss.forward
    calls = {"n": 0}

    def poisoned(self, logits, target):
        loss = real(self, logits, target)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 15:  # step 14: in the second epoch, before its validation
                loss = loss * float("nan")
        return loss

    monkeypatch.setattr(FocalLoss, "forward", poisoned)
    out = tmp_path / "ft"
    args = ["finetune", "--init", "random", "--out", str(out), "--epochs", "3", "--set", "log_every_n_steps=1000"]
    code = main([*args, *TINY])
    err = capsys.readouterr().err
    assert code == 1 and "non-finite training loss at step 14;" in err and "Traceback" not in err
    best = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)  # the first epoch's
    assert best["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in best["state_dict"].values() if v.is_floating_point())
