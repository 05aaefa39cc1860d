"""Replay: a dataset clip as a scenario (boxes where the dataset puts them), edits, and `scenario=replay`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from generate_fixtures import write_micro_exports

from drivesim.cli import main
from drivesim.config.synth import CameraConfig, SynthConfig
from drivesim.data import NuScenesClips
from drivesim.scenario import ScenarioError, Timeline, parse_scenario, resolve_camera
from drivesim.scenario.edits import apply_edits
from drivesim.scenario.from_clip import scenario_from_clip
from drivesim.synth import render_dataset


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    cfg = SynthConfig(out=str(tmp_path_factory.mktemp("synth") / "world"), scenes=1, seconds=5.0, seed=3,
                      camera=CameraConfig(width=256, height=128))
    return render_dataset(cfg)


def test_replayed_boxes_land_where_the_dataset_puts_them(world: Path) -> None:
    ds = NuScenesClips(world, "v1.0-synth", frames=4, fps=3.0, size=(64, 128), stride=1.0)
    clip = ds[1]
    t0 = float(clip.source.timestamps[0])
    scenario = scenario_from_clip(clip, t0, "replay", "test", lambda row: str(row))
    timeline = Timeline(scenario, resolve_camera(scenario.camera, None, None, 64, 128))
    checked = 0
    for k in range(4):
        mine = {b.id: np.array(b.xyxy) * [128, 64, 128, 64]
                for b in timeline.at(float(clip.source.timestamps[k]) - t0).boxes}
        for box, inst, corners in zip(clip.boxes_2d[k], clip.instance_ids[k], clip.boxes_3d[k]):
            assert str(inst) in mine
            if corners[:, 2].min() < 0.5:
                continue  # the devkit drops corners behind the camera; the scenario cuts at the near plane
            # Replay keeps heading and height and drops the boxes' pitch and roll (the synthetic road
            # has slopes): within a pixel plus 3% of the box's size.
            np.testing.assert_allclose(mine[str(inst)], box, atol=1.0 + 0.03 * float(np.ptp(box.reshape(2, 2), 0).max()))
            checked += 1
    assert checked > 10
    assert scenario.speed is not None and np.allclose(scenario.speed.values[:, 0], clip.ego.speed, atol=1e-5)


def _drive() -> dict[str, object]:
    # Ego at 10 m/s straight; "parked" stands still in the world; "slow" drives ahead at 5 m/s.
    return {"ego": {"speed": [[0, 10.0], [2, 10.0]], "yaw_rate": [[0, 0.0]]},
            "agents": [{"id": "parked", "class": "car", "size": [4, 2, 1.5], "track": [[0, 30.0, 0, 0], [2, 10.0, 0, 0]]},
                       {"id": "slow", "class": "car", "size": [4, 2, 1.5], "track": [[0, 20.0, 3, 0], [2, 10.0, 3, 0]]}],
            "labels": {"time_of_day": "day"}}


def _x(scenario, agent_id: str, t: float) -> float:  # type: ignore[no-untyped-def]
    agent = next(a for a in scenario.agents if a.id == agent_id)
    return float(agent.track.at(t)[0])


def test_speed_edits_keep_world_tracks_consistent() -> None:
    base = parse_scenario(_drive(), "drive.yaml")
    faster_ego = apply_edits(base, speed_scale={"ego": 2.0})
    assert _x(faster_ego, "parked", 2.0) == pytest.approx(30.0 - 40.0, abs=1e-6)  # approached twice as fast
    assert faster_ego.speed is not None and faster_ego.speed.values[0, 0] == 20.0
    faster_agent = apply_edits(base, speed_scale={"slow": 2.0})  # now 10 m/s like the ego: keeps its distance
    assert _x(faster_agent, "slow", 2.0) == pytest.approx(20.0, abs=1e-6)
    assert _x(faster_agent, "parked", 2.0) == pytest.approx(10.0, abs=1e-6)  # untouched
    stopped = apply_edits(base, speed_scale={"slow": 0.0})  # stands where it was at its first key
    assert _x(stopped, "slow", 2.0) == pytest.approx(0.0, abs=1e-6)


def test_remove_add_shift_and_relabel() -> None:
    base = parse_scenario(_drive(), "drive.yaml")
    edited = apply_edits(base, remove=["parked"], add=[{"id": "ped", "class": "pedestrian", "size": [0.6, 0.6, 1.8],
                                                       "track": [[0, 8.0, -2.0, 0.0]]}],
                         shift={"slow": [0.0, -3.0]}, labels={"time_of_day": "night"})
    assert [a.id for a in edited.agents] == ["slow", "ped"]
    slow = next(a for a in edited.agents if a.id == "slow")
    assert slow.track.at(1.0)[1] == pytest.approx(0.0)
    assert edited.labels == {"time_of_day": "night"}


@pytest.mark.parametrize(
    ("edits", "named"),
    [
        ({"remove": ["ghost"]}, "ghost"),
        ({"shift": {"ghost": [1.0, 0.0]}}, "ghost"),
        ({"speed_scale": {"ghost": 2.0}}, "ghost"),
        ({"add": [{"id": "slow", "class": "car", "size": [4, 2, 1], "track": [[0, 9, 0, 0]]}]}, "slow"),
        ({"add": [{"id": "x", "class": "tank", "size": [4, 2, 1], "track": [[0, 9, 0, 0]]}]}, "tank"),
        ({"labels": {"weather": "snow"}}, "labels.weather"),
        ({"speed_scale": {"ego": -1.0}}, "speed_scale.ego"),
    ],
)
def test_bad_edits_name_the_agent_or_field(edits: dict[str, object], named: str) -> None:
    with pytest.raises(ScenarioError) as info:
        apply_edits(parse_scenario(_drive(), "drive.yaml"), **edits)  # type: ignore[arg-type]
    assert named in str(info.value) and len(str(info.value).splitlines()) == 1


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_micro_exports(tmp_path_factory.mktemp("exports"))


def _replay(exports: dict[str, Path], world: Path, out: Path, *extra: str) -> list[str]:
    return ["generate", f"checkpoint={exports['temporal']}", f"out={out}", "seconds=2", "sampler.steps=2",
            "scenario=replay", "scenario.replay.scene=synth-0000", f"scenario.replay.root={world}",
            "scenario.replay.time=1.0", *extra]


def test_replay_command_uses_the_scene(exports: dict[str, Path], world: Path, tmp_path: Path) -> None:
    out = tmp_path / "replay"
    assert main(_replay(exports, world, out, "scenario.replay.labels.time_of_day=night")) == 0
    run = json.loads((out / "run.json").read_text())
    given = run["given_context"]
    assert given["scene"] == "synth-0000" and given["frames"] == 2
    assert given["timestamps"] == pytest.approx([1.0 - 1 / 3 - 1 / 3, 1.0 - 1 / 3], abs=1e-3)
    lines = [json.loads(x) for x in (out / "conditions.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and lines[0]["time"] == 0.0
    ids = {b["id"] for line in lines for b in line["boxes"]}
    assert ids and all(len(i) == 32 for i in ids)  # the dataset's instance tokens


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["scenario.replay.scene=synth-9999"], "synth-9999"),
        (["scenario.replay.remove=[not-an-agent]"], "not-an-agent"),
        (["scenario.replay.time=0.1"], "scenario.replay.time"),
        (["scenario.replay.time=30"], "scenario.replay.time"),
    ],
)
def test_replay_errors_name_what_is_unknown(exports: dict[str, Path], world: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str], extra: list[str], named: str) -> None:
    out = tmp_path / "never"
    assert main(_replay(exports, world, out, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_replay_edits_from_the_command_line(exports: dict[str, Path], world: Path, tmp_path: Path) -> None:
    def frame0(out: Path, *extra: str) -> dict[str, list[float]]:
        assert main(_replay(exports, world, out, "seconds=0.4", *extra)) == 0
        first = json.loads((out / "conditions.jsonl").read_text().splitlines()[0])
        return {b["id"]: b["xyxy"] for b in first["boxes"]}

    base = frame0(tmp_path / "base")
    target = max(base, key=lambda i: base[i][2] - base[i][0])  # the widest box: near, well in view
    removed = frame0(tmp_path / "removed", f"scenario.replay.remove=['{target}']")
    assert target not in removed and set(removed) <= set(base)
    shifted = frame0(tmp_path / "shifted", f"scenario.replay.shift=[{{id: '{target}', by: [0.0, 1.0]}}]")
    assert shifted[target][0] < base[target][0]  # 1 m to the left


def test_replay_of_a_video_folder_with_a_sidecar(exports: dict[str, Path], tmp_path: Path) -> None:
    from data_fixtures import write_video

    root = tmp_path / "videos"
    root.mkdir()
    write_video(root / "drive.mp4", frames=48, fps=12.0, size=(64, 128))
    entries = [{"t": i / 12, "boxes": [[40 + i, 20, 60 + i, 40]], "classes": ["car"], "ids": [7],
                "speed": 5.0 + i / 12, "yaw_rate": 0.0} for i in range(48)]
    (root / "drive.mp4.json").write_text(json.dumps({"version": 1, "description": "night", "frames": entries}))
    out = tmp_path / "out"
    args = ["generate", f"checkpoint={exports['temporal']}", f"out={out}", "seconds=1", "sampler.steps=2",
            "scenario=replay", "scenario.replay.data=videos", f"scenario.replay.root={root}",
            "scenario.replay.scene=drive.mp4", "scenario.replay.time=1.0"]
    assert main(args) == 0
    lines = [json.loads(x) for x in (out / "conditions.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and lines[0]["boxes"][0]["id"] == "7"
    assert lines[0]["boxes"][0]["xyxy"][0] == pytest.approx((40 + 12) / 128, abs=0.02)  # the box at 1.0 s
    assert lines[0]["ego_speed"] == pytest.approx(6.0, abs=0.1)
    assert json.loads((out / "run.json").read_text())["given_context"]["scene"] == "drive.mp4"
    # 2D-only boxes cannot be moved in metres: an error naming the agent, nothing written.
    assert main([*args, f"out={tmp_path / 'bad'}", "scenario.replay.shift=[{id: '7', by: [0.0, 1.0]}]"]) == 2
    assert not (tmp_path / "bad").exists()


def test_scenario_file_start_takes_context_frames_from_a_scene(exports: dict[str, Path], world: Path,
                                                                tmp_path: Path) -> None:
    scenario = tmp_path / "start.yaml"
    scenario.write_text(yaml.safe_dump({
        "name": "from_start", "seconds": 1, "start": {"data": "synthetic", "root": str(world), "scene": "synth-0000",
                                                     "time": 2.0, "context_frames": 2}}))
    out = tmp_path / "out"
    assert main(["generate", f"checkpoint={exports['temporal']}", f"out={out}", "sampler.steps=2",
                 f"scenario.path={scenario}"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["given_context"]["frames"] == 2 and run["frames"] == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"start": {"scene": "synth-0000", "root": str(world), "colour": 1}}))
    assert main(["generate", f"checkpoint={exports['temporal']}", f"out={tmp_path / 'never'}",
                 f"scenario.path={bad}"]) == 2
    assert not (tmp_path / "never").exists()
