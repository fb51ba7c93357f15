"""CONTRIBUTING.md's worked examples are real: each module and its test module, taken from the
page as they are written there, pass their tests (a pretext task: the shared ``TaskTest`` and
its own; a command: its test through ``main``). They run in a child process with the example
module beside the package's own, so this session's registry and command list never hold it."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _blocks(page: Path) -> dict[str, str]:
    """The page's python code blocks, by the path their first line names (``# path``)."""
    out = {}
    for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S):
        first = block.splitlines()[0]
        if first.startswith("# ") and first.endswith(".py"):
            out[first[2:].strip()] = block
    return out


def _write_example(folder: Path, module: str, test: str) -> None:
    """The page's module block and test block, as ``folder/<module's name>`` and ``folder/<test's>``."""
    blocks = _blocks(ROOT / "CONTRIBUTING.md")
    for path in (module, test):
        (folder / Path(path).name).write_text(blocks[path])


def _run_child(folder: Path, runner: str, timeout: int) -> str:
    """``runner`` (python source) in a child process; its pytest must pass. Returns its output."""
    done = subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, cwd=folder, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_pretext_task_example_passes_its_tests(tmp_path):
    _write_example(tmp_path, "pretext/denoise.py", "tests/pretext/test_denoise.py")
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            f"""
            import importlib.util, sys
            sys.path.insert(0, {str(ROOT)!r})
            from tests.conftest import sample_images  # noqa: F401
            spec = importlib.util.spec_from_file_location("root_conftest", {str(ROOT / "conftest.py")!r})
            root = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(root)
            _isolated_cache, sample_table = root._isolated_cache, root.sample_table
            """
        )
    )
    runner = textwrap.dedent(
        f"""
        import shutil, sys
        from pathlib import Path
        import pytest
        import ssl_derm.pretext as pretext
        from ssl_derm.pretext import registry
        here = Path({str(tmp_path)!r})
        pkg = here / "pretext"
        pkg.mkdir()
        for f in registry._HERE.glob("*.py"):  # the registry reads the package's source
            shutil.copy(f, pkg / f.name)
        shutil.copy(here / "denoise.py", pkg / "denoise.py")
        registry._HERE = pkg
        registry._scan.cache_clear()
        pretext.__path__.append(str(pkg))  # ssl_derm.pretext.denoise is found there
        sys.exit(pytest.main([str(here / "test_denoise.py"), "-q", "-p", "no:cacheprovider", "--rootdir", str(here)]))
        """
    )
    out = _run_child(tmp_path, runner, timeout=900)
    assert re.search(r"\b(\d+) passed\b", out) and "failed" not in out


def test_the_command_example_passes_its_test(tmp_path, ssl_ckpt):
    _write_example(tmp_path, "ssl_derm/cli/checkpoint_info.py", "tests/commands/test_checkpoint_info.py")
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            f"""
            import pytest

            @pytest.fixture
            def ssl_ckpt():  # the session's checkpoint, made by the parent test run
                return {str(ssl_ckpt)!r}
            """
        )
    )
    runner = textwrap.dedent(
        f"""
        import importlib, sys
        import pytest
        import ssl_derm.cli as cli
        cli.__path__.append({str(tmp_path)!r})  # ssl_derm.cli.checkpoint_info is found there
        cli.COMMANDS = (*cli.COMMANDS, importlib.import_module("ssl_derm.cli.checkpoint_info"))
        here = {str(tmp_path)!r}
        sys.exit(pytest.main([here + "/test_checkpoint_info.py", "-q", "-p", "no:cacheprovider", "--rootdir", here]))
        """
    )
    assert re.search(r"\b1 passed\b", _run_child(tmp_path, runner, timeout=600))
