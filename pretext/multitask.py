"""Several pretext tasks trained together on one encoder, with loss weights.

Each part is a registered task with its own views, settings (its own section:
``--set context_restore.swaps=10``) and logs (under ``<part>/``); the loss is
the weighted sum of the parts' losses.  Published work on dermoscopy found a
combination of pretext tasks beat any single one; the default pairs context
restoration (local texture and structure) with SimCLR (global, view-invariant
features).  Any registered tasks can be combined: ``--set multitask.parts=
context_restore,rotation --set multitask.weights=1,0.5``."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ssl_derm.pretext.base import PretextTask, StepOutput, TaskSettings
from ssl_derm.pretext.registry import get_task, register_task, task_names


@dataclass(frozen=True)
class Settings(TaskSettings):
    parts: tuple[str, ...] = ("context_restore", "simclr")
    weights: tuple[float, ...] = (1.0, 1.0)

    def validate(self) -> None:
        valid = [t for t in task_names() if t != "multitask"]
        self.require(
            "parts", len(self.parts) >= 2 and len(set(self.parts)) == len(self.parts), "need >= 2 distinct tasks"
        )
        bad = [p for p in self.parts if p not in valid]
        self.require("parts", not bad, f"unknown task(s) {bad}; valid: {', '.join(valid)}")
        self.require("weights", len(self.weights) == len(self.parts), f"need one weight per part ({len(self.parts)})")
        self.require("weights", all(w > 0 for w in self.weights), "must be > 0 (leave a task out to drop it)")

    def check(self, cfg) -> None:
        for part in self.parts:
            get_task(part).settings_from(cfg).check(cfg)


@register_task("multitask")
class MultiTask(PretextTask):
    """Several tasks on one encoder, weighted losses (default: context_restore + simclr)."""

    Settings = Settings

    def __init__(self, encoder: nn.Module, cfg) -> None:
        super().__init__(encoder, cfg)
        self.parts = nn.ModuleDict({p: get_task(p)(encoder, cfg) for p in self.settings.parts})
        self.weights = dict(zip(self.settings.parts, self.settings.weights))

    @classmethod
    def uses(cls, settings) -> tuple[str, ...]:
        return tuple(settings.parts)

    def draw(self, x, generator=None):
        return {name: part.draw(x, generator) for name, part in self.parts.items()}

    def make_views(self, x, params):
        return {name: part.make_views(x, params[name]) for name, part in self.parts.items()}

    def compute(self, x, views, params):
        total, out = 0.0, StepOutput(loss=None)
        for name, part in self.parts.items():
            step = part.compute(x, views[name], params[name])
            total = total + self.weights[name] * step.loss
            named = step.prefixed(name)
            out.scalars.update({f"{name}/loss": step.loss.detach(), **named.scalars})
            out.images.update(named.images)
            out.texts.update(named.texts)
        out.loss = total
        return out

    def on_train_step(self, step: int, total_steps: int) -> None:
        for part in self.parts.values():
            part.on_train_step(step, total_steps)

    def extra_state(self):
        return {
            "parts": {name: part.extra_state() for name, part in self.parts.items()},
            "weights": dict(self.weights),
        }
