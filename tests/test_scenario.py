"""Scenario files: parsing, every validation error, and the projection of agents to 2D boxes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from drivesim.scenario import PinholeCamera, ScenarioError, Timeline, load_scenario, parse_scenario
from drivesim.scenario.camera import box_corners, project_box, resolve_camera

W, H = 256, 128
CAM = PinholeCamera.mounted(W, H, horizontal_fov_deg=70.0, mount_height_m=1.5, mount_forward_m=1.7)
F = CAM.intrinsics[0, 0]


def _scenario(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "cut_in", "seconds": 4,
        "labels": {"time_of_day": "night", "weather": "rain", "crowdedness": "sparse"},
        "ego": {"speed": [[0, 10.0], [2, 14.0]], "yaw_rate": [[0, 0.0], [4, 0.1]]},
        "agents": [{"id": "lead", "class": "car", "size": [4.5, 1.9, 1.6],
                    "track": [[0, 25.0, 0.0, 0.0], [4, 15.0, 0.0, 0.0]]}],
    }
    base.update(changes)
    return base


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_load_parses_every_field(tmp_path: Path) -> None:
    s = load_scenario(_write(tmp_path, _scenario(text="night, rain")))
    assert s.name == "cut_in" and s.seconds == 4 and s.text == "night, rain"
    assert s.label_indices() == [1, 1, 0]  # night, rain, sparse: vocabulary index - 1
    assert s.agents[0].cls == "car" and s.agents[0].size == (4.5, 1.9, 1.6)


def test_ego_values_interpolate_and_hold_their_end_keys() -> None:
    tl = Timeline(parse_scenario(_scenario(), "s.yaml"), CAM)
    assert tl.at(1.0).ego_speed == pytest.approx(12.0)
    assert tl.at(-1.0).ego_speed == 10.0 and tl.at(3.0).ego_speed == 14.0
    assert tl.at(2.0).ego_yaw_rate == pytest.approx(0.05)
    missing = Timeline(parse_scenario(_scenario(ego=None), "s.yaml"), CAM).at(0.0)
    assert math.isnan(missing.ego_speed) and math.isnan(missing.ego_yaw_rate)


def test_box_lands_where_the_pinhole_model_puts_it() -> None:
    # A 2 x 2 x 3 m box whose near face is 19 m in front of the camera (centre 20 m + 1.7 m mount ahead).
    xyxy = project_box(CAM, box_corners((21.7, 0.0), 0.0, (2.0, 2.0, 3.0)))
    assert xyxy is not None
    near = 19.0
    expected = [W / 2 - F * 1.0 / near, H / 2 - F * 1.5 / near, W / 2 + F * 1.0 / near, H / 2 + F * 1.5 / near]
    np.testing.assert_allclose(xyxy, expected, atol=1e-6)
    # Shifted 2 m left (y > 0): its right edge (y = 1 m) is seen at the far face (depth 21 m).
    left = project_box(CAM, box_corners((21.7, 2.0), 0.0, (2.0, 2.0, 3.0)))
    assert left is not None
    assert left[0] == pytest.approx(W / 2 - F * 3.0 / near) and left[2] == pytest.approx(W / 2 - F * 1.0 / 21.0)


def test_approaching_lead_car_grows_like_one_over_distance() -> None:
    tl = Timeline(parse_scenario(_scenario(), "s.yaml"), CAM)
    products = []
    for t in (0.0, 1.0, 2.0, 3.0, 4.0):
        box = tl.at(t).boxes[0]
        x_center = 25.0 - 2.5 * t
        depth = x_center - 4.5 / 2 - 1.7  # the rear face, nearest the camera
        products.append((box.xyxy[2] - box.xyxy[0]) * W * depth)
    np.testing.assert_allclose(products, F * 1.9, rtol=1e-6)


def test_box_partly_behind_camera_is_clipped_at_the_near_plane() -> None:
    # A long truck beside the ego from 10 m behind to 10 m ahead: visible, cut at the frame edge.
    xyxy = project_box(CAM, box_corners((1.7, 4.0), 0.0, (20.0, 2.5, 3.0)))
    assert xyxy is not None and xyxy[0] == 0.0
    assert project_box(CAM, box_corners((-15.0, 0.0), 0.0, (4.0, 2.0, 1.5))) is None  # wholly behind
    assert project_box(CAM, box_corners((10.0, 80.0), 0.0, (4.0, 2.0, 1.5))) is None  # outside the frame


def test_agent_absent_outside_its_key_times() -> None:
    data = _scenario(agents=[{"id": 7, "class": "pedestrian", "size": [0.6, 0.6, 1.8],
                              "track": [[1, 10.0, 0.0, 0.0], [2, 9.0, 0.0, 0.0]]}])
    tl = Timeline(parse_scenario(data, "s.yaml"), CAM)
    assert [len(tl.at(t).boxes) for t in (0.5, 1.0, 1.5, 2.0, 2.5)] == [0, 1, 1, 1, 0]
    record = tl.at(1.5).to_json(3)
    assert record["frame"] == 3 and record["boxes"][0]["id"] == "7" and record["boxes"][0]["class"] == "pedestrian"


def test_keys_before_the_first_frame_place_an_agent_already_on_the_road() -> None:
    """Negative key times are allowed: the agent is at its interpolated point at t = 0."""
    moving = _scenario(agents=[{"id": "a", "class": "car", "size": [4.5, 1.9, 1.6],
                                "track": [[-2, 30.0, 0.0, 0.0], [2, 10.0, 0.0, 0.0]]}])
    midway = _scenario(agents=[{"id": "a", "class": "car", "size": [4.5, 1.9, 1.6],
                                "track": [[0, 20.0, 0.0, 0.0], [1, 15.0, 0.0, 0.0]]}])
    at_zero = Timeline(parse_scenario(moving, "s.yaml"), CAM).at(0.0).boxes
    assert len(at_zero) == 1
    np.testing.assert_allclose(at_zero[0].xyxy, Timeline(parse_scenario(midway, "s.yaml"), CAM).at(0.0).boxes[0].xyxy)
    gone = _scenario(agents=[{"id": "a", "class": "car", "size": [4.5, 1.9, 1.6],
                              "track": [[-3, 30.0, 0.0, 0.0], [-1, 10.0, 0.0, 0.0]]}])
    with pytest.raises(ScenarioError, match="never in view"):
        Timeline(parse_scenario(gone, "s.yaml"), CAM).check_in_view(4.0, 3.0)


def test_camera_from_export_data_is_rescaled_to_the_output_frame() -> None:
    big = PinholeCamera.mounted(512, 256)
    cam = resolve_camera(None, {"intrinsics": big.intrinsics.tolist(), "extrinsics": None}, [256, 512], H, W)
    np.testing.assert_allclose(cam.intrinsics, CAM.intrinsics)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"agents": [{"id": "a", "class": "spaceship", "size": [1, 1, 1], "track": [[0, 9, 0, 0]]}]}, "class"),
        ({"labels": {"time_of_day": "noon"}}, "labels.time_of_day"),
        ({"labels": {"season": "winter"}}, "labels.season"),
        ({"ego": {"speed": [[0, 5.0], [1, -1.0]]}}, "ego.speed"),
        ({"ego": {"speed": [[2, 5.0], [1, 6.0]]}}, "ego.speed"),
        ({"ego": {"yaw_rate": []}}, "ego.yaw_rate"),
        ({"agents": [{"id": "a", "class": "car", "size": [4, 0, 1], "track": [[0, 9, 0, 0]]}]}, "size"),
        ({"agents": [{"id": "a", "class": "car", "size": [4, 2, 1], "track": []}]}, "track"),
        ({"agents": [{"id": "a", "class": "car", "size": [4, 2, 1], "track": [[1, 9, 0, 0], [1, 8, 0, 0]]}]},
         "track"),
        ({"agents": [{"id": "a", "class": "car", "size": [4, 2, 1], "track": [[0, 9, 0, 0]], "colour": 1}]},
         "colour"),
        ({"weather": "rain"}, "weather"),
        ({"seconds": -3}, "seconds"),
        ({"camera": {"horizontal_fov_deg": 70, "extrinsics": [[0.0] * 4] * 4}}, "camera.extrinsics"),
        ({"camera": {"horizontal_fov_deg": 70, "extrinsics": [[2.0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}},
         "camera.extrinsics"),
        ({"camera": {"intrinsics": [[0.0] * 3] * 3, "size": [128, 256]}}, "camera.intrinsics"),
        ({"agents": [{"id": [1, 2], "class": "car", "size": [4, 2, 1], "track": [[0, 9, 0, 0]]}]}, "id"),
    ],
)
def test_invalid_scenarios_name_the_field(tmp_path: Path, changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(_write(tmp_path, _scenario(**changes)))
    message = str(info.value)
    assert len(message.splitlines()) == 1 and named in message and "scenario.yaml" in message


def test_agent_never_in_view_is_an_error() -> None:
    data = _scenario(agents=[{"id": "ghost", "class": "car", "size": [4, 2, 1.5],
                              "track": [[0, -30.0, 0.0, 0.0], [4, -20.0, 0.0, 0.0]]}])
    tl = Timeline(parse_scenario(data, "s.yaml"), CAM)
    with pytest.raises(ScenarioError, match=r"agents\[ghost\]: never in view"):
        tl.check_in_view(4.0, 3.0)
    # In view only after the requested seconds: still an error.
    late = _scenario(agents=[{"id": "late", "class": "car", "size": [4, 2, 1.5],
                              "track": [[5, 20.0, 0.0, 0.0], [6, 20.0, 0.0, 0.0]]}])
    with pytest.raises(ScenarioError, match="late"):
        Timeline(parse_scenario(late, "s.yaml"), CAM).check_in_view(4.0, 3.0)
    Timeline(parse_scenario(_scenario(), "s.yaml"), CAM).check_in_view(4.0, 3.0)


@pytest.mark.parametrize("text", ["name: [unclosed", "- just\n- a list\n", "\x00\x01binary"])
def test_files_that_are_not_yaml_mappings_are_errors(tmp_path: Path, text: str) -> None:
    with pytest.raises(ScenarioError, match="scenario.yaml"):
        load_scenario(_write(tmp_path, text))


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(tmp_path / "nope.yaml")


def test_a_timeline_without_unseen_agents_matches_one_built_from_scratch() -> None:
    """`without` keeps the frames already computed, renumbering the instance ids exactly as a timeline of
    the reduced scenario numbers them; frames are computed once per time."""
    from dataclasses import replace

    agents = [{"id": "ghost", "class": "car", "size": [4, 2, 1.5], "track": [[0, -30.0, 0.0, 0.0], [4, -20.0, 0.0, 0.0]]},
              {"id": "lead", "class": "car", "size": [4.5, 1.9, 1.6], "track": [[0, 25.0, 0.0, 0.0], [4, 15.0, 0.0, 0.0]]}]
    scenario = parse_scenario(_scenario(agents=agents), "s.yaml")
    tl = Timeline(scenario, CAM)
    unseen = set(tl.unseen(4.0, 3.0))
    assert unseen == {"ghost"}
    reduced = tl.without(unseen)
    fresh = Timeline(replace(scenario, agents=tuple(a for a in scenario.agents if a.id != "ghost")), CAM)
    for t in (0.0, 1 / 3, 2.0, 3.5):
        assert reduced.at(t) == fresh.at(t) and reduced.at(t).boxes[0].instance == 1
    assert reduced.at(1 / 3) is reduced.at(0.1 + 0.2 + 1 / 3 - 0.30000000000000004)  # one computation per time


def test_a_copy_of_a_shipped_scenario_file_loads(tmp_path: Path) -> None:
    """Users copy conf/scenario files, `defaults:` list included: scenario.path= reads them."""
    repo = Path(__file__).resolve().parents[1]
    copy = tmp_path / "mine.yaml"
    copy.write_text((repo / "conf" / "scenario" / "cut_in_at_night.yaml").read_text())
    scenario = load_scenario(copy)
    assert scenario.name == "cut_in_at_night" and scenario.agents


def test_a_config_group_scenario_names_its_own_file(tmp_path: Path) -> None:
    """scenario=NAME: errors name conf/scenario/NAME.yaml, and a file without `name:` is named after it."""
    import shutil

    from drivesim.config.compose import compose_command
    from drivesim.scenario.from_config import scenario_from_config

    repo = Path(__file__).resolve().parents[1]
    conf = tmp_path / "conf"
    shutil.copytree(repo / "conf", conf)
    head = "defaults:\n  - /schema/scenario/base@_here_\n  - _self_\n"
    (conf / "scenario" / "nameless.yaml").write_text(head + "seconds: 2\nego:\n  speed: [[0, 5.0]]\n")
    (conf / "scenario" / "broken.yaml").write_text(head + "name: lead_brake\nego:\n  speed: [[0, .nan]]\n")
    cfg = compose_command("generate", ["scenario=nameless", "checkpoint=x"], conf_dir=conf)
    assert scenario_from_config(cfg.scenario).name == "nameless"
    cfg = compose_command("generate", ["scenario=broken", "checkpoint=x"], conf_dir=conf)
    with pytest.raises(ScenarioError, match=r"broken\.yaml: ego\.speed"):
        scenario_from_config(cfg.scenario)
    cfg = compose_command("generate", ["scenario=nameless", "checkpoint=x", "scenario.seconds=3"], conf_dir=conf)
    assert scenario_from_config(cfg.scenario).name == "nameless"  # overrides do not rename it
    cfg = compose_command("generate", ["scenario=nameless", "checkpoint=x", "scenario.seconds=-1"], conf_dir=conf)
    with pytest.raises(ScenarioError, match=r"nameless\.yaml \(with scenario\.\* overrides\): seconds"):
        scenario_from_config(cfg.scenario)
