"""What the simulator returns each step: the new frames, their times, the boxes they were conditioned on, the ego."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from drivesim.scenario.timeline import BoxRecord


class SimulatorError(ValueError):
    """A bad simulator call or checkpoint: one line; the simulator's state is left as it was."""


@dataclass(frozen=True)
class EgoState:
    """The ego over an observation's T frames: speed (T,) m/s, yaw rate (T,) rad/s, pose (T, 3) x, y, heading
    (m, m, rad) in the episode's frame (the ego at frame 0: x forward, y left). Unknown speeds are NaN."""

    speed: np.ndarray
    yaw_rate: np.ndarray
    pose: np.ndarray


@dataclass(frozen=True)
class Observation:
    """New frames `(T, 3, H, W)` uint8 (like a clip's) at `times` (T,) seconds (output frames `frame_indices`),
    the 2D boxes each frame was conditioned on (ids and classes, xyxy in [0, 1]), and the ego state."""

    frames: torch.Tensor
    times: np.ndarray
    frame_indices: np.ndarray
    boxes: tuple[tuple[BoxRecord, ...], ...]
    ego: EgoState
    fps: float

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def boxes_2d(self, i: int) -> np.ndarray:
        """(N, 4) pixel xyxy boxes of frame i (the order of `boxes[i]`)."""
        h, w = self.frames.shape[-2:]
        scale = np.array([w, h, w, h], dtype=np.float64)
        return np.array([b.xyxy for b in self.boxes[i]], dtype=np.float64).reshape(-1, 4) * scale
