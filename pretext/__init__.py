"""Pretext tasks for self-supervised pretraining, one module each, by name.

Importing this package does not import torch: the command line lists the
tasks from the registry (``task_names``) while ``--help`` stays fast.  Task
classes load on demand (``get_task``, ``build_task``).
"""

from __future__ import annotations

from ssl_derm.pretext.registry import get_task, register_task, settings_class, task_names


def build_task(name: str, encoder, cfg):
    """Task ``name`` on ``encoder``, configured by ``cfg`` (a ``PretrainConfig``)."""
    return get_task(name)(encoder, cfg)


__all__ = ["build_task", "get_task", "register_task", "settings_class", "task_names"]
