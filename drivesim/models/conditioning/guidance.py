"""Classifier-free guidance, single and multi-condition (DESIGN.md section 1).

`f = f(z) + s * (f(z; c) - f(z))`; with several conditions each has its own scale:
independent composition sums the guided differences against one unconditional output, nested
composition guides each condition against the output with the previous ones already applied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from torch import Tensor

from drivesim.models.condition import VideoCondition
from drivesim.models.conditioning.dropout import DROPPABLE, null_text_like


def guided(f_uncond: Tensor, f_cond: Tensor, scale: float) -> Tensor:
    """`f_uncond + scale * (f_cond - f_uncond)`: scale 1 is the conditional output, 0 the unconditional."""
    if f_uncond.shape != f_cond.shape:
        raise ValueError(f"guided: shapes differ, {tuple(f_uncond.shape)} vs {tuple(f_cond.shape)}")
    return f_uncond + scale * (f_cond - f_uncond)


def composed(f_uncond: Tensor, f_conds: Mapping[str, Tensor], scales: Mapping[str, float]) -> Tensor:
    """Independent composition: `f(z) + sum_c s_c (f(z; c) - f(z))`, one model call per condition."""
    missing = set(f_conds) ^ set(scales)
    if missing:
        raise ValueError(f"composed: every condition needs an output and a scale; unmatched {sorted(missing)}")
    out = f_uncond
    for name, f_c in f_conds.items():
        out = out + (guided(f_uncond, f_c, scales[name]) - f_uncond)
    return out


def nested(outputs: Sequence[Tensor], scales: Sequence[float]) -> Tensor:
    """Nested composition: outputs[0] = f(z), outputs[i] = f(z; c_1..c_i); scales[i-1] guides step i.

    `f(z) + sum_i s_i (f(z; c_1..c_i) - f(z; c_1..c_{i-1}))`, as InstructPix2Pix does for two conditions.
    """
    if len(outputs) != len(scales) + 1:
        raise ValueError(f"nested: need one more output than scales, got {len(outputs)} and {len(scales)}")
    out = outputs[0]
    for prev, cur, s in zip(outputs[:-1], outputs[1:], scales):
        out = out + s * (cur - prev)
    return out


def without(cond: VideoCondition, names: Sequence[str], null_text: Tensor | None = None) -> VideoCondition:
    """A copy of `cond` with the named conditions absent for the whole batch (the unconditional input)."""
    unknown = set(names) - set(DROPPABLE)
    if unknown:
        raise ValueError(f"unknown condition names {sorted(unknown)}; choose from {DROPPABLE}")
    changes: dict[str, object] = {}
    if "context" in names:
        changes.update(context_latents=None, context_mask=None, context_noise_level=None)
    if "boxes" in names:
        changes.update(boxes=None, box_classes=None, box_instance_ids=None, box_mask=None, boxes_3d=None)
    if "labels" in names:
        changes["labels"] = None
    if "ego" in names:
        changes.update(ego_speed=None, ego_yaw_rate=None, ego_waypoints=None)
    if "text" in names and cond.text is not None:
        if null_text is None:
            raise ValueError("without('text') needs null_text (the empty-prompt embedding)")
        changes["text"] = null_text_like(cond.text, null_text).clone()
    return replace(cond, **changes)  # type: ignore[arg-type]
