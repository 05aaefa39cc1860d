"""`scenario=replay`: a dataset scene as the scenario (boxes, ego, labels) and the context frames, with edits.

The scene's frames are taken at the prediction model's key rate: the last of the `context_frames`
given frames sits one output frame before `time` (scenario time 0 = the first generated frame), and
boxes and ego motion run on for the requested seconds (or to the scene's end). Agent ids are the
dataset's instance tokens (video sidecars: their ids). A scenario file's `start:` takes only the
context frames from a scene (`load_start`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from drivesim.pipelines.loading import LoadedCascade
from drivesim.pipelines.rollout import GivenContext
from drivesim.pipelines.scene_clips import SceneClip, clip_times, data_config, load_scene_clip
from drivesim.scenario.edits import apply_edits
from drivesim.scenario.from_clip import scenario_from_clip
from drivesim.scenario.spec import Scenario, ScenarioError

log = logging.getLogger(__name__)
WHERE = "scenario.replay"
START_KEYS = ("data", "root", "scene", "time", "context_frames")


@dataclass
class Replay:
    scenario: Scenario
    given: GivenContext | None


def _scene(cfg: Any, cascade: LoadedCascade, seconds: float, where: str) -> tuple[SceneClip, int]:
    context = int(cfg.get("context_frames", 2))
    if not 0 <= context <= cascade.engine.context_frames:
        raise ScenarioError(f"{where}.context_frames: must lie in [0, {cascade.engine.context_frames}], got {context}")
    overrides = dict(_plain(cfg.get("data_overrides")) or {})
    if cfg.get("root"):
        overrides["root"] = str(cfg["root"])
    data = data_config(str(cfg.get("data", "synthetic")), overrides, where)
    engine = cascade.engine
    targets = clip_times(float(cfg.get("time", 0.0)), context, seconds, engine.fps, engine.out_fps)
    return load_scene_clip(data, str(cfg.get("scene") or ""), targets, engine.fps, cascade.size, context, where), context


def load_replay(cfg: Any, cascade: LoadedCascade, seconds: float) -> Replay:
    """`scenario.replay`: the scene's scenario with the edits applied, and its context frames."""
    scene, context = _scene(cfg, cascade, seconds, WHERE)
    time = float(cfg.time)
    scenario = scenario_from_clip(scene.clip, time, name=f"replay:{scene.scene}", source=f"{scene.root} scene {scene.scene}",
                                  instance_name=scene.instance_name)
    scenario = apply_edits(scenario, remove=list(cfg.remove), add=[dict(a) for a in _plain(cfg.add)],
                           shift={a: list(v) for a, v in _pairs(cfg.shift, "shift", "by")},
                           speed_scale={a: float(v) for a, v in _pairs(cfg.speed_scale, "speed_scale", "factor")},
                           labels={str(a): str(v) for a, v in _plain(cfg.labels).items() if v is not None},
                           where=WHERE)
    return Replay(scenario, encode_context(scene, context, time, cascade))


def load_start(start: dict[str, Any], source: str, cascade: LoadedCascade, seconds: float) -> GivenContext | None:
    """A scenario file's `start: {data, root, scene, time, context_frames}`: given frames from a dataset scene."""
    where = f"{source}: start"
    unknown = [k for k in start if k not in START_KEYS]
    if unknown:
        raise ScenarioError(f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(START_KEYS)})")
    scene, context = _scene(OmegaConf.create(start), cascade, seconds, where)
    return encode_context(scene, context, float(start.get("time", 0.0)), cascade)


def encode_context(scene: SceneClip, context: int, time: float, cascade: LoadedCascade) -> GivenContext | None:
    """The first `context` frames of the scene's clip as key latents (posterior means), and their record."""
    if not context:
        return None
    engine = cascade.engine
    clip = scene.clip
    pixels = clip.frames[:context].float().div(127.5).sub(1.0)[None]  # (1, S, 3, H, W) in [-1, 1]
    with torch.no_grad():
        latents = engine.vae.encode_video(pixels.to(engine.device, engine.vae.vae.dtype)).float()
    description = {"dataset": clip.source.dataset, "root": scene.root, "scene": scene.scene,
                   "scene_token": scene.token, "time": time, "frames": context,
                   "frame_ids": list(clip.source.frame_ids[:context]),
                   "timestamps": [float(t) for t in clip.source.timestamps[:context]]}
    return GivenContext([latents[:, i] for i in range(context)], description)


def _pairs(node: Any, field: str, value: str) -> list[tuple[str, Any]]:
    """[{id: X, <value>: V}, ...] or {X: V} -> [(X, V)]."""
    data = _plain(node) or []
    if isinstance(data, dict):
        return [(str(k), v) for k, v in data.items()]
    pairs = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or set(item) != {"id", value}:
            raise ScenarioError(f"{WHERE}.{field}[{i}]: give {{id: ..., {value}: ...}}, got {item!r}")
        pairs.append((str(item["id"]), item[value]))
    return pairs


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) or OmegaConf.is_list(node) \
        else node
