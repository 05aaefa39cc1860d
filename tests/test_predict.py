"""Scale-out through Lightning predict: 2 CPU processes, a nuScenes dataset of every (scenario, seed), skip on resume."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from generate_fixtures import write_micro_exports
from nuscenes.nuscenes import NuScenes
from train_fixtures import run_cli

from drivesim.cli import main
from drivesim.pipelines.nuscenes_export import VERSION
from drivesim.pipelines.store import RolloutStore

LEAD = {"name": "lead", "ego": {"speed": [[0, 5.0]]},
        "agents": [{"id": "car", "class": "car", "size": [4.5, 1.9, 1.6], "track": [[0, 12.0, 0.0, 0.0], [5, 15.0, 0.0, 0.0]]}]}
EMPTY = {"name": "empty", "labels": {"time_of_day": "night"}}


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    return write_micro_exports(tmp_path_factory.mktemp("exports"))


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scenarios")
    for data in (LEAD, EMPTY):
        (folder / f"{data['name']}.yaml").write_text(yaml.safe_dump(data))
    return folder


def _args(exports: dict[str, Path], scenarios: Path, out: Path, *extra: str) -> list[str]:
    return ["generate", f"checkpoint={exports['temporal']}", f"out={out}", f"scenarios={scenarios}", "seeds=[0,1]",
            "seconds=1", "sampler.steps=1", *extra]


def _segments(folder: Path) -> np.ndarray:
    store = RolloutStore(folder)
    return np.concatenate([f for _, f in store.segments(len(list(store.folder.glob("segment_*.npz"))))])


def test_two_processes_write_every_scene_once_then_resume_skips_them(exports: dict[str, Path], scenarios: Path,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "dataset"
    proc = run_cli(_args(exports, scenarios, out, "format=nuscenes", "trainer=predict_ddp_cpu"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    markers = sorted((out / ".predict").glob("*.json"))
    records = {m.stem: json.loads(m.read_text()) for m in markers}
    assert sorted(records) == ["empty-seed0", "empty-seed1", "lead-seed0", "lead-seed1"]
    assert {r["rank"] for r in records.values()} == {0, 1}  # both processes worked
    with contextlib.redirect_stdout(io.StringIO()):
        nusc = NuScenes(version=VERSION, dataroot=str(out), verbose=False)
    assert sorted(s["name"] for s in nusc.scene) == sorted(records)
    assert all(s["nbr_samples"] == 3 for s in nusc.scene)  # 1 s at 3 fps
    stamps = {m.name: m.stat().st_mtime_ns for m in markers}
    tables = (out / VERSION / "sample.json").read_text()
    # Everything finished: a second run (1 process) skips every item.
    assert main(_args(exports, scenarios, out, "format=nuscenes", "trainer=predict_cpu")) == 0
    assert {m.name: m.stat().st_mtime_ns for m in markers} == stamps
    # One item unfinished (its marker gone): only it runs again, and the dataset comes out the same.
    (out / ".predict" / "lead-seed1.json").unlink()
    assert main(_args(exports, scenarios, out, "format=nuscenes", "trainer=predict_cpu")) == 0
    assert (out / ".predict" / "lead-seed1.json").is_file()
    assert {m.name: m.stat().st_mtime_ns for m in markers if m.name != "lead-seed1.json"} == \
        {k: v for k, v in stamps.items() if k != "lead-seed1.json"}
    assert (out / VERSION / "sample.json").read_text() == tables


def test_a_predict_item_is_what_generate_makes(exports: dict[str, Path], scenarios: Path, tmp_path: Path) -> None:
    assert main(_args(exports, scenarios, tmp_path / "videos")) == 0
    single = tmp_path / "single"
    assert main(["generate", f"checkpoint={exports['temporal']}", f"out={single}", f"scenario.path={scenarios / 'lead.yaml'}",
                 "seed=1", "seconds=1", "sampler.steps=1"]) == 0
    assert np.array_equal(_segments(tmp_path / "videos" / "lead-seed1"), _segments(single))
    assert (tmp_path / "videos" / "empty-seed0" / "video.mp4").is_file()


def test_bad_scale_out_inputs_are_one_line(exports: dict[str, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "none"
    empty.mkdir()
    assert main(_args(exports, empty, tmp_path / "o")) == 2
    assert "no scenario files" in capsys.readouterr().err
    assert main(["generate", f"checkpoint={exports['temporal']}", f"out={tmp_path / 'o'}", "replay_split=val"]) == 2
    assert "needs scenario=replay" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_replays_of_every_scene_of_a_split(exports: dict[str, Path], tmp_path: Path) -> None:
    from train_fixtures import render_world

    world = render_world(tmp_path / "world", scenes=2, seconds=3.0)
    out = tmp_path / "replays"
    assert main(["generate", f"checkpoint={exports['temporal']}", f"out={out}", "scenario=replay",
                 "scenario.replay.data=synthetic", f"scenario.replay.root={world}", "scenario.replay.time=1.0",
                 "replay_split=all", "seeds=[3]", "seconds=1", "sampler.steps=1", "format=nuscenes"]) == 0
    assert sorted(m.stem for m in (out / ".predict").glob("*.json")) == ["replay_synth-0000-seed3",
                                                                          "replay_synth-0001-seed3"]
    with contextlib.redirect_stdout(io.StringIO()):
        nusc = NuScenes(version=VERSION, dataroot=str(out), verbose=False)
    assert len(nusc.scene) == 2 and len(nusc.sample_annotation) > 0  # the replayed scenes' agents, as 3D boxes
