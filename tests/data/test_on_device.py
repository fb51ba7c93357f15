"""The decoded images held on the training device (``data_on_device``): the same bytes
indexed there, the decision it makes, and a run that trains exactly as without it (on the
CPU, where a held bank is a torch tensor in host memory: the GPU path differs only in where
that tensor lives)."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from ssl_derm.cli import main
from ssl_derm.data import BankDataset
from ssl_derm.data.labeled import prepare_labeled
from ssl_derm.engine import place_data
from ssl_derm.errors import UserError

SIZE = 64


@pytest.fixture()
def lab():
    return prepare_labeled(None, SIZE, masks=True, progress=False)  # a fresh bank: nothing held yet


def _trainer(device: str):
    return types.SimpleNamespace(strategy=types.SimpleNamespace(root_device=torch.device(device)))


def test_a_held_bank_serves_the_same_bytes(lab):
    bank = lab.bank
    rows = np.random.default_rng(0).permutation(len(bank))[:23]
    pixels, masks = bank.gather(rows), bank.gather_masks(rows)
    assert bank.nbytes() == len(bank) * SIZE * SIZE * 4  # 3 channels of pixels + 1 of mask
    bank.to_device(torch.device("cpu"), chunk=7)  # chunks that do not divide the bank
    assert set(bank.resident) == {"pixels", "masks"}
    assert torch.equal(bank.gather(rows, held=True), pixels)
    assert torch.equal(bank.gather_masks(rows, held=True), masks)
    assert torch.equal(bank.gather(rows), pixels)  # plain gathers still read the host arrays
    images, labels = BankDataset(bank, rows, np.arange(len(rows))).__getitems__([3, 0, 5])
    assert torch.equal(images, pixels[[3, 0, 5]]) and labels.tolist() == [3, 0, 5]


def test_place_data_follows_the_setting(lab, capsys):
    assert not place_data(lab.bank, _trainer("cpu"), "off")
    assert not place_data(lab.bank, _trainer("cpu"), "auto")  # auto: only on a GPU
    assert not lab.bank.resident
    assert place_data(lab.bank, _trainer("cpu"), "on")
    assert "held on cpu" in capsys.readouterr().out
    assert set(lab.bank.resident) == {"pixels", "masks"}


def test_data_on_device_is_checked():
    from ssl_derm.config import FinetuneConfig

    with pytest.raises(UserError, match="data_on_device"):
        FinetuneConfig(data_on_device="gpu")


def test_a_run_with_its_data_held_trains_the_same(tmp_path):
    """Three fine-tuning steps with the bank held (on the CPU) and without: identical weights."""
    runs = {}
    for mode in ("off", "on"):
        out = tmp_path / mode
        args = ["finetune", "--out", str(out), "--max-steps", "3", "--image-size", "64", "--batch-size", "16"]
        args += ["--no-progress", "--init", "imagenet", "--data-on-device", mode]
        assert main(args) == 0
        ckpt = torch.load(out / "model.ckpt", map_location="cpu", weights_only=True)
        runs[mode] = {**ckpt["encoder_state_dict"], **{f"head.{k}": v for k, v in ckpt["head_state_dict"].items()}}
    assert runs["on"].keys() == runs["off"].keys()
    assert all(torch.equal(runs["on"][k], runs["off"][k]) for k in runs["off"])


def test_pretraining_holds_its_pool_when_told(tmp_path, capsys):
    """``on`` holds the bank on the CPU too, in pretraining as in fine-tuning (one decision for
    both: ``engine.loader_pinning``)."""
    args = ["pretrain", "--task", "rotation", "--init", "imagenet", "--out", str(tmp_path / "pt"), "--max-steps", "2"]
    assert main([*args, "--image-size", "64", "--batch-size", "8", "--no-progress", "--data-on-device", "on"]) == 0
    assert "the decoded images are held on cpu" in capsys.readouterr().out
