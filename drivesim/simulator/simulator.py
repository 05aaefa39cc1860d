"""`Simulator`: a policy acts, the world answers with frames, through the one rollout engine.

Each `step` runs the next `Chunk` of the engine's `RolloutPlan` (exactly what `drivesim generate`
runs), with a `ClosedLoopTimeline` in place of the scenario's: the ego values of the chunk's frames
are the actions, the agents' boxes are the scenario's agents seen from the ego path the actions
make. A chunk's randomness is a function of (seed, chunk), so the same seed and actions give the
same frames, and a saved state resumes exactly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from drivesim.config.generate import SamplerConfig
from drivesim.exports import ExportError
from drivesim.pipelines.conditions import SceneInputs
from drivesim.pipelines.engine import Engine, keys_kept
from drivesim.pipelines.loading import GenerateError, LoadedCascade, load_cascade
from drivesim.pipelines.nuscenes_export import GeneratedFrame
from drivesim.pipelines.plan import Chunk, RolloutPlan
from drivesim.pipelines.rollout import GivenContext
from drivesim.pipelines.run import _scene_inputs
from drivesim.scenario.camera import PinholeCamera, resolve_camera
from drivesim.scenario.spec import Scenario, ScenarioError, load_scenario, parse_scenario
from drivesim.simulator.observation import EgoState, Observation, SimulatorError
from drivesim.simulator.state import scenario_from_dict, scenario_to_dict
from drivesim.simulator.world import ClosedLoopTimeline, EgoPath, ScenarioWorld

log = logging.getLogger(__name__)
STATE_VERSION = 1
ScenarioLike = Scenario | str | Path | Mapping[str, Any] | None


def sampler_config(sampler: str | Mapping[str, Any] | SamplerConfig | DictConfig | None) -> DictConfig:
    """A sampler name ("ddim"), a mapping of `SamplerConfig` fields, or a config, as a checked config."""
    base = OmegaConf.structured(SamplerConfig)
    try:
        if isinstance(sampler, SamplerConfig):
            merged = OmegaConf.structured(sampler)
        elif sampler is None or isinstance(sampler, str):
            merged = OmegaConf.merge(base, {"name": sampler or "ddim"})
        else:
            merged = OmegaConf.merge(base, sampler if isinstance(sampler, DictConfig) else dict(sampler))
    except OmegaConfBaseException as exc:
        raise SimulatorError(f"sampler: {' '.join(str(exc).split()).split(' full_key:')[0]}") from None
    assert isinstance(merged, DictConfig)
    return merged


def resolve_scenario(scenario: ScenarioLike) -> Scenario:
    if scenario is None:
        return parse_scenario({"name": "free_drive"}, "<free drive>")
    if isinstance(scenario, Scenario):
        return scenario
    if isinstance(scenario, (str, Path)):
        return load_scenario(scenario)
    return parse_scenario(dict(scenario), "<scenario mapping>")


class Simulator:
    """Closed-loop driving video: `reset(scenario, seed)`, then `step(speeds, yaw_rates)` per chunk."""

    def __init__(self, engine: Engine, size: tuple[int, int] | None = None, *,
                 cascade: LoadedCascade | None = None) -> None:
        """Over a built `Engine` (in-memory models); `from_pretrained` loads one from exports."""
        self.engine, self.cascade = engine, cascade
        down = int(engine.vae.downscale)
        self._size = size or (engine.latent_size[0] * down, engine.latent_size[1] * down)
        self._episode = False

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path, sampler: Any = None, device: str = "cpu",
                        interpolation: str | Path | None = None, *, interpolation_passes: int = 1,
                        precision: str = "fp32", context_frames: int = 2, decode_chunk: int = 8,
                        decoder: str | Path | None = None, lora: str | Path | None = None) -> Simulator:
        """Load a temporal (prediction) export or a cascade folder, as `drivesim generate checkpoint=` does
        (`decoder=`, `lora=`: those exports, as in generate; an upsampler is not used in the closed loop)."""
        cfg = sampler_config(sampler)
        try:
            cascade = load_cascade(str(checkpoint), str(interpolation) if interpolation else None, cfg,
                                   passes=interpolation_passes, device=device, precision=precision,
                                   context_frames=context_frames, decode_chunk=decode_chunk,
                                   decoder=str(decoder) if decoder else None, lora=str(lora) if lora else None)
            cascade.engine.validate()
        except (GenerateError, ExportError) as exc:
            raise SimulatorError(" ".join(str(exc).split())) from None
        return cls(cascade.engine, cascade.size, cascade=cascade)

    # ------------------------------------------------------------------ properties
    @property
    def fps(self) -> float:
        return self.engine.out_fps

    @property
    def size(self) -> tuple[int, int]:
        """Output frame (H, W) in pixels."""
        return self._size

    @property
    def time(self) -> float:
        """Seconds of video made so far (the next frame's time)."""
        return len(self._ego) / self.fps if self._episode else 0.0

    @property
    def action_frames(self) -> int:
        """How many frames the next `step` makes (the length its action arrays must have)."""
        self._need_episode()
        start, stop = self._chunk(self._next).outputs
        return stop - start

    # ------------------------------------------------------------------ episode
    def reset(self, scenario: ScenarioLike = None, seed: int = 0, context: torch.Tensor | GivenContext | None = None,
              ego_speed: float | None = None, ego_yaw_rate: float | None = None) -> Observation:
        """Start an episode. Without `context` the image model makes frame 0 (returned); with `context`
        (uint8 frames (S, 3, H, W), or key latents) the rollout continues them and nothing is returned yet.
        The ego starts at `ego_speed` / `ego_yaw_rate` (default: the scenario's at t = 0, else unknown)."""
        try:
            sc = resolve_scenario(scenario)
        except ScenarioError as exc:
            raise SimulatorError(str(exc)) from None
        speed, yaw = _check_scalar(ego_speed, "ego_speed", True), _check_scalar(ego_yaw_rate, "ego_yaw_rate", False)
        given = self._given(context)
        self._start(sc, int(seed), given, speed, yaw)
        if given:
            return self._observation(0, np.zeros((0, *self.size, 3), dtype=np.uint8))
        return self._run(self._chunk(0), [], [], None)

    def step(self, ego_speed: Sequence[float] | np.ndarray | torch.Tensor,
             ego_yaw_rate: Sequence[float] | np.ndarray | torch.Tensor,
             waypoints: Sequence[Any] | np.ndarray | torch.Tensor | None = None) -> Observation:
        """Make the next chunk's frames: `ego_speed`, `ego_yaw_rate` (n,) and optional `waypoints` (n, K, 2)
        (m, ego frame) for its n = `action_frames` frames. The observation holds exactly those n frames:
        with interpolation the chunk's key frames are interpolated in the same call, so output does not lag."""
        self._need_episode()
        chunk = self._chunk(self._next)
        n = chunk.outputs[1] - chunk.outputs[0]
        speed = _check_actions(ego_speed, n, "ego_speed", non_negative=True)
        yaw = _check_actions(ego_yaw_rate, n, "ego_yaw_rate")
        points = None
        if waypoints is not None:
            points = np.asarray(waypoints.cpu() if isinstance(waypoints, torch.Tensor) else waypoints, dtype=np.float64)
            if points.ndim != 3 or points.shape[0] != n or points.shape[2] != 2:
                raise SimulatorError(f"waypoints: expected shape ({n}, K, 2) for the next {n} frames, "
                                     f"got {tuple(points.shape)}")
            if not np.isfinite(points).all():
                raise SimulatorError("waypoints: NaN or infinite values")
        return self._run(chunk, list(speed), list(yaw), points)

    @property
    def camera(self) -> PinholeCamera:
        """The episode's camera (the scenario's, else the export data's, at the output size)."""
        self._need_episode()
        return self._timeline.camera

    @property
    def scenario(self) -> Scenario:
        self._need_episode()
        return self._scenario

    def generated_frames(self, obs: Observation) -> list[GeneratedFrame]:
        """An observation's frames with their truth (ego pose, agents' 3D boxes in the ego frame), for
        `drivesim.pipelines.nuscenes_export.GeneratedDataset.add_scene`: closed-loop drives as a dataset."""
        self._need_episode()
        world = self._timeline.world
        return [GeneratedFrame(int(i), float(t), obs.frames[k].permute(1, 2, 0).numpy(),
                               (float(obs.ego.pose[k, 0]), float(obs.ego.pose[k, 1]), float(obs.ego.pose[k, 2])),
                               float(obs.ego.speed[k]), float(obs.ego.yaw_rate[k]),
                               world.agent_boxes(int(i), self._ego.pose(int(i))))
                for k, (i, t) in enumerate(zip(obs.frame_indices, obs.times))]

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The episode as plain data and tensors (`torch.save`-able): resume with `load_state_dict`."""
        self._need_episode()
        return {"version": STATE_VERSION, "seed": self._seed, "next_chunk": self._next, "given": self._given_count,
                "keys": {str(j): z.detach().cpu().clone() for j, z in self._keys.items()},
                "initial": list(self._initial), "ego_speed": list(self._ego.speed),
                "ego_yaw_rate": list(self._ego.yaw_rate),
                "waypoints": {str(k): [list(p) for p in v] for k, v in self._waypoints.items()},
                "scenario": scenario_to_dict(self._scenario), "fps": self.fps, "size": list(self.size),
                "exports": dict(self.cascade.stages) if self.cascade else {}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise SimulatorError(f"simulator state version {state.get('version')!r}, expected {STATE_VERSION}")
        mine = dict(self.cascade.stages) if self.cascade else {}
        if state.get("exports") and mine and dict(state["exports"]) != mine:
            raise SimulatorError(f"the state was made with exports {dict(state['exports'])}, this simulator runs {mine}")
        if float(state["fps"]) != self.fps or tuple(state["size"]) != tuple(self.size):
            raise SimulatorError(f"the state was made at {state['fps']} fps, {list(state['size'])} px; this simulator "
                                 f"runs at {self.fps} fps, {list(self.size)} px")
        self._start(scenario_from_dict(state["scenario"]), int(state["seed"]), int(state["given"]),
                    *(float(x) for x in state["initial"]))
        for v, w in zip(state["ego_speed"], state["ego_yaw_rate"]):
            self._ego.append(float(v), float(w))
        self._waypoints.update({int(k): tuple((float(p[0]), float(p[1])) for p in v)
                                for k, v in state["waypoints"].items()})
        self._keys = {int(j): z.to(self.engine.device) for j, z in state["keys"].items()}
        self._next = int(state["next_chunk"])

    # ------------------------------------------------------------------ internals
    def _start(self, scenario: Scenario, seed: int, given: int | GivenContext | None, speed: float | None,
               yaw: float | None) -> None:
        h, w = self.size
        export = self.cascade.prediction if self.cascade else None
        camera = resolve_camera(scenario.camera, export.camera if export else None, export.size if export else None,
                                h, w)
        world = ScenarioWorld(scenario, camera, self.fps)
        s0, w0 = world.scenario_ego(0.0)
        self._initial: tuple[float, float] = (s0 if speed is None else speed, w0 if yaw is None else yaw)
        self._scenario, self._seed = scenario, seed
        self._scene: SceneInputs = _scene_inputs(scenario, self.cascade) if self.cascade else \
            SceneInputs(labels=scenario.label_indices() if scenario.labels else None)
        self._ego = EgoPath(self.fps)
        self._waypoints: dict[int, tuple[tuple[float, float], ...]] = {}
        self._timeline = ClosedLoopTimeline(world, self._ego, self._waypoints, self._initial)
        keys = given.keys if isinstance(given, GivenContext) else []
        self._given_count = len(keys) if isinstance(given, GivenContext) else int(given or 0)
        self._keys = {j: z for j, z in zip(range(1 - len(keys), 1), keys)}
        self._next = 0
        self._plan = self.engine.plan(1, given=self._given_count)
        self._chunks: list[Chunk] = []
        self._episode = True

    def _chunk(self, i: int) -> Chunk:
        """Chunk i of an open-ended rollout (a plan long enough that chunk i is not its last)."""
        while len(self._chunks) <= i + 1:
            frames = self.engine.factor * self.engine.prediction.frames * (2 * len(self._chunks) + 4) + 2
            self._plan = RolloutPlan(frames=frames, out_fps=self._plan.out_fps, factor=self._plan.factor,
                                     given=self._plan.given, window=self._plan.window, context=self._plan.context)
            self._chunks = self._plan.chunks()[:-1]
        return self._chunks[i]

    def _run(self, chunk: Chunk, speed: list[float], yaw: list[float], points: np.ndarray | None) -> Observation:
        start, stop = chunk.outputs
        before = len(self._ego)
        if chunk.kind == "image":
            speed, yaw = [self._initial[0]], [self._initial[1]]
        assert before == start, (before, start)
        for k, (v, w) in enumerate(zip(speed, yaw)):
            self._ego.append(v, w)
            if points is not None:
                self._waypoints[start + k] = tuple((float(p[0]), float(p[1])) for p in points[k])
        try:
            result = self.engine.run_chunk(chunk, self._plan, self._timeline, self._scene, self._keys, self._seed)
        except BaseException:
            self._ego.truncate(before)
            for k in range(start, stop):
                self._waypoints.pop(k, None)
            raise
        self._keys = keys_kept({**self._keys, **result.keys}, self.engine.context_frames)
        self._next = chunk.index + 1
        return self._observation(start, result.frames)

    def _observation(self, start: int, frames: np.ndarray) -> Observation:
        n = frames.shape[0]
        idx = np.arange(start, start + n)
        conds = [self._timeline.at(i / self.fps) for i in idx]
        return Observation(
            frames=torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous(),
            times=idx / self.fps, frame_indices=idx, boxes=tuple(c.boxes for c in conds),
            ego=EgoState(speed=np.array([self._ego.speed[i] for i in idx], dtype=np.float64),
                         yaw_rate=np.array([self._ego.yaw_rate[i] for i in idx], dtype=np.float64),
                         pose=np.array([self._ego.pose(int(i)) for i in idx], dtype=np.float64).reshape(n, 3)),
            fps=self.fps)

    def _given(self, context: torch.Tensor | GivenContext | None) -> GivenContext | None:
        if context is None or isinstance(context, GivenContext):
            return context
        if not isinstance(context, torch.Tensor) or context.dtype != torch.uint8 or context.ndim != 4 \
                or tuple(context.shape[1:]) != (3, *self.size):
            raise SimulatorError(f"context: expected uint8 frames (S, 3, {self.size[0]}, {self.size[1]}), got "
                                 f"{getattr(context, 'dtype', type(context).__name__)} "
                                 f"{tuple(getattr(context, 'shape', ()))}")
        if not 1 <= context.shape[0] <= self.engine.context_frames:
            raise SimulatorError(f"context: 1 to {self.engine.context_frames} frames, got {context.shape[0]}")
        vae = self.engine.vae
        pixels = context.float().div(127.5).sub(1.0)[None]
        with torch.no_grad():
            latents = vae.encode_video(pixels.to(self.engine.device, vae.vae.dtype)).float()
        return GivenContext([latents[:, i] for i in range(context.shape[0])], {"frames": int(context.shape[0])})

    def _need_episode(self) -> None:
        if not self._episode:
            raise SimulatorError("no episode: call reset() first")


def _check_scalar(value: float | None, name: str, non_negative: bool) -> float | None:
    if value is None:
        return None
    x = float(value)
    if not math.isfinite(x) or (non_negative and x < 0):
        raise SimulatorError(f"{name}: must be a finite number{' >= 0' if non_negative else ''}, got {value}")
    return x


def _check_actions(values: Any, n: int, name: str, non_negative: bool = False) -> np.ndarray:
    arr = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    arr = arr.reshape(-1) if arr.ndim <= 1 else arr
    if arr.ndim != 1 or arr.shape[0] != n:
        raise SimulatorError(f"{name}: expected {n} values (one per frame of the next chunk), got shape "
                             f"{tuple(np.shape(values))}")
    if not np.isfinite(arr).all():
        raise SimulatorError(f"{name}: NaN or infinite values at frames {np.flatnonzero(~np.isfinite(arr)).tolist()}")
    if non_negative and (arr < 0).any():
        raise SimulatorError(f"{name}: speeds must be >= 0, got {float(arr.min())}")
    return arr
