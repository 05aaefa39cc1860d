"""The closed-loop world: the ego moves by the policy's actions, the agents by the scenario.

A scenario's agent track gives each box in the ego frame *of the scenario's own ego* (its `ego.speed`
and `ego.yaw_rate`; a scenario without ego speed has a standing ego, so its tracks are world tracks).
`ScenarioWorld` turns the tracks into a world frame along that reference ego path and sees them
from the ego path the actions make. When the actions equal the scenario's ego values, the boxes are
the scenario's own (what `Timeline` gives). Both paths are integrated on the output frame grid
(trapezoid rule, frame 0 at the origin heading +x); values before frame 0 hold frame 0's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from drivesim.scenario.camera import PinholeCamera, box_corners, project_box
from drivesim.scenario.spec import Agent, Scenario
from drivesim.scenario.timeline import BoxRecord, FrameCondition, Timeline


@dataclass(frozen=True)
class AgentBox:
    """An agent's 3D box in the ego frame at one frame: bottom-face centre (x, y, z), heading yaw."""

    id: str
    cls: str
    size: tuple[float, float, float]  # length, width, height (m)
    x: float
    y: float
    z: float
    yaw: float


@dataclass
class EgoPath:
    """Per output frame: speed (m/s), yaw rate (rad/s) and the integrated pose (x, y, heading)."""

    fps: float
    speed: list[float] = field(default_factory=list)  # NaN = unknown (integrated as 0)
    yaw_rate: list[float] = field(default_factory=list)
    poses: list[tuple[float, float, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.speed)

    def append(self, speed: float, yaw_rate: float) -> None:
        if not self.poses:
            self.poses.append((0.0, 0.0, 0.0))
        else:
            dt = 1.0 / self.fps
            v0, w0 = _known(self.speed[-1]), _known(self.yaw_rate[-1])
            v1, w1 = _known(speed), _known(yaw_rate)
            x, y, h = self.poses[-1]
            h1 = h + 0.5 * (w0 + w1) * dt
            x += 0.5 * (v0 * math.cos(h) + v1 * math.cos(h1)) * dt
            y += 0.5 * (v0 * math.sin(h) + v1 * math.sin(h1)) * dt
            self.poses.append((x, y, h1))
        self.speed.append(float(speed))
        self.yaw_rate.append(float(yaw_rate))

    def truncate(self, n: int) -> None:
        del self.speed[n:], self.yaw_rate[n:], self.poses[n:]

    def pose(self, i: int) -> tuple[float, float, float]:
        return self.poses[min(max(i, 0), len(self.poses) - 1)]


def _known(x: float) -> float:
    return 0.0 if math.isnan(x) else x


class ScenarioWorld:
    """The scenario's agents as world tracks along its reference ego path, at output frames of `fps`."""

    def __init__(self, scenario: Scenario, camera: PinholeCamera, fps: float) -> None:
        self.scenario, self.camera, self.fps = scenario, camera, float(fps)
        self.timeline = Timeline(scenario, camera)
        self.reference = EgoPath(self.fps)

    def scenario_ego(self, t: float) -> tuple[float, float]:
        """The scenario's own ego speed and yaw rate at time t (NaN where it gives none)."""
        s = self.scenario
        speed = float(s.speed.at(t)[0]) if s.speed is not None else math.nan
        yaw = float(s.yaw_rate.at(t)[0]) if s.yaw_rate is not None else math.nan
        return speed, yaw

    def _reference_pose(self, i: int) -> tuple[float, float, float]:
        while len(self.reference) <= max(i, 0):
            self.reference.append(*self.scenario_ego(len(self.reference) / self.fps))
        return self.reference.pose(i)

    def agent_boxes(self, i: int, ego: tuple[float, float, float]) -> list[AgentBox]:
        """The 3D-tracked agents present at frame i, in the frame of an ego at world pose `ego`."""
        t = i / self.fps
        rx, ry, rh = self._reference_pose(i)
        ex, ey, eh = ego
        out = []
        for agent in self.scenario.agents:
            if agent.track is None or not agent.track.covers(t):
                continue
            x, y, yaw, z = (float(v) for v in agent.track.at(t))
            wx = rx + math.cos(rh) * x - math.sin(rh) * y  # reference ego frame -> world
            wy = ry + math.sin(rh) * x + math.cos(rh) * y
            dx, dy = wx - ex, wy - ey  # world -> the actual ego frame
            out.append(AgentBox(agent.id, agent.cls, agent.size, math.cos(eh) * dx + math.sin(eh) * dy,
                                -math.sin(eh) * dx + math.cos(eh) * dy, z, yaw + rh - eh))
        return out

    def condition(self, i: int, speed: float, yaw_rate: float, ego: tuple[float, float, float],
                  waypoints: tuple[tuple[float, float], ...] | None = None) -> FrameCondition:
        """What frame i is conditioned on: the given ego values and every agent's 2D box seen from `ego`."""
        t = i / self.fps
        index = {a.id: k for k, a in enumerate(self.scenario.agents)}
        boxes: list[BoxRecord] = []
        by_id = {b.id: b for b in self.agent_boxes(i, ego)}
        for agent in self.scenario.agents:
            norm = self._box(agent, by_id.get(agent.id), t)
            if norm is not None:
                boxes.append(BoxRecord(agent.id, agent.cls, agent.class_index, index[agent.id] + 1, norm))
        return FrameCondition(float(t), float(speed), float(yaw_rate), tuple(boxes), waypoints)

    def _box(self, agent: Agent, box: AgentBox | None, t: float) -> tuple[float, float, float, float] | None:
        if agent.track is None:  # 2D-only (replayed video sidecar): its image track, as Timeline has it
            if agent.image_track is None or not agent.image_track.covers(t):
                return None
            v = agent.image_track.at(t)
            return float(v[0]), float(v[1]), float(v[2]), float(v[3])
        if box is None:
            return None
        xyxy = project_box(self.camera, box_corners((box.x, box.y), box.yaw, box.size, box.z))
        if xyxy is None:
            return None
        w, h = float(self.camera.width), float(self.camera.height)
        return float(xyxy[0] / w), float(xyxy[1] / h), float(xyxy[2] / w), float(xyxy[3] / h)


class ClosedLoopTimeline(Timeline):
    """A `Timeline` whose ego values and boxes come from the actions taken so far (the engine's input).

    Times past the last acted frame hold its ego pose and values (the engine may look one call ahead
    and drop those frames); times before frame 0 (given context) have the `before` ego values.
    """

    def __init__(self, world: ScenarioWorld, ego: EgoPath,
                 waypoints: dict[int, tuple[tuple[float, float], ...]] | None = None,
                 before: tuple[float | None, float | None] = (None, None)) -> None:
        super().__init__(world.scenario, world.camera)
        self.world, self.ego = world, ego
        self.waypoints = waypoints if waypoints is not None else {}
        self.before = tuple(math.nan if v is None else float(v) for v in before)  # ego values before frame 0

    def at(self, t: float) -> FrameCondition:
        i = int(round(t * self.world.fps))
        if i < 0 or not len(self.ego):
            cond = self.world.condition(i, self.before[0], self.before[1], (0.0, 0.0, 0.0))
        else:
            k = min(i, len(self.ego) - 1)
            cond = self.world.condition(i, self.ego.speed[k], self.ego.yaw_rate[k], self.ego.pose(k),
                                        self.waypoints.get(k))
        return FrameCondition(float(t), cond.ego_speed, cond.ego_yaw_rate, cond.boxes, cond.waypoints)

    def ego_at(self, t: float) -> tuple[float, float]:
        """The ego values `at(t)` gives, without the boxes."""
        i = int(round(t * self.world.fps))
        if i < 0 or not len(self.ego):
            return self.before[0], self.before[1]
        k = min(i, len(self.ego) - 1)
        return float(self.ego.speed[k]), float(self.ego.yaw_rate[k])
