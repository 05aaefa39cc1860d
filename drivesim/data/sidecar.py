"""Optional per-video annotations: `<video file name>.json` beside the video (e.g. drive.mp4.json).

Format (version 1), times in seconds from the video's first frame, boxes in display-orientation
source pixels (xyxy, pixel edges):

    {"version": 1,
     "description": "Night, rain",                      # optional -> labels
     "intrinsics": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],  # optional, source pixels
     "frames": [{"t": 0.0, "boxes": [[x1, y1, x2, y2], ...], "classes": ["car", ...],
                 "ids": [7, ...], "speed": 12.5, "yaw_rate": 0.01,
                 "x": 0.0, "y": 0.0, "yaw": 0.0}, ...]}   # every key but "t" optional

A clip frame takes the boxes of the latest entry at or before its time (like its image); speed
and yaw rate are interpolated in time; x, y (m, a fixed world frame) and yaw (rad) give waypoints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from drivesim.data.clip import Labels
from drivesim.data.ego import PoseTrack
from drivesim.data.errors import DataError
from drivesim.data.labels import class_index, parse_description


@dataclass
class SidecarFrame:
    t: float
    boxes: np.ndarray  # (N, 4)
    classes: np.ndarray  # (N,) int64
    ids: np.ndarray  # (N,) int64
    speed: float | None
    yaw_rate: float | None
    pose: tuple[float, float, float] | None


@dataclass
class Sidecar:
    path: Path
    labels: Labels
    intrinsics: np.ndarray | None
    frames: list[SidecarFrame]
    description: str = ""

    @cached_property
    def times(self) -> np.ndarray:
        """Entry times (s), sorted; computed once, as `at` runs for every frame of every clip."""
        return np.array([f.t for f in self.frames], np.float64)

    @cached_property
    def pose_track(self) -> PoseTrack | None:
        """The entries' poses as a track (None with fewer than two); built once, not per clip."""
        posed = [(f.t, f.pose) for f in self.frames if f.pose is not None]
        if len(posed) < 2:
            return None
        times = np.array([t for t, _ in posed], np.float64)
        poses = np.array([pose for _, pose in posed], np.float64)
        positions = np.column_stack([poses[:, :2], np.zeros(len(poses))])
        return PoseTrack(times=times, positions=positions, yaws=poses[:, 2])

    @cached_property
    def measured(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Measured `speed` / `yaw_rate` (e.g. CAN or GPS) as (times, values), for those given at all."""
        out = {}
        for name in ("speed", "yaw_rate"):
            given = [(f.t, getattr(f, name)) for f in self.frames if getattr(f, name) is not None]
            if given:
                t, v = np.array(given, np.float64).T
                out[name] = (t, v)
        return out

    def at(self, t: float) -> SidecarFrame | None:
        """The latest entry at or before t (None before the first entry)."""
        i = int(np.searchsorted(self.times, t + 1e-9, side="right")) - 1
        return self.frames[i] if i >= 0 else None


def sidecar_path(video: Path) -> Path:
    return video.with_name(video.name + ".json")


def _frame(path: Path, k: int, raw: object) -> SidecarFrame:
    where = f"frames[{k}]"
    if not isinstance(raw, dict) or "t" not in raw:
        raise DataError(path, f"{where} must be an object with a time 't'")
    try:
        boxes = np.asarray(raw.get("boxes", []), np.float32).reshape(-1, 4)
        names = raw.get("classes", ["other"] * len(boxes))
        classes = np.array([class_index(str(c)) for c in names], np.int64)
        ids = np.asarray(raw.get("ids", range(len(boxes))), np.int64).reshape(-1)
        pose = (float(raw["x"]), float(raw["y"]), float(raw.get("yaw", 0.0))) if "x" in raw and "y" in raw else None
        speed = float(raw["speed"]) if raw.get("speed") is not None else None
        yaw_rate = float(raw["yaw_rate"]) if raw.get("yaw_rate") is not None else None
        t = float(raw["t"])
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"{where}: {exc}") from exc
    if not (len(classes) == len(ids) == len(boxes)):
        raise DataError(path, f"{where}: boxes, classes and ids differ in length")
    return SidecarFrame(t=t, boxes=boxes, classes=classes, ids=ids, speed=speed, yaw_rate=yaw_rate, pose=pose)


def load_sidecar(video: Path) -> Sidecar | None:
    """The video's sidecar, None if it has none; DataError naming the file if it is malformed."""
    path = sidecar_path(video)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(path, f"not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("version", 1) != 1:
        raise DataError(path, "expected a JSON object with version 1")
    raw_frames = data.get("frames", [])
    if not isinstance(raw_frames, list):
        raise DataError(path, "'frames' must be a list")
    frames = sorted((_frame(path, k, f) for k, f in enumerate(raw_frames)), key=lambda f: f.t)
    intrinsics = data.get("intrinsics")
    k = None
    if intrinsics is not None:
        k = np.asarray(intrinsics, np.float64)
        if k.shape != (3, 3):
            raise DataError(path, f"'intrinsics' must be 3x3, got shape {k.shape}")
    return Sidecar(path=path, labels=parse_description(data.get("description")), intrinsics=k, frames=frames,
                   description=str(data.get("description") or ""))
