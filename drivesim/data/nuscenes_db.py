"""Opening a nuScenes-format database with the devkit, and each scene's camera stream.

Errors become one line naming the table file: the devkit itself raises bare JSON or key errors.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nuscenes.nuscenes import NuScenes

from drivesim.data.errors import DataError

log = logging.getLogger(__name__)

TABLES = (
    "category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose",
    "log", "scene", "sample", "sample_data", "sample_annotation", "map",
)


def _diagnose(table_root: Path, exc: BaseException) -> DataError:
    """Find the table that made the devkit fail, for an error that names it."""
    tables: dict[str, list] = {}
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
        tables[name] = rows
    if isinstance(exc, KeyError) and exc.args:  # the devkit's reverse index met a dangling reference
        missing = exc.args[0]
        for name, rows in tables.items():
            for row in rows:
                field = next((k for k, v in row.items() if k != "token" and v == missing), None)
                if field is not None:
                    return DataError(table_root / f"{name}.json",
                                     f"record {row['token']}: {field} {missing!r} names no record (malformed table)")
    return DataError(table_root, f"malformed tables ({exc.__class__.__name__}: {exc})")


# Databases in use, by table folder and table file stamps: the train and val datasets of one data
# config share one devkit object (the full trainval tables take tens of seconds and gigabytes to
# load). Weak values: a database is dropped as soon as no dataset holds it.
_OPEN: weakref.WeakValueDictionary[tuple, NuScenes] = weakref.WeakValueDictionary()


def _stamp(table_root: Path) -> tuple:
    """(size, mtime, inode) of every table file: a database whose files changed is loaded afresh."""
    stamp = []
    for name in TABLES:
        try:
            st = (table_root / f"{name}.json").stat()
        except OSError:
            return ()
        stamp.append((st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(stamp)


def open_nuscenes(root: str | Path, version: str) -> NuScenes:
    """The devkit database at `root`/`version`, shared while in use and unchanged on disk."""
    root = Path(root)
    table_root = root / version
    if not table_root.is_dir():
        raise DataError(table_root, f"nuScenes version {version!r} not found under {root}")
    stamp = _stamp(table_root)
    key = (str(root), version, str(table_root.resolve()), stamp)
    if stamp and (nusc := _OPEN.get(key)) is not None:
        return nusc
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            nusc = NuScenes(version=version, dataroot=str(root), verbose=False)
    except Exception as exc:  # noqa: BLE001 - the devkit raises many types; all mean a bad table
        raise _diagnose(table_root, exc) from exc
    if stamp:
        _OPEN[key] = nusc
    return nusc


#: Fields the loader reads from each table (beyond 'token'); the devkit checks the references.
REQUIRED = {
    "sample": ("timestamp", "prev", "next", "scene_token"),
    "sample_annotation": ("sample_token", "instance_token", "translation", "size", "rotation"),
    "ego_pose": ("translation", "rotation"),
    "calibrated_sensor": ("sensor_token", "translation", "rotation"),
    "scene": ("name",),
}


def table_problems(nusc: NuScenes) -> list[DataError]:
    """Records missing a field the loader needs, one error per table (its first bad record)."""
    root = Path(nusc.table_root)
    cameras = {s["token"] for s in nusc.sensor if s.get("modality", "camera") == "camera"}
    problems = []
    for table, fields in REQUIRED.items():
        for row in getattr(nusc, table):
            needed = fields + (("camera_intrinsic",) if table == "calibrated_sensor" and row.get("sensor_token") in cameras else ())
            absent = [f for f in needed if f not in row]
            if absent:
                problems.append(DataError(root / f"{table}.json", f"record {row['token']} has no {absent[0]!r} (malformed table)"))
                break
    return problems


@dataclass
class CameraStream:
    """One scene's frames from one camera, sorted by time (key frames and sweeps)."""

    scene_token: str
    scene_name: str
    tokens: list[str]
    times: np.ndarray  # seconds from the scene's first frame
    t0_us: int  # the first frame's timestamp, microseconds
    missing_sweeps: int = 0  # sweeps left out because their image file is absent


def _record_problem(sd: dict) -> str | None:
    """What makes a sample_data record unusable for a camera stream, or None."""
    for key in ("token", "sample_token", "timestamp", "filename", "is_key_frame"):
        if key not in sd:
            return f"has no {key!r}"
    if isinstance(sd["timestamp"], bool) or not isinstance(sd["timestamp"], (int, float)):
        return f"timestamp {sd['timestamp']!r} is not a number (microseconds)"
    if not isinstance(sd["filename"], str) or not sd["filename"]:
        return f"filename {sd['filename']!r} is not a path"
    return None


def camera_streams(nusc: NuScenes, camera: str, skip_bad: bool = False) -> dict[str, CameraStream]:
    """scene name -> its camera stream; sweeps belong to the scene of their sample_token.

    Sweeps whose image file is absent are left out of the stream (and counted): nuScenes is also
    distributed as key frames only ("keyframe blobs"), whose tables still list every sweep. A
    missing *key frame* image stays in, so loading it is an error naming the file. A malformed
    record is a DataError naming sample_data.json, or with `skip_bad` left out and logged.
    """
    modality = {s["channel"]: s.get("modality", "camera") for s in nusc.sensor}
    if modality.get(camera) != "camera":
        cameras = sorted(c for c, m in modality.items() if m == "camera")
        what = f"{camera!r} is a {modality[camera]} sensor" if camera in modality else f"no camera {camera!r}"
        raise DataError(Path(nusc.table_root) / "sensor.json", f"{what} (cameras: {cameras})")
    scene_of_sample = {s["token"]: s["scene_token"] for s in nusc.sample}
    by_scene: dict[str, list[tuple[int, str]]] = {}
    missing: dict[str, int] = {}
    for sd in nusc.sample_data:
        if sd.get("channel") != camera:
            continue
        problem = _record_problem(sd)
        scene = None if problem else scene_of_sample.get(sd["sample_token"])
        if scene is None:
            error = DataError(Path(nusc.table_root) / "sample_data.json",
                              f"record {sd.get('token')} {problem or 'names an unknown sample'}")
            if not skip_bad:
                raise error
            log.warning("skipping a malformed record: %s", error)
            continue
        if not sd["is_key_frame"] and not os.path.isfile(os.path.join(nusc.dataroot, sd["filename"])):
            missing[scene] = missing.get(scene, 0) + 1
            continue
        by_scene.setdefault(scene, []).append((int(sd["timestamp"]), sd["token"]))
    streams: dict[str, CameraStream] = {}
    for scene in nusc.scene:
        rows = sorted(by_scene.get(scene["token"], []))
        if not rows:
            continue
        stamps = np.array([r[0] for r in rows], np.int64)
        streams[scene["name"]] = CameraStream(
            scene_token=scene["token"], scene_name=scene["name"], tokens=[r[1] for r in rows],
            times=(stamps - stamps[0]) / 1e6, t0_us=int(stamps[0]), missing_sweeps=missing.get(scene["token"], 0),
        )
    return streams


def default_max_gap(fps: float) -> float:
    """The farthest (s) a clip's target time may be from its frame when `max_gap` is not set: half a
    clip frame, and at least 0.75 of a 12 Hz sweep interval (real sweeps jitter)."""
    return max(0.5 / fps, 0.75 / 12.0)


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
