"""Objects as solids in their own frame (x forward, y left, z up from the bottom-centre of the box).

Agents fill their 3D box exactly (body, cabin, wheels, lights), so the pixels cover the box's projection.
A shape is a list of parts (axis-aligned boxes drawn in `layer` order, then by distance) and decals
(flat quads on a part's face, drawn only when that face looks at the camera).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# colour roles; "paint" takes the object's own colour, "livery" the secondary colour of a livery (synth/livery.py)
PAINT, GLASS, TYRE, DARK, SKIN, HEADLIGHT, TAILLIGHT, TRUNK, LEAVES, CONCRETE, METAL, LAMP, RED_LIGHT, GREEN_LIGHT = (
    "paint", "glass", "tyre", "dark", "skin", "headlight", "taillight", "trunk", "leaves", "concrete", "metal",
    "lamp", "red_light", "green_light")
EMISSIVE = {HEADLIGHT, TAILLIGHT, LAMP, RED_LIGHT, GREEN_LIGHT}
GROUND_ROLES = ("road", "sidewalk", "grass", "white_line", "yellow_line")
LIVERY = "livery"
ROLES = (PAINT, GLASS, TYRE, DARK, SKIN, HEADLIGHT, TAILLIGHT, TRUNK, LEAVES, CONCRETE, METAL, LAMP, RED_LIGHT,
         GREEN_LIGHT) + GROUND_ROLES + (LIVERY,)  # LIVERY last: the other roles keep their indices


@dataclass
class Shape:
    """Parts as (lo, hi) corners (P, 2, 3) with roles and layers; decals as quads (Q, 4, 3) with normals."""

    lo: np.ndarray
    hi: np.ndarray
    roles: list[str]
    layers: np.ndarray
    decals: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 3)))
    decal_normals: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    decal_roles: list[str] = field(default_factory=list)


class _Builder:
    def __init__(self) -> None:
        self.lo: list[list[float]] = []
        self.hi: list[list[float]] = []
        self.roles: list[str] = []
        self.layers: list[int] = []
        self.decals: list[np.ndarray] = []
        self.normals: list[list[float]] = []
        self.decal_roles: list[str] = []

    def part(self, lo: list[float], hi: list[float], role: str, layer: int = 0) -> None:
        self.lo.append(lo)
        self.hi.append(hi)
        self.roles.append(role)
        self.layers.append(layer)

    def decal(self, axis: int, value: float, sign: float, a: tuple[float, float], b: tuple[float, float],
              role: str) -> None:
        """A rectangle on the plane coordinate[axis] = value, facing sign * axis; a, b span the other two."""
        other = [i for i in range(3) if i != axis]
        quad = np.zeros((4, 3))
        quad[:, axis] = value + sign * 0.01
        for k, (u, v) in enumerate([(a[0], b[0]), (a[1], b[0]), (a[1], b[1]), (a[0], b[1])]):
            quad[k, other[0]], quad[k, other[1]] = u, v
        normal = [0.0, 0.0, 0.0]
        normal[axis] = sign
        self.decals.append(quad)
        self.normals.append(normal)
        self.decal_roles.append(role)

    def build(self) -> Shape:
        decals = np.array(self.decals) if self.decals else np.zeros((0, 4, 3))
        normals = np.array(self.normals) if self.normals else np.zeros((0, 3))
        return Shape(np.array(self.lo, float), np.array(self.hi, float), self.roles, np.array(self.layers),
                     decals, normals, self.decal_roles)


def _wheels(b: _Builder, length: float, width: float, xs: list[float], radius: float) -> None:
    for side in (-1.0, 1.0):
        for x in xs:
            b.decal(1, side * width / 2, side, (x - radius, x + radius), (0.0, 2 * radius), TYRE)


def _lights(b: _Builder, length: float, width: float, z0: float, z1: float) -> None:
    inset = 0.12 * width
    for side in (-1.0, 1.0):
        y_in, y_out = side * (width / 2 - inset - 0.25 * width * 0.6), side * (width / 2 - inset)
        ys = (min(y_in, y_out), max(y_in, y_out))
        b.decal(0, length / 2, 1.0, ys, (z0, z1), HEADLIGHT)
        b.decal(0, -length / 2, -1.0, ys, (z0, z1), TAILLIGHT)


def vehicle_shape(kind: str, width: float, length: float, height: float) -> Shape:
    b = _Builder()
    lx, wy = length / 2, width / 2
    if kind == "car":
        belt = 0.55 * height
        b.part([-lx, -wy, 0.0], [lx, wy, belt], PAINT, 0)
        b.part([-0.3 * length, -wy + 0.08 * width, belt], [0.22 * length, wy - 0.08 * width, height], GLASS, 1)
        b.decal(0, -lx, -1.0, (-wy, wy), (0.0, 0.12 * height), DARK)
        b.decal(0, lx, 1.0, (-wy, wy), (0.0, 0.12 * height), DARK)
        _wheels(b, length, width, [-0.3 * length, 0.3 * length], 0.32)
        _lights(b, length, width, 0.3 * height, 0.42 * height)
    elif kind == "truck":
        cab = min(2.2, 0.3 * length)
        b.part([lx - cab, -wy, 0.0], [lx, wy, height], PAINT, 0)
        b.part([-lx, -wy, 0.0], [lx - cab - 0.05, wy, height], CONCRETE, 0)
        b.decal(0, lx, 1.0, (-wy + 0.15, wy - 0.15), (0.5 * height, 0.8 * height), GLASS)
        _wheels(b, length, width, [-lx + 1.2, -lx + 2.4, lx - cab / 2], 0.5)
        _lights(b, length, width, 0.15 * height, 0.22 * height)
    elif kind == "bus":
        b.part([-lx, -wy, 0.0], [lx, wy, height], PAINT, 0)
        for side in (-1.0, 1.0):
            b.decal(1, side * wy, side, (-lx + 1.0, lx - 1.0), (0.5 * height, 0.85 * height), GLASS)
        b.decal(0, lx, 1.0, (-wy + 0.1, wy - 0.1), (0.45 * height, 0.9 * height), GLASS)
        _wheels(b, length, width, [-lx + 2.5, lx - 2.5], 0.5)
        _lights(b, length, width, 0.12 * height, 0.2 * height)
    else:
        raise ValueError(f"unknown vehicle kind {kind!r}")
    return b.build()


def cyclist_shape(width: float, length: float, height: float) -> Shape:
    b = _Builder()
    lx, wy = length / 2, width / 2
    # wheels, frame and panniers as one dark block filling the lower box (the box must be filled)
    b.part([-lx, -wy, 0.0], [lx, wy, 0.5 * height], METAL, 0)
    _wheels(b, length, width, [-lx + 0.35, lx - 0.35], 0.33)
    b.part([-0.45 * lx, -wy, 0.5 * height], [0.25 * lx, wy, 0.84 * height], PAINT, 1)
    b.part([-0.2, -0.13, 0.84 * height], [0.05, 0.13, height], SKIN, 2)
    b.decal(0, -lx, -1.0, (-0.06, 0.06), (0.35 * height, 0.42 * height), TAILLIGHT)
    return b.build()


def pedestrian_shape(width: float, length: float, height: float) -> Shape:
    b = _Builder()
    lx, wy = length / 2, width / 2
    for side in (-1.0, 1.0):
        y0, y1 = sorted((side * wy, side * 0.05))
        b.part([-0.3 * lx, y0, 0.0], [0.3 * lx, y1, 0.48 * height], DARK, 0)
    b.part([-lx, -wy, 0.48 * height], [lx, wy, 0.86 * height], PAINT, 1)
    b.part([-0.4 * lx, -0.25 * wy, 0.86 * height], [0.4 * lx, 0.25 * wy, height], SKIN, 2)
    return b.build()


def agent_shape(kind: str, width: float, length: float, height: float) -> Shape:
    if kind == "cyclist":
        return cyclist_shape(width, length, height)
    if kind == "pedestrian":
        return pedestrian_shape(width, length, height)
    return vehicle_shape(kind, width, length, height)


def tree_shape(rng: np.random.Generator) -> Shape:
    b = _Builder()
    trunk_h, crown = float(rng.uniform(1.8, 3.0)), float(rng.uniform(2.0, 4.0))
    b.part([-0.18, -0.18, 0.0], [0.18, 0.18, trunk_h], TRUNK, 0)
    b.part([-crown / 2, -crown / 2, trunk_h], [crown / 2, crown / 2, trunk_h + crown * 1.2], LEAVES, 1)
    return b.build()


def pole_shape(rng: np.random.Generator, arm_side: float) -> Shape:
    b = _Builder()
    h = float(rng.uniform(6.0, 8.0))
    b.part([-0.12, -0.12, 0.0], [0.12, 0.12, h], METAL, 0)
    y0, y1 = sorted((0.0, arm_side * 1.8))
    b.part([-0.15, y0, h - 0.25], [0.15, y1, h], METAL, 1)
    b.decal(2, h - 0.25, -1.0, (-0.15, 0.15), (y1 - 0.6, y1) if arm_side > 0 else (y0, y0 + 0.6), LAMP)
    return b.build()


def building_shape(rng: np.random.Generator) -> Shape:
    b = _Builder()
    w, ln, h = float(rng.uniform(8.0, 16.0)), float(rng.uniform(10.0, 28.0)), float(rng.uniform(6.0, 24.0))
    b.part([-ln / 2, -w / 2, 0.0], [ln / 2, w / 2, h], CONCRETE, 0)
    return b.build()


def traffic_light_shape(facing: float) -> Shape:
    """A pole with a head facing -x (towards oncoming forward traffic when yawed like the road)."""
    b = _Builder()
    b.part([-0.1, -0.1, 0.0], [0.1, 0.1, 3.2], METAL, 0)
    b.part([-0.2, -0.25, 3.2], [0.2, 0.25, 4.4], DARK, 1)
    b.decal(0, -0.2, -1.0, (-0.15, 0.15), (3.95, 4.25), RED_LIGHT)
    b.decal(0, -0.2, -1.0, (-0.15, 0.15), (3.35, 3.65), GREEN_LIGHT)
    return b.build()


def box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(P, 2, 3)-style lo/hi -> (P, 8, 3) corners in a fixed order (see FACES)."""
    xs = np.stack([lo[:, 0], hi[:, 0]], 1)
    ys = np.stack([lo[:, 1], hi[:, 1]], 1)
    zs = np.stack([lo[:, 2], hi[:, 2]], 1)
    idx = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    return np.stack([xs[:, idx[:, 0]], ys[:, idx[:, 1]], zs[:, idx[:, 2]]], axis=-1)


# faces of box_corners' order (corner index = 4*ix + 2*iy + iz) and their outward local normals
FACES = np.array([[4, 5, 7, 6], [0, 2, 3, 1], [2, 6, 7, 3], [0, 1, 5, 4], [1, 3, 7, 5], [0, 4, 6, 2]])
FACE_NORMALS = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0], [0, 0, 1.0], [0, 0, -1.0]])
