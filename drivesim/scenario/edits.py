"""Edits of a scenario (replay): remove, add or shift agents, scale an agent's or the ego's speed, relabel.

Speed edits work in a world frame made by integrating the ego's speed and yaw rate from t = 0:
an agent's speed factor f scales its world displacement from its first key, w'(t) = w(t0) + f (w(t) - w(t0));
an ego factor scales the ego's speed keys, and every agent keeps its world track, seen from the new ego.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from drivesim.scenario.spec import Agent, Keys, Scenario, ScenarioError, parse_scenario
from drivesim.vocab import LABEL_VOCAB

EGO = "ego"
_DT = 0.02  # integration step of the ego pose (s)


def apply_edits(scenario: Scenario, *, remove: Sequence[str] = (), add: Sequence[Mapping[str, Any]] = (),
                shift: Mapping[str, Sequence[float]] | None = None, speed_scale: Mapping[str, float] | None = None,
                labels: Mapping[str, str] | None = None, where: str = "scenario.replay") -> Scenario:
    """A new scenario with the edits applied in that order: remove, add, shift, speed, labels."""
    agents = {a.id: a for a in scenario.agents}

    def known(field: str, agent_id: str, needs_3d: bool = False) -> None:
        if agent_id not in agents:
            have = ", ".join(sorted(agents)[:12]) or "none"
            raise ScenarioError(f"{where}.{field}: unknown agent {agent_id!r} in {scenario.source} (agents: {have})")
        if needs_3d and agents[agent_id].track is None:
            raise ScenarioError(f"{where}.{field}: agent {agent_id!r} has a 2D box track only (no 3D boxes in "
                                f"{scenario.source})")

    for agent_id in remove:
        known("remove", str(agent_id))
        del agents[str(agent_id)]
    if add:
        added = parse_scenario({"agents": [dict(a) for a in add]}, f"{where}.add").agents
        for agent in added:
            if agent.id in agents:
                raise ScenarioError(f"{where}.add: agent id {agent.id!r} already exists in {scenario.source}")
            agents[agent.id] = agent
    for agent_id, delta in (shift or {}).items():
        known("shift", str(agent_id), needs_3d=True)
        if len(delta) != 2:
            raise ScenarioError(f"{where}.shift.{agent_id}: give [dx, dy] in metres, got {list(delta)}")
        a = agents[str(agent_id)]
        assert a.track is not None
        values = a.track.values.copy()
        values[:, :2] += np.asarray(delta, dtype=np.float64)
        agents[a.id] = replace(a, track=Keys(a.track.times, values))
    speed = scenario.speed
    scales = dict(speed_scale or {})
    for agent_id in scales:
        if agent_id != EGO:
            known("speed_scale", str(agent_id), needs_3d=True)
        elif any(a.track is None for a in agents.values()):
            raise ScenarioError(f"{where}.speed_scale.ego: {scenario.source} has 2D box tracks only; "
                                "they cannot be re-seen from another ego path")
        if not float(scales[agent_id]) >= 0:
            raise ScenarioError(f"{where}.speed_scale.{agent_id}: must be >= 0, got {scales[agent_id]}")
    if scales:
        if scenario.speed is None:
            raise ScenarioError(f"{where}.speed_scale: needs the ego speed, which {scenario.source} does not give")
        ego = _EgoPath(scenario)
        new_speed = Keys(scenario.speed.times, scenario.speed.values * float(scales.get(EGO, 1.0)))
        new_ego = _EgoPath(replace(scenario, speed=new_speed))
        for agent_id, agent in list(agents.items()):
            factor = float(scales.get(agent_id, 1.0))
            if factor != 1.0 or EGO in scales:
                agents[agent_id] = _rescaled(agent, factor, ego, new_ego)
        speed = new_speed
    new_labels = dict(scenario.labels)
    for name, value in (labels or {}).items():
        if name not in LABEL_VOCAB or value not in LABEL_VOCAB[name]:
            raise ScenarioError(f"{where}.labels.{name}: unknown label or value {value!r}")
        new_labels[name] = value
    return replace(scenario, agents=tuple(agents.values()), speed=speed, labels=new_labels)


class _EgoPath:
    """The ego's planar pose (x, y, heading) at any time, integrated from speed and yaw rate at t = 0."""

    def __init__(self, scenario: Scenario) -> None:
        assert scenario.speed is not None
        times = [scenario.speed.times]
        if scenario.yaw_rate is not None:
            times.append(scenario.yaw_rate.times)
        for a in scenario.agents:
            times.append(a.keys.times)
        lo, hi = min(0.0, min(t[0] for t in times)), max(0.0, max(t[-1] for t in times))
        self.t = np.arange(lo, hi + _DT, _DT)
        v = np.array([scenario.speed.at(t)[0] for t in self.t])
        w = np.array([scenario.yaw_rate.at(t)[0] for t in self.t]) if scenario.yaw_rate is not None else 0 * v
        zero = int(np.argmin(np.abs(self.t)))  # the ego frame at t = 0 is the world frame
        heading = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * _DT)])
        heading -= heading[zero]
        vx, vy = v * np.cos(heading), v * np.sin(heading)
        x = np.concatenate([[0.0], np.cumsum(0.5 * (vx[1:] + vx[:-1]) * _DT)])
        y = np.concatenate([[0.0], np.cumsum(0.5 * (vy[1:] + vy[:-1]) * _DT)])
        self.x, self.y, self.h = x - x[zero], y - y[zero], heading

    def pose(self, t: float) -> tuple[float, float, float]:
        return (float(np.interp(t, self.t, self.x)), float(np.interp(t, self.t, self.y)),
                float(np.interp(t, self.t, self.h)))

    def to_world(self, t: float, p: np.ndarray) -> np.ndarray:
        x, y, h = self.pose(t)
        c, s = np.cos(h), np.sin(h)
        return np.array([x + c * p[0] - s * p[1], y + s * p[0] + c * p[1], p[2] + h, *p[3:]])

    def to_ego(self, t: float, w: np.ndarray) -> np.ndarray:
        x, y, h = self.pose(t)
        c, s = np.cos(h), np.sin(h)
        dx, dy = w[0] - x, w[1] - y
        return np.array([c * dx + s * dy, -s * dx + c * dy, w[2] - h, *w[3:]])


def _rescaled(agent: Agent, factor: float, old: _EgoPath, new: _EgoPath) -> Agent:
    assert agent.track is not None
    times = agent.track.times
    world = np.array([old.to_world(t, v) for t, v in zip(times, agent.track.values)])
    world[:, :2] = world[0, :2] + factor * (world[:, :2] - world[0, :2])
    values = np.array([new.to_ego(t, w) for t, w in zip(times, world)])
    return replace(agent, track=Keys(times.copy(), values))
