"""Traffic simulation on the road: the ego and every agent, stepped together on a fine time grid.

Vehicles (the ego included) follow the Intelligent Driver Model towards whatever is ahead of them in
their lane (vehicles, cyclists, crossing pedestrians, a red light), change lanes to overtake, and smooth
their acceleration (limited jerk), so the ego's speed and yaw rate vary smoothly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivesim.synth.agents import CROSS, CYCLE, FOLLOW, ONCOMING, PARKED, WALK, AgentSpec
from drivesim.synth.geometry import wrap_angle
from drivesim.synth.road import Road

SUBSTEPS = 4  # simulation steps per camera frame
WARMUP_S = 2.0
LOOK_AHEAD_M = 400.0  # how far ahead a driver reacts to what is in its lane (IDM's pull is ~0 beyond)

_IDM = {  # kind -> (max accel, comfortable decel, time headway, min gap)
    "car": (1.6, 2.5, 1.3, 2.5), "truck": (1.0, 2.0, 1.6, 3.0), "bus": (1.0, 2.0, 1.6, 3.0),
    "cyclist": (1.0, 2.0, 1.0, 1.5), "ego": (1.8, 2.5, 1.4, 3.0),
}


@dataclass
class StopEvent:
    """A red light for the forward lanes: placed ahead of the ego at `start`, cleared at `end` (seconds)."""

    start: float
    end: float
    s: float = float("nan")


@dataclass
class Trajectories:
    """Per camera frame (T) states: the ego, and every agent (N) as road coordinates + world yaw."""

    times: np.ndarray  # (T,) seconds from the scene start
    ego_s: np.ndarray
    ego_d: np.ndarray
    ego_yaw: np.ndarray
    ego_speed: np.ndarray  # (T,) m/s, world speed
    ego_yaw_rate: np.ndarray  # (T,) rad/s
    ego_accel: np.ndarray  # (T,) m/s^2 along the path
    agent_s: np.ndarray  # (T, N)
    agent_d: np.ndarray
    agent_yaw: np.ndarray
    agent_speed: np.ndarray  # (T, N) m/s, >= 0
    stop_s: np.ndarray  # (T,) arc length of the active red light, nan when green
    stop_event: StopEvent | None


def _smoothstep(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quintic ease (position, rate): lateral velocity *and* acceleration start and end at zero, so the
    yaw rate of a lane change is continuous."""
    u = np.clip(u, 0.0, 1.0)
    return 10 * u**3 - 15 * u**4 + 6 * u**5, 30 * u**2 - 60 * u**3 + 30 * u**4


class _Sim:
    def __init__(self, rng: np.random.Generator, road: Road, agents: list[AgentSpec], ego_d: float,
                 ego_speed: float, stop: StopEvent | None, dt: float) -> None:
        self.rng, self.road, self.dt, self.stop = rng, road, dt, stop
        n = len(agents) + 1
        self.kind = ["ego"] + [a.kind for a in agents]
        self.behaviour = ["ego"] + [a.behaviour for a in agents]
        self.s = np.array([0.0] + [a.s0 for a in agents])
        self.d = np.array([ego_d] + [a.d0 for a in agents])
        self.dd = np.zeros(n)
        self.dir = np.array([1.0] + [float(a.direction) for a in agents])
        self.width = np.array([1.9] + [a.width for a in agents])
        self.length = np.array([4.6] + [a.length for a in agents])
        self.v0 = np.array([ego_speed] + [a.speed for a in agents])
        self.idm = np.array([b in ("ego", FOLLOW, ONCOMING, CYCLE) for b in self.behaviour])
        self.v = np.where(self.idm, self.v0 * 0.9, 0.0)
        self.v[0] = ego_speed
        self.acc = np.zeros(n)
        self.params = np.array([_IDM.get(k, _IDM["car"]) for k in self.kind])
        self.cross = np.array([b == CROSS for b in self.behaviour])
        self.obstacle = np.array([b != WALK for b in self.behaviour])  # walkers never leave the sidewalk
        self.cross_time = np.array([0.0] + [a.cross_time for a in agents])
        self.started = np.zeros(n, dtype=bool)
        self.cross_to = np.array([0.0] + [a.cross_to for a in agents])
        self.walk_speed = np.array([0.0] + [a.speed if a.behaviour != PARKED else 0.0 for a in agents])
        # i -> (s0, length, d_from, d_to): a lane change spans a distance, so stopping halfway freezes it
        self.lane_change: dict[int, tuple[float, float, float, float]] = {}
        self.forward_lanes = [road.section.lane_centre(i) for i in range(road.section.forward_lanes)]
        self.heading_extra = np.zeros(n)

    def _leaders(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Gap to, and speed along our direction of, the nearest obstacle ahead in our lane.

        Only IDM drivers look for a leader, only agents that can stand in a lane (not sidewalk walkers)
        are obstacles, and only within LOOK_AHEAD_M: the cost grows with agents x neighbours, not agents^2,
        so long scenes stay fast."""
        s, d, w, ln = self.s, self.d, self.width, self.length
        n = len(s)
        best, j_best = np.full(n, np.inf), np.zeros(n, dtype=np.int64)
        fol, obs = np.flatnonzero(self.idm), np.flatnonzero(self.obstacle)
        if len(fol) and len(obs):
            by_s = obs[np.argsort(s[obs], kind="stable")]
            s_sorted = s[by_s]
            sf, fwd = s[fol], self.dir[fol] > 0
            # ahead strictly (never oneself): (s, s + L] going forward, [s - L, s) going backward
            lo = np.where(fwd, np.searchsorted(s_sorted, sf, "right"),
                          np.searchsorted(s_sorted, sf - LOOK_AHEAD_M, "left"))
            hi = np.where(fwd, np.searchsorted(s_sorted, sf + LOOK_AHEAD_M, "right"),
                          np.searchsorted(s_sorted, sf, "left"))
            width = int((hi - lo).max(initial=0))
            if width > 0:
                rank = lo[:, None] + np.arange(width)[None, :]
                ok = rank < hi[:, None]
                j = by_s[np.minimum(rank, len(by_s) - 1)]  # (F, M) candidate obstacles
                # a crossing pedestrian is turned sideways, and drivers keep a wide berth once it is on the road
                on_road = self.cross[j] & (d[j] > self.road.section.right_kerb) & (d[j] < self.road.section.left_kerb)
                foot = np.where(self.cross[j], np.where(on_road, ln[j] + 3.0, ln[j]), w[j])
                lateral = np.abs(d[j] - d[fol][:, None]) < (w[fol][:, None] + foot) / 2.0 + 0.3
                gap = np.abs(s[j] - sf[:, None]) - (ln[fol][:, None] + ln[j]) / 2.0
                gap = np.where(ok & lateral, gap, np.inf)
                col = np.argmin(gap, axis=1)
                best[fol] = gap[np.arange(len(fol)), col]
                j_best[fol] = j[np.arange(len(fol)), col]
        v_signed = np.where(self.idm, self.v * self.dir, 0.0)
        lead_v = v_signed[j_best] * self.dir
        if self.stop is not None and self.stop.start <= t < self.stop.end:
            ahead_stop = self.stop.s - s
            in_fwd = self.idm & (self.dir > 0) & (d < 0.0) & (ahead_stop > 0.0)
            stop_gap = ahead_stop - ln / 2.0
            can_stop = stop_gap > self.v**2 / 6.0  # too close to stop comfortably: drive on (amber)
            closer = in_fwd & can_stop & (stop_gap < best)
            best = np.where(closer, stop_gap, best)
            lead_v = np.where(closer, 0.0, lead_v)
        return best, np.where(np.isfinite(best), lead_v, self.v)

    def _try_lane_changes(self, t: float, gap: np.ndarray, lead_v: np.ndarray) -> None:
        if len(self.forward_lanes) < 2:
            return
        lanes = np.array(self.forward_lanes)
        for i in np.flatnonzero(self.idm & (self.dir > 0)):
            if i in self.lane_change or self.v[i] < 4.0 or self.behaviour[i] == CYCLE:
                continue
            slow_leader = gap[i] < 35.0 and lead_v[i] < self.v0[i] - 1.5
            whim = self.rng.random() < (0.04 if i == 0 else 0.01)
            if not (slow_leader or whim):
                continue
            cur = int(np.argmin(np.abs(lanes - self.d[i])))
            options = [k for k in (cur - 1, cur + 1) if 0 <= k < len(lanes)]
            target = lanes[options[int(self.rng.integers(len(options)))]]
            rel = (self.s - self.s[i])
            reach = (self.length + self.length[i]) / 2.0  # bumper to bumper, plus safety gaps
            closing = 3.0 * np.maximum(0.0, self.v - self.v[i])  # room for faster traffic from behind
            occupied = (np.abs(self.d - target) < 2.5) & (rel > -reach - 12.0 - closing) & (rel < reach + 18.0)
            occupied[i] = False
            if not occupied.any():
                length = max(30.0, (4.0 if i == 0 else 3.5) * float(self.v[i]))
                self.lane_change[int(i)] = (float(self.s[i]), length, float(self.d[i]), float(target))

    def step(self, t: float, check_lanes: bool) -> None:
        dt = self.dt
        gap, lead_v = self._leaders(t)
        if check_lanes:
            self._try_lane_changes(t, gap, lead_v)
        a_max, b, headway, s_min = self.params.T
        v = self.v
        dv = v - lead_v
        s_star = s_min + np.maximum(0.0, v * headway + v * dv / (2.0 * np.sqrt(a_max * b)))
        free = 1.0 - (v / np.maximum(self.v0, 0.1)) ** 4
        interaction = np.where(np.isfinite(gap), (s_star / np.maximum(gap, 0.3)) ** 2, 0.0)
        target = np.clip(a_max * (free - interaction), -8.0, a_max)
        # limited jerk keeps speed profiles smooth; braking for something sudden may ramp up faster
        jerk = np.where(target < -3.0, 20.0, 5.0) * dt
        self.acc = self.acc + np.clip(target - self.acc, -jerk, jerk)
        new_v = np.maximum(0.0, v + self.acc * dt)
        self.acc = np.where(new_v <= 0.0, np.maximum(self.acc, 0.0), self.acc)
        self.v = np.where(self.idm, new_v, 0.0)
        self.s = self.s + np.where(self.idm, self.v * self.dir, 0.0) * dt
        walking = ~self.idm & ~self.cross
        self.s = self.s + np.where(walking, self.walk_speed * self.dir, 0.0) * dt
        # crossing pedestrians: wait at the kerb, then walk across
        waiting = self.cross & ~self.started & (t >= self.cross_time)
        for i in np.flatnonzero(waiting):  # step off the kerb only when no vehicle is close
            ahead = (self.s[i] - self.s) * self.dir
            half = self.length / 2.0
            near = self.idm & (ahead > -half - 3.0) & (ahead < half + 4.0 * self.v + 12.0)
            if not near.any():
                self.started[i] = True
        crossing = self.started & (np.abs(self.cross_to - self.d) > 0.05)
        step_d = np.sign(self.cross_to - self.d) * self.walk_speed * dt
        self.d = np.where(crossing, self.d + step_d, self.d)
        self.dd = np.where(crossing, step_d / dt, 0.0)
        for i, (s0, length, d_from, d_to) in list(self.lane_change.items()):
            u = (self.s[i] - s0) / length
            pos, rate = _smoothstep(np.array(u))
            self.d[i] = d_from + (d_to - d_from) * float(pos)
            self.dd[i] = (d_to - d_from) * float(rate) / length * self.v[i]
            if u >= 1.0:
                self.d[i], self.dd[i] = d_to, 0.0
                del self.lane_change[i]

    def yaw(self) -> np.ndarray:
        heading = self.road.heading_at(self.s)
        along = np.where(self.idm, np.maximum(self.v, 0.05), 1.0) * self.dir
        yaw = heading + np.arctan2(self.dd * self.idm, along)
        yaw = np.where(self.cross, heading + np.where(self.dir > 0, np.pi / 2, -np.pi / 2), yaw)
        return wrap_angle(yaw)


def simulate(rng: np.random.Generator, road: Road, agents: list[AgentSpec], ego_d: float, ego_speed: float,
             stop: StopEvent | None, n_frames: int, fps: float) -> Trajectories:
    """Step everything on a grid of fps * SUBSTEPS Hz; sample states at the camera frames."""
    dt = 1.0 / (fps * SUBSTEPS)
    sim = _Sim(rng, road, agents, ego_d, ego_speed, stop, dt)
    warm = int(round(WARMUP_S / dt))
    n_steps = warm + (n_frames - 1) * SUBSTEPS + 3
    cruise_change = 0.0
    stopped_once = False
    frames = warm + 1 + np.arange(n_frames) * SUBSTEPS
    at_frame = np.zeros(n_steps, dtype=bool)
    at_frame[frames] = True
    near_frame = at_frame.copy()  # the ego's speed and yaw rate are central differences around frames
    near_frame[frames - 1] = near_frame[frames + 1] = True
    # agents are recorded at camera frames only: memory grows with frames x agents, not substeps
    rec_s, rec_d, rec_yaw, rec_v, rec_acc = [], [], [], [], []
    ego_xyz = np.zeros((n_steps, 3))
    ego_yaw = np.zeros(n_steps)
    for k in range(n_steps):
        t = (k - warm - 1) * dt  # record index warm + 1 is the scene's t = 0
        if t >= cruise_change:  # the ego picks a new cruising speed now and then
            sim.v0[0] = float(rng.uniform(6.0, 15.0))
            cruise_change = t + float(rng.uniform(4.0, 9.0))
        if stop is not None and np.isnan(stop.s) and t >= stop.start:  # the light ahead turns red
            stop.s = float(sim.s[0] + max(30.0, sim.v[0] ** 2 / 2.4 + 15.0))
        if stop is not None and stop.start <= t < stop.end and sim.v[0] < 0.05 and not stopped_once:
            stopped_once = True  # the light turns green a few seconds after the ego has stopped
            stop.end = t + float(rng.uniform(2.0, 4.0))
        if k == warm:  # warm-up settles the traffic; the ego starts the scene at s = 0
            sim.s = sim.s - sim.s[0]
        if near_frame[k]:
            yaw = sim.yaw()
            ego_xyz[k] = road.points(sim.s[0], sim.d[0])
            ego_yaw[k] = yaw[0]
            if at_frame[k]:
                rec_s.append(sim.s.copy())
                rec_d.append(sim.d.copy())
                rec_yaw.append(yaw)
                rec_v.append(sim.v.copy())
                rec_acc.append(sim.acc[0])
        sim.step(t, check_lanes=(k % (SUBSTEPS * 6) == 0 and t >= 0.0))
    s, d = np.array(rec_s), np.array(rec_d)
    yaw_f, v = np.array(rec_yaw), np.array(rec_v)
    vel = (ego_xyz[frames + 1] - ego_xyz[frames - 1]) / (2 * dt)
    speed = np.linalg.norm(vel, axis=1)
    yaw_rate = wrap_angle(ego_yaw[frames + 1] - ego_yaw[frames - 1]) / (2 * dt)
    stop_s = np.full(n_frames, np.nan)
    times = np.arange(n_frames) / fps
    if stop is not None:
        active = (times >= stop.start) & (times < stop.end)
        stop_s[active] = stop.s
    return Trajectories(times=times, ego_s=s[:, 0], ego_d=d[:, 0], ego_yaw=yaw_f[:, 0],
                        ego_speed=speed, ego_yaw_rate=yaw_rate, ego_accel=np.array(rec_acc),
                        agent_s=s[:, 1:], agent_d=d[:, 1:], agent_yaw=yaw_f[:, 1:],
                        agent_speed=v[:, 1:], stop_s=stop_s, stop_event=stop)
