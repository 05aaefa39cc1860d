"""A scenario evaluated at frame times: ego values and the agents' 2D boxes, per frame.

`Timeline(scenario, camera).at(t)` gives the `FrameCondition` of time t (seconds): what the model is
conditioned on and what `conditions.jsonl` records. Ego values hold their end keys outside their
range; an agent exists from its first to its last key time and is absent outside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from drivesim.scenario.camera import PinholeCamera, box_corners, project_box
from drivesim.scenario.spec import Scenario, ScenarioError


@dataclass(frozen=True)
class BoxRecord:
    id: str
    cls: str
    class_index: int
    instance: int  # stable integer id of the agent (its index in the scenario, from 1)
    xyxy: tuple[float, float, float, float]  # normalised to [0, 1] of the frame


@dataclass(frozen=True)
class FrameCondition:
    time: float
    ego_speed: float  # NaN = unknown
    ego_yaw_rate: float  # NaN = unknown
    boxes: tuple[BoxRecord, ...]
    waypoints: tuple[tuple[float, float], ...] | None = None  # (K, 2) m, ego frame (closed loop); None = unknown

    def to_json(self, frame: int) -> dict[str, object]:
        """The `conditions.jsonl` object of output frame `frame` (unknown ego values are null)."""
        def value(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 6)

        return {"frame": frame, "time": round(self.time, 6), "ego_speed": value(self.ego_speed),
                "ego_yaw_rate": value(self.ego_yaw_rate),
                "boxes": [{"id": b.id, "class": b.cls, "xyxy": [round(v, 6) for v in b.xyxy]} for b in self.boxes]}


class Timeline:
    """Per-frame conditions of one scenario seen through one camera."""

    def __init__(self, scenario: Scenario, camera: PinholeCamera) -> None:
        self.scenario = scenario
        self.camera = camera
        # A drive asks for each time several times (the in-view check, the prediction and interpolation
        # windows, the writers) and projecting every agent costs ~13 ms a frame: computed once per time.
        self._memo: dict[float, FrameCondition] = {}

    def at(self, t: float) -> FrameCondition:
        key = round(float(t), 9)
        if key not in self._memo:
            self._memo[key] = self._compute(float(t))
        return self._memo[key]

    def ego_at(self, t: float) -> tuple[float, float]:
        """(speed, yaw rate) at `t` (NaN = unknown), without projecting any agent (`at` does both)."""
        s = self.scenario
        speed = float(s.speed.at(t)[0]) if s.speed is not None else math.nan
        yaw = float(s.yaw_rate.at(t)[0]) if s.yaw_rate is not None else math.nan
        return speed, yaw

    def _compute(self, t: float) -> FrameCondition:
        s = self.scenario
        speed, yaw = self.ego_at(t)
        boxes = []
        w, h = float(self.camera.width), float(self.camera.height)
        for index, agent in enumerate(s.agents):
            if not agent.keys.covers(t):
                continue
            if agent.track is None:  # a 2D track (replayed video sidecar): interpolated in the image
                norm = tuple(float(v) for v in agent.keys.at(t))
            else:
                x, y, heading, z = agent.track.at(t)
                xyxy = project_box(self.camera, box_corners((x, y), heading, agent.size, z))
                if xyxy is None:
                    continue
                norm = (xyxy[0] / w, xyxy[1] / h, xyxy[2] / w, xyxy[3] / h)
            boxes.append(BoxRecord(agent.id, agent.cls, agent.class_index, index + 1,
                                   (float(norm[0]), float(norm[1]), float(norm[2]), float(norm[3]))))
        return FrameCondition(float(t), speed, yaw, tuple(boxes))

    def without(self, agent_ids: set[str]) -> Timeline:
        """The timeline of the scenario without `agent_ids`, keeping the frames computed so far that show
        none of them (their boxes renumbered: an agent's instance id is its place in the scenario)."""
        keep = tuple(a for a in self.scenario.agents if a.id not in agent_ids)
        new = Timeline(replace(self.scenario, agents=keep), self.camera)
        number = {a.id: i + 1 for i, a in enumerate(keep)}
        for key, cond in self._memo.items():
            if not any(b.id in agent_ids for b in cond.boxes):
                new._memo[key] = replace(cond, boxes=tuple(replace(b, instance=number[b.id]) for b in cond.boxes))
        return new

    def frames(self, times: Sequence[float]) -> list[FrameCondition]:
        return [self.at(t) for t in times]

    def unseen(self, seconds: float, fps: float) -> list[str]:
        """Ids of the agents in view in no frame of [0, seconds) at `fps`."""
        times = np.arange(max(1, round(seconds * fps))) / fps
        seen: set[str] = set()
        for t in times:
            seen.update(b.id for b in self.at(float(t)).boxes)
        return [a.id for a in self.scenario.agents if a.id not in seen]

    def check_in_view(self, seconds: float, fps: float) -> None:
        """Every agent must be in view in at least one frame of [0, seconds) at `fps`, else ScenarioError."""
        for agent_id in self.unseen(seconds, fps)[:1]:
            raise ScenarioError(f"{self.scenario.source}: agents[{agent_id}]: never in view of the camera "
                                f"during the {seconds:g} s generated (check track and times)")
