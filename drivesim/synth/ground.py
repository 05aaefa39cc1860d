"""The ground layer of a frame: grass, sidewalks, road surface and lane markings as world quads.

Quads are anchored to world arc lengths (not to the ego) so the geometry does not shimmer as the ego
moves; they come back ordered far-to-near, each segment's markings right after its surface.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivesim.synth.road import Road
from drivesim.synth.shapes import ROLES

DASH_PERIOD, DASH_LENGTH = 9.0, 3.0
BANDS = ("grass", "sidewalk", "road", "sidewalk", "grass")


@dataclass
class GroundQuads:
    quads: np.ndarray  # (G, 4, 3) world corners
    roles: np.ndarray  # (G,) colour role of each quad, an index into shapes.ROLES


def _tier_grid(s0: float, s1: float, step: float) -> np.ndarray:
    return np.arange(np.floor(s0 / step) * step, s1 + 1e-6, step)


def s_grid(ego_s: float, ahead: float) -> np.ndarray:
    """World-anchored sample positions: fine near the ego, coarser far away."""
    near = _tier_grid(ego_s - 8.0, ego_s + 30.0, 2.0)
    mid = _tier_grid(ego_s + 30.0, ego_s + 80.0, 5.0)
    far = _tier_grid(ego_s + 80.0, ego_s + ahead, 10.0)
    return np.unique(np.concatenate([near, mid, far]))


def ground_quads(road: Road, ego_s: float, ahead: float = 200.0) -> GroundQuads:
    sec = road.section
    s = s_grid(ego_s, ahead)
    s = s[(s >= road.s[0]) & (s <= road.s[-1])]
    n_seg = len(s) - 1
    breaks = np.array([sec.left_kerb + sec.sidewalk + 60.0, sec.left_kerb + sec.sidewalk, sec.left_kerb,
                       sec.right_kerb, sec.right_kerb - sec.sidewalk, sec.right_kerb - sec.sidewalk - 60.0])
    pts = road.points(s[:, None], breaks[None, :])  # (S, 6, 3)
    bands = np.stack([pts[:-1, :-1], pts[:-1, 1:], pts[1:, 1:], pts[1:, :-1]], axis=2)  # (S-1, 5, 4, 3)
    seg_quads: list[list[np.ndarray]] = [[] for _ in range(n_seg)]
    seg_roles: list[list[str]] = [[] for _ in range(n_seg)]
    for k in range(n_seg):
        seg_quads[k].append(bands[k])
        seg_roles[k].extend(BANDS)
    lw = sec.lane_width
    solid = [(0.18, 0.1, "yellow_line"), (-0.18, 0.1, "yellow_line"),
             (-sec.forward_lanes * lw, 0.15, "white_line"), (sec.backward_lanes * lw, 0.15, "white_line")]
    dashed = [(-i * lw, 0.12) for i in range(1, sec.forward_lanes)] + [(i * lw, 0.12) for i in range(1, sec.backward_lanes)]
    for d, half, role in solid:
        lines = road.points(s[:, None], np.array([d - half, d + half])[None, :])  # (S, 2, 3)
        quads = np.stack([lines[:-1, 0], lines[:-1, 1], lines[1:, 1], lines[1:, 0]], axis=1)
        for k in range(n_seg):
            seg_quads[k].append(quads[k:k + 1])
            seg_roles[k].append(role)
    if dashed:
        # pieces of dashes [9n, 9n + 3] inside each segment [s_k, s_k+1]
        first = np.floor(s[:-1] / DASH_PERIOD)
        n = first[:, None] + np.arange(3)[None, :]
        a = np.maximum(n * DASH_PERIOD, s[:-1, None])
        b = np.minimum(n * DASH_PERIOD + DASH_LENGTH, s[1:, None])
        ks, js = np.nonzero(b - a > 0.05)
        ends_s = np.stack([a[ks, js], b[ks, js]], axis=1)[:, :, None]  # (P, 2, 1)
        for d, half in dashed:
            e = road.points(ends_s, np.array([d - half, d + half])[None, None, :])  # (P, 2, 2, 3)
            quads = np.stack([e[:, 0, 0], e[:, 0, 1], e[:, 1, 1], e[:, 1, 0]], axis=1)
            for p, k in enumerate(ks):
                seg_quads[k].append(quads[p:p + 1])
                seg_roles[k].append("white_line")
    quads_out: list[np.ndarray] = []
    roles_out: list[str] = []
    for k in range(n_seg - 1, -1, -1):  # far to near
        quads_out.extend(seg_quads[k])
        roles_out.extend(seg_roles[k])
    index = {r: i for i, r in enumerate(ROLES)}
    return GroundQuads(np.concatenate(quads_out, axis=0) if quads_out else np.zeros((0, 4, 3)),
                       np.array([index[r] for r in roles_out], dtype=np.int64))
