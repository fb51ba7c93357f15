"""The pretext-task registry (after smp's and timm's): a task registers itself with
``@register_task("name")`` in its own module of this package, and nothing else
names it.

``task_names()`` finds the registered names by reading the package's source
(``ast``), without importing torch, so ``ssl-derm --help`` stays fast;
``get_task(name)`` imports the one module that defines the task.
"""

from __future__ import annotations

import ast
import importlib
from functools import lru_cache
from pathlib import Path

from ssl_derm.errors import UserError

_HERE = Path(__file__).resolve().parent
_REGISTRY: dict[str, type] = {}


def register_task(name: str):
    """Class decorator: make the task class available as ``--task name``."""

    def wrap(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"pretext task {name!r} is registered twice")
        if "Settings" not in vars(cls):
            raise TypeError(f"task {name!r}: declare its own Settings dataclass (it may be empty)")
        cls.name = name
        cls.Settings.task = name
        _REGISTRY[name] = cls
        return cls

    return wrap


@lru_cache(maxsize=1)
def _scan() -> tuple[dict[str, str], dict[str, str]]:
    """({task name: module name}, {task name: summary}) from the ``@register_task("...")``
    decorators and the module docstrings in the source."""
    found: dict[str, str] = {}
    summaries: dict[str, str] = {}
    for path in sorted(_HERE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            for dec in node.decorator_list:
                if (
                    isinstance(dec, ast.Call)
                    and getattr(dec.func, "id", None) == "register_task"
                    and dec.args
                    and isinstance(dec.args[0], ast.Constant)
                ):
                    found[dec.args[0].value] = path.stem
                    summaries[dec.args[0].value] = (ast.get_docstring(node) or "").split("\n")[0].rstrip(".")
    return found, summaries


def _task_modules() -> dict[str, str]:
    return _scan()[0]


def task_summaries() -> dict[str, str]:
    """{name: the first line of its class docstring}, for ``--help`` (no torch import)."""
    return dict(sorted(_scan()[1].items()))


def task_names() -> tuple[str, ...]:
    """Every registered task, sorted (no torch import)."""
    return tuple(sorted(_task_modules()))


def get_task(name: str) -> type:
    """The task class registered as ``name`` (imports its module)."""
    modules = _task_modules()
    if name not in modules:
        raise UserError(f"unknown task {name!r}; valid: {', '.join(task_names())}")
    if name not in _REGISTRY:
        importlib.import_module(f"{__package__}.{modules[name]}")
    return _REGISTRY[name]


def settings_class(name: str) -> type:
    """The settings dataclass of task ``name``."""
    return get_task(name).Settings
