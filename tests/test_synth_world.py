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
