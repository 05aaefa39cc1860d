"""A scene: labels, road, roadside props, the agent population and everyone's trajectories."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from drivesim.config.synth import SynthConfig
from drivesim.synth import shapes as sh
from drivesim.synth.agents import CROWD_DENSITY, AgentSpec, spawn_agents
from drivesim.synth.livery import Livery, apply_livery, choose_wearers, get_livery
from drivesim.synth.road import CrossSection, Road
from drivesim.synth.style import CROWDEDNESS, TIMES_OF_DAY, WEATHERS, Style, make_style
from drivesim.synth.traffic import StopEvent, Trajectories, simulate


@dataclass
class Prop:
    """A static roadside object at road position (s, d), turned by `yaw` relative to the road."""

    shape: sh.Shape
    s: float
    d: float
    yaw: float
    kind: str


@dataclass
class Scene:
    index: int
    name: str
    time_of_day: str
    weather: str
    crowdedness: str
    road: Road
    style: Style
    agents: list[AgentSpec]
    shapes: list[sh.Shape]
    props: list[Prop]
    traj: Trajectories
    n_frames: int
    fps: float
    seed: int  # the dataset seed; with `index` it seeds per-frame effects (rain)
    livery: Livery | None = None  # world.livery, worn by the agents flagged in `wears_livery`
    wears_livery: tuple[bool, ...] = ()

    @property
    def description(self) -> str:
        """Labels as words, the way real nuScenes descriptions read."""
        traffic = {"sparse": "light traffic", "moderate": "moderate traffic", "crowded": "crowded"}[self.crowdedness]
        return f"{self.time_of_day}, {self.weather}, {traffic}"

    def agent_boxes(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """World bottom-centres (N, 3) and yaws (N,) of every agent at camera frame `frame`."""
        s, d = self.traj.agent_s[frame], self.traj.agent_d[frame]
        return self.road.points(s, d), self.traj.agent_yaw[frame]


def frame_count(seconds: float, fps: float, keyframe_hz: float) -> tuple[int, int]:
    """(frames, frames per key frame): a scene starts and ends on a key frame."""
    per_key = fps / keyframe_hz
    if abs(per_key - round(per_key)) > 1e-9 or per_key < 1:
        raise ValueError(f"fps ({fps}) must be a whole multiple of keyframe_hz ({keyframe_hz})")
    n_keys = max(int(round(seconds * keyframe_hz)), 1) + 1
    return (n_keys - 1) * int(round(per_key)) + 1, int(round(per_key))


def _pick(rng: np.random.Generator, value: str | None, options: tuple[str, ...], field_name: str,
          p: list[float]) -> str:
    drawn = str(rng.choice(options, p=p))
    if value is None:
        return drawn
    if value not in options:
        raise ValueError(f"{field_name} must be one of {options}, got {value!r}")
    return value


def _props(rng: np.random.Generator, section: CrossSection, lo: float, hi: float, density: float) -> list[Prop]:
    props: list[Prop] = []
    for side in (-1.0, 1.0):
        kerb = section.left_kerb if side > 0 else section.right_kerb
        walk_edge = kerb + side * section.sidewalk
        s = lo + float(rng.uniform(0.0, 10.0))
        while s < hi:  # lamp poles at the kerb, regularly spaced
            props.append(Prop(sh.pole_shape(rng, -1.0), s, kerb + side * 0.4, 0.0 if side > 0 else np.pi, "pole"))
            s += 30.0 / max(density, 0.05)
        s = lo + float(rng.uniform(0.0, 8.0))
        while s < hi:  # trees and buildings beyond the sidewalk
            if rng.random() < 0.55:
                props.append(Prop(sh.tree_shape(rng), s, walk_edge + side * float(rng.uniform(1.5, 4.0)), 0.0, "tree"))
                s += float(rng.uniform(6.0, 14.0)) / max(density, 0.05)
            else:
                shape = sh.building_shape(rng)
                half_w = float(shape.hi[0, 1])
                half_l = float(shape.hi[0, 0])
                d = walk_edge + side * (float(rng.uniform(4.0, 12.0)) + half_w)
                props.append(Prop(shape, s + half_l, d, 0.0, "building"))
                s += 2 * half_l + float(rng.uniform(3.0, 15.0)) / max(density, 0.05)
    return props


def build_scene(cfg: SynthConfig, index: int) -> Scene:
    """Everything about scene `index` follows from (cfg.seed, index): same seed, same scene."""
    rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed) & 0xFFFFFFFF, index]))
    world = cfg.world
    tod = _pick(rng, world.time_of_day, TIMES_OF_DAY, "world.time_of_day", [0.5, 0.2, 0.3])
    weather = _pick(rng, world.weather, WEATHERS, "world.weather", [0.55, 0.25, 0.2])
    crowd = _pick(rng, world.crowdedness, CROWDEDNESS, "world.crowdedness", [0.3, 0.4, 0.3])
    fwd = int(rng.integers(1, 3)) if world.forward_lanes is None else int(world.forward_lanes)
    bwd = int(rng.integers(1, 3)) if world.backward_lanes is None else int(world.backward_lanes)
    if fwd not in (1, 2, 3) or bwd not in (1, 2, 3):
        raise ValueError(f"world.forward_lanes/backward_lanes must be 1..3, got {fwd}/{bwd}")
    section = CrossSection(forward_lanes=fwd, backward_lanes=bwd)
    n_frames, _ = frame_count(cfg.seconds, cfg.fps, cfg.keyframe_hz)
    seconds = (n_frames - 1) / cfg.fps
    reach = 16.0 * seconds + 220.0
    road = Road(rng, -250.0, reach + 16.0 * seconds + 300.0, world.hills, section)
    style = make_style(tod, weather, rng)
    ego_lane = int(rng.integers(fwd))
    ego_d = section.lane_centre(ego_lane)
    density = CROWD_DENSITY[crowd] * max(world.traffic_density, 0.0)
    agents = spawn_agents(rng, section, (-60.0, reach), seconds, density, ego_d)
    stop = None
    if seconds >= 8.0 and rng.random() < world.stop_probability:
        start = float(rng.uniform(0.5, max(seconds - 10.0, 1.0)))
        stop = StopEvent(start, float("inf"))  # green again once the ego has waited (see traffic.simulate)
    traj = simulate(rng, road, agents, ego_d, float(rng.uniform(5.0, 12.0)), stop, n_frames, cfg.fps)
    props = _props(rng, section, -40.0, reach + 60.0, world.props_density)
    if stop is not None and np.isfinite(stop.s):
        props.append(Prop(sh.traffic_light_shape(1.0), stop.s, section.right_kerb - 0.5, 0.0, "traffic_light"))
    shapes = [sh.agent_shape(a.kind, a.width, a.length, a.height) for a in agents]
    livery, wears = None, [False] * len(agents)
    if world.livery is not None:  # its own random stream, after everything else: the scene is otherwise unchanged
        livery = get_livery(world.livery)
        wears = choose_wearers(int(cfg.seed), index, [a.kind for a in agents], world.livery_fraction)
        agents = [replace(a, colour=livery.primary) if w else a for a, w in zip(agents, wears)]
        shapes = [apply_livery(s, livery) if w else s for s, w in zip(shapes, wears)]
    return Scene(index, f"synth-{index:04d}", tod, weather, crowd, road, style, agents, shapes, props, traj,
                 n_frames, cfg.fps, int(cfg.seed), livery, tuple(wears))
