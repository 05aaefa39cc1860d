"""Classifier-free-guidance dropout: each condition made absent per sample with its own probability.

"Absent" per sample: labels -1, box_mask False, context_mask 0, ego values NaN (NaN is the ego
encoder's "unknown" flag: zero speed and zero waypoints are a real, stopped ego, so zero cannot
mean unknown), text replaced by the caller's null (empty-prompt) embedding. The encoders turn each of
these into an exactly-zero contribution, so a dropped sample sees the unconditional model.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from drivesim.models.condition import VideoCondition
from drivesim.models.conditioning.options import ConditionOptions, DropoutProbabilities

# The order of the per-sample draws: fixed, so a seeded generator gives the same drops whichever
# conditions are present.
DROPPABLE = ("context", "boxes", "labels", "ego", "text")


def _where_samples(drop: Tensor, value: Tensor, absent: Tensor | float | bool) -> Tensor:
    """Replace the samples where `drop` (B,) is True by `absent` (broadcast)."""
    d = drop.to(value.device).reshape(-1, *([1] * (value.ndim - 1)))
    absent_t = torch.as_tensor(absent, dtype=value.dtype, device=value.device)
    return torch.where(d, absent_t, value)


def null_text_like(text: Tensor, null_text: Tensor) -> Tensor:
    """Broadcast a null embedding (L, D) or (1, L, D) to `text`'s (B, L, D) or (B, T, L, D)."""
    null = null_text.to(device=text.device, dtype=text.dtype)
    if null.ndim == 3 and null.shape[0] == 1:
        null = null[0]
    if tuple(null.shape) != tuple(text.shape[-2:]):
        raise ValueError(f"null_text must be (L, D) = {tuple(text.shape[-2:])} like VideoCondition.text, "
                         f"got {tuple(null_text.shape)}")
    return null.expand_as(text)


def batch_size(cond: VideoCondition) -> int | None:
    """The batch size the droppable conditions agree on, or None when none is present."""
    sizes = {name: int(v.shape[0]) for name in ("text", "context_mask", "box_mask", "labels", "ego_speed",
                                                 "ego_yaw_rate", "ego_waypoints")
             if (v := getattr(cond, name)) is not None}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"VideoCondition fields disagree on the batch size: {sizes}")
    return next(iter(sizes.values()), None)


def drop_conditions(cond: VideoCondition, options: ConditionOptions | DropoutProbabilities,
                    generator: torch.Generator | None = None, null_text: Tensor | None = None,
                    uniforms: Tensor | None = None) -> VideoCondition:
    """A copy of `cond` with conditions dropped per sample; the input is not modified.

    One uniform draw per (condition, sample) from `generator` (on the CPU) in `DROPPABLE` order, so
    a seeded generator gives the same drops; or the draws themselves as `uniforms` (len(DROPPABLE), B)
    (training draws them per sample, from each sample's own generator). `null_text` (L, D) is needed
    when text may be dropped.
    """
    probabilities = options.dropout if isinstance(options, ConditionOptions) else options
    batch = batch_size(cond)
    if batch is None:
        return cond
    if uniforms is not None:
        if tuple(uniforms.shape) != (len(DROPPABLE), batch):
            raise ValueError(f"uniforms must be ({len(DROPPABLE)}, {batch}), got {tuple(uniforms.shape)}")
        u = uniforms
    else:
        u = torch.rand(len(DROPPABLE), batch, generator=generator)
    drop = {name: u[i] < float(getattr(probabilities, name)) for i, name in enumerate(DROPPABLE)}
    changes: dict[str, Tensor | None] = {}
    if cond.context_mask is not None:
        changes["context_mask"] = _where_samples(drop["context"], cond.context_mask, 0)
    if cond.box_mask is not None:
        changes["box_mask"] = _where_samples(drop["boxes"], cond.box_mask, False)
    if cond.labels is not None:
        changes["labels"] = _where_samples(drop["labels"], cond.labels, -1)
    for name in ("ego_speed", "ego_yaw_rate", "ego_waypoints"):
        value = getattr(cond, name)
        if value is not None:
            changes[name] = _where_samples(drop["ego"], value.float() if not value.is_floating_point() else value,
                                           float("nan"))
    if cond.text is not None and float(probabilities.text) > 0:
        if null_text is None:  # checked whatever the draw, so a missing argument fails on the first step
            raise ValueError("drop_conditions needs null_text (the empty-prompt embedding) to drop text")
        d = drop["text"].to(cond.text.device).reshape(-1, *([1] * (cond.text.ndim - 1)))
        changes["text"] = torch.where(d, null_text_like(cond.text, null_text), cond.text)
    return replace(cond, **changes)  # type: ignore[arg-type]
