"""Classifier-free guidance per condition, batched into one model call.

Each condition (context, boxes, labels, ego, text) has its own scale. A condition with scale 1 is
simply given (not guided); the guided set G is every present condition whose scale differs from 1.
Composed (default; `composed` in drivesim.models.conditioning.guidance): branch 0 drops all of G, branch
c drops G minus c. Nested (`nested`): branch i drops G minus its first i members, in `DROPPABLE` order.
Branches travel as one batch in which a dropped condition is *absent per sample* (context mask 0,
box mask False, labels -1, ego NaN, text null), which the encoders turn into an exact zero, so the
batched call equals separate calls with the condition removed (tested).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from drivesim.models.condition import VideoCondition
from drivesim.models.conditioning.dropout import DROPPABLE, null_text_like
from drivesim.models.conditioning.guidance import composed, nested

Model = Callable[[Tensor, Tensor, VideoCondition], Tensor]
MODES = ("composed", "nested")


def present_conditions(cond: VideoCondition) -> tuple[str, ...]:
    """The droppable conditions `cond` carries, in `DROPPABLE` order."""
    present = {"context": cond.context_latents is not None, "boxes": cond.boxes is not None,
               "labels": cond.labels is not None,
               "ego": any(v is not None for v in (cond.ego_speed, cond.ego_yaw_rate, cond.ego_waypoints)),
               "text": cond.text is not None}
    return tuple(name for name in DROPPABLE if present[name])


@dataclass(frozen=True)
class GuidancePlan:
    """Which conditions are guided, with which scales, and how the branch outputs combine."""

    guided: tuple[str, ...]
    scales: tuple[float, ...]
    mode: str = "composed"

    @classmethod
    def build(cls, cond: VideoCondition, scales: Mapping[str, float], mode: str = "composed") -> GuidancePlan:
        if mode not in MODES:
            raise ValueError(f"sampler.guidance_mode must be one of {MODES}, got {mode!r}")
        unknown = set(scales) - set(DROPPABLE)
        if unknown:
            raise ValueError(f"sampler.guidance: unknown conditions {sorted(unknown)}; choose from {DROPPABLE}")
        guided = tuple(n for n in present_conditions(cond) if float(scales.get(n, 1.0)) != 1.0)
        return cls(guided, tuple(float(scales[n]) for n in guided), mode)

    def branches(self) -> list[frozenset[str]]:
        """The conditions each branch drops; one branch (nothing dropped) when nothing is guided."""
        if not self.guided:
            return [frozenset()]
        g = frozenset(self.guided)
        if self.mode == "composed":
            return [g] + [g - {name} for name in self.guided]
        return [g - set(self.guided[:i]) for i in range(len(self.guided) + 1)]

    def combine(self, outputs: Sequence[Tensor]) -> Tensor:
        if not self.guided:
            return outputs[0]
        if self.mode == "composed":
            return composed(outputs[0], dict(zip(self.guided, outputs[1:])), dict(zip(self.guided, self.scales)))
        return nested(list(outputs), list(self.scales))


def _absent(cond: VideoCondition, drop: frozenset[str], null_text: Tensor | None) -> VideoCondition:
    """`cond` with the conditions in `drop` absent for every sample, keeping every tensor's shape."""
    changes: dict[str, object] = {}
    if "context" in drop and cond.context_mask is not None:
        changes["context_mask"] = torch.zeros_like(cond.context_mask)
    if "boxes" in drop and cond.box_mask is not None:
        changes["box_mask"] = torch.zeros_like(cond.box_mask, dtype=torch.bool)
    if "labels" in drop and cond.labels is not None:
        changes["labels"] = torch.full_like(cond.labels, -1)
    if "ego" in drop:
        for name in ("ego_speed", "ego_yaw_rate", "ego_waypoints"):
            value = getattr(cond, name)
            if value is not None:
                changes[name] = torch.full_like(value.float(), float("nan"))
    if "text" in drop and cond.text is not None:
        if null_text is None:
            raise ValueError("guiding text needs the null (empty-prompt) text embedding")
        changes["text"] = null_text_like(cond.text, null_text).clone()
    return replace(cond, **changes)  # type: ignore[arg-type]


def _cat(parts: Sequence[VideoCondition], batch: int) -> VideoCondition:
    """Concatenate conditions along the batch; a bool `image_only` becomes a per-sample tensor."""
    first = parts[0]
    changes: dict[str, object] = {}
    for f in fields(first):
        values = [getattr(p, f.name) for p in parts]
        if f.name == "image_only":
            flags = [v.to(torch.bool).expand(batch) if isinstance(v, Tensor) else torch.full((batch,), bool(v))
                     for v in values]
            changes[f.name] = torch.cat(flags) if any(isinstance(v, Tensor) for v in values) else bool(values[0])
        elif isinstance(values[0], Tensor):
            changes[f.name] = torch.cat(values)
        elif isinstance(values[0], dict):
            changes[f.name] = {k: torch.cat([v[k] for v in values]) for k in values[0]}
    return replace(first, **changes)  # type: ignore[arg-type]


def _split(cond: VideoCondition, start: int, stop: int) -> VideoCondition:
    changes: dict[str, object] = {}
    for f in fields(cond):
        value = getattr(cond, f.name)
        if isinstance(value, Tensor) and value.ndim > 0:
            changes[f.name] = value[start:stop]
        elif isinstance(value, dict):
            changes[f.name] = {k: v[start:stop] for k, v in value.items()}
    return replace(cond, **changes)  # type: ignore[arg-type]


class GuidedDenoiser:
    """`(x (B,T,C,H,W), t, cond) -> guided model output`, all branches in calls of <= `max_batch` samples."""

    def __init__(self, model: Model, scales: Mapping[str, float], mode: str = "composed",
                 null_text: Tensor | None = None, max_batch: int = 0) -> None:
        self.model = model
        self.scales = dict(scales)
        self.mode = mode
        self.null_text = null_text
        self.max_batch = int(max_batch)

    def plan(self, cond: VideoCondition) -> GuidancePlan:
        return GuidancePlan.build(cond, self.scales, self.mode)

    def __call__(self, x: Tensor, t: Tensor, cond: VideoCondition) -> Tensor:
        plan = self.plan(cond)
        branches = plan.branches()
        batch = x.shape[0]
        big = _cat([_absent(cond, drop, self.null_text) for drop in branches], batch)
        xs = x.repeat(len(branches), *([1] * (x.ndim - 1)))
        ts = t.reshape(-1).expand(batch).repeat(len(branches)) if t.numel() in (1, batch) else t.repeat(
            len(branches), *([1] * (t.ndim - 1)))
        step = self.max_batch if self.max_batch > 0 else xs.shape[0]
        outs = [self.model(xs[i:i + step], ts[i:i + step], _split(big, i, i + step))
                for i in range(0, xs.shape[0], step)]
        return plan.combine(torch.cat(outs).split(batch))
