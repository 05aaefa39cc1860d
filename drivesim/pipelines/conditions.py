"""Per-frame scenario conditions -> the `VideoCondition` a stage's UNet takes (only what it has encoders for)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from drivesim.models import VideoCondition, VideoUNet
from drivesim.models.conditioning.context import augment_context
from drivesim.pipelines.errors import GenerateError
from drivesim.scenario.timeline import FrameCondition


@dataclass(frozen=True)
class Supports:
    """The conditions a UNet has encoders for (text is always accepted: it is cross-attention)."""

    context: bool = False
    context_noise: bool = False
    boxes: bool = False
    labels: bool = False
    ego: bool = False
    stage: bool = False
    max_instances: int = 64
    max_waypoints: int = 8

    @classmethod
    def of(cls, unet: VideoUNet) -> Supports:
        enc: Any = unet.condition_encoders
        if enc is None:
            return cls()
        o = enc.options
        return cls(context=bool(o.context), context_noise=bool(o.context and o.context_noise), boxes=bool(o.boxes),
                   labels=bool(o.labels), ego=bool(o.ego), stage=bool(o.stage), max_instances=int(o.max_instances),
                   max_waypoints=int(o.max_waypoints))


@dataclass(frozen=True)
class SceneInputs:
    """What holds for the whole drive: scene labels row (3,) and the text embedding (L, D) with its null."""

    labels: Sequence[int] | None = None
    text: Tensor | None = None
    null_text: Tensor | None = None


def frame_condition(frames: Sequence[FrameCondition], supports: Supports, scene: SceneInputs,
                    device: torch.device | str = "cpu") -> VideoCondition:
    """A batch-of-one condition over `frames` (T = len(frames)) holding only what the model can encode."""
    t = len(frames)
    cond = VideoCondition()
    if supports.boxes:
        n = max(1, max(len(f.boxes) for f in frames))
        boxes = torch.zeros(1, t, n, 4)
        classes = torch.zeros(1, t, n, dtype=torch.long)
        ids = torch.zeros(1, t, n, dtype=torch.long)
        mask = torch.zeros(1, t, n, dtype=torch.bool)
        for i, f in enumerate(frames):
            for j, b in enumerate(f.boxes):
                boxes[0, i, j] = torch.tensor(b.xyxy)
                classes[0, i, j] = b.class_index
                ids[0, i, j] = b.instance
                mask[0, i, j] = True
        cond.boxes, cond.box_classes, cond.box_instance_ids, cond.box_mask = (
            boxes.to(device), classes.to(device), ids.to(device), mask.to(device))
    if supports.labels and scene.labels is not None:
        cond.labels = torch.tensor([list(scene.labels)], dtype=torch.long, device=device)
    if supports.ego:
        cond.ego_speed = torch.tensor([[f.ego_speed for f in frames]], dtype=torch.float32, device=device)
        cond.ego_yaw_rate = torch.tensor([[f.ego_yaw_rate for f in frames]], dtype=torch.float32, device=device)
        k = max((len(f.waypoints) for f in frames if f.waypoints), default=0)
        if k:  # unknown waypoints (a frame without, or past its own K) are NaN
            points = torch.full((1, t, k, 2), float("nan"))
            for i, f in enumerate(frames):
                if f.waypoints:
                    points[0, i, :len(f.waypoints)] = torch.tensor(f.waypoints, dtype=torch.float32)
            cond.ego_waypoints = points[:, :, :supports.max_waypoints].to(device)
    if scene.text is not None:
        cond.text = scene.text.reshape(1, *scene.text.shape[-2:]).to(device)
    return cond


PER_FRAME = ("boxes", "box_classes", "box_instance_ids", "box_mask", "ego_speed", "ego_yaw_rate", "ego_waypoints")


def batch_condition(windows: Sequence[Sequence[FrameCondition]], supports: Supports, scene: SceneInputs,
                    device: torch.device | str = "cpu") -> VideoCondition:
    """One condition batching `windows` (B windows of T frames each) for one UNet call: boxes padded to
    the batch's most crowded frame, labels and text repeated."""
    t = len(windows[0])
    if any(len(w) != t for w in windows):
        raise ValueError(f"batched windows must have one length, got {[len(w) for w in windows]}")
    b = len(windows)
    cond = frame_condition([f for w in windows for f in w], supports, scene, device)
    changes: dict[str, Tensor] = {}
    for name in PER_FRAME:
        value = getattr(cond, name)
        if value is not None:
            changes[name] = value.reshape(b, t, *value.shape[2:])
    for name in ("labels", "text"):
        value = getattr(cond, name)
        if value is not None:
            changes[name] = value.expand(b, *value.shape[1:])
    return replace(cond, **changes)  # type: ignore[arg-type]


def with_context(cond: VideoCondition, latents: Tensor, mask: Tensor, supports: Supports,
                 noise_level: float, generator: torch.Generator | None = None) -> VideoCondition:
    """Attach clean context latents (B, T, C, H, W) + mask (B, T), noise-augmented at `noise_level` as
    training did (`augment_context`: the encoder sees noised latents together with their level; the
    noise comes from `generator`, on the CPU), and the level itself."""
    if not supports.context:
        raise GenerateError("this model has no context encoder: it cannot continue a rollout (not a prediction model?)")
    if noise_level > 0 and supports.context_noise:
        noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
        level = torch.full((latents.shape[0],), float(noise_level), device=latents.device)
        latents = augment_context(latents, mask, level, noise=noise)
    cond.context_latents, cond.context_mask = latents, mask
    if supports.context_noise:
        cond.context_noise_level = torch.full((latents.shape[0],), float(noise_level), device=latents.device)
    return cond
