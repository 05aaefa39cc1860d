"""A dataset clip -> a `Scenario` (replay): agent tracks from its 3D boxes, ego motion, labels, camera.

Scenario time 0 is `time_zero` seconds into the clip (clip frame k sits at `clip_times[k] - time_zero`).
Each agent's track is keyed at the frames it appears in (bottom-face centre, heading and bottom
height in the ego frame, through the camera extrinsics); its size is the mean over those frames.
Clips with 2D boxes only (video sidecars) give agents with 2D tracks (`Agent.image_track`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from drivesim.scenario.spec import Agent, CameraSpec, Keys, Scenario
from drivesim.vocab import CLASSES, LABEL_VOCAB


def box_pose(corners_cam: np.ndarray, cam_to_ego: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(8, 3) camera-frame corners (nuScenes order) -> ((x, y, yaw, z_bottom) in the ego frame, (l, w, h))."""
    ego = corners_cam @ cam_to_ego[:3, :3].T + cam_to_ego[:3, 3]
    front, rear = ego[:4].mean(axis=0), ego[4:].mean(axis=0)
    centre = ego.mean(axis=0)
    yaw = float(np.arctan2(front[1] - rear[1], front[0] - rear[0]))
    size = np.array([np.linalg.norm(front - rear), np.linalg.norm(ego[0] - ego[1]), np.linalg.norm(ego[0] - ego[3])])
    return np.array([centre[0], centre[1], yaw, float(ego[:, 2].min())]), size


def scenario_from_clip(clip: Any, time_zero: float, name: str, source: str,
                       instance_name: Callable[[int], str] = str) -> Scenario:
    """Build the replay scenario of a `drivesim.data.Clip` with 3D boxes and camera extrinsics."""
    times = np.asarray(clip.source.timestamps, dtype=np.float64) - time_zero
    has_3d = clip.camera.extrinsics is not None and any(np.abs(b).sum() > 0 for b in clip.boxes_3d if len(b))
    agents = _agents_3d(clip, times, instance_name) if has_3d else _agents_2d(clip, times, instance_name)
    extr = np.asarray(clip.camera.extrinsics, dtype=np.float64) if clip.camera.extrinsics is not None else None
    speed = _ego_keys(times, clip.ego.speed)
    yaw = _ego_keys(times, clip.ego.yaw_rate)
    labels = {n: LABEL_VOCAB[n][int(i)] for n, i in zip(LABEL_VOCAB, _label_indices(clip.labels)) if int(i) > 0}
    camera = None
    if clip.camera.intrinsics is not None:
        h, w = int(clip.frames.shape[-2]), int(clip.frames.shape[-1])
        camera = CameraSpec(intrinsics=tuple(tuple(float(v) for v in row) for row in clip.camera.intrinsics),
                            size=(h, w),
                            extrinsics=tuple(tuple(float(v) for v in row) for row in extr) if extr is not None else None)
    text = getattr(clip.source, "description", "") or None
    return Scenario(name=name, seconds=None, labels=labels, text=text, speed=speed, yaw_rate=yaw,
                    agents=tuple(agents), camera=camera, start=None, source=source)


def _agents_3d(clip: Any, times: np.ndarray, instance_name: Callable[[int], str]) -> list[Agent]:
    extr = np.asarray(clip.camera.extrinsics, dtype=np.float64)
    tracks: dict[int, list[tuple[float, np.ndarray, np.ndarray, int]]] = {}
    for k, t in enumerate(times):
        for corners, cls, inst in zip(clip.boxes_3d[k], clip.classes[k], clip.instance_ids[k]):
            pose, size = box_pose(np.asarray(corners, dtype=np.float64), extr)
            tracks.setdefault(int(inst), []).append((float(t), pose, size, int(cls)))
    agents = []
    for inst, rows in sorted(tracks.items()):
        poses = np.stack([r[1] for r in rows])
        poses[:, 2] = np.unwrap(poses[:, 2])
        size = np.stack([r[2] for r in rows]).mean(axis=0)
        agents.append(Agent(id=instance_name(inst), cls=CLASSES[rows[0][3]],
                            size=(float(size[0]), float(size[1]), float(size[2])),
                            track=Keys(np.array([r[0] for r in rows]), poses)))
    return agents


def _agents_2d(clip: Any, times: np.ndarray, instance_name: Callable[[int], str]) -> list[Agent]:
    """Agents from 2D boxes only: their boxes, normalised, interpolated between the frames they appear in."""
    h, w = float(clip.frames.shape[-2]), float(clip.frames.shape[-1])
    scale = np.array([w, h, w, h])
    tracks: dict[int, list[tuple[float, np.ndarray, int]]] = {}
    for k, t in enumerate(times):
        for box, cls, inst in zip(clip.boxes_2d[k], clip.classes[k], clip.instance_ids[k]):
            tracks.setdefault(int(inst), []).append((float(t), np.asarray(box, dtype=np.float64) / scale, int(cls)))
    return [Agent(id=instance_name(inst), cls=CLASSES[rows[0][2]], size=(0.0, 0.0, 0.0), track=None,
                  image_track=Keys(np.array([r[0] for r in rows]), np.stack([r[1] for r in rows])))
            for inst, rows in sorted(tracks.items())]


def _ego_keys(times: np.ndarray, values: Sequence[float] | np.ndarray) -> Keys | None:
    v = np.asarray(values, dtype=np.float64)
    known = np.isfinite(v)
    if not known.any():
        return None
    return Keys(times[known].copy(), v[known][:, None].copy())


def _label_indices(labels: Any) -> list[int]:
    return [int(getattr(labels, name)) for name in LABEL_VOCAB]
