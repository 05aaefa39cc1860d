"""Agent classes (nuScenes categories, sizes) and the spawning of a scene's population."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivesim.synth.road import CrossSection

# name -> (nuScenes category, (width range), (length range), (height range))
CLASSES: dict[str, tuple[str, tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "car": ("vehicle.car", (1.75, 2.0), (4.1, 4.9), (1.45, 1.75)),
    "truck": ("vehicle.truck", (2.4, 2.6), (6.5, 9.0), (3.0, 3.6)),
    "bus": ("vehicle.bus.rigid", (2.5, 2.6), (10.5, 12.5), (3.1, 3.4)),
    "cyclist": ("vehicle.bicycle", (0.6, 0.75), (1.7, 1.9), (1.65, 1.85)),
    "pedestrian": ("human.pedestrian.adult", (0.55, 0.7), (0.55, 0.8), (1.6, 1.9)),
}

# Behaviours: how an agent moves along the road.
FOLLOW, ONCOMING, PARKED, CYCLE, WALK, CROSS = "follow", "oncoming", "parked", "cycle", "walk", "cross"

CROWD_DENSITY = {"sparse": 0.5, "moderate": 1.0, "crowded": 2.0}


@dataclass
class AgentSpec:
    """One agent: its class, box size, behaviour, start state and colour (RGB 0..1)."""

    kind: str
    behaviour: str
    width: float
    length: float
    height: float
    s0: float
    d0: float
    speed: float  # desired speed, m/s (>= 0); direction is given by the behaviour
    direction: int  # +1 along s, -1 against
    colour: tuple[float, float, float]
    cross_time: float = 0.0  # CROSS: when it steps off the kerb
    cross_to: float = 0.0  # CROSS: lateral target offset

    @property
    def category(self) -> str:
        return CLASSES[self.kind][0]


_CAR_COLOURS = [(0.8, 0.1, 0.1), (0.1, 0.2, 0.7), (0.85, 0.85, 0.85), (0.15, 0.15, 0.15), (0.6, 0.6, 0.62),
                (0.9, 0.75, 0.1), (0.2, 0.5, 0.25), (0.95, 0.95, 0.95), (0.45, 0.2, 0.1)]
_CLOTHES = [(0.2, 0.3, 0.7), (0.7, 0.2, 0.2), (0.2, 0.2, 0.2), (0.9, 0.8, 0.3), (0.3, 0.6, 0.3),
            (0.6, 0.4, 0.7), (0.9, 0.5, 0.2)]


def _size(rng: np.random.Generator, kind: str) -> tuple[float, float, float]:
    _, w, l_, h = CLASSES[kind]
    return (round(float(rng.uniform(*w)), 3), round(float(rng.uniform(*l_)), 3), round(float(rng.uniform(*h)), 3))


def _positions(rng: np.random.Generator, lo: float, hi: float, per_100m: float, gap: float) -> list[float]:
    """Sorted positions in [lo, hi] with about `per_100m` per 100 m and at least `gap` metres apart."""
    count = int(rng.poisson(max(per_100m, 0.0) * (hi - lo) / 100.0))
    out: list[float] = []
    for s in np.sort(rng.uniform(lo, hi, size=count)):
        if not out or s - out[-1] >= gap:
            out.append(float(s))
    return out


def _vehicle_kind(rng: np.random.Generator) -> str:
    return str(rng.choice(["car", "truck", "bus"], p=[0.78, 0.13, 0.09]))


def _make(rng: np.random.Generator, kind: str, behaviour: str, s0: float, d0: float, speed: float,
          direction: int) -> AgentSpec:
    w, l_, h = _size(rng, kind)
    palette = _CLOTHES if kind in ("pedestrian", "cyclist") else _CAR_COLOURS
    r, g, b = np.clip(np.array(palette[int(rng.integers(len(palette)))]) + rng.uniform(-0.05, 0.05, size=3), 0, 1)
    return AgentSpec(kind, behaviour, w, l_, h, s0, d0, speed, direction, (float(r), float(g), float(b)))


def spawn_agents(rng: np.random.Generator, section: CrossSection, span: tuple[float, float], seconds: float,
                 density: float, ego_lane_d: float) -> list[AgentSpec]:
    """The scene's population over the stretch of road `span` the ego drives along."""
    lo, hi = span
    agents: list[AgentSpec] = []
    for lane in range(section.forward_lanes):
        d = section.lane_centre(lane)
        for s in _positions(rng, lo - 40.0, hi, 1.6 * density, 14.0):
            if abs(d - ego_lane_d) < 0.1 and -14.0 < s < 14.0:
                continue  # keep the ego's own spot free
            kind = _vehicle_kind(rng)
            top = 14.0 if kind == "car" else 11.0
            agents.append(_make(rng, kind, FOLLOW, s, d, float(rng.uniform(6.0, top)), 1))
    reach = hi + 16.0 * seconds  # oncoming traffic starts far enough ahead to meet the ego
    for lane in range(section.backward_lanes):
        d = section.lane_centre(-1 - lane)
        for s in _positions(rng, lo, reach, 1.3 * density, 16.0):
            kind = _vehicle_kind(rng)
            agents.append(_make(rng, kind, ONCOMING, s, d, float(rng.uniform(7.0, 14.0)), -1))
    park_d = section.left_kerb - section.shoulder / 2.0
    for s in _positions(rng, lo, hi + 60.0, 2.0 * density, 7.0):
        if rng.random() < 0.6:
            agents.append(_make(rng, "car", PARKED, s, park_d, 0.0, int(rng.choice([-1, 1]))))
    bike_d = section.right_kerb + section.shoulder / 2.0
    for s in _positions(rng, lo - 20.0, hi, 0.5 * density, 10.0):
        agents.append(_make(rng, "cyclist", CYCLE, s, bike_d, float(rng.uniform(3.5, 6.5)), 1))
    walk_bands = [(section.right_kerb - section.sidewalk * 0.5, -1.0), (section.left_kerb + section.sidewalk * 0.5, 1.0)]
    for d_mid, _side in walk_bands:
        for s in _positions(rng, lo - 10.0, hi + 40.0, 3.0 * density, 2.0):
            d = d_mid + float(rng.uniform(-0.8, 0.8))
            moving = rng.random() < 0.8
            speed = float(rng.uniform(0.9, 1.6)) if moving else 0.0
            agents.append(_make(rng, "pedestrian", WALK, s, d, speed, int(rng.choice([-1, 1]))))
    for s in _positions(rng, lo + 30.0, hi, 0.4 * density, 25.0):
        right = rng.random() < 0.5
        kerb_r = section.right_kerb - 0.6
        kerb_l = section.left_kerb + 0.6
        ped = _make(rng, "pedestrian", CROSS, s, kerb_r if right else kerb_l, float(rng.uniform(1.1, 1.6)),
                    1 if right else -1)
        ped.cross_time = float(rng.uniform(0.0, max(seconds - 4.0, 0.5)))
        ped.cross_to = kerb_l if right else kerb_r
        agents.append(ped)
    crossings = [a.s0 for a in agents if a.behaviour == CROSS]
    # keep the crossing pedestrians' way over the parking lane free
    return [a for a in agents if a.behaviour != PARKED or all(abs(a.s0 - s) > a.length / 2 + 1.5 for s in crossings)]
