"""The checkpoint the predict / explain / embed / export tests share, trained once per
session on the bundled real sample: a ``model.ckpt`` fine-tuned (64 px, a few steps)
from the session's context-restoration ``ssl.ckpt`` (tests/conftest.py)."""

from __future__ import annotations

import pytest

from ssl_derm.cli import main

TINY = ["--image-size", "64", "--batch-size", "16", "--no-progress"]


@pytest.fixture(scope="session")
def model_ckpt(tmp_path_factory, ssl_ckpt):
    out = tmp_path_factory.mktemp("commands") / "ft"
    assert main(["finetune", "--init", str(ssl_ckpt), "--out", str(out), "--max-steps", "12", *TINY]) == 0
    return out / "model.ckpt"
