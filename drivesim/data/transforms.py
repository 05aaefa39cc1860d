"""Resize-to-cover then centre-crop, applied identically to frames, 2D boxes and intrinsics.

The transform is one affine map of continuous pixel coordinates (pixel *edges*: an image of width W
spans [0, W]): u' = sx * u - x0, v' = sy * v - y0, with sx, sy the exact ratios of the resized to
the source size (so any output size works, not only multiples of 8). cv2.resize samples with the
same half-pixel convention, so frames, boxes and intrinsics stay consistent to float precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ResizeCrop:
    """Maps a (src_h, src_w) image onto (out_h, out_w)."""

    src_h: int
    src_w: int
    out_h: int
    out_w: int

    def __post_init__(self) -> None:
        if min(self.src_h, self.src_w) <= 0:
            raise ValueError(f"source frame has zero size ({self.src_h}x{self.src_w})")
        if min(self.out_h, self.out_w) <= 0:
            raise ValueError(f"output size must be positive, got {self.out_h}x{self.out_w}")

    @property
    def resized(self) -> tuple[int, int]:
        """(h, w) after the cover-resize: both at least the output size, aspect kept up to rounding."""
        scale = max(self.out_h / self.src_h, self.out_w / self.src_w)
        return max(self.out_h, round(self.src_h * scale)), max(self.out_w, round(self.src_w * scale))

    @property
    def scale(self) -> tuple[float, float]:
        rh, rw = self.resized
        return rw / self.src_w, rh / self.src_h

    @property
    def offset(self) -> tuple[int, int]:
        rh, rw = self.resized
        return (rw - self.out_w) // 2, (rh - self.out_h) // 2

    def image(self, frame: np.ndarray) -> np.ndarray:
        """(src_h, src_w, C) uint8 -> (out_h, out_w, C) uint8."""
        if frame.shape[:2] != (self.src_h, self.src_w):
            raise ValueError(f"frame is {frame.shape[:2]}, transform expects {(self.src_h, self.src_w)}")
        rh, rw = self.resized
        if (rh, rw) != (self.src_h, self.src_w):
            shrinking = rh * rw < self.src_h * self.src_w
            frame = cv2.resize(frame, (rw, rh), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        x0, y0 = self.offset
        return np.ascontiguousarray(frame[y0 : y0 + self.out_h, x0 : x0 + self.out_w])

    def points(self, uv: np.ndarray) -> np.ndarray:
        """(..., 2) continuous pixel-edge coordinates, source -> output (not clipped)."""
        (sx, sy), (x0, y0) = self.scale, self.offset
        return np.asarray(uv, np.float64) * np.array([sx, sy]) - np.array([x0, y0])

    def boxes(self, xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) source boxes -> (clipped output boxes, keep mask of boxes with area left)."""
        xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
        out = self.points(xyxy.reshape(-1, 2)).reshape(-1, 4)
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.out_w)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.out_h)
        keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
        return out.astype(np.float32), keep

    def intrinsics(self, k: np.ndarray) -> np.ndarray:
        """K of the output image, in the same coordinates as the boxes: projecting a camera-frame
        point with it gives `points()` of its source projection (so boxes_3d project onto boxes_2d)."""
        (sx, sy), (x0, y0) = self.scale, self.offset
        affine = np.array([[sx, 0.0, -x0], [0.0, sy, -y0], [0.0, 0.0, 1.0]], dtype=np.float64)
        return affine @ np.asarray(k, np.float64)
