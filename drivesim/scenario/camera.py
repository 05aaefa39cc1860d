"""The pinhole camera of a generated video and the projection of ego-frame 3D boxes to 2D boxes.

Conventions as in drivesim/data/README.md: ego frame x forward, y left, z up (origin on the ground
under the rear axle); OpenCV camera frame (x right, y down, z forward); pixels of the output frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from drivesim.scenario.spec import CameraSpec
from drivesim.synth.camera import clip_rect

NEAR_PLANE_M = 0.5
# Camera axes in the ego frame: camera x (right) = -ego y, camera y (down) = -ego z, camera z = ego x.
_CAM_AXES_IN_EGO = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
# The 12 edges of a box, by corner index (corners: 4 bottom then 4 top, counter-clockwise).
_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7))


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics in pixels of a `height` x `width` frame; `cam_to_ego` (4, 4) maps camera to ego points."""

    width: int
    height: int
    intrinsics: np.ndarray
    cam_to_ego: np.ndarray

    @classmethod
    def mounted(cls, width: int, height: int, horizontal_fov_deg: float = 70.0, mount_height_m: float = 1.5,
                mount_forward_m: float = 1.7, pitch_deg: float = 0.0) -> PinholeCamera:
        """A forward camera from its field of view and mounting (the synthetic world's default)."""
        focal = (width / 2.0) / np.tan(np.radians(horizontal_fov_deg) / 2.0)
        k = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
        return cls(width, height, k, mounting(mount_height_m, mount_forward_m, pitch_deg))

    def rescaled(self, height: int, width: int) -> PinholeCamera:
        """The same camera for frames resized to (height, width) (intrinsics scale with the pixels)."""
        k = self.intrinsics.copy()
        k[0] *= width / self.width
        k[1] *= height / self.height
        return PinholeCamera(width, height, k, self.cam_to_ego)

    def to_json(self) -> dict[str, Any]:
        return {"size": [self.height, self.width], "intrinsics": self.intrinsics.tolist(),
                "extrinsics": self.cam_to_ego.tolist()}

    def project(self, points_ego: np.ndarray) -> np.ndarray:
        """(N, 3) ego points in front of the camera -> (N, 2) pixels (no clipping)."""
        cam = self.ego_to_camera(points_ego)
        uvw = cam @ self.intrinsics.T
        return uvw[:, :2] / uvw[:, 2:3]

    def ego_to_camera(self, points_ego: np.ndarray) -> np.ndarray:
        inv = np.linalg.inv(self.cam_to_ego)
        return points_ego @ inv[:3, :3].T + inv[:3, 3]


def mounting(height_m: float, forward_m: float, pitch_deg: float = 0.0) -> np.ndarray:
    """cam_to_ego of a forward camera `forward_m` ahead of the origin, `height_m` up, pitched down by `pitch_deg`."""
    a = np.radians(pitch_deg)
    pitch = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
    t = np.eye(4)
    t[:3, :3] = pitch @ _CAM_AXES_IN_EGO
    t[:3, 3] = [forward_m, 0.0, height_m]
    return t


def resolve_camera(spec: CameraSpec | None, export_camera: Mapping[str, Any] | None,
                   export_size: Sequence[int] | None, height: int, width: int) -> PinholeCamera:
    """The output frame's camera: the scenario's, else the export data's, else the synthetic default."""
    if spec is not None:
        extr = np.asarray(spec.extrinsics, dtype=np.float64) if spec.extrinsics is not None else \
            mounting(spec.mount_height_m, spec.mount_forward_m, spec.pitch_deg)
        if spec.intrinsics is not None and spec.size is not None:
            k = np.asarray(spec.intrinsics, dtype=np.float64)
            return PinholeCamera(spec.size[1], spec.size[0], k, extr).rescaled(height, width)
        cam = PinholeCamera.mounted(width, height, float(spec.horizontal_fov_deg or 70.0))
        return PinholeCamera(width, height, cam.intrinsics, extr)
    if export_camera and export_camera.get("intrinsics") is not None and export_size:
        k = np.asarray(export_camera["intrinsics"], dtype=np.float64)
        raw = export_camera.get("extrinsics")
        extr = np.asarray(raw, dtype=np.float64) if raw is not None else mounting(1.5, 1.7)
        return PinholeCamera(int(export_size[1]), int(export_size[0]), k, extr).rescaled(height, width)
    return PinholeCamera.mounted(width, height)


def box_corners(center_xy: Sequence[float], yaw: float, size: Sequence[float], z: float = 0.0) -> np.ndarray:
    """(8, 3) ego-frame corners of a box whose bottom face is at height z: bottom face then top face."""
    length, width, height = size
    local = np.array([[length / 2, width / 2], [-length / 2, width / 2], [-length / 2, -width / 2],
                      [length / 2, -width / 2]])
    c, s = np.cos(yaw), np.sin(yaw)
    xy = local @ np.array([[c, s], [-s, c]]) + np.asarray(center_xy, dtype=np.float64)
    bottom = np.concatenate([xy, np.full((4, 1), float(z))], axis=1)
    top = np.concatenate([xy, np.full((4, 1), float(z) + float(height))], axis=1)
    return np.concatenate([bottom, top])


def boxes_corners(centers_xy: np.ndarray, yaws: np.ndarray, sizes: np.ndarray, zs: np.ndarray) -> np.ndarray:
    """`box_corners` of B boxes in one array pass, (B, 8, 3) (centres (B, 2), yaws and zs (B,), sizes (B, 3)):
    the box warp asks for every agent's corners in every warp, and one call a box was most of that cost."""
    signs = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])  # box_corners' order
    local = signs[None] * (sizes[:, None, :2] / 2)  # (B, 4, 2)
    c, s = np.cos(yaws)[:, None], np.sin(yaws)[:, None]
    xy = np.stack([local[..., 0] * c - local[..., 1] * s, local[..., 0] * s + local[..., 1] * c], axis=-1)
    xy = xy + centers_xy[:, None, :]
    bottom = np.broadcast_to(np.asarray(zs, dtype=np.float64)[:, None, None], (len(xy), 4, 1))
    top = bottom + sizes[:, None, 2:3]
    return np.concatenate([np.concatenate([xy, bottom], -1), np.concatenate([xy, top], -1)], axis=1)


def project_box(camera: PinholeCamera, corners_ego: np.ndarray, near: float = NEAR_PLANE_M) -> np.ndarray | None:
    """The 2D box (x0, y0, x1, y1) in pixels, clipped to the frame, of a box given by its 8 ego corners.

    Edges crossing the near plane are cut there, so a box partly behind the camera keeps its visible
    part; None when the box lies wholly behind the near plane or outside the frame.
    """
    cam = camera.ego_to_camera(corners_ego)
    pts = [p for p in cam if p[2] >= near]
    for i, j in _EDGES:
        a, b = cam[i], cam[j]
        if (a[2] >= near) != (b[2] >= near):
            pts.append(a + (near - a[2]) / (b[2] - a[2]) * (b - a))
    if not pts:
        return None
    uvw = np.asarray(pts) @ camera.intrinsics.T
    uv = uvw[:, :2] / uvw[:, 2:3]
    # The box's outline (convex hull) cut to the frame, as the datasets' 2D boxes are made.
    order = cv2.convexHull(uv.astype(np.float32).reshape(-1, 1, 2), returnPoints=False).reshape(-1)
    hull = uv[order]  # the hull's vertices at full precision
    inside = clip_rect(hull, 0.0, 0.0, float(camera.width), float(camera.height))
    if len(inside) < 3:
        return None
    x0, y0 = inside.min(axis=0)
    x1, y1 = inside.max(axis=0)
    if x1 - x0 <= 1e-9 or y1 - y0 <= 1e-9:
        return None
    return np.array([float(x0), float(y0), float(x1), float(y1)])
