"""The real side of an evaluation: a dataset config (`data=`), a folder (`real=`), or for synthetic
protocols the held-out seeds rendered on demand into the cache (deterministic, so rendered once)."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from drivesim.config.protocol import ProtocolConfig
from drivesim.data.clip import Clip
from drivesim.metrics.extractors import cache_dir
from drivesim.metrics.videos import CondBox, EvalVideo, FrameCond, VideoSeq, find_videos, load_video
from drivesim.vocab import CLASSES

log = logging.getLogger(__name__)


def clip_to_video(clip: Clip, name: str) -> EvalVideo:
    """A dataset clip with its truth (boxes in output pixels, ego speed and yaw rate) as an EvalVideo."""
    times = np.asarray(clip.source.timestamps, np.float64)
    conds = []
    for t in range(clip.num_frames):
        boxes = tuple(CondBox(str(int(i)), CLASSES[int(c)], tuple(float(v) for v in b))  # type: ignore[arg-type]
                      for b, c, i in zip(clip.boxes_2d[t], clip.classes[t], clip.instance_ids[t]))
        conds.append(FrameCond(float(times[t] - times[0]), float(clip.ego.speed[t]), float(clip.ego.yaw_rate[t]), boxes))
    return EvalVideo(name, clip.frames, clip.fps, conds, {"dataset": clip.source.dataset, "scene": clip.source.scene})


def synth_benchmark_roots(protocol: ProtocolConfig) -> list[Path]:
    """One rendered folder per held-out seed, under $DRIVESIM_CACHE/benchmarks/<protocol>/seed-<s>."""
    from drivesim.config.synth import CameraConfig, SynthConfig
    from drivesim.synth.render import render_unless_current

    if not protocol.held_out_seeds:
        raise ValueError(f"protocol {protocol.name} lists no held_out_seeds: give data=... or real=...")
    roots = []
    r = protocol.render
    for seed in protocol.held_out_seeds:
        root = cache_dir() / "benchmarks" / protocol.name / f"seed-{seed}"
        cfg = SynthConfig(out=str(root), scenes=r.scenes, seconds=r.seconds, seed=seed,
                          camera=CameraConfig(width=r.width, height=r.height))
        if render_unless_current(cfg):  # a render of other settings under the same name is redone
            log.info("rendered the %s held-out seed %d (%d scenes x %g s) into %s", protocol.name, seed,
                     r.scenes, r.seconds, root)
        roots.append(root)
    return roots


def _pick(n: int, protocol: ProtocolConfig) -> list[int]:
    if protocol.max_clips is None or n <= protocol.max_clips:
        return list(range(n))
    return sorted(np.random.default_rng(protocol.seed).choice(n, protocol.max_clips, replace=False).tolist())


def _data_options(data: Any, protocol: ProtocolConfig) -> dict:
    """The data config (a node or a plain dict, completed from its schema) with the protocol's clip settings."""
    from drivesim.config.data import NuScenesDataConfig, SyntheticDataConfig, VideoDataConfig

    schemas = {"synthetic": SyntheticDataConfig, "nuscenes": NuScenesDataConfig, "videos": VideoDataConfig}
    name = data.get("name") if hasattr(data, "get") else None
    if name not in schemas:
        raise ValueError(f"data.name must be one of {', '.join(schemas)}, got {name!r}")
    merged = OmegaConf.merge(OmegaConf.structured(schemas[name]), data)
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        raise ValueError(f"data config: missing required value for data.{', data.'.join(missing)}")
    cfg = OmegaConf.to_container(merged, resolve=True)
    assert isinstance(cfg, dict)
    cfg.update(frames=protocol.clip_frames, fps=protocol.fps, size=list(protocol.size), stride=protocol.stride)
    return cfg


class LoadedClips:
    """Real clips loaded in this process, keyed by (dataset identity, split, clip index), at most `limit` bytes
    of frames (least recently used first out). Every metric group of an evaluation, and every evaluation of a
    demo or benchmark, reads the real side again, and a synthetic clip costs about 1 s to load (projecting its
    3D boxes) - more than most metrics spend on it: the demo's five groups re-read its scene five times, 225 of
    their 287 seconds (session 8). The dataset identity holds its files' sizes and times: an edit is a new key."""

    def __init__(self, limit: int = 1 << 30) -> None:
        self.limit = limit
        self.items: OrderedDict[str, EvalVideo | None] = OrderedDict()
        self.bytes = 0
        self.loads = 0

    def get(self, key: str, load: Callable[[], EvalVideo | None]) -> EvalVideo | None:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = load()
        self.loads += 1
        size = _frame_bytes(value)
        if size <= self.limit:
            self.items[key] = value
            self.bytes += size
            while self.bytes > self.limit:
                self.bytes -= _frame_bytes(self.items.popitem(last=False)[1])
        return value


def _frame_bytes(video: EvalVideo | None) -> int:
    return 0 if video is None else int(video.frames.numel() * video.frames.element_size())


LOADED_CLIPS = LoadedClips()


def _clip_loader(dataset: Any, k: int, name: str, key: str) -> Any:
    def load() -> EvalVideo | None:
        clip = dataset[k]
        return None if clip is None else clip_to_video(clip, f"{name}-{k}")

    return functools.partial(LOADED_CLIPS.get, f"{key}/{k}", load)


def real_from_data(data: Any, protocol: ProtocolConfig, by_content: bool = False) -> tuple[VideoSeq, dict]:
    """Clips of a dataset config, read on demand (the dataset's own on_error policy applies). `by_content`:
    the data's identity (cache key) is its files' content, not their paths and times (`dataset_identity`)."""
    from drivesim.data import build_dataset

    cfg = _data_options(data, protocol)
    dataset = build_dataset(cfg, split=protocol.split)
    picks = _pick(len(dataset), protocol)  # type: ignore[arg-type]
    identity = dataset_identity(Path(str(cfg.get("root"))), cfg, by_content=by_content)
    info = {"source": "data", "data": cfg, "split": protocol.split, "clips": len(picks), "identity": identity}
    key = f"{identity}/{protocol.split}"
    return VideoSeq([_clip_loader(dataset, k, str(cfg.get("name")), key) for k in picks]), info


def real_from_synth_benchmark(protocol: ProtocolConfig) -> tuple[VideoSeq, dict]:
    loaders, roots = [], synth_benchmark_roots(protocol)
    for root in roots:
        part, _ = real_from_data({"name": "synthetic", "root": str(root), "version": "v1.0-synth"},
                                 _all_clips(protocol))
        loaders.extend(part.loaders)
    picks = _pick(len(loaders), protocol)
    info = {"source": "synthetic held-out seeds", "seeds": list(protocol.held_out_seeds), "roots": [str(r) for r in roots],
            "render": OmegaConf.to_container(OmegaConf.structured(protocol.render)), "clips": len(picks),
            "identity": hashlib.sha256(json.dumps([dataset_identity(r, {}) for r in roots]).encode()).hexdigest()}
    return VideoSeq([loaders[k] for k in picks]), info


def _all_clips(protocol: ProtocolConfig) -> ProtocolConfig:
    from dataclasses import replace

    return replace(protocol, max_clips=None, split=None)


def real_from_folder(root: str | Path, protocol: ProtocolConfig) -> tuple[VideoSeq, dict]:
    paths = find_videos(root)
    picks = _pick(len(paths), protocol)
    size = (int(protocol.size[0]), int(protocol.size[1]))
    seq = VideoSeq([functools.partial(load_video, paths[k], size, protocol.fps) for k in picks])
    return seq, {"source": "folder", "root": str(root), "videos": len(picks), "identity": dataset_identity(Path(root), {})}


def dataset_identity(root: Path, cfg: dict, by_content: bool = False) -> str:
    """sha256 of the dataset's config and its files' relative paths, sizes and modification times; with
    `by_content`, of its files' relative paths and bytes and its config without `root`: a folder rendered
    again (the demo's scene, every run) or moved keeps its identity. Hidden files are not part of it."""
    entries: list[tuple[Any, ...]] = []
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root] if root.is_file() else []
    for p in files:
        rel = p.relative_to(root).as_posix() if root.is_dir() else p.name
        if any(part.startswith(".") for part in Path(rel).parts):
            continue
        if by_content:
            with open(p, "rb") as fh:
                entries.append((rel, hashlib.file_digest(fh, "sha256").hexdigest()))
        else:
            st = p.stat()
            entries.append((rel, st.st_size, st.st_mtime_ns))
    if by_content:
        blob = json.dumps({"cfg": {k: v for k, v in cfg.items() if k != "root"}, "content": entries}, sort_keys=True,
                          default=str)
    else:
        blob = json.dumps({"root": str(root.resolve()), "cfg": cfg, "files": entries}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def nan_to_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)
