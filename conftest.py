"""Fixtures every test tree shares (tests/ and benchmarks/ham10000/tests/): a throw-away decode
cache and the bundled real HAM10000 sample's table."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test decodes into a throw-away cache, never the user's; and the commands the tests
    call in this process leave its allocator as it is (ssl_derm.allocator: tests/test_allocator.py
    checks it in processes of its own)."""
    cache = tmp_path_factory.mktemp("decode-cache")
    os.environ["SSL_DERM_CACHE"] = str(cache)
    os.environ["SSL_DERM_MALLOC"] = "system"
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield cache


@pytest.fixture(scope="session")
def sample_table():
    from ssl_derm.data import load_labeled, sample_dir

    return load_labeled(sample_dir())
