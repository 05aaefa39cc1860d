"""A motion prior for the prediction model: the last given key warped by the commanded ego motion.

Why: the tiny prediction model barely reads its context (README, sessions 7-10), so the keys it makes
neither continue the scene nor move at the commanded speed (ego-speed MAE 5.6 m/s where the drive does
7). Starting its sampler part-way down the schedule (SDEdit, `sampler.init_strength`) from the last key
moved by the ego motion of the timeline gives each new key the drive's motion; the model repaints what
a warp cannot know (what comes into view).

The scene geometry is the simplest one of a road: the ground plane, optionally a vertical wall on either
side at `walls_m` (kerbside buildings and trees), everything else at infinity (it only turns with the
ego); with `boxes` (`sampler.warp_boxes`), the agents' 3D boxes of the scenario too, each moved by its own
track (box_warp.py). The warp maps each target pixel to its source in the last key's decoded frame through
the camera of the timeline (what that frame did not see, below its bottom edge, repeats the border); the
autoencoder encodes the warped frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from drivesim.pipelines.box_warp import MovingBox, box_hits, moving_boxes, rotation, unoccluded
from drivesim.scenario.camera import PinholeCamera
from drivesim.scenario.timeline import Timeline

INTEGRATION_STEP_S = 1.0 / 24.0  # constant-turn integration of speed and yaw rate between key times


def ego_motion(timeline: Timeline, start: float, stop: float) -> np.ndarray | None:
    """The ego pose at `stop` (before or after `start`) in the ego frame at `start`, as (x, y, heading) (x
    forward, y left; radians): the timeline's speed and yaw rate integrated at the midpoints of steps of
    ~1/24 s. An unknown yaw rate where the speed is known counts as 0 (straight on); None where the speed
    is unknown anywhere in the interval."""
    n = max(1, math.ceil(abs(stop - start) / INTEGRATION_STEP_S - 1e-9))  # stop < start: backwards
    dt = (stop - start) / n
    x = y = heading = 0.0
    for i in range(n):
        v, w = timeline.ego_at(start + (i + 0.5) * dt)
        if math.isnan(v):
            return None
        w = 0.0 if math.isnan(w) else w
        mid = heading + 0.5 * w * dt
        x += v * math.cos(mid) * dt
        y += v * math.sin(mid) * dt
        heading += w * dt
    return np.array([x, y, heading])


def source_grid(camera: PinholeCamera, pose: np.ndarray, size: tuple[int, int],
                walls_m: float | None = None, boxes: Sequence[MovingBox] = (), occlusion: bool = True) -> Tensor:
    """The `grid_sample` grid (1, h, w, 2) that warps an (h, w) picture of the camera's frame seen at the ego
    origin to the frame seen from `pose` (x, y, heading), over the ground plane (+ side walls, + the agents'
    `boxes`, each moved by its own track; `occlusion`: road a box hid is taken from just before it, sky from
    just above it), the
    rest at infinity (pixel centres at i + 0.5, `align_corners=False`)."""
    h, w = size
    sx, sy = camera.width / w, camera.height / h
    u = (np.arange(w) + 0.5) * sx  # cell centres in pixel coordinates of the camera's frame
    v = (np.arange(h) + 0.5) * sy
    uu, vv = np.meshgrid(u, v)
    rays_cam = np.stack([uu, vv, np.ones_like(uu)], axis=-1) @ np.linalg.inv(camera.intrinsics).T
    turn = rotation(float(pose[2]))
    cam_to_old = turn @ camera.cam_to_ego[:3, :3]  # new camera axes in the old ego frame
    origin = turn @ camera.cam_to_ego[:3, 3] + np.array([pose[0], pose[1], 0.0])
    dirs = rays_cam @ cam_to_old.T  # (h, w, 3) in the old ego frame
    dist = np.full(dirs.shape[:2], np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        planes = [(2, 0.0)] + ([(1, walls_m), (1, -walls_m)] if walls_m else [])
        for axis, level in planes:
            t = (level - origin[axis]) / dirs[..., axis]
            dist = np.where((t > 1e-6) & (t < dist), t, dist)
    owner, on_box = box_hits(camera, u, v, origin, dirs, dist, pose, boxes)
    boxed = owner >= 0
    hit = np.isfinite(dist) | boxed
    # Homogeneous points in the old ego frame: a hit is (point, 1), a ray that hits nothing its direction (d, 0).
    points = np.where(hit[..., None], origin + dirs * np.where(np.isfinite(dist), dist, 0.0)[..., None], dirs)
    points = np.where(boxed[..., None], on_box, points)
    px, py, ahead = _pixels_in_picture(camera, points, hit)
    if boxes and occlusion:
        seen = unoccluded(camera, points, hit, np.stack([px, py], axis=-1), owner, boxes, ahead)
        if seen is not points:
            px, py, ahead = _pixels_in_picture(camera, seen, hit)
    # Ground behind the old camera (a warp back in time, more than a few metres): the nearest thing that frame
    # saw is its bottom edge, in the same column.
    px, py = np.where(ahead, px, uu), np.where(ahead, py, 4.0 * camera.height)
    grid = np.stack([2.0 * px / camera.width - 1.0, 2.0 * py / camera.height - 1.0], axis=-1)
    return torch.from_numpy(np.clip(grid, -4.0, 4.0)).float()[None]


def _pixels_in_picture(camera: PinholeCamera, points: np.ndarray, hit: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Homogeneous old-ego points (`hit`: a point, else a direction) -> the picture's pixels (x, y) and
    whether they lie ahead of its camera."""
    to_cam = np.linalg.inv(camera.cam_to_ego)
    cam = points @ to_cam[:3, :3].T + hit[..., None] * to_cam[:3, 3]
    ahead = cam[..., 2] > 1e-3
    src = cam @ camera.intrinsics.T
    depth = np.where(ahead, cam[..., 2], 1.0)
    return src[..., 0] / depth, src[..., 1] / depth, ahead


def warp(image: Tensor, grid: Tensor) -> Tensor:
    """`image` (N, C, H, W) resampled on `grid` (1, H, W, 2); outside the frame repeats the border.
    Bilinear: bicubic, against the bilinear blur compounding key after key, changed nothing measurable
    (session 22, validation FVD-synth mean 84.1 vs 83.5)."""
    return F.grid_sample(image, grid.to(image.device, image.dtype).expand(image.shape[0], -1, -1, -1),
                         mode="bilinear", padding_mode="border", align_corners=False)


def anchor_colours(frame: Tensor, reference: Tensor, strength: float, bands: int = 1) -> Tensor:
    """`frame` (N, 3, H, W) with each channel's mean and standard deviation moved `strength` of the way to
    `reference`'s (1, 3, H, W), measured in each of `bands` horizontal bands of rows (a dash-cam picture is sky
    over horizon over road: one global correction pulls the road towards the sky's statistics). Each band's
    correction is a per-channel gain and offset; between band centres they are interpolated row by row, so
    no seam appears at a band's edge (a seam stays put while the picture moves: broken motion). Nothing more
    local than a band."""
    if bands < 1 or bands > frame.shape[-2]:
        raise ValueError(f"colour anchor bands must lie in [1, {frame.shape[-2]}] (the frame's rows), got {bands}")
    gains, offsets = [], []
    for part, ref in zip(frame.tensor_split(bands, dim=-2), reference.tensor_split(bands, dim=-2)):
        mean, std = part.mean(dim=(-2, -1)), part.std(dim=(-2, -1))
        target_mean = mean + strength * (ref.mean(dim=(-2, -1)) - mean)
        target_std = std + strength * (ref.std(dim=(-2, -1)) - std)
        gain = target_std / std.clamp_min(1e-4)
        gains.append(gain)
        offsets.append(target_mean - gain * mean)
    rows = frame.shape[-2]
    # (N, C, bands) -> (N, C, rows): linear between band centres, constant beyond the outer ones.
    gain = F.interpolate(torch.stack(gains, -1), size=rows, mode="linear", align_corners=False)
    offset = F.interpolate(torch.stack(offsets, -1), size=rows, mode="linear", align_corners=False)
    return (frame * gain[..., None] + offset[..., None]).clamp(-1.0, 1.0)


@dataclass(frozen=True)
class Warped:
    """A warped frame and where it is known: `seen` (1, 1, H, W) is 1 where the source point lay inside the
    old picture, 0 where the warp repeated its border (what that frame never saw). Road or sky that a box hid
    from the old picture, taken from beside the box (`warp_boxes`), lies inside it and counts as seen."""

    frame: Tensor
    seen: Tensor


def ego_warps(frame: Tensor, timeline: Timeline, start: float, times: Sequence[float],
              walls_m: float | None = None, boxes: bool = False) -> list[Warped | None]:
    """`frame` (1, 3, H, W), seen at scenario time `start`, warped to each of `times` (None: ego unknown).

    Pixels, not latents: a stretched latent decodes to colour blotches (measured on the demo scene), a
    stretched picture encodes to a latent of the autoencoder's own kind."""
    size = (int(frame.shape[-2]), int(frame.shape[-1]))
    out: list[Warped | None] = []
    for t in times:
        pose = ego_motion(timeline, start, t)
        if pose is None:
            out.append(None)
            continue
        moving = moving_boxes(timeline, start, t) if boxes else []
        grid = source_grid(timeline.camera, pose, size, walls_m, moving)
        seen = (grid.abs() <= 1.0).all(dim=-1)[:, None].to(frame.device, frame.dtype)
        out.append(Warped(warp(frame, grid), seen))
    return out


def ego_warped_frames(frame: Tensor, timeline: Timeline, start: float, times: Sequence[float],
                      walls_m: float | None = None, boxes: bool = False) -> list[Tensor | None]:
    """`ego_warps`' frames alone."""
    return [None if w is None else w.frame for w in ego_warps(frame, timeline, start, times, walls_m, boxes)]


def blend_warps(earlier: Warped, later: Warped, weight: float) -> Tensor:
    """A frame between two keys from both keys warped to its time: `weight` (0: all `earlier`, 1: all `later`)
    of each pixel from the later key where both warps saw it, all of it from the one that saw it where only
    one did, the plain blend where neither did. Why: driving forward, the later key warped back in time shows
    a zoomed-out view whose rim its own picture never held (the bottom rows repeated); the plain blend mixed
    that rim into every in-between frame, which held the motion back until the next key jumped it (road flow
    per frame on rendered keys, seed 500: 3.0 / 3.2 / 3.9 / 4.9 px for an even 2.9; README session 23)."""
    a, z = (1.0 - weight) * earlier.seen, weight * later.seen
    total = a + z
    plain = (1.0 - weight) * earlier.frame + weight * later.frame
    mixed = (a * earlier.frame + z * later.frame) / total.clamp_min(1e-6)
    return torch.where(total > 0, mixed, plain)


@dataclass(frozen=True)
class BetweenFrame:
    """An in-between frame to guess: its keys (indices into the decoded keys), their times, its own time and
    the later key's blend weight."""

    earlier: int
    later: int
    earlier_time: float
    later_time: float
    time: float
    weight: float


def warped_between(keys: Tensor, timeline: Timeline, wanted: Sequence[BetweenFrame], walls_m: float | None = None,
                   boxes: bool = False) -> list[Tensor | None]:
    """Each wanted frame (1, 3, H, W) from its two `keys` (K, 3, H, W) warped to its time and blended
    (`blend_warps`); None where the ego motion is unknown. Two warps of ~30 ms each (numpy, the agents' boxes
    included) are most of the interpolation stage's time; threads do not help - they are many small array
    operations that hold the GIL (2 threads: x0.92-1.03, benchmarks/bench_between_guess.py)."""
    def guess(w: BetweenFrame) -> Tensor | None:
        a = ego_warps(keys[w.earlier][None], timeline, w.earlier_time, [w.time], walls_m, boxes)[0]
        z = ego_warps(keys[w.later][None], timeline, w.later_time, [w.time], walls_m, boxes)[0]
        return None if a is None or z is None else blend_warps(a, z, w.weight)

    return [guess(w) for w in wanted]
