"""The forward camera: intrinsics from the field of view and its mounting on the ego (CAM_FRONT)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivesim.config.synth import CameraConfig
from drivesim.synth.geometry import CAM_TO_EGO_AXES, invert_transform, make_transform, rot_y

NEAR_M = 0.3


@dataclass(frozen=True)
class Camera:
    width: int
    height: int
    intrinsic: np.ndarray  # (3, 3)
    cam_to_ego: np.ndarray  # (4, 4): OpenCV camera frame -> ego frame

    @classmethod
    def from_config(cls, cfg: CameraConfig) -> Camera:
        if not (16 <= cfg.width <= 4096 and 16 <= cfg.height <= 4096):
            raise ValueError(f"camera.width/camera.height must be in 16..4096, got {cfg.width}x{cfg.height}")
        if not 10.0 <= cfg.horizontal_fov_deg <= 150.0:
            raise ValueError(f"camera.horizontal_fov_deg must be in [10, 150], got {cfg.horizontal_fov_deg}")
        focal = (cfg.width / 2.0) / np.tan(np.radians(cfg.horizontal_fov_deg) / 2.0)
        k = np.array([[focal, 0.0, cfg.width / 2.0], [0.0, focal, cfg.height / 2.0], [0.0, 0.0, 1.0]])
        # pitch_deg > 0 tilts the camera down: a rotation about the ego's +y axis.
        rotation = rot_y(np.radians(cfg.pitch_deg)) @ CAM_TO_EGO_AXES
        t = make_transform(rotation, np.array([cfg.mount_forward_m, 0.0, cfg.mount_height_m]))
        return cls(cfg.width, cfg.height, k, t)

    def world_to_cam(self, ego_to_world: np.ndarray) -> np.ndarray:
        return invert_transform(ego_to_world @ self.cam_to_ego)

    def project(self, pts_cam: np.ndarray) -> np.ndarray:
        """(..., 3) camera-frame points with z > 0 -> (..., 2) pixel coordinates."""
        uvw = pts_cam @ self.intrinsic.T
        return uvw[..., :2] / uvw[..., 2:3]


def clip_near(poly: np.ndarray, near: float = NEAR_M) -> np.ndarray:
    """Sutherland-Hodgman clip of a camera-frame polygon (K, 3) against the plane z = near."""
    out = []
    k = len(poly)
    for i in range(k):
        a, b = poly[i], poly[(i + 1) % k]
        a_in, b_in = a[2] >= near, b[2] >= near
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (near - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out) if out else np.zeros((0, 3))


def clip_rect(poly: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a convex 2D polygon (K, 2) to the rectangle [x0, x1] x [y0, y1].

    Exact (unlike clamping vertices, which bends the edges), so pixels inside the rectangle are unchanged."""
    for axis, bound, sign in ((0, x0, 1.0), (0, x1, -1.0), (1, y0, 1.0), (1, y1, -1.0)):
        k = len(poly)
        if k == 0:
            break
        out = []
        for i in range(k):
            a, b = poly[i], poly[(i + 1) % k]
            a_in, b_in = sign * (a[axis] - bound) >= 0, sign * (b[axis] - bound) >= 0
            if a_in:
                out.append(a)
            if a_in != b_in:
                out.append(a + (bound - a[axis]) / (b[axis] - a[axis]) * (b - a))
        poly = np.array(out) if out else np.zeros((0, 2))
    return poly
