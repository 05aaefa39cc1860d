"""Ego motion (speed, yaw rate, future waypoints) from a time series of ego poses.

Velocities come from second-order differences of the poses over time (np.gradient handles the
uneven spacing of real sensor timestamps) and are interpolated to the clip's frame times, so the
speed at a camera frame does not depend on which frames the clip happened to pick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from drivesim.data.clip import EgoMotion


@dataclass
class PoseTrack:
    """Ego poses of one scene: times (N,) s increasing, positions (N, 3) m world, yaws (N,) rad."""

    times: np.ndarray
    positions: np.ndarray
    yaws: np.ndarray

    def __post_init__(self) -> None:
        times = np.asarray(self.times, np.float64)
        # Sorted, and one pose per timestamp (a repeated time would divide by zero in the differences).
        _, order = np.unique(times, return_index=True)
        self.times = times[order]
        self.positions = np.asarray(self.positions, np.float64).reshape(-1, 3)[order]
        self.yaws = np.unwrap(np.asarray(self.yaws, np.float64)[order])

    def position_at(self, t: np.ndarray) -> np.ndarray:
        return np.stack([np.interp(t, self.times, self.positions[:, i]) for i in range(3)], axis=-1)

    def yaw_at(self, t: np.ndarray) -> np.ndarray:
        return np.interp(t, self.times, self.yaws)


def yaw_from_quaternion(wxyz: np.ndarray) -> float:
    """Heading (rotation about world z) of a w, x, y, z quaternion, in radians."""
    w, x, y, z = (float(v) for v in wxyz)
    return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))


def ego_motion(track: PoseTrack, times: np.ndarray, horizon: int, waypoint_dt: float) -> EgoMotion:
    """Ego motion at `times` (s, same clock as the track)."""
    times = np.asarray(times, np.float64)
    if len(track.times) < 2:
        return EgoMotion.unknown(len(times), horizon, waypoint_dt)
    edge: Literal[1, 2] = 2 if len(track.times) > 2 else 1  # second-order at the scene ends too
    velocity = np.gradient(track.positions, track.times, axis=0, edge_order=edge)
    yaw_rate = np.gradient(track.yaws, track.times, edge_order=edge)
    speed_at = np.linalg.norm(velocity, axis=1)
    speed = np.interp(times, track.times, speed_at)
    rate = np.interp(times, track.times, yaw_rate)

    future = times[:, None] + waypoint_dt * np.arange(1, horizon + 1)[None, :]
    here = track.position_at(times)
    there = track.position_at(future.reshape(-1)).reshape(len(times), horizon, 3)
    delta = there[..., :2] - here[:, None, :2]
    yaw = track.yaw_at(times)
    cos, sin = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    # World -> flat ego frame (x forward, y left): rotate by -yaw.
    waypoints = np.stack([cos * delta[..., 0] + sin * delta[..., 1], -sin * delta[..., 0] + cos * delta[..., 1]], -1)
    mask = future <= track.times[-1] + 1e-6
    waypoints[~mask] = 0.0
    return EgoMotion(
        speed=speed.astype(np.float32),
        yaw_rate=rate.astype(np.float32),
        waypoints=waypoints.astype(np.float32),
        waypoint_mask=mask,
        waypoint_dt=waypoint_dt,
    )
