"""Opening a nuScenes-format database with the devkit, and each scene's camera stream.

Errors become one line naming the table file: the devkit itself raises bare JSON or key errors.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nuscenes.nuscenes import NuScenes

from drivesim.data.errors import DataError

TABLES = (
    "category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose",
    "log", "scene", "sample", "sample_data", "sample_annotation", "map",
)


def _diagnose(table_root: Path, exc: BaseException) -> DataError:
    """Find the table that made the devkit fail, for an error that names it."""
    for name in TABLES:
        path = table_root / f"{name}.json"
        if not path.is_file():
            return DataError(path, "table is missing")
        try:
            rows = json.loads(path.read_text())
        except ValueError as err:
            return DataError(path, f"malformed table: not valid JSON ({err})")
        if not isinstance(rows, list) or any(not isinstance(r, dict) or "token" not in r for r in rows):
            return DataError(path, "malformed table: expected a list of records with a 'token'")
    return DataError(table_root, f"malformed tables ({exc.__class__.__name__}: {exc})")


def open_nuscenes(root: str | Path, version: str) -> NuScenes:
    root = Path(root)
    table_root = root / version
    if not table_root.is_dir():
        raise DataError(table_root, f"nuScenes version {version!r} not found under {root}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return NuScenes(version=version, dataroot=str(root), verbose=False)
    except Exception as exc:  # noqa: BLE001 - the devkit raises many types; all mean a bad table
        raise _diagnose(table_root, exc) from exc


@dataclass
class CameraStream:
    """One scene's frames from one camera, sorted by time (key frames and sweeps)."""

    scene_token: str
    scene_name: str
    tokens: list[str]
    times: np.ndarray  # seconds from the scene's first frame
    t0_us: int  # the first frame's timestamp, microseconds


def camera_streams(nusc: NuScenes, camera: str) -> dict[str, CameraStream]:
    """scene name -> its camera stream; sweeps belong to the scene of their sample_token."""
    channels = {s["channel"] for s in nusc.sensor}
    if camera not in channels:
        raise DataError(Path(nusc.table_root) / "sensor.json", f"no camera {camera!r} (channels: {sorted(channels)})")
    scene_of_sample = {s["token"]: s["scene_token"] for s in nusc.sample}
    by_scene: dict[str, list[tuple[int, str]]] = {}
    for sd in nusc.sample_data:
        if sd.get("channel") != camera:
            continue
        scene = scene_of_sample.get(sd["sample_token"])
        if scene is None:
            raise DataError(Path(nusc.table_root) / "sample_data.json", f"record {sd['token']} names an unknown sample")
        by_scene.setdefault(scene, []).append((int(sd["timestamp"]), sd["token"]))
    streams: dict[str, CameraStream] = {}
    for scene in nusc.scene:
        rows = sorted(by_scene.get(scene["token"], []))
        if not rows:
            continue
        stamps = np.array([r[0] for r in rows], np.int64)
        streams[scene["name"]] = CameraStream(
            scene_token=scene["token"], scene_name=scene["name"], tokens=[r[1] for r in rows],
            times=(stamps - stamps[0]) / 1e6, t0_us=int(stamps[0]),
        )
    return streams


def clip_starts(stream: CameraStream, frames: int, fps: float, stride: float, max_gap: float) -> list[list[int]]:
    """Frame indices of every clip of the stream: target times start + k / fps, each taking the
    nearest frame; a clip with any target farther than max_gap from a frame is left out."""
    span = (frames - 1) / fps
    last = float(stream.times[-1])
    clips: list[list[int]] = []
    start = 0.0
    while start + span <= last + 1e-9:
        targets = start + np.arange(frames) / fps
        right = np.searchsorted(stream.times, targets).clip(1, len(stream.times) - 1)
        left = right - 1
        picks = np.where(np.abs(stream.times[left] - targets) <= np.abs(stream.times[right] - targets), left, right)
        if len(stream.times) == 1:
            picks = np.zeros(frames, np.int64)
        if np.all(np.abs(stream.times[picks] - targets) <= max_gap + 1e-9):
            clips.append([int(p) for p in picks])
        start += stride
    return clips
