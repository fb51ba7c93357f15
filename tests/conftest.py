"""Shared fixtures: the bundled real HAM10000 sample, decoded once per session."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import torch

from ssl_derm.data import FileList, ImageBank, decode_source, sample_unlabeled

SIZE = 64


@pytest.fixture(scope="session")
def sample_images(sample_table) -> torch.Tensor:
    """Real sample images as float [N, 3, 64, 64] in [0, 1]."""
    decoded = decode_source(FileList("sample", list(sample_table["image"])), SIZE, progress=False)
    bank = ImageBank([decoded])
    return bank.gather(list(range(len(bank)))).float() / 255


@pytest.fixture(scope="session")
def jpeg_bytes() -> list[bytes]:
    """A few real JPEG files (bytes) from the bundled unlabelled archive."""
    with zipfile.ZipFile(sample_unlabeled()) as zf:
        names = sorted(n for n in zf.namelist() if n.endswith(".jpg"))[:8]
        return [zf.read(n) for n in names]


def write_messy_folder(root: Path, jpegs: list[bytes]) -> Path:
    """Real JPEGs plus a truncated JPEG, a zero-byte file and a non-image file."""
    root.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(jpegs[:5]):
        (root / f"good_{i}.jpg").write_bytes(data)
    (root / "truncated.jpg").write_bytes(jpegs[5][: len(jpegs[5]) // 3])
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.bin").write_bytes(io.BytesIO(b"this is not an image").getvalue())
    return root


@pytest.fixture(scope="session")
def ssl_ckpt(tmp_path_factory):
    """A context-restoration ``ssl.ckpt`` continued from ImageNet for 3 steps on the sample (64 px)."""
    from ssl_derm.cli import main

    out = tmp_path_factory.mktemp("commands") / "cr"
    args = ["pretrain", "--task", "context_restore", "--init", "imagenet", "--out", str(out), "--max-steps", "3"]
    args += ["--image-size", "64", "--batch-size", "16", "--no-progress", "--set", "context_restore.swaps=5"]
    assert main(args) == 0
    return out / "ssl.ckpt"
