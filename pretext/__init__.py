"""Pretext tasks for self-supervised pretraining, by name (after smp's registry)."""

from __future__ import annotations

from ssl_derm.pretext.base import PretextTask
from ssl_derm.pretext.context_restore import ContextRestoreTask, draw_swaps, swap_patches
from ssl_derm.pretext.rotation import RotationTask, rotate_batch

from ssl_derm.encoders import encoder_spec
from ssl_derm.errors import UserError


def _rotation(encoder, cfg):
    return RotationTask(
        encoder, angles=cfg.rotation_angles, angle_jitter=cfg.angle_jitter, stretch=cfg.rotation_stretch
    )


def _context_restore(encoder, cfg):
    return ContextRestoreTask(
        encoder,
        encoder_spec(cfg.encoder).smp_name,
        swaps=cfg.swaps,
        patch_size=cfg.patch_size,
        corrupted_weight=cfg.corrupted_weight,
    )


TASKS = {"rotation": _rotation, "context_restore": _context_restore}


def build_task(name: str, encoder, cfg) -> PretextTask:
    try:
        factory = TASKS[name]
    except KeyError:
        raise UserError(f"unknown task {name!r}; valid: {', '.join(TASKS)}") from None
    return factory(encoder, cfg)


__all__ = [
    "TASKS",
    "ContextRestoreTask",
    "PretextTask",
    "RotationTask",
    "build_task",
    "draw_swaps",
    "rotate_batch",
    "swap_patches",
]
