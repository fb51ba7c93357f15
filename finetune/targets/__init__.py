"""Fine-tuning targets, one module each, on the contract of ``targets/base.py``.

``TARGETS`` maps a ``--target`` name to its target, built from ``ssl_derm.config.TARGETS``
(name -> ``module:Class`` here); ``target_of`` finds the target of a fine-tuned
``model.ckpt`` by the ``task`` it records. Adding a target is one module here (a ``Target``
subclass), its line in ``ssl_derm.config.TARGETS`` and one test module."""

from __future__ import annotations

from importlib import import_module

from ssl_derm.config import TARGETS as DECLARED
from ssl_derm.errors import UserError
from ssl_derm.finetune.targets.base import FinetuneRun, Target, init_names, safe_init_name, split_variant


def _targets() -> dict[str, Target]:
    found = {}
    for name, where in DECLARED.items():
        module, cls = where.split(":")
        target = getattr(import_module(f"{__name__}.{module}"), cls)()
        if target.name != name:
            raise TypeError(f"ssl_derm.config.TARGETS[{name!r}] is {where}, whose name is {target.name!r}")
        found[name] = target
    return found


TARGETS: dict[str, Target] = _targets()


def target_for_task(task: str | None) -> Target | None:
    """The target whose model.ckpt records ``task``; None for any other (a pretraining task)."""
    return next((t for t in TARGETS.values() if t.task == task), None)


def target_of(ckpt: dict, path) -> Target:
    """The target whose fine-tuned model ``ckpt`` (loaded from ``path``) holds; a one-line error
    for a pretraining checkpoint."""
    target = target_for_task(ckpt.get("task"))
    if target is not None:
        return target
    raise UserError(
        f"{path}: a {ckpt.get('task')!r} checkpoint, not a fine-tuned model (model.ckpt of ssl-derm finetune)"
    )


__all__ = [
    "TARGETS",
    "FinetuneRun",
    "Target",
    "init_names",
    "safe_init_name",
    "split_variant",
    "target_for_task",
    "target_of",
]
