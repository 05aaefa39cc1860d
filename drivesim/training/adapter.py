"""The one clip-batch -> model-input adapter (DESIGN.md section 3).

Clips and `VideoCondition` differ on purpose: uint8 frames vs [-1, 1]; boxes in output pixels vs
[0, 1] xyxy; label 0 = unknown vs -1; waypoint masks vs NaN per unknown value. Every stage, the
latent cache and generation's replay go through `batch_to_model_input`, so the conventions meet
in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from drivesim.data.collate import ClipBatch
from drivesim.models.condition import VideoCondition


@dataclass
class ModelInput:
    """Frames in [-1, 1] `(B, T, 3, H, W)` (None for a latent batch), the condition, and the prompts."""

    frames: Tensor | None
    condition: VideoCondition
    prompts: list[str]


def frames_to_unit(frames: Tensor) -> Tensor:
    """uint8 `(..., 3, H, W)` in [0, 255] -> float32 in [-1, 1]."""
    if frames.dtype != torch.uint8:
        raise ValueError(f"clip frames must be uint8, got {frames.dtype}")
    return frames.float() / 127.5 - 1.0


def unit_to_frames(x: Tensor) -> Tensor:
    """float in [-1, 1] -> uint8 in [0, 255] (clamped, rounded)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def normalise_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    """xyxy in output pixels (the image spans [0, W] x [0, H]) -> xyxy in [0, 1] of the frame."""
    scale = boxes.new_tensor([width, height, width, height])
    return (boxes / scale).clamp(0.0, 1.0)


def labels_to_condition(labels: Tensor) -> Tensor:
    """Clip labels (0 = unknown, k = k-th value) -> condition labels (-1 = unknown, k - 1)."""
    return labels.long() - 1


def waypoints_with_nan(waypoints: Tensor, mask: Tensor) -> Tensor:
    """Waypoints (B, T, K, 2) with every masked (unknown) waypoint set to NaN, per waypoint."""
    return torch.where(mask[..., None].bool(), waypoints.float(), torch.full_like(waypoints.float(), float("nan")))


def batch_to_model_input(batch: ClipBatch, frame_size: tuple[int, int] | None = None) -> ModelInput:
    """A collated `ClipBatch` -> frames in [-1, 1] and the `VideoCondition` the UNet reads.

    `frame_size` (H, W) is the pixel size the boxes refer to; by default the frames' own size (it
    must be given for latent batches, which carry no frames).
    """
    has_frames = batch.frames.ndim == 5 and batch.frames.shape[-1] > 0
    if frame_size is None:
        if not has_frames:
            raise ValueError("batch_to_model_input: a batch without frames needs frame_size=(H, W)")
        frame_size = (int(batch.frames.shape[-2]), int(batch.frames.shape[-1]))
    height, width = frame_size
    box_mask = batch.box_mask.bool()
    boxes = torch.where(box_mask[..., None], normalise_boxes(batch.boxes_2d.float(), height, width),
                        torch.zeros_like(batch.boxes_2d.float()))
    condition = VideoCondition(
        boxes=boxes,
        box_classes=batch.classes.long(),
        box_instance_ids=batch.instance_ids.long(),
        box_mask=box_mask,
        boxes_3d=batch.boxes_3d.float(),
        labels=labels_to_condition(batch.labels),
        ego_speed=batch.speed.float(),  # NaN already marks unknown values (bare videos)
        ego_yaw_rate=batch.yaw_rate.float(),
        ego_waypoints=waypoints_with_nan(batch.waypoints, batch.waypoint_mask),
    )
    frames = frames_to_unit(batch.frames) if has_frames else None
    return ModelInput(frames=frames, condition=condition, prompts=[s.description for s in batch.sources])


class PromptCache:
    """Text embeddings cached per distinct prompt: the frozen encoder runs once per description."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        self.encoder = encoder
        self._cache: dict[str, Tensor] = {}

    @torch.no_grad()
    def _hidden(self, prompt: str) -> Tensor:
        if prompt not in self._cache:
            self._cache[prompt] = self.encoder.encode_hidden([prompt])[0]  # type: ignore[operator]
        return self._cache[prompt]

    def __call__(self, prompts: list[str]) -> Tensor:
        """(B, L, cross_attention_dim): cached frozen features through the (trainable) projection."""
        hidden = torch.stack([self._hidden(p) for p in prompts])
        return self.encoder.projection(hidden)  # type: ignore[operator]
