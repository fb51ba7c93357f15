"""The protocol's folder holds what its scripts name: the profiles load into the settings they
are passed as (tests/test_config.py checks the product's defaults in the repository's configs/),
every tool, config or sibling script a shell script of this folder calls is where it says, and
every python tool and study imports."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from ssl_derm.config import BenchmarkConfig, PretrainConfig, build_config, load_yaml

HERE = Path(__file__).resolve().parents[1]  # benchmarks/ham10000
SCRIPTS = [HERE / "run.sh", *sorted((HERE / "studies").glob("*.sh"))]


@pytest.mark.parametrize(
    "path", sorted((HERE / "configs").glob("*/*.yaml")), ids=lambda p: p.parent.name + "/" + p.name
)
def test_every_profile_is_valid(path):
    cls = {"pretrain": PretrainConfig, "benchmark": BenchmarkConfig}[path.parent.name]
    build_config(cls, load_yaml(path))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_file_a_script_calls_is_here(script):
    text = script.read_text()
    named = re.findall(r"\$HERE/([\w./$-]+)", text)
    named += [f"studies/{m}" for m in re.findall(r'source "\$\(dirname "\$0"\)/([\w.-]+)"', text)]
    files = [n for n in named if "." in Path(n).name]  # not a folder such as $HERE/state
    assert files, script.name
    for rel in files:
        for profile in ("cpu", "gpu") if "$PROFILE" in rel else ("",):
            assert (HERE / rel.replace("$PROFILE", profile)).is_file(), f"{script.name}: {rel}"


@pytest.mark.parametrize(
    "path",
    sorted([*(HERE / "tools").glob("*.py"), *(HERE / "studies").glob("*.py")]),
    ids=lambda p: p.parent.name + "/" + p.name,
)
def test_every_python_script_imports(path):
    """A tool or study that names a module of ssl_derm that moved fails here, not on the day it runs."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
