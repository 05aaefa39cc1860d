"""Painter's-algorithm rasteriser: world quads -> camera -> near-plane clip -> cv2.fillConvexPoly.

Every polygon is filled with its own id into one id buffer; a per-frame palette turns ids into colours
and a lookup turns them into instance indices, so the image and the instance mask come from the very
same polygons. Order: sky/far ground, the ground layer far-to-near, then objects far-to-near (within an
object parts by layer then distance, then its decals).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from drivesim.synth.camera import NEAR_M, Camera, clip_near, clip_rect
from drivesim.synth.geometry import make_transform, yaw_pitch_matrix
from drivesim.synth.ground import ground_quads
from drivesim.synth.scene import Scene
from drivesim.synth.shading import Shader
from drivesim.synth.solids import SolidSet

SHIFT = 4  # sub-pixel bits for cv2 polygon filling
_SCALE = float(1 << SHIFT)
# cv2.fillConvexPoly fills every pixel whose centre lies within ~0.5 px of the polygon. Filling at twice
# the resolution and keeping every other pixel (hi-res pixel 2i is centred on output pixel i) samples
# output pixel centres with only ~0.25 px of that growth, so masks hug the projected geometry.
SS = 2
VIEW_AHEAD_M, VIEW_BEHIND_M = 200.0, 15.0
LIMIT_PX = 4096.0  # polygons reaching beyond this are clipped to the image (plus GUARD_PX) before filling
GUARD_PX = 16.0


@dataclass
class ObjectStats:
    """Pixels of an agent in a frame: visible (after occlusion) and when drawn alone (clipped to the image)."""

    visible_px: int
    full_px: int
    bbox_full: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) in pixels


@dataclass
class FrameRender:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    mask: np.ndarray  # (H, W) uint16, 0 = no agent, i + 1 = scene agent i
    stats: dict[int, ObjectStats]  # agent index -> pixels, for agents drawn in this frame
    ego_to_world: np.ndarray  # (4, 4)


def ego_pose(scene: Scene, frame: int) -> np.ndarray:
    """Ego-to-world transform: on the road surface, heading along its yaw, pitched with the slope."""
    s, d = scene.traj.ego_s[frame], scene.traj.ego_d[frame]
    pos = scene.road.points(s, d)
    pitch = float(scene.road.pitch_at(s))
    return make_transform(yaw_pitch_matrix(float(scene.traj.ego_yaw[frame]), pitch), pos)


class Rasteriser:
    def __init__(self, scene: Scene, camera: Camera) -> None:
        self.scene, self.camera = scene, camera
        self.style = scene.style
        colours = np.array([a.colour for a in scene.agents]).reshape(-1, 3)
        self.shader = Shader(scene.style, colours, scene.livery.secondary if scene.livery is not None else None)
        self.agents = SolidSet(scene.shapes)
        self.props = SolidSet([p.shape for p in scene.props])
        self.prop_s = np.array([p.s for p in scene.props], dtype=float)
        self.prop_centres = scene.road.points(self.prop_s, np.array([p.d for p in scene.props], dtype=float))
        self.prop_yaws = scene.road.heading_at(self.prop_s) + np.array([p.yaw for p in scene.props], dtype=float)
        self.ids_hi = np.zeros((camera.height * SS, camera.width * SS), dtype=np.uint16)
        self.tan_half = camera.width / 2.0 / camera.intrinsic[0, 0]

    def _in_view(self, centres: np.ndarray, radius: np.ndarray, world_to_cam: np.ndarray) -> np.ndarray:
        p = centres @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
        ok = (p[:, 2] > -radius) & (p[:, 2] < VIEW_AHEAD_M + radius)
        return ok & (np.abs(p[:, 0]) - radius < (p[:, 2] + radius) * self.tan_half * 1.05)

    # -- drawing ------------------------------------------------------------------------------
    def render(self, frame: int) -> FrameRender:
        scene, cam = self.scene, self.camera
        ego_to_world = ego_pose(scene, frame)
        cam_to_world = ego_to_world @ cam.cam_to_ego
        world_to_cam = np.linalg.inv(cam_to_world)
        cam_pos = cam_to_world[:3, 3]
        ego_s = float(scene.traj.ego_s[frame])
        ground = ground_quads(scene.road, ego_s, VIEW_AHEAD_M)
        n_ground = len(ground.roles)
        centres, yaws = scene.agent_boxes(frame)
        sel_a = (np.abs(scene.traj.agent_s[frame] - ego_s) < VIEW_AHEAD_M + 20.0)
        sel_a &= self._in_view(centres, self.agents.radius, world_to_cam)
        sel_p = (self.prop_s > ego_s - VIEW_BEHIND_M - 30.0) & (self.prop_s < ego_s + VIEW_AHEAD_M)
        sel_p &= self._in_view(self.prop_centres, self.props.radius, world_to_cam)
        fa = self.agents.faces(centres, yaws, sel_a, cam_pos)
        fp = self.props.faces(self.prop_centres, self.prop_yaws, sel_p, cam_pos)
        # painter's order over objects: far first; an object's faces by layer, then far part first
        obj_dist = np.concatenate([fa.object_dist, fp.object_dist])
        uid = np.concatenate([fa.owner, fp.owner + self.agents.count])
        layer = np.concatenate([fa.layer, fp.layer])
        part_dist = np.concatenate([fa.part_dist, fp.part_dist])
        order = np.lexsort((-part_dist, layer, uid, -obj_dist))
        obj_quads = np.concatenate([fa.quads, fp.quads])[order]
        obj_normals = np.concatenate([fa.normals, fp.normals])[order]
        obj_roles = np.concatenate([fa.roles, fp.roles])[order]
        obj_owner = np.concatenate([fa.owner, np.full(len(fp.owner), -1)])[order]
        all_quads = np.concatenate([ground.quads, obj_quads])
        normals = np.concatenate([np.tile(np.array([0.0, 0.0, 1.0]), (n_ground, 1)), obj_normals])
        roles = np.concatenate([ground.roles, obj_roles]).astype(np.int64)
        owner = np.concatenate([np.full(n_ground, -1), obj_owner]).astype(np.int64)
        cam_quads = all_quads @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
        red_on = bool(np.isfinite(scene.traj.stop_s[frame]))
        colours = self.shader.shade(roles, owner, normals, cam_quads, red_on)
        # ids: 0..H-1 are sky rows (a vertical gradient), H the far ground, H + 1 + i polygon i
        horizon = self._horizon_row(cam_to_world, world_to_cam)
        height = cam.height
        base = height + 1
        hi = self.ids_hi
        hi[:horizon * SS] = np.repeat(np.arange(horizon, dtype=np.uint16), SS)[:, None]
        hi[horizon * SS:] = height
        polys = self._fill(cam_quads, hi, base)
        ids = np.ascontiguousarray(hi[::SS, ::SS])
        palette = np.empty((len(colours) + base, 3), dtype=np.uint8)
        rows = np.linspace(0.0, 1.0, max(horizon, 1))[:, None]
        grad = self.style.sky_top * (1 - rows) + self.style.sky_horizon * rows
        palette[:height] = np.clip(self.style.sky_horizon * 255.0 + 0.5, 0, 255).astype(np.uint8)
        palette[:horizon] = np.clip(grad[:horizon] * 255.0 + 0.5, 0, 255).astype(np.uint8)
        palette[height] = np.clip(self.style.fog_colour * 0.85 * 255.0 + 0.5, 0, 255).astype(np.uint8)
        palette[base:] = np.clip(colours * 255.0 + 0.5, 0, 255).astype(np.uint8)
        image = palette[ids]
        if self.style.weather == "rain":
            self._rain(image, frame)
        lut = np.zeros(len(colours) + base, dtype=np.uint16)
        lut[base:] = np.where(owner >= 0, owner + 1, 0)
        mask = lut[ids]
        stats = self._stats(mask, polys, owner)
        return FrameRender(image, mask, stats, ego_to_world)

    def _rain(self, image: np.ndarray, frame: int) -> None:
        """Rain streaks over the image only (not the mask): short bright slanted lines, seeded per frame."""
        cam = self.camera
        rng = np.random.default_rng([self.scene.seed & 0xFFFFFFFF, self.scene.index, frame, 7])
        n = int(cam.width * cam.height / 500)
        start = rng.uniform([0, 0], [cam.width, cam.height], size=(n, 2))
        length = rng.uniform(0.02, 0.05, size=(n, 1)) * cam.height
        end = start + length * np.array([[0.25, 1.0]])
        lines = np.round(np.stack([start, end], axis=1)).astype(np.int32)
        layer = np.zeros_like(image)
        cv2.polylines(layer, list(lines), False, (70, 70, 75), 1, cv2.LINE_8)
        cv2.add(image, layer, dst=image)

    def _horizon_row(self, cam_to_world: np.ndarray, world_to_cam: np.ndarray) -> int:
        fwd = cam_to_world[:3, 2].copy()
        fwd[2] = 0.0
        fwd /= max(np.linalg.norm(fwd), 1e-9)
        far = world_to_cam[:3, :3] @ (fwd * 1e5)  # a direction: translation is negligible that far
        if far[2] <= 0:
            return self.camera.height
        v = self.camera.intrinsic[1, 1] * far[1] / far[2] + self.camera.intrinsic[1, 2]
        return int(np.clip(np.ceil(v - 0.5), 0, self.camera.height))

    def _fill(self, cam_quads: np.ndarray, ids: np.ndarray, base: int) -> list[np.ndarray | None]:
        """Fill polygon i with id base + i; returns its fixed-point pixel polygon (None if not drawn)."""
        cam = self.camera
        if base + len(cam_quads) > np.iinfo(np.uint16).max:
            raise ValueError(f"{len(cam_quads)} polygons in one frame exceed the 16-bit id buffer")
        z = cam_quads[..., 2]
        inside = (z >= NEAR_M).all(axis=1)
        partly = (z >= NEAR_M).any(axis=1) & ~inside
        uv = np.zeros(cam_quads.shape[:2] + (2,))
        safe = np.where(z[..., None] > 1e-6, cam_quads, 1.0)
        uv[inside] = cam.project(safe[inside])
        pts = np.round(np.clip(uv, -LIMIT_PX, LIMIT_PX) * (_SCALE * SS)).astype(np.int32)
        lo, hi = uv.min(axis=1), uv.max(axis=1)
        on_screen = (hi[:, 0] >= 0) & (lo[:, 0] < cam.width) & (hi[:, 1] >= 0) & (lo[:, 1] < cam.height)
        huge = (np.abs(uv) > LIMIT_PX).any(axis=(1, 2))
        draw = (inside & on_screen) | partly
        polys: list[np.ndarray | None] = [None] * len(cam_quads)
        for i in np.flatnonzero(draw):
            if partly[i] or huge[i]:
                clipped = clip_near(cam_quads[i])
                if len(clipped) < 3:
                    continue
                # a vertex far outside the image would overflow the fixed-point coordinates: clip exactly
                px = clip_rect(cam.project(clipped), -GUARD_PX, -GUARD_PX, cam.width + GUARD_PX,
                               cam.height + GUARD_PX)
                if len(px) < 3:
                    continue
                p = np.round(px * (_SCALE * SS)).astype(np.int32)
            else:
                p = pts[i]
            cv2.fillConvexPoly(ids, p, (base + int(i),), cv2.LINE_8, SHIFT)
            polys[i] = p
        return polys

    def _stats(self, mask: np.ndarray, polys: list[np.ndarray | None], owner: np.ndarray) -> dict[int, ObjectStats]:
        cam = self.camera
        counts = np.bincount(mask.ravel(), minlength=int(owner.max(initial=-1)) + 2)
        stats: dict[int, ObjectStats] = {}
        drawn = np.array([p is not None for p in polys], dtype=bool)
        idx = np.flatnonzero((owner >= 0) & drawn)
        # an object's polygons are contiguous in draw order: split the runs of equal owner
        runs = np.split(idx, np.flatnonzero(np.diff(owner[idx])) + 1) if len(idx) else []
        groups: dict[int, list[np.ndarray]] = {}
        for run in runs:
            groups.setdefault(int(owner[run[0]]), []).extend(p for p in (polys[i] for i in run) if p is not None)
        for agent, mine in groups.items():
            allp = np.concatenate(mine) / (_SCALE * SS)
            x0 = int(np.clip(np.floor(allp[:, 0].min()) - 1, 0, cam.width))
            x1 = int(np.clip(np.ceil(allp[:, 0].max()) + 2, 0, cam.width))
            y0 = int(np.clip(np.floor(allp[:, 1].min()) - 1, 0, cam.height))
            y1 = int(np.clip(np.ceil(allp[:, 1].max()) + 2, 0, cam.height))
            if x1 <= x0 or y1 <= y0:
                continue
            alone_hi = np.zeros(((y1 - y0) * SS, (x1 - x0) * SS), dtype=np.uint8)
            offset = np.array([x0, y0], dtype=np.int32) * int(_SCALE * SS)
            for p in mine:
                cv2.fillConvexPoly(alone_hi, p - offset, (1,), cv2.LINE_8, SHIFT)
            alone = alone_hi[::SS, ::SS]
            cols, rows = np.flatnonzero(alone.any(axis=0)), np.flatnonzero(alone.any(axis=1))
            if len(cols) == 0:
                continue
            bbox = (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]) + 1, y0 + int(rows[-1]) + 1)
            stats[int(agent)] = ObjectStats(int(counts[agent + 1]), int(np.count_nonzero(alone)), bbox)
        return stats
