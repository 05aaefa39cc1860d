"""The agents' boxes in the ego warp (`sampler.warp_boxes`): each agent a solid box moved by its own track.

Why: over the ground plane alone an agent standing on the road is smeared along its rays into a long
streak, and the streaks accumulated over a minute's rollout (session 18). With the scenario's 3D boxes each
target pixel that sees an agent is sampled where that point of the agent was in the picture, and road that
an agent hid in the picture is taken from just before the agent's footprint, and sky it hid from just above
it, not from the agent itself (a ghost).
Only boxes in view are tested, each on the pixels its 2D box covers: ~1 ms a box at 128x256.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from drivesim.scenario.camera import NEAR_PLANE_M, PinholeCamera, boxes_corners, project_box
from drivesim.scenario.timeline import Timeline

STEP_BACK_M = 0.5  # hidden road is taken this far before the box that hid it
SKY_M = 1e4  # a ray that meets nothing is tested as a point this far away
SKY_MARGIN_M = 0.3  # hidden sky is taken this far above the box that hid it


@dataclass(frozen=True)
class MovingBox:
    """An agent's box at the time warped to (`target`, in the ego frame then) and at the time of the picture
    (`source`, in the ego frame then): (x, y, yaw, z of the bottom face) each; size (length, width, height)."""

    size: tuple[float, float, float]
    target: tuple[float, float, float, float]
    source: tuple[float, float, float, float]


def moving_boxes(timeline: Timeline, start: float, stop: float) -> list[MovingBox]:
    """The scenario's agents with a 3D track that covers both `start` (the picture) and `stop` (the warp's
    time); an agent known at only one of them has nothing to carry over (the ground behind it is warped)."""
    out = []
    for agent in timeline.scenario.agents:
        if agent.track is None or not (agent.track.covers(start) and agent.track.covers(stop)):
            continue
        x, y, yaw, z = (float(v) for v in agent.track.at(stop))
        sx, sy, syaw, sz = (float(v) for v in agent.track.at(start))
        length, width, height = (float(v) for v in agent.size)
        out.append(MovingBox((length, width, height), (x, y, yaw, z), (sx, sy, syaw, sz)))
    return out


def rotation(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _slab(origin: np.ndarray, dirs: np.ndarray, pose: Sequence[float], size: Sequence[float]
          ) -> tuple[np.ndarray, np.ndarray]:
    """Ray-box intersection (slab test) of rays `origin` + t `dirs` (origin (3,) or one per ray) with the box
    at `pose` (x, y, yaw, z of its bottom face) of `size`: (near t, whether the ray meets the box at t > 0)."""
    x, y, yaw, z = pose
    to_box = rotation(yaw).T
    half = np.array([size[0] / 2, size[1] / 2, size[2] / 2])
    o = (origin - np.array([x, y, z])) @ to_box.T - np.array([0.0, 0.0, half[2]])  # box-centred
    d = dirs @ to_box.T
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - o) / d, (half - o) / d
        near = np.nanmax(np.minimum(t1, t2), axis=-1)
        far = np.nanmin(np.maximum(t1, t2), axis=-1)
    return near, far >= np.maximum(near, 1e-6)


def _carry(point: np.ndarray, pose: Sequence[float], to_pose: Sequence[float]) -> np.ndarray:
    """Points of the box at `pose` moved rigidly with it to `to_pose`."""
    x, y, yaw, z = pose
    local = (point - np.array([x, y, z])) @ rotation(yaw)
    x, y, yaw, z = to_pose
    return local @ rotation(yaw).T + np.array([x, y, z])


def _in_view(camera: PinholeCamera, to_cam: np.ndarray, poses: Sequence[Sequence[float]],
             sizes: Sequence[Sequence[float]]) -> list[np.ndarray | None]:
    """For each box, a pixel rectangle (x0, y0, x1, y1) in the frame that holds its picture (None: out of
    view). A box wholly ahead of the near plane (most) takes its corners' extent, cut to the frame, all boxes
    in one array pass (one call per box was a quarter of a warp's time); one crossing it the exact outline
    of `project_box` (~0.5 ms)."""
    if not len(poses):
        return []
    pose = np.asarray(poses, dtype=np.float64)  # (B, 4): x, y, yaw, z
    corners = boxes_corners(pose[:, :2], pose[:, 2], np.asarray(sizes, dtype=np.float64), pose[:, 3])
    cam = corners @ to_cam[:3, :3].T + to_cam[:3, 3]
    ahead = cam[..., 2] >= NEAR_PLANE_M
    uvw = cam @ camera.intrinsics.T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = uvw[..., :2] / uvw[..., 2:3]
    lo, hi = uv.min(axis=1), uv.max(axis=1)
    out: list[np.ndarray | None] = []
    for b in range(len(pose)):
        if not ahead[b].any():
            out.append(None)
        elif not ahead[b].all():
            out.append(project_box(camera, corners[b]))
        elif hi[b, 0] <= 0.0 or hi[b, 1] <= 0.0 or lo[b, 0] >= camera.width or lo[b, 1] >= camera.height:
            out.append(None)
        else:
            out.append(np.array([max(lo[b, 0], 0.0), max(lo[b, 1], 0.0), min(hi[b, 0], camera.width),
                                 min(hi[b, 1], camera.height)]))
    return out


def _covered(xyxy: np.ndarray | None, u: np.ndarray, v: np.ndarray) -> tuple[slice, slice] | None:
    """The rows and columns of cell centres (u, v: the camera's pixels) that the box's 2D box `xyxy` covers,
    plus a cell; None when the box is out of view."""
    if xyxy is None:
        return None
    du, dv = (u[1] - u[0] if len(u) > 1 else 1.0), (v[1] - v[0] if len(v) > 1 else 1.0)
    cols = np.flatnonzero((u >= xyxy[0] - du) & (u <= xyxy[2] + du))
    rows = np.flatnonzero((v >= xyxy[1] - dv) & (v <= xyxy[3] + dv))
    if not len(cols) or not len(rows):
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def box_hits(camera: PinholeCamera, u: np.ndarray, v: np.ndarray, origin: np.ndarray, dirs: np.ndarray,
             dist: np.ndarray, pose: np.ndarray, boxes: Sequence[MovingBox]) -> tuple[np.ndarray, np.ndarray]:
    """Which box each target ray (cells at u, v; origin and dirs in the old ego frame) meets first nearer than
    `dist` (-1: none), and the hit point carried to that box's pose in the picture (old ego frame; NaN
    where no box is hit). `pose`: the target ego pose in the old ego frame (x, y, heading)."""
    dist = dist.copy()
    owner = np.full(dist.shape, -1)
    points = np.full(dirs.shape, np.nan)
    turn = rotation(float(pose[2]))
    to_cam = np.linalg.inv(camera.cam_to_ego)
    views = _in_view(camera, to_cam, [box.target for box in boxes], [box.size for box in boxes])
    for b, box in enumerate(boxes):
        cells = _covered(views[b], u, v)  # the target pose is in the new ego frame
        if cells is None:
            continue
        x, y, yaw, z = box.target
        cx, cy, cz = turn @ np.array([x, y, z]) + np.array([pose[0], pose[1], 0.0])
        target = (cx, cy, yaw + float(pose[2]), cz)  # the same pose in the old ego frame
        near, meets = _slab(origin, dirs[cells], target, box.size)
        t = np.maximum(near, 1e-6)  # a camera inside a box sees its inside at once
        hit = meets & (t < dist[cells])
        carried = _carry(origin + dirs[cells] * np.where(hit, t, 0.0)[..., None], target, box.source)
        dist[cells] = np.where(hit, t, dist[cells])
        owner[cells] = np.where(hit, b, owner[cells])
        points[cells] = np.where(hit[..., None], carried, points[cells])
    return owner, points


def unoccluded(camera: PinholeCamera, points: np.ndarray, hit: np.ndarray, where: np.ndarray, owner: np.ndarray,
               boxes: Sequence[MovingBox], candidates: np.ndarray) -> np.ndarray:
    """`points` (homogeneous, old ego frame: `hit` a point, else a direction to the sky; only the `candidates`
    are tested; `where`: their (x, y) pixels in the picture; `owner`: the box each lies on, -1: none) that a
    box hides from the picture's camera, replaced by what most likely looked the same: road by the ground
    just before the nearest such box's footprint (a box lower than the camera hides road through its top
    face: the road before its top face would still be under the box), sky by the sky just above the box.
    What was behind a box is unknown, so a box that moved away leaves road and sky, not a copy of itself."""
    eye = camera.cam_to_ego[:3, 3]
    to_cam = np.linalg.inv(camera.cam_to_ego)
    # Sky is tested as a point far away along its direction: the same slab test then covers both.
    far = np.where(hit[..., None], points, eye + SKY_M * points)
    flat_far, flat_owner = far.reshape(-1, 3), owner.reshape(-1)
    index = np.flatnonzero(candidates.reshape(-1))
    wx, wy = where[..., 0].reshape(-1)[index], where[..., 1].reshape(-1)[index]
    order = np.argsort(wy, kind="stable")  # candidates by row: a box's rows are one slice of them
    index, wx, wy = index[order], wx[order], wy[order]
    best = np.full(flat_owner.shape, np.inf)
    hider = np.full(flat_owner.shape, -1)
    views = _in_view(camera, to_cam, [box.source for box in boxes], [box.size for box in boxes])
    for b, box in enumerate(boxes):
        xyxy = views[b]
        if xyxy is None:
            continue
        lo, hi = np.searchsorted(wy, [xyxy[1] - 1.0, xyxy[3] + 1.0])
        pick = index[lo:hi][(wx[lo:hi] >= xyxy[0] - 1.0) & (wx[lo:hi] <= xyxy[2] + 1.0)]
        pick = pick[flat_owner[pick] != b]
        if not len(pick):
            continue
        near, meets = _slab(eye, flat_far[pick] - eye, box.source, box.size)
        hidden = meets & (near > 1e-6) & (near < 1.0 - 1e-3) & (near < best[pick])
        best[pick[hidden]] = near[hidden]
        hider[pick[hidden]] = b
    if not (hider >= 0).any():
        return points
    out = points.reshape(-1, 3).copy()
    flat_hit = hit.reshape(-1)
    for b in np.unique(hider[hider >= 0]):
        box = boxes[int(b)]
        mine = np.flatnonzero(hider == b)
        road, sky = mine[flat_hit[mine]], mine[~flat_hit[mine]]
        if len(road):
            out[road] = _road_before(eye, flat_far[road], box)
        if len(sky):
            out[sky] = _sky_above(eye, flat_far[sky], box)
    return out.reshape(points.shape)


def _footprint_entry(eye: np.ndarray, points: np.ndarray, box: MovingBox) -> np.ndarray:
    """Where the ground tracks of the rays eye -> `points` enter the box's footprint (x-y), as shares of each
    ray's horizontal run (clipped at 0: an eye above the footprint)."""
    x, y, yaw, _ = box.source
    run = points - eye
    run[:, 2] = 0.0
    local = run @ rotation(yaw)  # box axes
    o = (eye - np.array([x, y, 0.0])) @ rotation(yaw)
    half = np.array([box.size[0] / 2, box.size[1] / 2])
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (-half - o[:2]) / local[:, :2], (half - o[:2]) / local[:, :2]
        enter = np.nanmax(np.minimum(t1, t2), axis=-1)
    return np.clip(np.nan_to_num(enter, nan=0.0), 0.0, None)


def _road_before(eye: np.ndarray, points: np.ndarray, box: MovingBox) -> np.ndarray:
    """Ground points STEP_BACK_M before the box's footprint on the ground tracks of the rays to `points`."""
    enter = _footprint_entry(eye, points, box)
    run = points[:, :2] - eye[:2]
    length = np.maximum(np.linalg.norm(run, axis=-1), 1e-9)
    reach = np.maximum(enter * length - STEP_BACK_M, 0.0)
    ground = np.zeros_like(points)
    ground[:, :2] = eye[:2] + run / length[:, None] * reach[:, None]
    return ground


def _sky_above(eye: np.ndarray, points: np.ndarray, box: MovingBox) -> np.ndarray:
    """Directions to the sky just above the box, in the same azimuth as the hidden sky `points`: over its top
    edge where the ray enters its footprint (a box that hides sky is taller than the camera, so its near top
    edge is its outline), plus a margin."""
    enter = _footprint_entry(eye, points, box)
    run = points[:, :2] - eye[:2]
    length = np.maximum(np.linalg.norm(run, axis=-1), 1e-9)
    out = np.empty_like(points)
    out[:, :2] = run / length[:, None] * np.maximum(enter * length, 1e-3)[:, None]
    out[:, 2] = box.source[3] + box.size[2] + SKY_MARGIN_M - eye[2]
    return out
