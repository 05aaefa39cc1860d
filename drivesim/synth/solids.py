"""Many objects' solids as flat arrays, posed and face-culled for a frame in a few numpy operations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivesim.synth import shapes as sh

DECAL_LAYER = 1000  # decals are drawn after all of their object's parts


@dataclass
class Faces:
    """Visible polygons of a frame: world quads, normals, role ids, owner object, and painter sort keys."""

    quads: np.ndarray  # (F, 4, 3)
    normals: np.ndarray  # (F, 3)
    roles: np.ndarray  # (F,) index into shapes.ROLES
    owner: np.ndarray  # (F,) object index in its SolidSet
    object_dist: np.ndarray  # (F,) ground distance camera -> object footprint
    layer: np.ndarray  # (F,)
    part_dist: np.ndarray  # (F,)


class SolidSet:
    """The shapes of a list of objects, concatenated; object o's pose is (centre[o], yaw[o]) per frame."""

    def __init__(self, shape_list: list[sh.Shape]) -> None:
        roles = {r: i for i, r in enumerate(sh.ROLES)}
        lo = [s.lo for s in shape_list]
        hi = [s.hi for s in shape_list]
        n_parts = [len(s.lo) for s in shape_list]
        n_decals = [len(s.decals) for s in shape_list]
        self.count = len(shape_list)
        self.part_owner = np.repeat(np.arange(self.count), n_parts)
        self.corners = sh.box_corners(np.concatenate(lo), np.concatenate(hi)) if self.count else np.zeros((0, 8, 3))
        self.part_layer = np.concatenate([s.layers for s in shape_list]) if self.count else np.zeros(0, int)
        self.part_role = np.array([roles[r] for s in shape_list for r in s.roles], dtype=np.int64)
        self.decal_owner = np.repeat(np.arange(self.count), n_decals)
        self.decals = np.concatenate([s.decals for s in shape_list]) if sum(n_decals) else np.zeros((0, 4, 3))
        self.decal_normals = (np.concatenate([s.decal_normals for s in shape_list]) if sum(n_decals)
                              else np.zeros((0, 3)))
        self.decal_role = np.array([roles[r] for s in shape_list for r in s.decal_roles], dtype=np.int64)
        ext_lo = np.array([s.lo.min(axis=0) for s in shape_list]).reshape(-1, 3)
        ext_hi = np.array([s.hi.max(axis=0) for s in shape_list]).reshape(-1, 3)
        self.half_extent = np.maximum(np.abs(ext_lo[:, :2]), np.abs(ext_hi[:, :2]))
        self.radius = np.linalg.norm(np.maximum(np.abs(ext_lo), np.abs(ext_hi)), axis=1)

    def faces(self, centres: np.ndarray, yaws: np.ndarray, selected: np.ndarray, cam_pos: np.ndarray) -> Faces:
        """Camera-facing faces (and decals) of the `selected` objects posed at (centres, yaws)."""
        c, s = np.cos(yaws), np.sin(yaws)
        # ground distance from the camera to each object's footprint rectangle (painter's key)
        dx, dy = cam_pos[0] - centres[:, 0], cam_pos[1] - centres[:, 1]
        lx, ly = c * dx + s * dy, -s * dx + c * dy
        qx = lx - np.clip(lx, -self.half_extent[:, 0], self.half_extent[:, 0])
        qy = ly - np.clip(ly, -self.half_extent[:, 1], self.half_extent[:, 1])
        obj_dist = np.hypot(qx, qy)
        parts = np.flatnonzero(selected[self.part_owner])
        own = self.part_owner[parts]
        pc, ps = c[own][:, None], s[own][:, None]
        loc = self.corners[parts]
        world = np.empty_like(loc)
        world[..., 0] = pc * loc[..., 0] - ps * loc[..., 1] + centres[own, 0][:, None]
        world[..., 1] = ps * loc[..., 0] + pc * loc[..., 1] + centres[own, 1][:, None]
        world[..., 2] = loc[..., 2] + centres[own, 2][:, None]
        quads = world[:, sh.FACES]  # (P, 6, 4, 3)
        fn = sh.FACE_NORMALS
        normals = np.empty((len(parts), 6, 3))
        normals[..., 0] = pc * fn[None, :, 0] - ps * fn[None, :, 1]
        normals[..., 1] = ps * fn[None, :, 0] + pc * fn[None, :, 1]
        normals[..., 2] = fn[None, :, 2]
        # a face is visible when the camera is on its outer side (any point of the face will do)
        visible = ((cam_pos - quads[:, :, 0]) * normals).sum(-1) > 1e-9
        visible[:, 5] = False  # bottoms sit on the ground
        part_dist = np.linalg.norm(cam_pos - world.mean(axis=1), axis=1)
        pi, fi = np.nonzero(visible)
        d_idx = np.flatnonzero(selected[self.decal_owner])
        d_own = self.decal_owner[d_idx]
        dc, ds = c[d_own][:, None], s[d_own][:, None]
        dl = self.decals[d_idx]
        dq = np.empty_like(dl)
        dq[..., 0] = dc * dl[..., 0] - ds * dl[..., 1] + centres[d_own, 0][:, None]
        dq[..., 1] = ds * dl[..., 0] + dc * dl[..., 1] + centres[d_own, 1][:, None]
        dq[..., 2] = dl[..., 2] + centres[d_own, 2][:, None]
        dnl = self.decal_normals[d_idx]
        dn = np.stack([dc[:, 0] * dnl[:, 0] - ds[:, 0] * dnl[:, 1], ds[:, 0] * dnl[:, 0] + dc[:, 0] * dnl[:, 1],
                       dnl[:, 2]], axis=1)
        d_vis = ((cam_pos - dq[:, 0]) * dn).sum(-1) > 1e-9
        part_owner = own[pi]
        dec_owner = d_own[d_vis]
        return Faces(
            quads=np.concatenate([quads[pi, fi], dq[d_vis]]),
            normals=np.concatenate([normals[pi, fi], dn[d_vis]]),
            roles=np.concatenate([self.part_role[parts][pi], self.decal_role[d_idx][d_vis]]),
            owner=np.concatenate([part_owner, dec_owner]),
            object_dist=np.concatenate([obj_dist[part_owner], obj_dist[dec_owner]]),
            layer=np.concatenate([self.part_layer[parts][pi], np.full(len(dec_owner), DECAL_LAYER)]),
            part_dist=np.concatenate([part_dist[pi], np.zeros(len(dec_owner))]),
        )
