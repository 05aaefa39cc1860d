"""The closed-loop Simulator on random-weight micro exports: determinism, resume, one engine, errors, the example."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from generate_fixtures import write_micro_exports

import drivesim
from drivesim.pipelines.rollout import rollout_to_folder
from drivesim.pipelines.store import RolloutStore
from drivesim.scenario import Timeline, parse_scenario
from drivesim.simulator import Simulator, SimulatorError

ROOT = Path(__file__).resolve().parents[1]
SCENARIO: dict[str, Any] = {
    "name": "lead", "ego": {"speed": [[0, 6.0]], "yaw_rate": [[0, 0.0]]},
    "agents": [{"id": "lead", "class": "car", "size": [4.5, 1.9, 1.6], "track": [[0, 14.0, 0.5, 0.0], [20, 30.0, 0.5, 0.0]]},
               {"id": "ped", "class": "pedestrian", "size": [0.6, 0.6, 1.7], "track": [[0, 9.0, -3.0, 1.5], [20, 9.0, 3.0, 1.5]]}],
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    return write_micro_exports(tmp_path_factory.mktemp("exports"), interpolation=True)


@pytest.fixture(scope="module")
def sim(exports: dict[str, Path]) -> Simulator:
    return Simulator.from_pretrained(exports["temporal"], sampler={"steps": 2})


def _episode(sim: Simulator, seed: int, steps: int, speed: float = 6.0, yaw: float = 0.0) -> list[torch.Tensor]:
    frames = [sim.reset(SCENARIO, seed=seed).frames]
    for _ in range(steps):
        n = sim.action_frames
        frames.append(sim.step(np.full(n, speed), np.full(n, yaw)).frames)
    return frames


def test_lazy_export_and_observation_layout(sim: Simulator) -> None:
    assert drivesim.Simulator is Simulator
    obs = sim.reset(SCENARIO, seed=0)
    assert obs.frames.dtype == torch.uint8 and tuple(obs.frames.shape) == (1, 3, 64, 128)
    assert obs.times.tolist() == [0.0] and [b.id for b in obs.boxes[0]] == ["lead", "ped"]
    n = sim.action_frames
    assert n == 3  # the first prediction call conditions on one key and makes window - 1 = 3
    obs = sim.step(np.full(n, 6.0), np.zeros(n))
    assert tuple(obs.frames.shape) == (3, 3, 64, 128) and obs.frame_indices.tolist() == [1, 2, 3]
    assert np.allclose(obs.times, [1 / 3, 2 / 3, 1.0]) and np.allclose(obs.ego.speed, 6.0)
    assert np.allclose(obs.ego.pose[:, 0], [2.0, 4.0, 6.0])  # 6 m/s at 3 fps
    assert obs.boxes_2d(0).shape == (2, 4) and sim.action_frames == 2


def test_same_seed_and_actions_same_frames_other_seed_or_actions_differ(sim: Simulator) -> None:
    a, b = _episode(sim, 5, 3), _episode(sim, 5, 3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    other = _episode(sim, 6, 3)
    assert not torch.equal(a[-1], other[-1])
    faster = _episode(sim, 5, 3, speed=12.0)
    assert torch.equal(a[0], faster[0]) and not torch.equal(a[-1], faster[-1])


def test_ego_actions_move_the_agents_boxes(sim: Simulator) -> None:
    """The lead is 14 m ahead moving away at 0.8 m/s; driving at 12 m/s closes in, so its box grows."""
    sim.reset(SCENARIO, seed=0)
    slow = [sim.step(np.full(sim.action_frames, 0.0), np.zeros(sim.action_frames)) for _ in range(3)][-1]
    sim.reset(SCENARIO, seed=0)
    fast = [sim.step(np.full(sim.action_frames, 12.0), np.zeros(sim.action_frames)) for _ in range(3)][-1]
    height = {name: o.boxes_2d(-1)[0, 3] - o.boxes_2d(-1)[0, 1] for name, o in (("slow", slow), ("fast", fast))}
    assert height["fast"] > 1.5 * height["slow"]
    sim.reset(SCENARIO, seed=0)
    left = [sim.step(np.full(sim.action_frames, 6.0), np.full(sim.action_frames, 0.1)) for _ in range(3)][-1]
    assert left.boxes[-1][0].xyxy[0] > fast.boxes[-1][0].xyxy[0] + 0.05  # turning left: the lead drifts right


def test_actions_equal_to_the_scenario_give_generate_frames(sim: Simulator, tmp_path: Path) -> None:
    """One engine: the closed loop acting out the scenario's own ego makes what `rollout_to_folder` makes."""
    frames = _episode(sim, 9, 2)
    closed = torch.cat(frames).permute(0, 2, 3, 1).numpy()
    scenario = parse_scenario(SCENARIO, "test")
    timeline = Timeline(scenario, sim._timeline.camera)
    for t in (0.0, 1.0, 5 / 3):
        assert np.allclose([b.xyxy for b in timeline.at(t).boxes], [b.xyxy for b in sim._timeline.at(t).boxes],
                           atol=1e-9, rtol=0)
    result = rollout_to_folder(sim.engine, timeline, sim._scene, tmp_path / "run", 9, len(closed) / sim.fps, {"t": 1},
                               show_progress=False)
    store = RolloutStore(result.out)
    rolled = np.concatenate([f for _, f in store.segments(len(list(store.folder.glob("segment_*.npz"))))])
    assert rolled.shape == closed.shape and np.array_equal(rolled, closed)


def test_state_dict_resumes_the_episode_exactly(sim: Simulator, exports: dict[str, Path], tmp_path: Path) -> None:
    reference = _episode(sim, 4, 4, yaw=0.05)
    sim.reset(SCENARIO, seed=4)
    n = sim.action_frames
    sim.step(np.full(n, 6.0), np.full(n, 0.05))
    torch.save(sim.state_dict(), tmp_path / "state.pt")
    other = Simulator.from_pretrained(exports["temporal"], sampler={"steps": 2})
    other.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert other.time == sim.time and other.action_frames == sim.action_frames
    resumed = [other.step(np.full(other.action_frames, 6.0), np.full(other.action_frames, 0.05)).frames
               for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(reference[2:], resumed))


def test_waypoints_and_context_frames(sim: Simulator) -> None:
    sim.reset(SCENARIO, seed=2)
    n = sim.action_frames
    plain = sim.step(np.full(n, 6.0), np.zeros(n)).frames
    sim.reset(SCENARIO, seed=2)
    points = np.stack([np.stack([np.linspace(1, 8, 4), np.zeros(4)], axis=1)] * n)
    assert not torch.equal(plain, sim.step(np.full(n, 6.0), np.zeros(n), waypoints=points).frames)
    context = torch.randint(0, 255, (2, 3, 64, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    obs = sim.reset(SCENARIO, seed=2, context=context)
    assert len(obs) == 0 and sim.action_frames == 2  # given keys at frames -2, -1: each call makes 2 new
    obs = sim.step(np.full(2, 6.0), np.zeros(2))
    assert obs.frame_indices.tolist() == [0, 1]


@pytest.mark.parametrize(("call", "named"), [
    (lambda s, n: s.step(np.full(n + 1, 5.0), np.zeros(n + 1)), "expected 3 values"),
    (lambda s, n: s.step(np.full(n, -1.0), np.zeros(n)), "speeds must be >= 0"),
    (lambda s, n: s.step(np.full(n, 5.0), np.array([0.0, float("nan"), 0.0])), "ego_yaw_rate: NaN"),
    (lambda s, n: s.step(np.full(n, float("nan")), np.zeros(n)), "ego_speed: NaN"),
    (lambda s, n: s.step(np.full(n, 5.0), np.zeros(n), waypoints=np.zeros((n, 2))), "waypoints: expected shape"),
    (lambda s, n: s.reset({"agents": [{"id": 1}]}), "agents[0].class"),
    (lambda s, n: s.reset(SCENARIO, ego_speed=-2.0), "ego_speed"),
])
def test_bad_calls_are_one_line_and_change_nothing(sim: Simulator, call: Any, named: str) -> None:
    reference = _episode(sim, 3, 2)
    sim.reset(SCENARIO, seed=3)
    with pytest.raises(SimulatorError) as err:
        call(sim, sim.action_frames)
    assert named in str(err.value) and "\n" not in str(err.value)
    sim.reset(SCENARIO, seed=3)  # a failed reset leaves no half-made episode behind either
    again = [sim.step(np.full(sim.action_frames, 6.0), np.zeros(sim.action_frames)).frames for _ in range(2)]
    assert all(torch.equal(x, y) for x, y in zip(reference[1:], again))


def test_missing_stages_and_no_episode_are_one_line(exports: dict[str, Path], tmp_path: Path) -> None:
    before = sorted(p for p in exports["temporal"].parent.rglob("*"))
    with pytest.raises(SimulatorError, match="needs a temporal"):
        Simulator.from_pretrained(exports["image"])
    with pytest.raises(SimulatorError, match="interpolation"):
        Simulator.from_pretrained(exports["temporal"], interpolation=exports["image"])
    with pytest.raises(SimulatorError, match="sampler"):
        Simulator.from_pretrained(exports["temporal"], sampler={"nme": "ddim"})
    with pytest.raises(SimulatorError, match="call reset"):
        Simulator.from_pretrained(exports["temporal"]).step([1.0], [0.0])
    assert sorted(p for p in exports["temporal"].parent.rglob("*")) == before


def test_interpolated_closed_loop(exports: dict[str, Path]) -> None:
    sim = Simulator.from_pretrained(exports["temporal"], sampler={"steps": 1}, interpolation=exports["interpolation"])
    assert sim.fps == 12.0
    sim.reset(SCENARIO, seed=0)
    n = sim.action_frames
    obs = sim.step(np.full(n, 6.0), np.zeros(n))
    assert n == 12 and obs.frame_indices.tolist() == list(range(1, 13))  # no lag: the chunk is interpolated at once


def test_example_policy_drives_and_writes_its_video(exports: dict[str, Path], tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("closed_loop_policy", ROOT / "examples" / "closed_loop_policy.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example  # its dataclass looks its module up
    spec.loader.exec_module(example)
    out = tmp_path / "policy"
    assert example.main(["--checkpoint", str(exports["temporal"]), "--out", str(out), "--seconds", "4",
                         "--steps", "1"]) == 0
    with av.open(str(out / "video.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 12
    lines = [json.loads(x) for x in (out / "actions.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and lines[-1]["speed"] > lines[1]["speed"] > 0  # it accelerates from standstill
    assert "lead" in lines[-1]["boxes"]


def test_ego_warp_prior_follows_the_policy_actions(exports: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """With `init_guess=ego_warp` the new keys start from the last key moved by the actions the policy gave:
    standing still they all start from the same picture, driving each starts further along."""
    import drivesim.pipelines.engine as engine

    inits: list[torch.Tensor] = []
    real_sample = engine.sample_video

    def spy(denoiser, scheduler, noise, cond, steps, given=None, gen=None, init=None, strength=1.0):  # type: ignore[no-untyped-def]
        if init is not None and given is not None:
            inits.append(init[0, given.mask[0] == 0].clone())
        return real_sample(denoiser, scheduler, noise, cond, steps, given, gen, init, strength)

    monkeypatch.setattr(engine, "sample_video", spy)
    sim = Simulator.from_pretrained(exports["temporal"], sampler={"steps": 2, "init_strength": 0.5,
                                                                   "init_guess": "ego_warp"})
    spread = {}
    for speed in (0.0, 15.0):
        inits.clear()
        sim.reset(SCENARIO, seed=0)
        n = sim.action_frames
        sim.step(np.full(n, speed), np.zeros(n))
        new = inits[-1]  # (new keys, C, h, w)
        spread[speed] = float((new[1:] - new[:1]).abs().max())
    assert spread[0.0] < 1e-5 < 1e-2 < spread[15.0]
