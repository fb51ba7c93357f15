"""Fixtures of the protocol tools' tests: the tools (plain scripts in ../tools, not a package)
imported as modules, and the bundled real HAM10000 sample."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def load_tool(name: str):
    """``benchmarks/ham10000/tools/<name>.py`` imported as a module."""
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tool_module():
    """``load_tool``, for tests that import a tool by name."""
    return load_tool
