"""Latent caching: the frozen autoencoder encodes a clip dataset once into safetensors shards.

The cache key is the dataset's identity (its resolved data config, split and a fingerprint of its
files) plus the autoencoder's digest, so a change of either makes a new cache and every diffusion
stage on the same clips reuses one. Shards are written atomically; the index is written last, so a
killed caching run leaves no cache that looks complete, and the next run resumes after its last shard.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from drivesim.atomic import atomic_path, atomic_write_text
from drivesim.data.clip import Camera, Clip, EgoMotion, Labels, Source

log = logging.getLogger(__name__)
CACHE_FORMAT = 1
SHARD_SIZE = 64
INDEX = "index.json"
_IDENTITY_KEYS = ("name", "root", "version", "camera", "frames", "fps", "size", "stride", "horizon", "waypoint_dt",
                  "seed", "val_fraction", "max_gap", "min_visibility", "on_error")


def default_cache_dir(configured: str | None) -> Path:
    if configured:
        return Path(configured)
    env = os.environ.get("DRIVESIM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "drivesim"


def data_fingerprint(root: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime ns) of the files that define the dataset: nuScenes tables, or the
    video files and sidecars of a video folder. Images are covered by the tables that list them."""
    tables = sorted(root.glob("v1.0-*/*.json"))
    files = tables or sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    return [(p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def cache_key(data_cfg: DictConfig, split: str | None, autoencoder_digest: str) -> str:
    data = OmegaConf.to_container(data_cfg, resolve=True)
    assert isinstance(data, dict)
    identity = {k: data.get(k) for k in _IDENTITY_KEYS}
    if data.get("prompt"):  # an image folder's description is cached with its clips
        identity["prompt"] = data["prompt"]
    root = Path(str(data["root"])).resolve()
    identity["root"] = str(root)
    payload = json.dumps({"format": CACHE_FORMAT, "data": identity, "split": split,
                          "files": data_fingerprint(root), "autoencoder": autoencoder_digest},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _pad_frames(arrays: list[np.ndarray], tail: tuple[int, ...], dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    n = max((len(a) for a in arrays), default=0)
    out = np.zeros((len(arrays), n, *tail), dtype=dtype)
    counts = np.array([len(a) for a in arrays], dtype=np.int64)
    for t, a in enumerate(arrays):
        out[t, : len(a)] = a
    return out, counts


def _clip_tensors(clip: Clip, latents: torch.Tensor) -> dict[str, torch.Tensor]:
    boxes, counts = _pad_frames(clip.boxes_2d, (4,), np.float32)
    t = {
        "latents": latents.contiguous(), "counts": torch.from_numpy(counts),
        "boxes_2d": torch.from_numpy(boxes),
        "boxes_3d": torch.from_numpy(_pad_frames(clip.boxes_3d, (8, 3), np.float32)[0]),
        "classes": torch.from_numpy(_pad_frames(clip.classes, (), np.int64)[0]),
        "instance_ids": torch.from_numpy(_pad_frames(clip.instance_ids, (), np.int64)[0]),
        "valid": torch.from_numpy(_pad_frames(clip.valid, (), np.bool_)[0]),
        "speed": torch.from_numpy(np.asarray(clip.ego.speed, np.float32)),
        "yaw_rate": torch.from_numpy(np.asarray(clip.ego.yaw_rate, np.float32)),
        "waypoints": torch.from_numpy(np.asarray(clip.ego.waypoints, np.float32)),
        "waypoint_mask": torch.from_numpy(np.asarray(clip.ego.waypoint_mask, bool)),
        "labels": torch.from_numpy(clip.labels.as_array()),
        "timestamps": torch.from_numpy(np.asarray(clip.source.timestamps, np.float64)),
    }
    if clip.camera.intrinsics is not None:
        t["intrinsics"] = torch.from_numpy(np.asarray(clip.camera.intrinsics, np.float64))
    if clip.camera.extrinsics is not None:
        t["extrinsics"] = torch.from_numpy(np.asarray(clip.camera.extrinsics, np.float64))
    return t


def _clip_meta(clip: Clip) -> dict[str, Any]:
    return {"fps": clip.fps, "dataset": clip.source.dataset, "scene": clip.source.scene,
            "frame_ids": list(clip.source.frame_ids), "description": clip.source.description,
            "waypoint_dt": clip.ego.waypoint_dt, "frames": clip.num_frames}


def build_cache(dataset: Dataset, encode: Any, folder: Path, batch_size: int = 8) -> Path:
    """Encode every clip of `dataset` with `encode(frames uint8 (B,T,3,H,W)) -> latents` into `folder`.

    Skipped items (None under on_error=skip) are left out and counted in the index. A killed run resumes
    after its last complete shard (each shard records the dataset item it ends before and the skips so
    far); batches keep the positions an uninterrupted run gives them, so the latents come out the same."""
    from rich.progress import Progress

    if (folder / INDEX).is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    total = len(dataset)  # type: ignore[arg-type]
    entries, first, skipped = _finished_shards(folder)
    shard_no = len({e["shard"] for e in entries})
    if first:
        log.info("latent cache %s: resuming at item %d of %d (%d shard(s) kept)", folder, first, total, shard_no)
    shard: dict[str, torch.Tensor] = {}
    shard_meta: list[dict[str, Any]] = []

    def flush(next_item: int) -> None:
        nonlocal shard, shard_meta, shard_no
        if not shard_meta:
            return
        name = f"shard_{shard_no:05d}.safetensors"
        with atomic_path(folder / name) as tmp:
            save_file(shard, str(tmp), metadata={"clips": json.dumps(shard_meta), "next_item": str(next_item),
                                                 "skipped": str(skipped)})
        for slot, meta in enumerate(shard_meta):
            entries.append({"shard": name, "slot": slot, **meta})
        shard, shard_meta, shard_no = {}, [], shard_no + 1

    with Progress(transient=True) as progress:
        task = progress.add_task("caching latents", total=total, completed=first)
        for start in range(first - first % batch_size, total, batch_size):
            indices = range(start, min(total, start + batch_size))
            clips = [dataset[i] for i in indices]
            kept = [c for c in clips if c is not None]
            latents: Iterator[torch.Tensor] = iter(())
            if kept:
                with torch.no_grad():
                    latents = iter(encode(torch.stack([c.frames for c in kept])).float().cpu())
            for index, clip in zip(indices, clips):
                z = next(latents) if clip is not None else None
                if index < first:  # in a finished shard already
                    continue
                if clip is None:
                    skipped += 1
                    continue
                assert z is not None
                slot = len(shard_meta)
                for key, value in _clip_tensors(clip, z).items():
                    shard[f"{slot}/{key}"] = value
                shard_meta.append(_clip_meta(clip))
                if len(shard_meta) == SHARD_SIZE:
                    flush(index + 1)
            progress.update(task, completed=indices.stop)
    flush(total)
    atomic_write_text(folder / INDEX, json.dumps({"format": CACHE_FORMAT, "clips": entries,
                                                  "skipped": skipped}) + "\n")
    log.info("latent cache: %d clips in %d shard(s) at %s (%d skipped)", len(entries), shard_no, folder, skipped)
    return folder


def _finished_shards(folder: Path) -> tuple[list[dict[str, Any]], int, int]:
    """(index entries, next dataset item, skips so far) of the complete shards a killed run left, read in
    order until the first missing one; a shard without the resume fields (or unreadable) ends the list."""
    from safetensors import safe_open

    entries: list[dict[str, Any]] = []
    first = skipped = 0
    number = 0
    while (path := folder / f"shard_{number:05d}.safetensors").is_file():
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
            clips, next_item, skips = json.loads(meta["clips"]), int(meta["next_item"]), int(meta["skipped"])
        except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
            log.warning("latent cache %s: not resuming from %s (%s)", folder, path.name, exc)
            break
        entries.extend({"shard": path.name, "slot": slot, **m} for slot, m in enumerate(clips))
        first, skipped = next_item, skips
        number += 1
    return entries, first, skipped


class CachedLatentClips(Dataset):
    """Items are (Clip without pixels (frames (T, 3, 0, 0)), latents (T, C, h, w)) from a cache folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        try:
            index = json.loads((self.folder / INDEX).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.folder / INDEX}: unreadable latent cache index ({exc}); delete the folder") from exc
        self.entries: list[dict[str, Any]] = index["clips"]
        self.skipped_at_cache = int(index.get("skipped", 0))
        self._shards: dict[str, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def _shard(self, name: str) -> dict[str, torch.Tensor]:
        if name not in self._shards:
            self._shards = {name: load_file(str(self.folder / name))}  # one shard resident at a time
        return self._shards[name]

    def __getitem__(self, index: int) -> tuple[Clip, torch.Tensor]:
        entry = self.entries[index]
        shard, slot = self._shard(entry["shard"]), entry["slot"]

        def get(key: str) -> torch.Tensor | None:
            return shard.get(f"{slot}/{key}")

        def per_frame(key: str) -> list[np.ndarray]:
            value, counts = get(key), get("counts")
            assert value is not None and counts is not None
            return [value[t, : int(n)].numpy() for t, n in enumerate(counts)]

        latents = get("latents")
        assert latents is not None
        frames = int(entry["frames"])
        intrinsics, extrinsics = get("intrinsics"), get("extrinsics")
        clip = Clip(
            frames=torch.zeros((frames, 3, 0, 0), dtype=torch.uint8), fps=float(entry["fps"]),
            boxes_2d=per_frame("boxes_2d"), boxes_3d=per_frame("boxes_3d"), classes=per_frame("classes"),
            instance_ids=per_frame("instance_ids"), valid=per_frame("valid"),
            ego=EgoMotion(speed=get("speed").numpy(), yaw_rate=get("yaw_rate").numpy(),  # type: ignore[union-attr]
                          waypoints=get("waypoints").numpy(), waypoint_mask=get("waypoint_mask").numpy(),  # type: ignore[union-attr]
                          waypoint_dt=float(entry["waypoint_dt"])),
            labels=Labels(*[int(v) for v in get("labels").tolist()]),  # type: ignore[union-attr]
            camera=Camera(intrinsics=None if intrinsics is None else intrinsics.numpy(),
                          extrinsics=None if extrinsics is None else extrinsics.numpy()),
            source=Source(dataset=entry["dataset"], scene=entry["scene"],
                          timestamps=get("timestamps").numpy(), frame_ids=list(entry["frame_ids"]),  # type: ignore[union-attr]
                          description=entry.get("description", "")),
        )
        return clip, latents
