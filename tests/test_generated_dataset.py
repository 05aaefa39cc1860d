"""`drivesim generate format=nuscenes`: generated drives as a nuScenes dataset the devkit and NuScenesClips read back."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import yaml
from generate_fixtures import write_micro_exports
from nuscenes.nuscenes import NuScenes

from drivesim.cli import main
from drivesim.data.nuscenes import NuScenesClips
from drivesim.pipelines.nuscenes_export import GENERATED, VERSION, GeneratedDataset, scene_name
from drivesim.pipelines.store import RolloutStore
from drivesim.synth.tokens import make_token
from drivesim.vocab import LABEL_VOCAB

TURN: dict[str, Any] = {
    "name": "turn_at_night", "labels": {"time_of_day": "night", "weather": "rain"},
    "ego": {"speed": [[0, 8.0], [2, 10.0]], "yaw_rate": [[0, 0.0], [2, 0.15]]},
    "agents": [
        {"id": "lead", "class": "car", "size": [4.5, 1.9, 1.6], "track": [[0, 15.0, 0.3, 0.0], [2, 17.0, 1.0, 0.1]]},
        {"id": "walker", "class": "pedestrian", "size": [0.6, 0.6, 1.7], "track": [[0, 9.0, -4.0, 1.57], [2, 9.0, -1.0, 1.57]]},
        {"id": "truck", "class": "truck", "size": [8.0, 2.5, 3.2], "track": [[0, 25.0, 6.0, 0.0], [2, 20.0, 6.0, 0.0]]},
    ],
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    return write_micro_exports(tmp_path_factory.mktemp("exports"))


def _scenario(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _generate(exports: dict[str, Path], out: Path, scenario: Path, *extra: str) -> int:
    return main(["generate", f"checkpoint={exports['temporal']}", f"out={out}", "format=nuscenes", "seconds=2",
                 "sampler.steps=2", f"scenario.path={scenario}", *extra])


@pytest.fixture(scope="module")
def dataset(exports: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("generated")
    out = tmp / "dataset"
    (tmp / "scenarios").mkdir()
    assert _generate(exports, out, _scenario(tmp / "scenarios", TURN), "seeds=[1,2]") == 0
    other = {"name": "empty_road", "labels": {"time_of_day": "day"}}
    assert _generate(exports, out, _scenario(tmp, other), "seed=1") == 0  # a second scenario appends
    return out


def test_the_unmodified_devkit_loads_every_scene_with_provenance(dataset: Path) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        nusc = NuScenes(version=VERSION, dataroot=str(dataset), verbose=False)
    names = sorted(s["name"] for s in nusc.scene)
    assert names == ["empty_road-seed1", "turn_at_night-seed1", "turn_at_night-seed2"]
    assert [a["name"] for a in nusc.attribute] == [GENERATED]
    scene = next(s for s in nusc.scene if s["name"] == "turn_at_night-seed2")
    assert scene["nbr_samples"] == 6 and scene["description"].startswith("night, rain")
    log = nusc.get("log", scene["log_token"])
    assert log["drivesim"]["seed"] == 2 and log["drivesim"]["scenario"] == "turn_at_night"
    assert log["drivesim"]["exports"]["temporal"].endswith("temporal")
    sample = nusc.get("sample", scene["first_sample_token"])
    assert len(sample["anns"]) == 3 and Path(nusc.get_sample_data_path(sample["data"]["CAM_FRONT"])).is_file()
    names = {nusc.get("sample_annotation", a)["category_name"] for a in sample["anns"]}
    assert names == {"vehicle.car", "human.pedestrian.adult", "vehicle.truck"}


def test_round_trip_boxes_after_projection_match_conditions(dataset: Path) -> None:
    clips = NuScenesClips(dataset, version=VERSION, frames=6, fps=3.0, size=(64, 128))
    by_scene = {clips.streams[k].scene_name: i for i, (k, _) in enumerate(clips.items)}
    for seed in (1, 2):
        name = scene_name("turn_at_night", seed)
        clip = clips[by_scene[name]]
        assert clip is not None
        tokens = [r["token"] for r in clips.nusc.instance]
        ids = {make_token(0, GENERATED, "instance", name, a["id"]): a["id"] for a in TURN["agents"]}
        rollout = dataset / "rollouts" / name
        conditions = [json.loads(x) for x in (rollout / "conditions.jsonl").read_text().splitlines()]
        assert len(conditions) == clip.frames.shape[0] == 6
        compared = 0
        for f, cond in enumerate(conditions):
            want = {b["id"]: np.array(b["xyxy"]) * [128, 64, 128, 64] for b in cond["boxes"]}
            got = {ids[tokens[i]]: box for i, box in zip(clip.instance_ids[f], clip.boxes_2d[f])}
            assert set(got) == set(want) and clip.valid[f].all()
            for agent, box in want.items():
                assert np.abs(got[agent] - box).max() < 1.0, (name, f, agent, got[agent], box)
                compared += 1
        assert compared >= 15
        assert clip.labels.time_of_day == LABEL_VOCAB["time_of_day"].index("night")
        store = RolloutStore(rollout)
        generated = np.concatenate([x for _, x in store.segments(len(list(store.folder.glob("segment_*.npz"))))])
        read = clip.frames.permute(0, 2, 3, 1).numpy()
        jpeg = [cv2.imdecode(cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])[1], cv2.IMREAD_COLOR)
                for f in generated]
        assert np.array_equal(read, np.stack(jpeg)[..., ::-1])  # the images are the generated frames, as JPEG
        assert np.allclose(clip.ego.speed[1:-1], [8.0 + i / 3 for i in range(1, 5)], atol=0.3)


def test_resume_and_rerun_leave_one_scene_per_scenario_and_seed(dataset: Path, exports: dict[str, Path],
                                                                tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (dataset / VERSION / "sample_annotation.json").read_text()
    turn = dataset.parent / "scenarios" / "turn_at_night.yaml"
    assert _generate(exports, dataset, turn, "seed=1") == 0  # finished: rewritten identically
    assert (dataset / VERSION / "sample_annotation.json").read_text() == before
    assert GeneratedDataset(dataset).scenes() == ["empty_road-seed1", "turn_at_night-seed1", "turn_at_night-seed2"]
    changed = _scenario(tmp_path, {**TURN, "labels": {"time_of_day": "day"}})  # same name, other content
    assert _generate(exports, dataset, changed, "seed=1") == 2
    assert "different settings" in capsys.readouterr().err
    assert (dataset / VERSION / "sample_annotation.json").read_text() == before


def test_bad_format_is_one_line_and_writes_nothing(exports: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert _generate(exports, tmp_path / "ds", _scenario(tmp_path, TURN), "format=kitti") == 2
    err = capsys.readouterr().err.strip()
    assert "format=kitti" in err and "\n" not in err and not (tmp_path / "ds").exists()


def test_a_closed_loop_episode_becomes_a_scene_that_reads_back(exports: dict[str, Path], tmp_path: Path) -> None:
    from drivesim.pipelines.nuscenes_export import SceneInfo
    from drivesim.simulator import Simulator

    sim = Simulator.from_pretrained(exports["temporal"], sampler={"steps": 1})
    observations = [sim.reset(TURN, seed=0, ego_speed=5.0, ego_yaw_rate=0.0)]
    for yaw in (0.2, -0.1):  # the policy turns: the ego's path is not the scenario's
        observations.append(sim.step(np.full(sim.action_frames, 7.0), np.full(sim.action_frames, yaw)))
    frames = [f for obs in observations for f in sim.generated_frames(obs)]
    assert len(frames) == 6
    GeneratedDataset(tmp_path).add_scene(SceneInfo("episode", sim.fps, sim.camera, {"weather": "rain"}), frames)
    clip = NuScenesClips(tmp_path, version=VERSION, frames=6, fps=3.0, size=(64, 128))[0]
    assert clip is not None
    tokens = [r["token"] for r in clip_tokens(tmp_path)]
    ids = {make_token(0, GENERATED, "instance", "episode", a["id"]): a["id"] for a in TURN["agents"]}
    boxes = [(obs, k) for obs in observations for k in range(len(obs))]
    for f, (obs, k) in enumerate(boxes):
        got = {ids[tokens[i]]: box for i, box in zip(clip.instance_ids[f], clip.boxes_2d[f])}
        want = dict(zip([b.id for b in obs.boxes[k]], obs.boxes_2d(k)))
        assert set(got) == set(want)
        for agent, box in want.items():
            assert np.abs(got[agent] - box).max() < 1.0, (f, agent, got[agent], box)


def clip_tokens(root: Path) -> list[dict[str, Any]]:
    return json.loads((root / VERSION / "instance.json").read_text())
