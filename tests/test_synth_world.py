"""The procedural world's behaviour (no rendering): smooth ego motion, stops, traffic, labels, errors."""

from __future__ import annotations

import numpy as np
import pytest

from drivesim.config.synth import CameraConfig, SynthConfig, WorldConfig
from drivesim.synth.agents import FOLLOW, ONCOMING
from drivesim.synth.camera import Camera
from drivesim.synth.raster import Rasteriser
from drivesim.synth.scene import build_scene, frame_count


def test_frame_count_starts_and_ends_on_key_frames() -> None:
    assert frame_count(4.0, 12.0, 2.0) == (49, 6)
    assert frame_count(0.2, 12.0, 2.0) == (7, 6)
    with pytest.raises(ValueError, match="keyframe_hz"):
        frame_count(4.0, 12.0, 5.0)


def test_ego_motion_is_smooth_and_stops_at_red_lights() -> None:
    cfg = SynthConfig(seconds=20.0, seed=0, world=WorldConfig(stop_probability=1.0))
    stopped, changed_lane, turned = 0, 0, 0
    for index in range(4):
        traj = build_scene(cfg, index).traj
        accel = np.diff(traj.ego_speed) * cfg.fps
        assert np.all(traj.ego_speed >= 0) and np.all(np.abs(accel) < 9.0)
        assert np.all(np.abs(np.diff(accel)) * cfg.fps < 25.0)  # bounded jerk: no speed steps
        assert np.all(np.abs(np.diff(traj.ego_yaw_rate)) * cfg.fps < 1.5)  # yaw rate is continuous
        stopped += int((traj.ego_speed < 0.05).any())
        changed_lane += int(np.ptp(traj.ego_d) > 3.0)
        turned += int(np.abs(traj.ego_yaw_rate).max() > 0.03)
    assert stopped >= 2 and turned >= 2 and changed_lane >= 1


def test_traffic_overtakes_meets_and_leaves_the_view() -> None:
    cfg = SynthConfig(seconds=12.0, seed=3, world=WorldConfig(crowdedness="crowded", forward_lanes=2))
    passes = {ONCOMING: 0, FOLLOW: 0}
    for index in range(3):
        scene = build_scene(cfg, index)
        rel = scene.traj.agent_s - scene.traj.ego_s[:, None]  # along-road position relative to the ego
        beh = np.array([a.behaviour for a in scene.agents])
        swapped = ((rel[0] > 5) & (rel[-1] < -5)) | ((rel[0] < -5) & (rel[-1] > 5))
        for key in passes:
            passes[key] += int((swapped & (beh == key)).sum())
    assert passes[ONCOMING] > 0 and passes[FOLLOW] > 0  # oncoming traffic meets us; overtaking, either way
    kinds = {a.kind for a in scene.agents}
    assert {"car", "pedestrian", "cyclist"} <= kinds and kinds & {"truck", "bus"}
    camera = Camera.from_config(CameraConfig(width=256, height=128))
    rast = Rasteriser(scene, camera)
    seen = [set(rast.render(k).stats) for k in range(0, scene.n_frames, 12)]
    assert seen[0] - seen[-1] and seen[-1] - seen[0]  # agents leave and enter the view


def test_labels_are_forced_or_drawn_and_bad_values_are_named() -> None:
    scene = build_scene(SynthConfig(seconds=1.0, world=WorldConfig(time_of_day="dusk", weather="fog")), 0)
    assert scene.description.startswith("dusk, fog, ")
    drawn = {build_scene(SynthConfig(seconds=1.0, seed=s), 0).time_of_day for s in range(12)}
    assert drawn == {"day", "dusk", "night"}
    with pytest.raises(ValueError, match="world.crowdedness"):
        build_scene(SynthConfig(seconds=1.0, world=WorldConfig(crowdedness="packed")), 0)
    with pytest.raises(ValueError, match="camera.horizontal_fov_deg"):
        Camera.from_config(CameraConfig(horizontal_fov_deg=200.0))


def test_leader_search_matches_brute_force() -> None:
    """The windowed leader search (fast on long scenes) finds what comparing every pair finds."""
    from drivesim.synth.agents import WALK
    from drivesim.synth.traffic import LOOK_AHEAD_M, StopEvent, _Sim

    scene = build_scene(SynthConfig(seconds=8.0, seed=2, world=WorldConfig(crowdedness="crowded")), 0)
    rng = np.random.default_rng(0)
    sim = _Sim(rng, scene.road, scene.agents, scene.traj.ego_d[0], 10.0, StopEvent(0.0, 9.0, 80.0), 1.0 / 48)
    for step in range(200):
        sim.step(step / 48.0, check_lanes=step % 24 == 0)
    sim.d[sim.cross] = 0.5 * (sim.d[sim.cross] + sim.road.section.right_kerb)  # some crossers on the road
    best, lead_v = sim._leaders(1.0)
    sec, n = scene.road.section, len(sim.s)
    walker = np.array([b == WALK for b in sim.behaviour])
    for i in np.flatnonzero(sim.idm):
        want, v = np.inf, sim.v[i]
        for j in range(n):
            ahead = (sim.s[j] - sim.s[i]) * sim.dir[i]
            if j == i or walker[j] or not 0 < ahead <= LOOK_AHEAD_M:
                continue
            on_road = sim.cross[j] and sec.right_kerb < sim.d[j] < sec.left_kerb
            foot = (sim.length[j] + 3.0 if on_road else sim.length[j]) if sim.cross[j] else sim.width[j]
            if abs(sim.d[j] - sim.d[i]) < (sim.width[i] + foot) / 2 + 0.3:
                gap = ahead - (sim.length[i] + sim.length[j]) / 2
                if gap < want:
                    want, v = gap, (sim.v[j] * sim.dir[j] if sim.idm[j] else 0.0) * sim.dir[i]
        stop_gap = 80.0 - sim.s[i] - sim.length[i] / 2
        if sim.dir[i] > 0 and sim.d[i] < 0 and 80.0 > sim.s[i] and stop_gap > sim.v[i] ** 2 / 6 and stop_gap < want:
            want, v = stop_gap, 0.0
        assert best[i] == pytest.approx(want) and lead_v[i] == pytest.approx(v), f"agent {i}"
    assert np.isfinite(best[sim.idm]).sum() >= 5


def _signed_distance(poly: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Distance of points inside a convex polygon to its boundary (negative outside)."""
    edges = np.roll(poly, -1, axis=0) - poly
    orient = np.sign(np.sum(poly[:, 0] * np.roll(poly[:, 1], -1) - np.roll(poly[:, 0], -1) * poly[:, 1]))
    dist = [orient * (e[0] * (ys - a[1]) - e[1] * (xs - a[0])) / np.hypot(*e) for a, e in zip(poly, edges)]
    return np.min(dist, axis=0)


def test_clipping_far_vertices_keeps_the_pixels() -> None:
    """A polygon reaching far outside the image is clipped exactly (not clamped, which bends its edges):
    every pixel centre clearly inside or outside the true polygon comes out right."""
    import cv2

    from drivesim.synth.camera import clip_rect

    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:64, 0:64].astype(float)
    for _ in range(20):
        tri = np.concatenate([rng.uniform(0, 64, size=(2, 2)), rng.uniform(-1e5, 1e5, size=(1, 2))])
        clipped = clip_rect(tri, -16, -16, 80, 80)
        assert len(clipped) >= 3 and np.abs(clipped).max() <= 80
        mask = np.zeros((64, 64), np.uint8)
        cv2.fillConvexPoly(mask, np.round(clipped * 16).astype(np.int32), (1,), cv2.LINE_8, 4)
        d = _signed_distance(tri, xs, ys)
        assert np.all(mask[d > 0.75] == 1) and np.all(mask[d < -0.75] == 0)
