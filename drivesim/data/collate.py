"""Batches of clips: boxes padded to the most boxes in any frame of the batch, with a mask.

Items that a dataset returned as None (skipped under on_error="skip") are dropped here and
counted in `ClipBatch.skipped`, so the count survives worker processes and reaches the main one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from drivesim.data.clip import Clip, Source


@dataclass
class ClipBatch:
    """B clips; shapes are documented in drivesim/data/README.md (B may be 0 when all were skipped)."""

    frames: torch.Tensor  # (B, T, 3, H, W) uint8
    fps: torch.Tensor  # (B,)
    boxes_2d: torch.Tensor  # (B, T, N, 4)
    boxes_3d: torch.Tensor  # (B, T, N, 8, 3)
    classes: torch.Tensor  # (B, T, N) int64
    instance_ids: torch.Tensor  # (B, T, N) int64
    box_valid: torch.Tensor  # (B, T, N) bool
    box_mask: torch.Tensor  # (B, T, N) bool: a box is present in that slot
    speed: torch.Tensor  # (B, T) m/s
    yaw_rate: torch.Tensor  # (B, T) rad/s
    waypoints: torch.Tensor  # (B, T, K, 2) m
    waypoint_mask: torch.Tensor  # (B, T, K) bool
    labels: torch.Tensor  # (B, 3) int64 (time_of_day, weather, crowdedness)
    intrinsics: torch.Tensor  # (B, 3, 3), NaN when unknown
    extrinsics: torch.Tensor  # (B, 4, 4), NaN when unknown
    timestamps: torch.Tensor  # (B, T) s
    sources: list[Source] = field(default_factory=list)
    skipped: int = 0

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def _pad(per_clip: list[list[np.ndarray]], n: int, tail: tuple[int, ...], dtype: type) -> np.ndarray:
    b, t = len(per_clip), len(per_clip[0]) if per_clip else 0
    out: np.ndarray = np.zeros((b, t, n, *tail), dtype=dtype)
    for i, frames in enumerate(per_clip):
        for j, arr in enumerate(frames):
            out[i, j, : len(arr)] = arr
    return out


def _matrix(value: np.ndarray | None, size: int) -> np.ndarray:
    return np.full((size, size), np.nan) if value is None else np.asarray(value, np.float64)


def collate_clips(items: list[Clip | None]) -> ClipBatch:
    """Stack clips (all with the same T, H, W) into a ClipBatch; None items are dropped and counted."""
    clips = [c for c in items if c is not None]
    skipped = len(items) - len(clips)
    if not clips:
        return _empty(skipped)
    shapes = {tuple(c.frames.shape) for c in clips}
    if len(shapes) != 1:
        raise ValueError(f"clips in a batch differ in shape: {sorted(shapes)}")
    n = max(c.max_boxes for c in clips)
    t = clips[0].num_frames
    mask = np.zeros((len(clips), t, n), dtype=bool)
    for i, c in enumerate(clips):
        for j, boxes in enumerate(c.boxes_2d):
            mask[i, j, : len(boxes)] = True
    return ClipBatch(
        frames=torch.stack([c.frames for c in clips]),
        fps=torch.tensor([c.fps for c in clips], dtype=torch.float32),
        boxes_2d=torch.from_numpy(_pad([c.boxes_2d for c in clips], n, (4,), np.float32)),
        boxes_3d=torch.from_numpy(_pad([c.boxes_3d for c in clips], n, (8, 3), np.float32)),
        classes=torch.from_numpy(_pad([c.classes for c in clips], n, (), np.int64)),
        instance_ids=torch.from_numpy(_pad([c.instance_ids for c in clips], n, (), np.int64)),
        box_valid=torch.from_numpy(_pad([c.valid for c in clips], n, (), np.bool_)),
        box_mask=torch.from_numpy(mask),
        speed=torch.from_numpy(np.stack([c.ego.speed for c in clips]).astype(np.float32)),
        yaw_rate=torch.from_numpy(np.stack([c.ego.yaw_rate for c in clips]).astype(np.float32)),
        waypoints=torch.from_numpy(np.stack([c.ego.waypoints for c in clips]).astype(np.float32)),
        waypoint_mask=torch.from_numpy(np.stack([c.ego.waypoint_mask for c in clips])),
        labels=torch.from_numpy(np.stack([c.labels.as_array() for c in clips])),
        intrinsics=torch.from_numpy(np.stack([_matrix(c.camera.intrinsics, 3) for c in clips]).astype(np.float32)),
        extrinsics=torch.from_numpy(np.stack([_matrix(c.camera.extrinsics, 4) for c in clips]).astype(np.float32)),
        timestamps=torch.from_numpy(np.stack([c.source.timestamps for c in clips]).astype(np.float64)),
        sources=[c.source for c in clips],
        skipped=skipped,
    )


def _empty(skipped: int) -> ClipBatch:
    z = torch.zeros
    return ClipBatch(
        frames=z((0, 0, 3, 0, 0), dtype=torch.uint8), fps=z(0), boxes_2d=z((0, 0, 0, 4)),
        boxes_3d=z((0, 0, 0, 8, 3)), classes=z((0, 0, 0), dtype=torch.int64),
        instance_ids=z((0, 0, 0), dtype=torch.int64), box_valid=z((0, 0, 0), dtype=torch.bool),
        box_mask=z((0, 0, 0), dtype=torch.bool), speed=z((0, 0)), yaw_rate=z((0, 0)),
        waypoints=z((0, 0, 0, 2)), waypoint_mask=z((0, 0, 0), dtype=torch.bool),
        labels=z((0, 3), dtype=torch.int64), intrinsics=z((0, 3, 3)), extrinsics=z((0, 4, 4)),
        timestamps=z((0, 0), dtype=torch.float64), sources=[], skipped=skipped,
    )
