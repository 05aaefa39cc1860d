"""The rollout plan and engine on in-memory micro models: coverage, outputs, determinism, streaming."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from generate_fixtures import SCHEDULE, micro_config, micro_unet, tiny_vae

from drivesim.pipelines.conditions import SceneInputs
from drivesim.pipelines.engine import Engine, SamplerSettings, StageModel
from drivesim.pipelines.plan import RolloutPlan
from drivesim.pipelines.rollout import GivenContext, rollout_to_folder
from drivesim.pipelines.store import RolloutStore
from drivesim.scenario import PinholeCamera, Timeline, parse_scenario

SCENARIO = {"labels": {"time_of_day": "night"}, "ego": {"speed": [[0, 5.0], [3, 8.0]]},
            "agents": [{"id": "lead", "class": "car", "size": [4.5, 1.9, 1.6],
                        "track": [[0, 20.0, 0.0, 0.0], [3, 10.0, 0.0, 0.0]]}]}


@pytest.fixture(scope="module")
def models() -> dict[str, object]:
    torch.set_num_threads(1)
    interp_cfg = micro_config()["conditioning"] | {"stage": True}
    return {"prediction": micro_unet(0), "image": micro_unet(1), "interpolation": micro_unet(2, conditioning=interp_cfg),
            "vae": tiny_vae()}


def _engine(models: dict[str, object], interpolation: bool = False, steps: int = 2) -> Engine:
    return Engine(prediction=StageModel(models["prediction"], 4, 0.1),  # type: ignore[arg-type]
                  image=StageModel(models["image"], 1),  # type: ignore[arg-type]
                  interpolation=StageModel(models["interpolation"], 9, 0.05) if interpolation else None,  # type: ignore[arg-type]
                  vae=models["vae"], schedule=SCHEDULE,  # type: ignore[arg-type]
                  sampler=SamplerSettings(steps=steps, guidance={"boxes": 2.0, "context": 1.5}), fps=3.0,
                  latent_size=(8, 16))


def _timeline() -> Timeline:
    return Timeline(parse_scenario(SCENARIO, "test.yaml"), PinholeCamera.mounted(128, 64))


@pytest.mark.parametrize("frames", [1, 2, 5, 9, 17])
@pytest.mark.parametrize("factor", [1, 4, 16])
@pytest.mark.parametrize("given", [0, 1, 2])
def test_plan_chunks_cover_every_output_frame_once(frames: int, factor: int, given: int) -> None:
    plan = RolloutPlan(frames=frames, out_fps=3.0 * factor, factor=factor, given=given, window=4, context=2)
    chunks = plan.chunks()
    covered = [i for c in chunks for i in range(*c.outputs)]
    assert covered == list(range(frames))
    assert (chunks[0].kind == "image") == (given == 0)
    for c in chunks[1:] if given == 0 else chunks:
        assert c.kind == "predict" and 1 <= len(c.context_keys) <= 2
        assert len(c.context_keys) + len(c.new_keys) == 4
    # Every output frame lies at or before the last key made, so it is final when its chunk ends.
    assert all(plan.key_output(c.new_keys[-1]) >= c.outputs[1] - 1 for c in chunks)
    if given:
        assert plan.key_output(0) == -1  # the last given frame sits just before time 0


def test_rollout_writes_every_output(models: dict[str, object], tmp_path: Path) -> None:
    engine = _engine(models)
    result = rollout_to_folder(engine, _timeline(), SceneInputs(labels=[1, -1, -1]), tmp_path, seed=0, seconds=3.0,
                               settings={"test": 1}, show_progress=False)
    assert result.frames == 9  # round(3 s x 3 fps)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(
        ["video.mp4", "overlay.mp4", "contact_sheet.png", "conditions.jsonl", "run.json"])
    lines = [json.loads(line) for line in (tmp_path / "conditions.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(9))
    assert lines[3]["time"] == pytest.approx(1.0) and lines[3]["ego_speed"] == pytest.approx(6.0)
    assert lines[0]["boxes"][0]["id"] == "lead" and len(lines[0]["boxes"][0]["xyxy"]) == 4
    with av.open(str(tmp_path / "video.mp4")) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert float(stream.average_rate) == pytest.approx(3.0)
    assert len(frames) == 9 and frames[0].shape == (64, 128, 3)
    run = json.loads((tmp_path / "run.json").read_text())
    for key in ("config", "seed", "git_commit", "versions", "stage_seconds", "realtime_factor", "given_context"):
        assert key in run
    assert set(run["stage_seconds"]) >= {"image", "prediction", "decode"}


def _segments(folder: Path) -> list[np.ndarray]:
    store = RolloutStore(folder)
    return [frames for _, frames in store.segments(len(list(store.folder.glob("segment_*.npz"))))]


def test_same_seed_same_video_other_seed_other_video(models: dict[str, object], tmp_path: Path) -> None:
    engine = _engine(models, interpolation=True)
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        rollout_to_folder(engine, _timeline(), SceneInputs(), tmp_path / name, seed, 1.0, {}, show_progress=False)
    a, b, c = (_segments(tmp_path / n) for n in "abc")
    assert sum(len(s) for s in a) == 12  # 1 s at 3 fps x 4
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_memory_is_bounded_by_the_context_and_one_chunk(models: dict[str, object], tmp_path: Path) -> None:
    """Structural streaming check: each chunk sees only the context keys (and the first key, the colour
    anchor's reference) and returns only its own frames."""
    engine = _engine(models, interpolation=True)
    seen: list[tuple[int, int]] = []
    original = engine.run_chunk

    def spy(chunk, plan, timeline, scene, keys, seed):  # type: ignore[no-untyped-def]
        result = original(chunk, plan, timeline, scene, keys, seed)
        seen.append((len(keys), len(result.frames)))
        return result

    engine.run_chunk = spy  # type: ignore[method-assign]
    rollout_to_folder(engine, _timeline(), SceneInputs(), tmp_path, 0, 4.0, {}, show_progress=False)
    assert len(seen) > 4
    assert max(k for k, _ in seen) <= engine.context_frames + 1
    assert max(f for _, f in seen) <= (engine.prediction.frames - 1) * engine.factor
    assert len(RolloutStore(tmp_path).load_state().keys) <= engine.context_frames + 1


def test_given_context_frames_are_not_written(models: dict[str, object], tmp_path: Path) -> None:
    engine = _engine(models)
    g = torch.Generator().manual_seed(0)
    given = GivenContext([torch.randn(1, 4, 8, 16, generator=g) for _ in range(2)], {"scene": "x"})
    result = rollout_to_folder(engine, _timeline(), SceneInputs(), tmp_path, 0, 2.0, {}, given=given,
                               show_progress=False)
    assert result.frames == 6 and "image" not in result.seconds
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["given_context"] == {"scene": "x"}
    assert len((tmp_path / "conditions.jsonl").read_text().splitlines()) == 6


def test_interpolation_model_with_wrong_window_is_refused(models: dict[str, object]) -> None:
    engine = _engine(models, interpolation=True)
    engine.interpolation.frames = 8  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="4k\\+1"):
        engine.validate()


def test_a_shorter_prediction_window_makes_fewer_keys_per_call(models: dict[str, object], tmp_path: Path) -> None:
    """prediction_window=3 on a 4-frame model: one new key per call after two given, the model run on 3 frames."""
    engine = _engine(models)
    engine.prediction_window = 3
    engine.validate()
    calls: list[int] = []
    original = engine.prediction.unet.forward

    def spy(x, t, cond):  # type: ignore[no-untyped-def]
        calls.append(x.shape[1])
        return original(x, t, cond)

    engine.prediction.unet.forward = spy  # type: ignore[method-assign]
    plan = engine.plan(7)
    assert [len(c.new_keys) for c in plan.chunks() if c.kind != "image"] == [2, 1, 1, 1, 1]  # the first: 1 given
    result = rollout_to_folder(engine, _timeline(), SceneInputs(), tmp_path, 0, 7 / 3, {}, show_progress=False)
    assert result.frames == 7 and set(calls) == {3}
    for bad in (2, 5):  # not more than the context; not longer than the export's window
        engine.prediction_window = bad
        with pytest.raises(ValueError, match="prediction_window"):
            engine.validate()


def test_two_interpolation_passes_give_x16(models: dict[str, object], tmp_path: Path) -> None:
    engine = _engine(models, interpolation=True)
    engine.interpolation_passes = 2
    result = rollout_to_folder(engine, _timeline(), SceneInputs(), tmp_path, 0, 0.5, {}, show_progress=False)
    assert engine.out_fps == 48.0 and result.frames == 24
    lines = (tmp_path / "conditions.jsonl").read_text().splitlines()
    assert len(lines) == 24 and json.loads(lines[1])["time"] == pytest.approx(1 / 48, abs=1e-6)


def test_bfloat16_model_runs_with_float32_sampling(models: dict[str, object], tmp_path: Path) -> None:
    engine = _engine(models)
    engine.prediction = StageModel(micro_unet(0).to(torch.bfloat16), 4, 0.1)
    result = rollout_to_folder(engine, _timeline(), SceneInputs(labels=[1, 0, 0]), tmp_path, 0, 1.0, {},
                               show_progress=False)
    assert result.frames == 3 and (tmp_path / "video.mp4").stat().st_size > 0


def test_batched_windows_carry_each_windows_own_conditions() -> None:
    from drivesim.pipelines.conditions import Supports, batch_condition, frame_condition

    timeline = _timeline()
    supports = Supports(boxes=True, labels=True, ego=True)
    scene = SceneInputs(labels=(1, 0, 2))
    windows = [timeline.frames([0.0, 0.5, 1.0]), timeline.frames([2.0, 5.0, 9.0])]  # the lead leaves the view
    batch = batch_condition(windows, supports, scene)
    assert batch.boxes is not None and batch.boxes.shape[:2] == (2, 3) and batch.labels.shape == (2, 3)
    for b, window in enumerate(windows):
        alone = frame_condition(window, supports, scene)
        n = alone.boxes.shape[2]
        assert torch.equal(batch.boxes[b, :, :n], alone.boxes[0]) and torch.equal(batch.box_mask[b, :, :n], alone.box_mask[0])
        assert not batch.box_mask[b, :, n:].any()
        assert torch.equal(batch.ego_speed[b], alone.ego_speed[0]) and torch.equal(batch.labels[b], alone.labels[0])
    with pytest.raises(ValueError, match="one length"):
        batch_condition([windows[0], windows[1][:2]], supports, scene)


def test_one_batched_interpolation_call_keeps_every_key_in_place(models: dict[str, object]) -> None:
    """Three gaps with a 9-frame model (two gaps a window): two windows in one batch, the second padded past the
    end with the last key again; every key lands on its output frame, every new frame is filled."""
    engine = _engine(models, interpolation=True)
    plan = engine.plan(13)
    keys = torch.randn(1, 4, 4, 8, 16)
    calls: list[int] = []
    unet = engine.interpolation.unet  # type: ignore[union-attr]
    hook = unet.register_forward_pre_hook(lambda _m, args: calls.append(args[0].shape[0]))
    try:
        out = engine._interpolate(keys, 0, 0, plan, _timeline(), SceneInputs(), torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert out.shape == (1, 13, 4, 8, 16) and calls == [2 * 3] * 2  # 2 steps of 2 windows x 3 guidance branches
    for k in range(4):
        assert torch.equal(out[:, 4 * k], keys[:, k])
    assert torch.isfinite(out).all()


def test_the_text_encoder_loads_only_when_a_drive_has_text() -> None:
    """MiniLM costs ~14 s to load on CPU: a cascade loads it on first use, once, and says without loading
    whether its model takes text."""
    from types import SimpleNamespace

    from drivesim.pipelines.loading import LoadedCascade

    loads: list[int] = []

    class Export:
        has_text = True

        def text_encoder(self) -> torch.nn.Module:
            loads.append(1)
            return torch.nn.Linear(2, 2)

    cascade = LoadedCascade(SimpleNamespace(device="cpu"), Export(), (64, 128), {})  # type: ignore[arg-type]
    assert cascade.has_text and not loads
    encoder = cascade.text_encoder
    assert isinstance(encoder, torch.nn.Linear) and not encoder.training and cascade.text_encoder is encoder
    assert loads == [1]


def test_an_anchored_prediction_model_adds_its_anchor_back_and_refuses_context_guidance(
        models: dict[str, object], tmp_path: Path) -> None:
    """`stage.anchor_to_given` models denoise the difference to the last given key: the engine adds it back
    (a model that predicts the exact noise returns its last given key for every new key), and refuses
    context guidance, whose branch without context is not comparable."""
    from drivesim.pipelines.engine import SamplerSettingsError

    engine = _engine(models)
    engine.prediction.anchor_to_given = True
    with pytest.raises(SamplerSettingsError, match="anchor_to_given"):
        engine.validate()
    engine.sampler = SamplerSettings(steps=3, guidance={"boxes": 2.0})
    engine.validate()
    result = rollout_to_folder(engine, _timeline(), SceneInputs(), tmp_path, 0, 1.0, {}, show_progress=False)
    assert result.frames == 3

    class ZeroResidual(torch.nn.Module):  # x_t = sqrt(a) r + sqrt(1 - a) eps with r = 0: eps is x_t / sqrt(1 - a)
        def __init__(self, unet: torch.nn.Module) -> None:
            super().__init__()
            self.unet = unet
            self.condition_encoders = unet.condition_encoders
            self.in_channels = unet.in_channels
            self.dtype = torch.float32
            from diffusers import DDPMScheduler

            self.alphas = DDPMScheduler.from_config(SCHEDULE).alphas_cumprod

        def forward(self, x: torch.Tensor, t: torch.Tensor, cond: object) -> torch.Tensor:
            a = self.alphas[t.reshape(-1)[0].long()]
            return x / (1 - a).sqrt()

    engine.prediction.unet = ZeroResidual(models["prediction"])  # type: ignore[assignment]
    engine.sampler = SamplerSettings(steps=4)
    plan = engine.plan(9, given=2)
    chunk = next(c for c in plan.chunks() if c.kind != "image")
    keys = {j: torch.randn(1, 4, 8, 16) for j in chunk.context_keys}
    new = engine._predict(chunk, plan, _timeline(), SceneInputs(), keys, torch.Generator().manual_seed(0))
    last = keys[chunk.context_keys[-1]]
    for j in chunk.new_keys:
        torch.testing.assert_close(new[j], last, atol=1e-4, rtol=0)
