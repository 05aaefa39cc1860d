"""One clip of a dataset scene at given times: the source of a replay or of a scenario's start frames.

Sources: nuScenes and the synthetic world (scene name or token) and video folders (the video's path
relative to the root, or its file name). The clip's frames sit at the key rate `fps` from `first`
seconds into the scene, as far as the scene lasts. Built on the data loaders (drivesim.data) by
narrowing their item list to this one clip (design debt: they have no public "clip at" API yet).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from drivesim.config import data as data_schemas
from drivesim.config.compose import CONF_DIR
from drivesim.scenario.spec import ScenarioError

log = logging.getLogger(__name__)
_SCHEMAS = {"synthetic": data_schemas.SyntheticDataConfig, "nuscenes": data_schemas.NuScenesDataConfig,
            "videos": data_schemas.VideoDataConfig}


@dataclass
class SceneClip:
    clip: Any  # drivesim.data.Clip
    root: str
    scene: str
    token: str
    instance_name: Callable[[int], str]  # the dataset's id of an instance row / sidecar id


def data_config(name: str, overrides: dict[str, Any], where: str) -> DictConfig:
    """conf/data/<name>.yaml on its schema, with `overrides` (e.g. root) merged in."""
    if name not in _SCHEMAS:
        raise ScenarioError(f"{where}.data: unknown data config {name!r} (choose from {', '.join(_SCHEMAS)})")
    raw = yaml.safe_load((CONF_DIR / "data" / f"{name}.yaml").read_text()) or {}
    raw.pop("defaults", None)
    try:
        return OmegaConf.merge(OmegaConf.structured(_SCHEMAS[name]), raw, overrides)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise ScenarioError(f"{where}.data_overrides: {' '.join(str(exc).split())}") from None


def clip_times(time: float, context: int, seconds: float, fps: float, out_fps: float) -> np.ndarray:
    """Target times (s into the scene): `context` frames, the last one output frame before `time`, then on."""
    first = time - (1.0 / out_fps + (context - 1) / fps) if context else time
    return first + np.arange(context + math.ceil(seconds * fps) + 1) / fps


def load_scene_clip(data: DictConfig, scene: str, targets: np.ndarray, fps: float, size: tuple[int, int],
                    context: int, where: str, with_boxes: bool = True) -> SceneClip:
    """The clip of `scene` at `targets` (cut at the scene's end); errors name `where`'s fields.
    `with_boxes=False`: no boxes (a nuScenes-format scene then loads several times faster)."""
    if not scene:
        raise ScenarioError(f"{where}.scene: give a scene name or token (or a video path)")
    try:
        if data.name == "videos":
            return _video_clip(data, scene, targets, fps, size, context, where)
        return _nuscenes_clip(data, scene, targets, fps, size, context, where, with_boxes)
    except ScenarioError:
        raise
    except (OSError, ValueError, KeyError) as exc:  # the loaders' DataError is a ValueError naming the file
        raise ScenarioError(f"{where}.data ({data.root}): {' '.join(str(exc).split())}") from None


def _check_span(targets: np.ndarray, last: float, tolerance: float, context: int, scene: str, where: str) -> np.ndarray:
    kept = targets[targets <= last + tolerance]
    if targets[0] < -tolerance or len(kept) <= context:
        raise ScenarioError(f"{where}.time: leaves no room for {context} context frame(s) and a generated one in "
                            f"scene {scene} ({last:.2f} s long)")
    if len(kept) < len(targets):
        log.warning("scene %s ends %.2f s before the requested end: agents and ego hold their last values after it",
                    scene, float(targets[-1] - kept[-1]))
    return kept


def _nuscenes_clip(data: DictConfig, scene: str, targets: np.ndarray, fps: float, size: tuple[int, int],
                   context: int, where: str, with_boxes: bool = True) -> SceneClip:
    from drivesim.data import NuScenesClips

    ds = NuScenesClips(data.root, version=str(data.version), camera=str(data.camera), frames=1, fps=fps,
                       size=size, split=None, stride=1e9, max_gap=data.max_gap, min_visibility=int(data.min_visibility),
                       with_boxes=with_boxes)
    matches = [k for k, s in enumerate(ds.streams) if scene in (s.scene_name, s.scene_token)]
    if not matches:
        names = ", ".join(s.scene_name for s in ds.streams[:8])
        raise ScenarioError(f"{where}.scene: unknown scene {scene!r} in {data.root} (scenes: {names} ...)")
    k = matches[0]
    stream = ds.streams[k]
    kept = _check_span(targets, float(stream.times[-1]), ds.max_gap, context, stream.scene_name, where)
    ds.items = [(k, [int(np.argmin(np.abs(stream.times - t))) for t in kept])]
    clip = ds[0]
    instances = ds.nusc.instance
    return SceneClip(clip, str(data.root), stream.scene_name, stream.scene_token,
                     lambda row: str(instances[row]["token"]))


def _video_clip(data: DictConfig, scene: str, targets: np.ndarray, fps: float, size: tuple[int, int],
                context: int, where: str) -> SceneClip:
    from drivesim.data import VideoFolderClips

    ds = VideoFolderClips(data.root, frames=1, fps=fps, size=size, split=None, stride=1e9)
    matches = [v for v, video in enumerate(ds.videos) if scene in (str(video.path), Path(str(video.path)).name)]
    if not matches:
        names = ", ".join(str(v.path) for v in ds.videos[:8])
        raise ScenarioError(f"{where}.scene: unknown video {scene!r} in {data.root} (videos: {names} ...)")
    vid = matches[0]
    video = ds.videos[vid]
    kept = _check_span(targets, float(video.span), 0.5 / fps, context, str(video.path), where)
    ds.frames = len(kept)
    offset = float(kept[0])
    ds.items = [(vid, max(0.0, offset))]
    clip = ds[0]
    return SceneClip(clip, str(data.root), str(video.path), str(video.path), lambda i: str(i))
